"""The optimizer, its learning-rate schedule, and one update: accumulated over batches, shared over ranks,
clipped, and not applied when its gradient is not finite."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from torch import nn

from nmt import NmtError
from nmt.batching import make_batch
from nmt.config import TrainConfig
from nmt.loss import token_loss


def build_optimizer(tc: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2015) with the ``train`` group's learning rate and betas, as one fused kernel per
    parameter (CPU and GPU)."""
    return torch.optim.Adam(model.parameters(), lr=tc.lr, betas=tuple(tc.betas), fused=True)


def build_scheduler(tc: TrainConfig, optimizer: torch.optim.Optimizer, higher_is_better: bool) -> Any:
    """``plateau``: decay by ``lr_decay`` when the dev metric stalls (stepped per validation, for RNNs);
    ``inverse_sqrt``: linear warm-up to ``lr`` over ``warmup`` updates, then lr * sqrt(warmup / step)
    (Vaswani et al. 2017, stepped per update, for the Transformer); ``cosine``: linear warm-up, then
    min_lr + (lr - min_lr) (1 + cos(pi t)) / 2 with t going from 0 to 1 at ``max_steps`` (Loshchilov & Hutter
    2017, without restarts: the whole decay fits the run's budget of updates); ``constant``."""
    if tc.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if higher_is_better else "min", factor=tc.lr_decay, patience=tc.lr_patience,
            min_lr=tc.min_lr)
    if tc.schedule == "inverse_sqrt":
        warmup = max(1, tc.warmup)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / warmup, (warmup / (step + 1)) ** 0.5))
    if tc.schedule == "cosine":
        warmup, max_steps, floor = tc.warmup, tc.max_steps, min(tc.min_lr / tc.lr, 1.0)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_factor(step, warmup, max_steps, floor))
    if tc.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise NmtError(f"unknown train.schedule {tc.schedule!r}: choose plateau, inverse_sqrt, cosine or constant")


def cosine_factor(step: int, warmup: int, max_steps: int, floor: float) -> float:
    """The multiple of ``lr`` after ``step`` updates under ``cosine``: (step + 1) / warmup while warming up, then
    half a cosine from 1 down to ``floor`` (min_lr / lr) at ``max_steps``, and ``floor`` after it."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def shard(indices: list[int], rank: int, world: int) -> tuple[list[int], bool]:
    """This rank's share of a batch: every ``world``-th sentence. A rank left without a sentence borrows the
    first one and reports False, so that it still joins the gradient all-reduce, with weight 0."""
    mine = indices[rank::world]
    return (mine, True) if mine else (indices[:1], False)


def train_update(model: nn.Module, optimizer: torch.optim.Optimizer, train_set: Any, group: list[list[int]],
                 trg_lengths: Any, tc: TrainConfig, rank: int = 0, world: int = 1,
                 device: torch.device | None = None) -> tuple[float, int, float]:
    """One optimizer update from the batches in ``group``, each split over ``world`` ranks.

    The gradient is that of the summed token loss of every sentence in the group divided by their number of
    target tokens: the update one batch holding all of them would give, however many batches are accumulated
    (``train.accumulate``) and however many ranks share them (DistributedDataParallel averages over ranks,
    hence the factor ``world``). Returns this rank's summed loss and target tokens, and the gradient norm; a
    non-finite gradient is not applied (the caller stops: the training diverged).
    """
    total = sum(trg_lengths[i] + 1 for indices in group for i in indices)  # + EOS
    autocast = torch.autocast(device.type if device else "cpu", dtype=torch.bfloat16,
                              enabled=tc.precision == "bf16")
    optimizer.zero_grad(set_to_none=True)
    loss_sum, tokens = 0.0, 0
    for j, indices in enumerate(group):
        mine, real = shard(indices, rank, world)
        rows = train_set[mine]
        batch = make_batch(rows["src_ids"], rows["trg_ids"])
        if device is not None:
            batch = batch.to(device)
        accumulating = world > 1 and j < len(group) - 1  # all-reduce only after the group's last backward
        with model.no_sync() if accumulating else contextlib.nullcontext():
            with autocast:
                loss, n = token_loss(model, batch, tc.label_smoothing)
            (loss * (world / total if real else 0.0)).backward()
        if real:
            loss_sum, tokens = loss_sum + loss.item(), tokens + n
    norm = float(nn.utils.clip_grad_norm_(model.parameters(),
                                          tc.clip_grad_norm if tc.clip_grad_norm > 0 else math.inf))
    if math.isfinite(norm):
        optimizer.step()
    return loss_sum, tokens, norm
