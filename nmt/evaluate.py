"""Scores of detokenized translations against references, as the field reports them (sacrebleu)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import sacrebleu


def score(hypotheses: Sequence[str], references: Sequence[str], ter: bool = False,
          lowercase: bool = False) -> dict[str, float | str]:
    """Corpus BLEU and chrF (sacrebleu defaults: 13a tokenization, cased), sentence exact match (%), with ``ter``
    the translation edit rate (TER, lower is better; slower, so not computed at every validation), and with
    ``lowercase`` BLEU on lowercased text too (``bleu_lc``: what most published Multi30k results report)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    refs = [list(references)]
    exact = sum(h == r for h, r in zip(hypotheses, references, strict=True))
    result: dict[str, float | str] = {
        "bleu": bleu.corpus_score(list(hypotheses), refs).score,
        "chrf": chrf.corpus_score(list(hypotheses), refs).score,
        "exact": 100.0 * exact / max(len(references), 1),
        "bleu_signature": str(bleu.get_signature()),
    }
    if lowercase:
        lower = sacrebleu.metrics.BLEU(lowercase=True)
        result["bleu_lc"] = lower.corpus_score(list(hypotheses), refs).score
        result["bleu_lc_signature"] = str(lower.get_signature())
    if ter:
        metric = sacrebleu.metrics.TER()
        result["ter"] = metric.corpus_score(list(hypotheses), refs).score
        result["ter_signature"] = str(metric.get_signature())
    return result


def bleu_by_length(sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str],
                   edges: Sequence[int]) -> list[tuple[str, int, float]]:
    """Corpus BLEU of the sentences grouped by source length in words (as in Bahdanau et al. 2015, Figure 2):
    bins ``<= edges[0]``, ``edges[0]+1 .. edges[1]``, ..., ``> edges[-1]``; returns (bin label, sentences, BLEU)
    for each non-empty bin."""
    if not len(sources) == len(hypotheses) == len(references):
        raise ValueError(f"{len(sources)} sources, {len(hypotheses)} hypotheses, {len(references)} references")
    lengths = [len(s.split()) for s in sources]
    rows = []
    for lo, hi in itertools.pairwise([0, *edges, None]):
        idx = [i for i, n in enumerate(lengths) if n > lo and (hi is None or n <= hi)]
        if idx:
            label = f"> {lo}" if hi is None else (f"<= {hi}" if lo == 0 else f"{lo + 1}-{hi}")
            bleu = sacrebleu.metrics.BLEU().corpus_score([hypotheses[i] for i in idx], [[references[i] for i in idx]])
            rows.append((label, len(idx), bleu.score))
    return rows
