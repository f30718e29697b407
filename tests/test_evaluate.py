"""Scores through sacrebleu."""

import pytest
import sacrebleu

from nmt.evaluate import score


def test_scores_match_sacrebleu() -> None:
    hyps = ["a cat sat on the mat", "the dog runs"]
    refs = ["a cat sat on a mat", "the dog runs"]
    result = score(hyps, refs)
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert result["exact"] == 50.0
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert score(refs, refs)["bleu"] == pytest.approx(100.0)


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        score(["a", "b"], ["a"])
