"""Recurrent cells, written as their equations: one step of a vanilla RNN, a GRU and an LSTM.

The decoder runs these one step at a time (it has to: each step attends with the previous state). The encoder
runs the same equations through torch's fused ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM``; the cells use the same
parameter layout (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``, gates stacked in torch's order), and
``tests/test_cells.py`` checks that they compute exactly what torch's layers compute.

A cell's state is a tuple: ``(h,)`` for the RNN and GRU, ``(h, c)`` for the LSTM.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nmt.models.stepwise import Linear, plain


class Cell(nn.Module):
    """Shared parameters: input-to-hidden and hidden-to-hidden weights for ``gates`` stacked gates."""

    gates = 1
    state_size = 1

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(self.gates * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(self.gates * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(self.gates * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(self.gates * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: Tensor, state: tuple[Tensor, ...], linear: Linear = plain) -> tuple[Tensor, ...]:
        """One step: input ``x`` [B, input_size] and the previous state -> the new state."""
        return self.step(linear(x, self.weight_ih, self.bias_ih), state, linear)

    def step(self, wx: Tensor, state: tuple[Tensor, ...], linear: Linear = plain) -> tuple[Tensor, ...]:
        """One step from the input already projected, ``wx = W_x x_t + b_x`` (all gates stacked). ``linear``
        computes the products (``nmt.models.stepwise``: plain, or with deferred weight gradients under teacher
        forcing)."""
        raise NotImplementedError


class RNNCell(Cell):
    """Elman RNN: h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)."""

    def step(self, wx: Tensor, state: tuple[Tensor, ...], linear: Linear = plain) -> tuple[Tensor, ...]:
        (h_prev,) = state
        h = torch.tanh(linear(h_prev, self.weight_hh, self.bias_hh) + wx)
        return (h,)


class GRUCell(Cell):
    """Gated recurrent unit (Cho et al. 2014):

    r_t = sigmoid(W_xr x_t + W_hr h_{t-1})             reset gate
    z_t = sigmoid(W_xz x_t + W_hz h_{t-1})             update gate
    n_t = tanh(W_xn x_t + r_t * (W_hn h_{t-1}))        candidate state
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    """

    gates = 3

    def step(self, wx: Tensor, state: tuple[Tensor, ...], linear: Linear = plain) -> tuple[Tensor, ...]:
        (h_prev,) = state
        wh = linear(h_prev, self.weight_hh, self.bias_hh)
        x_r, x_z, x_n = wx.chunk(3, dim=-1)
        h_r, h_z, h_n = wh.chunk(3, dim=-1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h_prev
        return (h,)


class LSTMCell(Cell):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), with a forget gate:

    i_t = sigmoid(W_xi x_t + W_hi h_{t-1})             input gate
    f_t = sigmoid(W_xf x_t + W_hf h_{t-1})             forget gate
    g_t = tanh(W_xg x_t + W_hg h_{t-1})                candidate cell
    o_t = sigmoid(W_xo x_t + W_ho h_{t-1})             output gate
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)
    """

    gates = 4
    state_size = 2

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        init_forget_bias(self.bias_ih, self.bias_hh)

    def step(self, wx: Tensor, state: tuple[Tensor, ...], linear: Linear = plain) -> tuple[Tensor, ...]:
        h_prev, c_prev = state
        i, f, g, o = (wx + linear(h_prev, self.weight_hh, self.bias_hh)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


def init_forget_bias(bias_ih: Tensor, bias_hh: Tensor, value: float = 1.0) -> None:
    """Start the LSTM's forget gate open, b_f = 1 (Gers et al. 2000; Jozefowicz et al. 2015), so that the cell
    state and its gradient pass through many steps from the first update on (deep stacks learn at all)."""
    with torch.no_grad():
        hidden = bias_ih.numel() // 4
        bias_ih[hidden: 2 * hidden].fill_(value)
        bias_hh[hidden: 2 * hidden].zero_()


CELLS: dict[str, type[Cell]] = {"rnn": RNNCell, "gru": GRUCell, "lstm": LSTMCell}
FUSED: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
