"""Scoring given translations (forced decoding, fairseq's ``--score-reference``): the model's log-probability of
each subword of a given target, log p(y_i | y_<i, x), and the sentence score log p(y | x), their sum (EOS
included). What a learner plots next to the attention, and what data work filters by (back-translation)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from nmt.batching import pair_batches
from nmt.tokenizer import PAD
from nmt.translate import Translator


@dataclass
class Scored:
    """A given pair's pieces and the log-probability of each target piece and of EOS (natural log)."""

    src_pieces: list[str]
    trg_pieces: list[str]
    token_scores: list[float]

    @property
    def score(self) -> float:
        """log p(y | x): the sum of the token scores."""
        return sum(self.token_scores)

    @property
    def perplexity(self) -> float:
        """exp of the mean negative token score."""
        return math.exp(-self.score / len(self.token_scores))


@torch.no_grad()
def score_pairs(translator: Translator, sources: list[str], targets: list[str]) -> list[Scored | None]:
    """Teacher-force each target through the model (or ensemble) in length-sorted batches and read the
    log-probability of every target piece and EOS; a pair with a blank side gives None. Sources longer than the
    model's limit are truncated, as in translation."""
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} sources for {len(targets)} targets")
    src_ids = [ids[: translator.max_src_length] for ids in translator.src_tok.encode(sources)]
    trg_ids = translator.trg_tok.encode(targets)
    model, device = translator.model, translator.device
    was_training = model.training
    model.eval()
    results: list[Scored | None] = [None] * len(sources)
    try:
        for indices, batch in pair_batches(src_ids, trg_ids, translator.decode.batch_tokens):
            batch = batch.to(device)
            with translator.precision.autocast(device):
                logits, _ = model(batch.src, batch.src_mask, batch.trg_in)
            chosen = F.log_softmax(logits.float(), -1).gather(2, batch.trg_out.unsqueeze(2)).squeeze(2)
            chosen = chosen.masked_fill(batch.trg_out == PAD, 0.0).cpu()
            for b, i in enumerate(indices):
                results[i] = Scored(translator.src_tok.pieces(src_ids[i]), translator.trg_tok.pieces(trg_ids[i]),
                                    chosen[b, : len(trg_ids[i]) + 1].tolist())
    finally:
        model.train(was_training)
    return results
