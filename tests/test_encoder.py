"""The encoder: directions, reversal, and padding that never enters the recurrence."""

import pytest
import torch

from nmt import NmtError
from nmt.models.encoder import RecurrentEncoder, reverse_padded
from tests.conftest import run_config


def test_reverse_padded_keeps_padding_in_place() -> None:
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]]).unsqueeze(-1)
    out = reverse_padded(x, torch.tensor([3, 2])).squeeze(-1)
    assert out.tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_reversed_encoder_equals_forward_encoder_on_reversed_input(cell: str) -> None:
    reverse = RecurrentEncoder(cell, 6, 5, num_layers=2, direction="reverse").eval()
    forward = RecurrentEncoder(cell, 6, 5, num_layers=2, direction="forward").eval()
    forward.load_state_dict(reverse.state_dict())
    x = torch.randn(2, 7, 6)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3], dtype=torch.bool)
    lengths = mask.sum(1)
    memory_r, final_r = reverse(x, mask)
    memory_f, final_f = forward(reverse_padded(x, lengths), mask)
    # The reversed encoder returns annotations in source order: annotation j belongs to source word j.
    torch.testing.assert_close(memory_r, reverse_padded(memory_f, lengths))
    torch.testing.assert_close(final_r, final_f)


@pytest.mark.parametrize("direction", ["bi", "reverse", "forward"])
def test_padding_does_not_change_annotations(direction: str) -> None:
    encoder = RecurrentEncoder("gru", 6, 5, num_layers=2, direction=direction).eval()
    x = torch.randn(1, 4, 6)
    alone_memory, alone_final = encoder(x, torch.ones(1, 4, dtype=torch.bool))
    padded = torch.cat([x, torch.randn(1, 3, 6)], 1)
    batch = torch.cat([padded, torch.randn(1, 7, 6)])
    mask = torch.tensor([[1] * 4 + [0] * 3, [1] * 7], dtype=torch.bool)
    memory, final = encoder(batch, mask)
    torch.testing.assert_close(memory[0, :4], alone_memory[0], rtol=1e-5, atol=1e-6)
    assert (memory[0, 4:] == 0).all()
    torch.testing.assert_close(final[0], alone_final[0], rtol=1e-5, atol=1e-6)
    assert memory.size(-1) == encoder.output_size == (10 if direction == "bi" else 5)


def test_unknown_direction_is_refused() -> None:
    with pytest.raises(NmtError, match=r"^model\.direction='sideways': input should be 'bi', 'reverse' or 'forward'$"):
        run_config(["model.direction=sideways"])


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_recurrence_stays_fp32_under_cpu_bf16_autocast(cell: str) -> None:
    """Its steps multiply a different number of rows each (packed sequences): in bf16 oneDNN would compile a kernel
    for every one of them (nmt.hardware)."""
    encoder = RecurrentEncoder(cell, 6, 5, num_layers=2).eval()
    x = torch.randn(3, 7, 6)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5], dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        memory, final = encoder(x, mask)
    want_memory, want_final = encoder(x, mask)
    assert memory.dtype == final.dtype == torch.float32
    assert torch.equal(memory, want_memory) and torch.equal(final, want_final)
