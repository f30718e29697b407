"""Search: from a trained model and a batch of sources to output token sequences.

Works with every model through its ``encode`` / ``init_state`` / ``step`` interface (see ``nmt.model``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt.tokenizer import BOS, EOS


@dataclass
class Hypothesis:
    """One output: its tokens (EOS not included), log-probabilities, and attention [len(tokens)+1, S]."""

    tokens: list[int]
    score: float
    token_scores: list[float]
    attention: Tensor | None


def max_output_lengths(src_mask: Tensor, a: float, b: int) -> Tensor:
    """Per sentence, at most a * (source length) + b output tokens (EOS included)."""
    return (a * src_mask.sum(1).float() + b).long().clamp(min=1)


@torch.no_grad()
def greedy_search(model: nn.Module, src: Tensor, src_mask: Tensor, max_lengths: Tensor) -> list[Hypothesis]:
    """Pick the most probable token at every step, all sentences of the batch at once."""
    enc = model.encode(src, src_mask)
    state = model.init_state(enc)
    batch = src.size(0)
    prev = torch.full((batch,), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(batch, dtype=torch.bool, device=src.device)
    tokens, scores, weights = [], [], []
    for i in range(int(max_lengths.max())):
        log_probs, a, state = model.step(prev, enc, state)
        score, prev = log_probs.max(-1)
        tokens.append(prev)
        scores.append(score)
        weights.append(a)
        done |= (prev == EOS) | (i + 1 >= max_lengths)
        if done.all():
            break
    return _collect(torch.stack(tokens, 1), torch.stack(scores, 1),
                    torch.stack(weights, 1) if weights[0] is not None else None, src_mask, max_lengths)


def _collect(tokens: Tensor, scores: Tensor, attention: Tensor | None, src_mask: Tensor,
             max_lengths: Tensor) -> list[Hypothesis]:
    """Cut each row after its first EOS (or at its length limit) into a Hypothesis."""
    hyps = []
    for b, (row, row_scores) in enumerate(zip(tokens.tolist(), scores.tolist(), strict=True)):
        end = min(row.index(EOS) + 1 if EOS in row else len(row), int(max_lengths[b]))
        src_len = int(src_mask[b].sum())
        hyps.append(Hypothesis(
            tokens=[t for t in row[:end] if t != EOS], score=float(sum(row_scores[:end])),
            token_scores=row_scores[:end],
            attention=attention[b, :end, :src_len] if attention is not None else None))
    return hyps
