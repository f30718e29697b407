"""The training loss: summed token cross-entropy with label smoothing, its gradient formed in place."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from nmt.tokenizer import PAD


class CrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of logits z [N, V] against targets y [N] with label smoothing eps,

        loss = sum_n (1 - eps) (-log p_n(y_n)) + eps (-1/V sum_v log p_n(v)),    p_n = softmax(z_n),

    whose gradient p - q (q: the smoothed one-hot targets) is computed in place of the saved log-probabilities:
    ``F.cross_entropy`` computes the same, but writes and reads two more N x V tensors in its backward pass."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
        log_probs = F.log_softmax(logits.float(), dim=-1)
        nll = -log_probs.gather(1, target[:, None]).sum()
        loss = nll if smoothing == 0 else (1 - smoothing) * nll - smoothing * log_probs.mean(-1).sum()
        ctx.save_for_backward(log_probs, target)
        ctx.smoothing = smoothing
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        log_probs, target = ctx.saved_tensors
        smoothing = ctx.smoothing
        g = log_probs.exp_()  # p, over the saved log-probabilities (backward runs once)
        if smoothing:
            g.sub_(smoothing / g.size(1))
        g.scatter_add_(1, target[:, None], g.new_full((g.size(0), 1), smoothing - 1.0))
        return g.mul_(grad), None, None


def token_loss(model: nn.Module, batch: Any, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of a batch's target tokens and the number of those tokens; padding is not projected
    onto the vocabulary at all (``scored``)."""
    scored = batch.trg_out != PAD
    logits, _ = model(batch.src, batch.src_mask, batch.trg_in, scored)
    return CrossEntropy.apply(logits, batch.trg_out[scored], label_smoothing), batch.n_target_tokens
