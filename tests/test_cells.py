"""The hand-written cells compute exactly what torch's fused cells compute, with the same parameters."""

import pytest
import torch
from torch import nn

from nmt.models.cells import CELLS


@pytest.mark.parametrize(("name", "reference"), [("rnn", nn.RNNCell), ("gru", nn.GRUCell), ("lstm", nn.LSTMCell)])
def test_cell_matches_torch(name: str, reference: type[nn.Module]) -> None:
    ours, theirs = CELLS[name](7, 5), reference(7, 5)
    theirs.load_state_dict(ours.state_dict())
    x, h, c = torch.randn(3, 7), torch.randn(3, 5), torch.randn(3, 5)
    if name == "lstm":
        expected = theirs(x, (h, c))
        got = ours(x, (h, c))
    else:
        expected = (theirs(x, h),)
        got = ours(x, (h,))
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)


def test_gru_cell_runs_like_fused_gru_layer() -> None:
    """Unrolling the GRU cell over a sequence gives the fused nn.GRU's outputs (the encoder's layer)."""
    cell, layer = CELLS["gru"](4, 6), nn.GRU(4, 6, batch_first=True)
    layer.load_state_dict({f"{k}_l0": v for k, v in cell.state_dict().items()})
    x = torch.randn(2, 5, 4)
    state = (torch.zeros(2, 6),)
    outputs = []
    for t in range(5):
        state = cell(x[:, t], state)
        outputs.append(state[0])
    torch.testing.assert_close(torch.stack(outputs, 1), layer(x)[0], rtol=1e-5, atol=1e-6)


def test_lstm_forget_gates_start_open() -> None:
    """b_f = 1 in the decoder's cells and in every layer and direction of the fused encoder LSTM; other biases
    keep their uniform initialisation."""
    from nmt.models.encoder import RecurrentEncoder

    cell = CELLS["lstm"](7, 5)
    assert torch.equal(cell.bias_ih[5:10] + cell.bias_hh[5:10], torch.ones(5))
    assert not torch.equal(cell.bias_ih[:5], torch.ones(5))
    encoder = RecurrentEncoder("lstm", 4, 6, num_layers=2, direction="bi")
    for name, bias in encoder.rnn.named_parameters():
        if name.startswith("bias_ih"):
            other = getattr(encoder.rnn, name.replace("bias_ih", "bias_hh"))
            assert torch.equal(bias[6:12] + other[6:12], torch.ones(6)), name
