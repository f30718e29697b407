"""Scores through sacrebleu."""

import pytest
import sacrebleu

from nmt.evaluate import bleu_by_length, score


def test_scores_match_sacrebleu() -> None:
    hyps = ["a cat sat on the mat", "the dog runs"]
    refs = ["a cat sat on a mat", "the dog runs"]
    result = score(hyps, refs)
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert result["exact"] == 50.0
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert score(refs, refs)["bleu"] == pytest.approx(100.0)


def test_lowercased_bleu_when_asked() -> None:
    hyps, refs = ["A Dog runs on the Beach ."], ["a dog runs on the beach ."]
    assert "bleu_lc" not in score(hyps, refs)
    result = score(hyps, refs, lowercase=True)
    assert result["bleu_lc"] == pytest.approx(100.0) and result["bleu"] < 50.0
    assert "case:lc" in result["bleu_lc_signature"]


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        score(["a", "b"], ["a"])


def test_ter_matches_sacrebleu_when_asked() -> None:
    hyps = ["a cat sat on the mat", "the dog runs fast"]
    refs = ["a cat sat on a mat", "the dog runs"]
    assert "ter" not in score(hyps, refs)
    result = score(hyps, refs, ter=True)
    assert result["ter"] == pytest.approx(sacrebleu.corpus_ter(hyps, [refs]).score)
    assert result["ter"] > 0 and score(refs, refs, ter=True)["ter"] == 0.0
    assert result["ter_signature"].startswith("nrefs:1|case:lc|tok:tercom")


def test_bleu_by_length_scores_each_bin_alone() -> None:
    sources = ["one two", "one two three four", "a b c d e f", "x y z"]
    refs = ["the cat sat here", "a dog ran over there", "the bird flew away again now", "red green blue"]
    hyps = ["the cat sat here", "a dog walked somewhere else", "the bird flew away again now", "red green blue"]
    rows = bleu_by_length(sources, hyps, refs, [3, 4])
    assert [(label, n) for label, n, _ in rows] == [("<= 3", 2), ("4-4", 1), ("> 4", 1)]
    assert rows[0][2] == pytest.approx(100.0) and rows[2][2] == pytest.approx(100.0)
    assert rows[1][2] == pytest.approx(sacrebleu.corpus_bleu([hyps[1]], [[refs[1]]]).score) and rows[1][2] < 50
