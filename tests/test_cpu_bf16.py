"""bf16 products on the CPU in few shapes: rows padded to a multiple of ROW_MULTIPLE, with the same values and
gradients, in both designs; nothing padded in fp32."""

import torch
from torch import nn

from nmt.models import cpu_bf16
from tests.helpers import small_rnn, small_transformer


class RowCounter(nn.Linear):
    """A linear layer that records how many rows each call multiplies."""

    def __init__(self) -> None:
        super().__init__(16, 40)
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.size(0))
        return super().forward(x)


def test_rows_projected_under_cpu_bf16_come_in_few_shapes_with_the_same_values_and_gradients() -> None:
    torch.manual_seed(0)
    layer = RowCounter()
    for rows in (1, 63, 64, 65, 200, 1000):
        x = torch.randn(rows, 16, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            padded = cpu_bf16.project_rows(layer, x)
            (padded.float() ** 2).sum().backward()
        grads = x.grad, layer.weight.grad, layer.bias.grad
        x.grad, layer.weight.grad, layer.bias.grad = None, None, None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = layer(x)
            (plain.float() ** 2).sum().backward()
        assert layer.rows[-2] % cpu_bf16.ROW_MULTIPLE == 0 and layer.rows[-2] - rows < cpu_bf16.ROW_MULTIPLE
        assert padded.shape == plain.shape == (rows, 40)
        torch.testing.assert_close(padded, plain, atol=0.02, rtol=0.02)
        for got, want in zip(grads, (x.grad, layer.weight.grad, layer.bias.grad), strict=True):
            torch.testing.assert_close(got, want, atol=0.05, rtol=0.02)
        layer.zero_grad(set_to_none=True)
    layer.rows.clear()
    x = torch.randn(65, 16)
    assert torch.equal(cpu_bf16.project_rows(layer, x), layer(x)) and layer.rows == [65, 65]  # fp32: no padding


def test_models_project_only_the_scored_rows_padded_under_cpu_bf16() -> None:
    torch.manual_seed(0)
    src = torch.randint(4, 19, (3, 7))  # ids both models know
    trg = torch.randint(4, 19, (3, 5))
    scored = torch.ones(3, 5, dtype=torch.bool)
    scored[0, 3:] = False  # 13 target tokens
    for model in (small_transformer(), small_rnn()):
        seen: list[int] = []
        model.output.register_forward_hook(lambda module, args, out, seen=seen: seen.append(args[0].size(0)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _ = model.eval()(src, src != 0, trg, scored)
        assert logits.shape[0] == 13 and seen == [cpu_bf16.ROW_MULTIPLE]
        full, _ = model(src, src != 0, trg)
        torch.testing.assert_close(logits.float(), full[scored], atol=0.05, rtol=0.05)


def test_pad_rows_appends_zero_rows_up_to_the_multiple() -> None:
    m = cpu_bf16.ROW_MULTIPLE
    for rows in (1, m - 1, m, m + 1):
        x = torch.randn(rows, 3, 2)
        padded = cpu_bf16.pad_rows(x)
        assert padded.size(0) % m == 0 and padded.size(0) - rows < m and padded.shape[1:] == x.shape[1:]
        assert torch.equal(padded[:rows], x) and not padded[rows:].any()
