"""Products of bf16 autocast on a CPU over few shapes. oneDNN compiles and caches a kernel for every product shape
it meets (up to 1,024, each holding megabytes): products whose row count changes with every batch would fill the
cache, grow the process and slow it down. Their rows are padded with zeros to a multiple of ``ROW_MULTIPLE`` and
the padding's outputs dropped: the same values and gradients, a few shapes. fp32 and GPUs are left as they are."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

ROW_MULTIPLE = 64  # bf16 products on the CPU over a varying number of rows get rows padded to a multiple of this


def project_rows(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer(x)`` for rows ``x`` [N, H] whose count changes from batch to batch (a batch's target tokens).

    Under bf16 autocast on a CPU the rows are padded with zeros to a multiple of ``ROW_MULTIPLE``, and the padding's
    outputs dropped: the same values and gradients, from a few dozen product shapes rather than one per batch. A
    Transformer's training (Xeon with AMX) grew to 4.5 GiB and fell from 4,300 to 3,500 target tokens/s within 5
    minutes without it; with it, 1.5 GiB and no fall. Elsewhere (fp32, a GPU) ``layer(x)`` as it is.
    """
    if x.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return layer(x)
    return layer(pad_rows(x))[: x.size(0)]


def pad_rows(x: Tensor) -> Tensor:
    """``x`` [N, ...] with zero rows appended up to a multiple of ``ROW_MULTIPLE`` (for a product whose row count
    changes from batch to batch, run by oneDNN: see ``project_rows``)."""
    extra = -x.size(0) % ROW_MULTIPLE
    return F.pad(x, (0, 0) * (x.dim() - 1) + (0, extra)) if extra else x
