"""Vocabulary shortlists: the lexical table built by co-occurrence, each sentence's candidates (EOS, the frequent
subwords and its own always in, padding ignored), and the output layer over a shortlist (the plain result with
the whole vocabulary; renormalised over each row's list otherwise), for every design and an ensemble."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from nmt import NmtError
from nmt.batching import make_batch
from nmt.lexicon import Lexicon, build_lexicon
from nmt.models.output import log_probs
from nmt.search import beam_search, greedy_search, max_output_lengths
from nmt.tokenizer import BOS, EOS, PAD, UNK
from tests.helpers import small_ensemble, small_rnn, small_transformer


class Pieces:
    """A stand-in vocabulary of named pieces with the special ids, enough for ``build_lexicon``'s copy map."""

    def __init__(self, names: list[str]) -> None:
        self.names = ["<pad>", "<unk>", "<s>", "</s>", *names]

    def __len__(self) -> int:
        return len(self.names)

    def pieces(self, ids: range) -> list[str]:
        return [self.names[i] for i in ids]

    def ids(self, pieces: list[str]) -> list[int]:
        return [self.names.index(p) if p in self.names else UNK for p in pieces]


SRC = Pieces(["hund", "katze", "läuft", "2026", "der"])  # ids 4..8
TRG = Pieces(["dog", "cat", "runs", "the", "2026", "a"])  # ids 4..9


def test_the_table_ranks_what_co_occurs_and_maps_copyable_pieces() -> None:
    pairs = [([8, 4, 6], [7, 4, 6]), ([8, 5, 6], [7, 5, 6]), ([4], [9, 4]), ([8, 4, 7], [7, 4, 8])]
    lexicon = build_lexicon([s for s, _ in pairs], [t for _, t in pairs], SRC, TRG, per_source=3, frequent=2)
    assert lexicon.table[4, 0] == 4  # hund -> dog: in every pair with hund (Dice 1)
    assert lexicon.table[5, 0] == 5 and lexicon.table[6, 0] == 6  # katze -> cat, läuft -> runs
    assert lexicon.table[7, 0] == 8  # 2026 -> 2026
    assert lexicon.frequent.tolist() == [4, 7]  # dog and the, 3 pairs each (ties: the lower id)
    assert lexicon.copy.tolist() == [-1, -1, -1, -1, -1, -1, -1, 8, -1]  # only "2026" exists on both sides
    assert not {PAD, UNK, BOS, EOS} & set(lexicon.frequent.tolist())


def test_candidates_hold_eos_the_frequent_and_the_sentences_own_and_ignore_padding() -> None:
    table = torch.full((9, 2), -1)
    table[4] = torch.tensor([4, 9])
    table[7] = torch.tensor([8, -1])
    lexicon = Lexicon(table, torch.tensor([7]), torch.tensor([-1] * 7 + [8, -1]))
    src = make_batch([[4, 7], [5]]).src  # the second sentence is padded
    allowed = lexicon.candidates(src, 1, 10)
    assert set(allowed[0].nonzero().squeeze(1).tolist()) == {EOS, 7, 4, 8}  # the, hund's best, 2026 (and copied)
    assert set(allowed[1].nonzero().squeeze(1).tolist()) == {EOS, 7}  # katze has no entry; padding adds nothing
    alone = lexicon.candidates(make_batch([[5]]).src, 1, 10)
    assert torch.equal(alone[0], allowed[1])
    assert set(lexicon.candidates(src, 2, 10)[0].nonzero().squeeze(1).tolist()) == {EOS, 7, 4, 8, 9}
    with pytest.raises(NmtError, match=r"^decode.shortlist=3: this run's table keeps 2 target subwords"):
        lexicon.candidates(src, 3, 10)


def test_a_saved_table_loads_and_a_foreign_file_is_one_line(tmp_path: Path) -> None:
    lexicon = Lexicon(torch.tensor([[4, -1]]), torch.tensor([5]), torch.tensor([-1]))
    lexicon.save(tmp_path / "shortlist.pt")
    loaded = Lexicon.load(tmp_path / "shortlist.pt")
    assert torch.equal(loaded.table, lexicon.table) and torch.equal(loaded.frequent, lexicon.frequent)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(NmtError, match=r"other.pt is not a shortlist table of nmt"):
        Lexicon.load(tmp_path / "other.pt")


def test_the_output_layer_over_a_shortlist_renormalises_each_row_over_its_own_list() -> None:
    torch.manual_seed(0)
    output = torch.nn.Linear(8, 12)
    t = torch.randn(6, 8)  # 2 sentences x 3 beams
    full = F.log_softmax(output(t), -1)
    assert torch.equal(log_probs(output, t, {"shortlist": torch.ones(2, 12, dtype=torch.bool)}), full)
    allowed = torch.zeros(2, 12, dtype=torch.bool)
    allowed[0, [3, 5, 7]] = True
    allowed[1, [3, 9]] = True
    scores = log_probs(output, t, {"shortlist": allowed})
    rows = allowed.repeat_interleave(3, 0)
    assert torch.isinf(scores[~rows]).all() and torch.isfinite(scores[rows]).all()
    torch.testing.assert_close(scores.logsumexp(-1), torch.zeros(6), atol=1e-6, rtol=0)
    expected = F.log_softmax(output(t).masked_fill(~rows, float("-inf")), -1)  # the list's renormalised scores
    torch.testing.assert_close(scores[rows], expected[rows])


SOURCES = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [3 + i % 15 for i in range(12)]]


@pytest.mark.parametrize("build", [small_rnn, small_transformer, lambda: small_ensemble("rnn")],
                         ids=["rnn", "transformer", "ensemble"])
def test_search_with_the_whole_vocabulary_as_shortlist_is_the_plain_search(build: object) -> None:
    torch.manual_seed(3)
    model = build()  # type: ignore[operator]
    batch = make_batch(SOURCES)
    lengths = max_output_lengths(batch.src_mask, 1.5, 5)
    vocab = model.output.out_features if hasattr(model, "output") else model.members[0].output.out_features
    everything = torch.ones(len(SOURCES), vocab, dtype=torch.bool)
    with torch.no_grad():
        plain = beam_search(model, batch.src, batch.src_mask, lengths, 3, nbest=2)
        listed = beam_search(model, batch.src, batch.src_mask, lengths, 3, nbest=2, shortlist=everything)
        greedy = greedy_search(model, batch.src, batch.src_mask, lengths)
        greedy_listed = greedy_search(model, batch.src, batch.src_mask, lengths, shortlist=everything)
    assert [[h.tokens for h in n] for n in plain] == [[h.tokens for h in n] for n in listed]
    assert [[h.score for h in n] for n in plain] == [[h.score for h in n] for n in listed]
    assert [h.tokens for h in greedy] == [h.tokens for h in greedy_listed]


def test_a_shortlisted_search_keeps_each_sentence_in_its_list() -> None:
    torch.manual_seed(4)
    model = small_transformer()
    batch = make_batch(SOURCES)
    lengths = max_output_lengths(batch.src_mask, 1.5, 5)
    allowed = torch.zeros(len(SOURCES), model.output.out_features, dtype=torch.bool)
    allowed[:, EOS] = True
    for row, src in enumerate(SOURCES):
        allowed[row, src[:2]] = True  # each sentence may only write its own first two ids (and EOS)
    with torch.no_grad():
        found = beam_search(model, batch.src, batch.src_mask, lengths, 3, nbest=3, shortlist=allowed)
    for src, nbest in zip(SOURCES, found, strict=True):
        for h in nbest:
            assert set(h.tokens) <= set(src[:2])
