"""Scores of detokenized translations against references, as the field reports them (sacrebleu)."""

from __future__ import annotations

from collections.abc import Sequence

import sacrebleu


def score(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float | str]:
    """Corpus BLEU and chrF (sacrebleu defaults: 13a tokenization, cased) and sentence exact match (%)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    refs = [list(references)]
    exact = sum(h == r for h, r in zip(hypotheses, references, strict=True))
    return {
        "bleu": bleu.corpus_score(list(hypotheses), refs).score,
        "chrf": chrf.corpus_score(list(hypotheses), refs).score,
        "exact": 100.0 * exact / max(len(references), 1),
        "bleu_signature": str(bleu.get_signature()),
    }
