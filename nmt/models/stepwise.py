"""Products applied at every decoding step, with their weight gradient computed once per sequence.

Under teacher forcing the decoder applies the same weights at every target position, one position at a time. Plain
autograd then computes, for every position i, the weight gradient g_i^T x_i as a small product whose inner dimension
is the batch, and sums it into a weight-sized buffer: T small products and T weight-sized additions per weight.
``StepProducts`` records each step's input x_i and output gradient g_i instead, and when the backward pass reaches
the weight it computes

    dL/dW = sum_i g_i^T x_i = G^T X        (G, X: the g_i and x_i of all steps, stacked)

as one large product. The input gradients g_i W are computed per step as usual. The sum is the same; only the
order of additions differs (float rounding). Under autocast each weight is cast to bf16 once per pass: autocast
caches the casts of parameters only, and a tapped weight is not one, so it would be cast again at every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nmt.models.cpu_bf16 import pad_rows

Linear = Callable[..., Tensor]  # linear(x, layer) with an nn.Linear, or linear(x, weight, bias=None): x W^T + b


def plain(x: Tensor, weight: Tensor | nn.Module, bias: Tensor | None = None) -> Tensor:
    """x W^T + b: ``F.linear``, or the layer itself when given one (also a quantized layer)."""
    return weight(x) if isinstance(weight, nn.Module) else F.linear(x, weight, bias)


class _Record:
    """The inputs x_i and output gradients g_i of one weight's per-step products, by step."""

    def __init__(self) -> None:
        self.inputs: list[Tensor] = []
        self.grads: dict[int, Tensor] = {}


class _Tap(torch.autograd.Function):
    """The identity on a weight; in the backward pass, the deferred gradient G^T X of its per-step products."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, record: _Record) -> Tensor:
        ctx.record, ctx.dtype = record, weight.dtype
        ctx.set_materialize_grads(False)
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx: Any, grad: Tensor | None) -> tuple[Tensor | None, None]:
        record = ctx.record
        steps = sorted(record.grads)
        if not steps:
            return grad, None
        g = torch.cat([record.grads[i] for i in steps])
        x = torch.cat([record.inputs[i] for i in steps]).to(g.dtype)
        if g.dtype == torch.bfloat16 and g.device.type == "cpu":  # zero rows add nothing, and spare oneDNN kernels
            g, x = pad_rows(g), pad_rows(x)
        deferred = (g.t() @ x).to(ctx.dtype)  # under autocast g is bf16: the product too, the sum in fp32
        record.inputs.clear()
        record.grads.clear()
        return deferred if grad is None else grad + deferred, None


class _StepProduct(torch.autograd.Function):
    """x_i W^T for one step; its backward returns the input gradient g_i W and records g_i for the weight."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, record: _Record) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.record, ctx.step = record, len(record.inputs)
        record.inputs.append(x.detach())
        return F.linear(x, weight)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (weight,) = ctx.saved_tensors
        ctx.record.grads[ctx.step] = grad
        return grad @ weight.to(grad.dtype), None, None


class StepProducts:
    """The per-step products of one teacher-forced pass: ``linear`` is :func:`plain` with the weight gradient
    deferred to one product over all steps (see the module docstring); without gradients it is :func:`plain`."""

    def __init__(self) -> None:
        self._taps: dict[int, tuple[Tensor, Tensor, _Record]] = {}

    def linear(self, x: Tensor, weight: Tensor | nn.Module, bias: Tensor | None = None) -> Tensor:
        if isinstance(weight, nn.Module):
            weight, bias = weight.weight, weight.bias
        if not (torch.is_grad_enabled() and weight.requires_grad):
            return F.linear(x, weight, bias)
        if id(weight) not in self._taps:  # the tap is made at the first use, kept (with the weight) for the pass
            record = _Record()
            tapped = _Tap.apply(weight, record)
            device = x.device.type
            if torch.is_autocast_enabled(device):  # cast once per pass, not at every step
                tapped = tapped.to(torch.get_autocast_dtype(device))
            self._taps[id(weight)] = (weight, tapped, record)
        _, tapped, record = self._taps[id(weight)]
        out = _StepProduct.apply(x, tapped, record)
        return out if bias is None else out + bias
