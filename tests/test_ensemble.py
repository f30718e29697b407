"""Ensembles (nmt.models.ensemble): the log of the members' mean probability at every step, in greedy and beam search;
a model with itself is that model; two under-trained runs decode at least as well as the weaker; runs with other
subwords are refused in one line."""

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from nmt import NmtError
from nmt.batching import make_batch
from nmt.evaluate import score
from nmt.models.ensemble import Ensemble
from nmt.train import train
from nmt.translate import Translator
from tests.conftest import SMALL_DATES, compose_config

SENTENCES = ["Wednesday, 25 November 2026", "the 3rd of May 1999", "12.05.98", "nov 2nd, 2010", "1 April 2020"]


@pytest.fixture(scope="module")
def weak_runs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, dict]]:
    """Two under-trained date runs (one epoch of 10,000 sentences) that differ only in their seed."""
    runs = []
    for seed in (1, 2):
        run = tmp_path_factory.mktemp(f"weak{seed}")
        result = train(compose_config([*SMALL_DATES, "train.max_epochs=1", f"seed={seed}", "train.plot_attention=0",
                                       "train.test=false"]), run)
        runs.append((run, result))
    return runs


def test_a_model_with_itself_is_that_model(dates_run: tuple[Path, dict]) -> None:
    run, _ = dates_run
    for beam in (1, 4):
        single = Translator.from_run(run, beam_size=beam, nbest=min(beam, 2)).translate(SENTENCES)
        double = Translator.from_runs([run, run], ["best.pt"], beam_size=beam, nbest=min(beam, 2)).translate(SENTENCES)
        assert isinstance(Translator.from_runs([run, run], ["best.pt"]).model, Ensemble)
        for a, b in zip(single, double, strict=True):
            assert a.text == b.text and [t for t, _ in a.nbest] == [t for t, _ in b.nbest]
            assert a.score == pytest.approx(b.score, abs=1e-4)
            torch.testing.assert_close(a.attention, b.attention)


def test_one_teacher_forced_step_is_the_log_of_the_mean_probability(weak_runs: list[tuple[Path, dict]]) -> None:
    (a, _), (b, _) = weak_runs
    ensemble = Translator.from_runs([a, b], ["best.pt"])
    members = [Translator.from_run(a).model, Translator.from_run(b).model]
    src = ensemble.src_tok.encode(SENTENCES[:2])
    trg = ensemble.trg_tok.encode(["2026-11-25", "1999-05-03"])
    batch = make_batch(src, trg)
    with torch.no_grad():
        combined, attention = ensemble.model(batch.src, batch.src_mask, batch.trg_in)
        outputs = [m(batch.src, batch.src_mask, batch.trg_in) for m in members]
    probabilities = torch.stack([F.softmax(logits, -1) for logits, _ in outputs]).mean(0)
    torch.testing.assert_close(combined, probabilities.log(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attention, (outputs[0][1] + outputs[1][1]) / 2)
    assert not torch.allclose(F.log_softmax(outputs[0][0], -1), F.log_softmax(outputs[1][0], -1), atol=1e-2)


def test_a_search_step_averages_the_members(weak_runs: list[tuple[Path, dict]]) -> None:
    (a, _), (b, _) = weak_runs
    ensemble = Translator.from_runs([a, b], ["best.pt"]).model
    members = list(ensemble.members)
    batch = make_batch(Translator.from_run(a).src_tok.encode(SENTENCES))
    prev = torch.full((len(SENTENCES),), 2)
    with torch.no_grad():
        enc = ensemble.encode(batch.src, batch.src_mask)
        log_probs, _, _ = ensemble.step(prev, enc, ensemble.init_state(enc))
        alone = []
        for m in members:
            member_enc = m.encode(batch.src, batch.src_mask)
            alone.append(m.step(prev, member_enc, m.init_state(member_enc))[0])
    expected = torch.logsumexp(torch.stack(alone), 0) - math.log(2)
    torch.testing.assert_close(log_probs, expected)


def test_an_ensemble_of_two_weak_runs_is_at_least_as_good_as_the_weaker(weak_runs: list[tuple[Path, dict]]) -> None:
    (a, _), (b, _) = weak_runs
    src = (a / "data" / "test.txt").read_text().splitlines()
    refs = (a / "data" / "test.iso").read_text().splitlines()

    def bleu(translator: Translator) -> float:
        return score([t.text for t in translator.translate(src)], refs)["bleu"]

    members = [bleu(Translator.from_run(run, beam_size=3)) for run in (a, b)]
    together = bleu(Translator.from_runs([a, b], ["best.pt"], beam_size=3))
    print(f"test BLEU: members {members}, ensemble {together:.2f}")  # shown with pytest -s
    assert together >= min(members)
    assert members[0] != members[1]  # two different models


def test_an_ensemble_is_batch_invariant(weak_runs: list[tuple[Path, dict]]) -> None:
    (a, _), (b, _) = weak_runs
    translator = Translator.from_runs([a, b], ["best.pt"], beam_size=3, nbest=2)
    together = translator.translate(SENTENCES)
    alone = [translator.translate([s])[0] for s in SENTENCES]
    for a, b in zip(together, alone, strict=True):
        assert [text for text, _ in a.nbest] == [text for text, _ in b.nbest]
        assert [score for _, score in a.nbest] == pytest.approx([score for _, score in b.nbest], abs=1e-4)


def test_runs_with_other_subwords_are_refused(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    other = tmp_path / "other"
    train(compose_config([*SMALL_DATES, "data.sizes.train=2000", "train.max_epochs=1", "tokenizer.vocab_size=100",
                          "train.plot_attention=0", "train.test=false"]), other)
    with pytest.raises(NmtError, match=rf"^cannot ensemble {dates_run[0]} and {other}: their source sentencepiece "
                                       r"models differ"):
        Translator.from_runs([dates_run[0], other], ["best.pt"])
    with pytest.raises(NmtError, match=r"^3 checkpoints for 2 runs"):
        Translator.from_runs([dates_run[0], other], ["best.pt"] * 3)
