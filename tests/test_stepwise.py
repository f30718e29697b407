"""Per-step products with deferred weight gradients: the same gradients as plain autograd, and under autocast each
weight cast once per teacher-forced pass, not once per step."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nmt.batching import make_batch
from nmt.models import cpu_bf16
from tests.helpers import RNN_VARIANTS, SOURCES, TARGETS, small_rnn


def gradients(model: torch.nn.Module, stepwise: bool) -> dict[str, torch.Tensor]:
    """The gradients of a sum of the teacher-forced logits: through the deferred products (the model's forward) or
    through plain autograd (the decoding step, one position at a time)."""
    batch = make_batch(SOURCES, TARGETS)
    model.zero_grad(set_to_none=True)
    if stepwise:
        logits, _ = model(batch.src, batch.src_mask, batch.trg_in)
    else:
        enc = model.encode(batch.src, batch.src_mask)
        state, steps = model.init_state(enc), []
        for i in range(batch.trg_in.size(1)):
            t, _, state = model.decoder.step(model.trg_embed(batch.trg_in[:, i]), enc, state)
            steps.append(model.output(t))
        logits = torch.stack(steps, 1)
    (logits.float() * torch.linspace(-1, 1, logits.size(-1))).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("options", RNN_VARIANTS)
def test_deferred_weight_gradients_equal_plain_autograd(options: dict) -> None:
    torch.manual_seed(0)
    model = small_rnn(**options)
    deferred, plain = gradients(model, True), gradients(model, False)
    assert deferred.keys() == plain.keys()
    for name in plain:
        torch.testing.assert_close(deferred[name], plain[name], rtol=1e-4, atol=1e-5, msg=name)


class Casts(TorchDispatchMode):
    """Counts fp32 -> bf16 copies of tensors of one shape."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.shape, self.count = shape, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and args[0].shape == self.shape \
                and kwargs.get("dtype") == torch.bfloat16:
            self.count += 1
        return func(*args, **kwargs)


def test_under_autocast_each_weight_is_cast_once_per_pass_with_the_same_gradients() -> None:
    torch.manual_seed(0)
    model = small_rnn()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        deferred, plain = gradients(model, True), gradients(model, False)
    for name in plain:
        torch.testing.assert_close(deferred[name], plain[name], rtol=0.05, atol=0.02, msg=name)
    weight = model.decoder.cells[0].weight_hh
    for length in (3, 9):
        src = torch.randint(4, 23, (2, 5))
        trg = torch.randint(4, 19, (2, length))
        with torch.autocast("cpu", dtype=torch.bfloat16), Casts(weight.shape) as casts:
            model(src, src != 0, trg)
        assert casts.count == 1, (length, casts.count)


class Products(TorchDispatchMode):
    """Records the inner dimension of every matrix product whose result has one shape."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.shape, self.inner = shape, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.mm.default and out.shape == self.shape:
            self.inner.append(args[0].size(1))
        return out


def test_under_cpu_bf16_the_deferred_product_runs_on_rows_padded_to_few_shapes() -> None:
    model = small_rnn()
    weight = model.decoder.cells[0].weight_hh
    src, trg = torch.randint(4, 23, (3, 5)), torch.randint(4, 19, (3, 7))  # 21 rows of steps
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = model(src, src != 0, trg)
    with Products(weight.shape) as products:
        logits.float().sum().backward()
    assert products.inner == [cpu_bf16.ROW_MULTIPLE]
