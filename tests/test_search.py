"""Greedy and beam search: agreement, exact scores, batch invariance, search quality, options."""

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from nmt.batching import make_batch
from nmt.checkpoint import step_checkpoints
from nmt.search import (
    NonFiniteScoresError,
    beam_search,
    block_repeated_ngrams,
    greedy_search,
    length_penalty,
    max_output_lengths,
    sampler,
)
from nmt.textfile import read_lines
from nmt.tokenizer import EOS
from nmt.translate import Translator
from tests.helpers import small_rnn, small_transformer


def teacher_forced_log_prob(model: torch.nn.Module, src: list[int], tokens: list[int]) -> float:
    """log p(tokens + EOS | src) under the model, by one teacher-forced forward pass."""
    batch = make_batch([src], [tokens])
    logits, _ = model(batch.src, batch.src_mask, batch.trg_in)
    return float(F.log_softmax(logits[0].detach(), -1).gather(1, batch.trg_out[0].unsqueeze(1)).sum())


@pytest.fixture(scope="module")
def dates_model(dates_run: tuple[Path, dict]) -> tuple[Translator, list[list[int]]]:
    run_dir, _ = dates_run
    translator = Translator.from_run(run_dir)
    sources = read_lines(run_dir / "data" / "test.txt")[:64]
    return translator, translator.src_tok.encode(sources)


def _search(model: torch.nn.Module, sources: list[list[int]], beam: int, **options: object) -> list:
    batch = make_batch(sources)
    lengths = max_output_lengths(batch.src_mask, 1.5, 5)
    if beam == 0:
        return [[h] for h in greedy_search(model, batch.src, batch.src_mask, lengths)]
    return beam_search(model, batch.src, batch.src_mask, lengths, beam, **options)


SOURCES = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [3 + i % 15 for i in range(12)]]


@pytest.mark.parametrize("options", [{}, {"cell": "lstm", "direction": "reverse"}, {"attention": "none"}])
def test_beam_one_equals_greedy(options: dict) -> None:
    model = small_rnn(**options)
    greedy, beam = _search(model, SOURCES, 0), _search(model, SOURCES, 1)
    for (g,), (b,) in zip(greedy, beam, strict=True):
        assert b.tokens == g.tokens
        assert b.score == pytest.approx(g.score, abs=1e-5)


def test_beam_one_equals_greedy_on_a_trained_model(dates_model: tuple) -> None:
    translator, sources = dates_model
    greedy, beam = _search(translator.model, sources, 0), _search(translator.model, sources, 1)
    assert [g[0].tokens for g in greedy] == [b[0].tokens for b in beam]


@pytest.mark.parametrize("beam", [1, 3, 5])
def test_reported_score_is_the_teacher_forced_log_probability(beam: int) -> None:
    model = small_rnn()
    for src, hyps in zip(SOURCES, _search(model, SOURCES, beam, nbest=beam), strict=True):
        assert len(hyps) == beam
        for hyp in hyps:
            assert hyp.score == pytest.approx(teacher_forced_log_prob(model, src, hyp.tokens), abs=1e-4)
            assert hyp.score == pytest.approx(sum(hyp.token_scores), abs=1e-4)
            assert hyp.attention.shape == (len(hyp.tokens) + 1, len(src) + 1)


@pytest.mark.parametrize("options", [{"attention": "luong_general"}, {"attention": "luong_dot", "hidden_size": 7},
                                     {"attention": "none"}, {"arch": "transformer"}])
def test_every_design_s_beams_score_what_teacher_forcing_scores(options: dict) -> None:
    """The k hypotheses of a sentence share its encoder output (one row per sentence): each attention (and the
    Transformer's cross-attention) must read its own sentence's, as teacher forcing does."""
    model = small_transformer() if options.get("arch") == "transformer" else small_rnn(**options)
    for src, hyps in zip(SOURCES, _search(model, SOURCES, 4, nbest=4), strict=True):
        for hyp in hyps:
            assert hyp.score == pytest.approx(teacher_forced_log_prob(model, src, hyp.tokens), abs=1e-4)


def test_wider_beam_never_finds_a_worse_best_score() -> None:
    model = small_rnn()
    sources = [[3 + (7 * i + j) % 19 for j in range(1 + i % 9)] for i in range(40)]
    narrow, wide = _search(model, sources, 1), _search(model, sources, 4)
    for n, w in zip(narrow, wide, strict=True):
        assert w[0].score >= n[0].score - 1e-5


def test_beam_is_batch_invariant(dates_model: tuple) -> None:
    translator, sources = dates_model
    batched = _search(translator.model, sources, 5, alpha=1.0)
    for src, in_batch in list(zip(sources, batched, strict=True))[::7]:
        (alone,) = _search(translator.model, [src], 5, alpha=1.0)
        assert alone[0].tokens == in_batch[0].tokens
        assert alone[0].score == pytest.approx(in_batch[0].score, abs=1e-4)


def test_nbest_lists_are_ranked_and_distinct() -> None:
    model = small_rnn()
    for hyps in _search(model, SOURCES, 4, nbest=4, alpha=0.6):
        ranked = [h.score / length_penalty(len(h.tokens) + 1, 0.6) for h in hyps]
        assert ranked == sorted(ranked, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 4


def test_min_length_and_max_length() -> None:
    model = small_rnn()
    for hyps in _search(model, SOURCES, 3, min_length=4):
        assert len(hyps[0].tokens) >= 4
    batch = make_batch(SOURCES)
    lengths = torch.tensor([2, 3, 1, 4])
    for hyps, limit in zip(beam_search(model, batch.src, batch.src_mask, lengths, 3), lengths.tolist(),
                           strict=True):
        assert len(hyps[0].tokens) + 1 <= limit


def test_no_repeat_ngram_blocking() -> None:
    log_probs = torch.zeros(1, 10)
    block_repeated_ngrams(log_probs, torch.tensor([[4, 5, 6, 4]]), 2)  # "4 5" seen: 5 may not follow 4
    assert torch.isinf(log_probs[0, 5]) and torch.isfinite(log_probs[0, [4, 6, 7, EOS]]).all()
    model = small_rnn()
    for hyps in _search(model, SOURCES, 3, no_repeat_ngram=2):
        bigrams = list(zip(hyps[0].tokens, hyps[0].tokens[1:], strict=False))
        assert len(bigrams) == len(set(bigrams))


@pytest.mark.parametrize(("seed", "options"), [(0, {"min_length": 6}), (3, {"no_repeat_ngram": 1}),
                                               (3, {"no_repeat_ngram": 2}),
                                               (0, {"min_length": 5, "no_repeat_ngram": 2})])
def test_greedy_applies_min_length_and_no_repeat_ngram_as_beam_one_does(seed: int, options: dict) -> None:
    """Seed 0 gives a model that ends every output at once, seed 3 one that repeats a token: the options matter."""
    torch.manual_seed(seed)
    model = small_rnn()
    batch = make_batch(SOURCES)
    lengths = max_output_lengths(batch.src_mask, 1.5, 5)
    greedy = greedy_search(model, batch.src, batch.src_mask, lengths, **options)
    beam = beam_search(model, batch.src, batch.src_mask, lengths, 1, **options)
    plain = greedy_search(model, batch.src, batch.src_mask, lengths)
    assert [g.tokens for g in greedy] != [p.tokens for p in plain]  # the options change the search here
    for g, (b,), limit in zip(greedy, beam, lengths.tolist(), strict=True):
        assert g.tokens == b.tokens and g.score == pytest.approx(b.score, abs=1e-5)
        assert len(g.tokens) >= min(options.get("min_length", 0), limit - 1)
        n = options.get("no_repeat_ngram", 0)
        if n:
            grams = [tuple(g.tokens[i:i + n]) for i in range(len(g.tokens) - n + 1)]
            assert len(grams) == len(set(grams))


def test_greedy_with_options_is_batch_invariant() -> None:
    torch.manual_seed(3)
    model = small_rnn()
    batch = make_batch(SOURCES)
    lengths = max_output_lengths(batch.src_mask, 1.5, 5)
    together = greedy_search(model, batch.src, batch.src_mask, lengths, min_length=4, no_repeat_ngram=2)
    for src, in_batch in zip(SOURCES, together, strict=True):
        alone = make_batch([src])
        (hyp,) = greedy_search(model, alone.src, alone.src_mask, max_output_lengths(alone.src_mask, 1.5, 5),
                               min_length=4, no_repeat_ngram=2)
        assert hyp.tokens == in_batch.tokens and hyp.score == pytest.approx(in_batch.score, abs=1e-5)


@pytest.mark.parametrize("beam", [0, 1, 3])
def test_the_maximum_length_wins_over_min_length(beam: int) -> None:
    """A min_length beyond the length limit: every sentence still ends with EOS at its limit."""
    model = small_rnn()
    batch = make_batch(SOURCES)
    lengths = torch.tensor([3, 2, 4, 1])
    if beam == 0:
        hyps = [[h] for h in greedy_search(model, batch.src, batch.src_mask, lengths, min_length=10)]
    else:
        hyps = beam_search(model, batch.src, batch.src_mask, lengths, beam, min_length=10)
    assert [len(h[0].tokens) + 1 for h in hyps] == lengths.tolist()


@pytest.mark.parametrize("beam", [0, 1, 4])
def test_nan_scores_are_an_error(beam: int) -> None:
    model = small_rnn()
    with torch.no_grad():
        model.output.weight.fill_(3e38)  # finite weights whose logits overflow: log_softmax gives NaN
    with pytest.raises(NonFiniteScoresError, match="not finite"):
        _search(model, SOURCES, beam)


class _CountingSteps(torch.nn.Module):
    """A model's search interface, counting the decoder steps and the rows they compute."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> dict:
        return self.model.encode(src, src_mask)

    def init_state(self, enc: dict) -> dict:
        return self.model.init_state(enc)

    def step(self, prev: torch.Tensor, enc: dict, state: dict) -> tuple:
        self.rows += prev.size(0)
        return self.model.step(prev, enc, state)


def test_stopping_once_beam_size_hypotheses_finished(dates_run: tuple[Path, dict]) -> None:
    """stop="beams" ends each sentence once k hypotheses finished: fewer decoder rows than the bound, the same
    translation for almost every date, and still batch-invariant. The date run after its first epoch: a trained
    model writes every date in 10 characters, so that each of its hypotheses ends at the same step under either
    rule; one epoch in, its hypotheses differ in length (over 500 dates, seeds 1, 2 and 3: 37,125, 30,050 and 33,520
    rows with the bound, 36,255, 28,145 and 28,275 with stop="beams", the same translation of every date)."""
    run_dir, _ = dates_run
    translator = Translator.from_run(run_dir, str(step_checkpoints(run_dir)[0].relative_to(run_dir)))
    many = translator.src_tok.encode(read_lines(run_dir / "data" / "test.txt"))
    sources = many[:64]
    bound, beams = _CountingSteps(translator.model), _CountingSteps(translator.model)
    exact = _search(bound, many, 5, alpha=1.0, stop="bound")[: len(sources)]  # the first dates are `sources`
    fast = _search(beams, many, 5, alpha=1.0, stop="beams")[: len(sources)]
    assert beams.rows < bound.rows
    same = sum(e[0].tokens == f[0].tokens for e, f in zip(exact, fast, strict=True))
    assert same >= 0.95 * len(sources)
    for src, in_batch in list(zip(sources, fast, strict=True))[::9]:
        (alone,) = _search(translator.model, [src], 5, alpha=1.0, stop="beams")
        assert alone[0].tokens == in_batch[0].tokens
    with pytest.raises(ValueError, match="stop"):
        _search(translator.model, sources[:1], 5, stop="early")


class _RecordingRows(_CountingSteps):
    """Records, at every step, the rows of the encoder output and of the hypotheses."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.seen: list[tuple[int, int]] = []

    def step(self, prev: torch.Tensor, enc: dict, state: dict) -> tuple:
        self.seen.append((enc["memory"].size(0), prev.size(0)))
        return super().step(prev, enc, state)


def test_the_encoder_output_has_one_row_per_searching_sentence() -> None:
    """Beams share their sentence's encoder output: ``enc`` holds one row per sentence still searching, the
    hypotheses k rows per sentence (one before the first step, when each sentence has only BOS)."""
    model = _RecordingRows(small_rnn())
    _search(model, SOURCES, 3, min_length=100)  # no EOS before its maximum length: each sentence runs to it
    lengths = max_output_lengths(make_batch(SOURCES).src_mask, 1.5, 5).tolist()
    searching = [sum(length > i for length in lengths) for i in range(max(lengths))]
    assert [sentences for sentences, _ in model.seen] == searching  # the others left, with their encoder output
    assert [rows for _, rows in model.seen] == [len(SOURCES)] + [3 * n for n in searching[1:]]


# --- sampling -----------------------------------------------------------------------------------------------------

def _sampled(model: torch.nn.Module, pick: object, sources: list[list[int]] = SOURCES) -> list:
    batch = make_batch(sources)
    return greedy_search(model, batch.src, batch.src_mask, max_output_lengths(batch.src_mask, 1.5, 5), pick=pick)


@pytest.mark.parametrize("shape", [{"temperature": 1e-6}, {"top_k": 1}, {"top_p": 1e-6}])
def test_sampling_that_leaves_one_token_is_greedy_search(shape: dict) -> None:
    """Temperature towards 0, top-k 1 and a nucleus of one token all keep only the most probable token."""
    model = small_rnn()
    uniforms = torch.rand(len(SOURCES), 40, generator=torch.Generator().manual_seed(3))
    greedy, sampled = _search(model, SOURCES, 0), _sampled(model, sampler(uniforms, **shape))
    for (g,), s in zip(greedy, sampled, strict=True):
        assert s.tokens == g.tokens and s.token_scores == pytest.approx(g.token_scores, abs=1e-6)


def test_samples_follow_the_uniforms_and_score_the_model_s_own_probabilities() -> None:
    """Each row's tokens come from its own uniforms (another batch, another order: the same samples); a sample's
    score is the model's untempered log-probability of it, read back with teacher forcing."""
    model = small_rnn()
    uniforms = torch.rand(len(SOURCES), 40, generator=torch.Generator().manual_seed(5))
    pick = sampler(uniforms, temperature=2.0)
    together = _sampled(model, pick)
    assert len({tuple(h.tokens) for h in together}) > 1
    for b in range(len(SOURCES)):
        (alone,) = _sampled(model, sampler(uniforms[b : b + 1], temperature=2.0), [SOURCES[b]])
        assert alone.tokens == together[b].tokens
        assert alone.score == pytest.approx(teacher_forced_log_prob(model, SOURCES[b], alone.tokens), abs=1e-4)
    hot = _sampled(model, sampler(uniforms, temperature=50.0))
    assert [h.tokens for h in hot] != [h.tokens for h in together]  # the temperature shapes the draws


def test_top_k_and_the_nucleus_draw_only_inside_their_sets() -> None:
    torch.manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(200, 30), -1)
    uniforms = torch.rand(200, 1)
    ranks = log_probs.argsort(-1, descending=True).argsort(-1)  # rank 0: the most probable token
    drawn = sampler(uniforms, top_k=3)(log_probs, 0)
    assert (ranks.gather(1, drawn.unsqueeze(1)) < 3).all() and len(set(drawn.tolist())) > 3
    probs = log_probs.exp()
    nucleus = sampler(uniforms, top_p=0.5)(log_probs, 0)
    above = (probs * (probs > probs.gather(1, nucleus.unsqueeze(1)))).sum(-1)  # the mass ranked above the draw
    assert (above < 0.5).all()
