"""Recurrent decoder with attention, one target position at a time.

At output step i, with s the decoder state and h the source annotations:

    c_i, a_i = attention(s_{i-1}, h)                 Bahdanau: attend with the previous state, then
    s_i = cell([E y_{i-1}; t_{i-1}; c_i], s_{i-1})     feed the context into the RNN
    -- or, for Luong attention --
    s_i = cell([E y_{i-1}; t_{i-1}], s_{i-1})          run the RNN first, then
    c_i, a_i = attention(s_i, h)                     attend with the new state
    t_i = tanh(W_t [s_i; c_i])                       the attentional vector

t_{i-1} enters only with input feeding. The model turns t_i into p(y_i | y_<i, x) = softmax(W_o t_i), once for
all steps after the loop. Without attention (Cho et al. 2014) c_i is the same encoder summary at every step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nmt.models.attention import Attention
from nmt.models.cells import CELLS
from nmt.models.protocol import Tensors
from nmt.models.stepwise import Linear, StepProducts, plain

LayerStates = list[tuple[Tensor, ...]]


class RecurrentDecoder(nn.Module):
    """A stack of recurrent cells with attention over the encoder's annotations."""

    def __init__(self, cell: str, emb_size: int, hidden_size: int, memory_size: int, num_layers: int,
                 attention: Attention, init: str = "bridge", input_feeding: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        assert init in ("bridge", "zeros"), init
        self.attention, self.input_feeding = attention, input_feeding
        self.emb_size, self.hidden_size, self.num_layers = emb_size, hidden_size, num_layers
        extra = (hidden_size if input_feeding else 0) + (0 if attention.after_rnn else memory_size)
        self.cells = nn.ModuleList(
            CELLS[cell](emb_size + extra if layer == 0 else hidden_size, hidden_size) for layer in range(num_layers))
        self.state_size = self.cells[0].state_size
        self.bridge = (nn.Linear(memory_size, self.state_size * num_layers * hidden_size)
                       if init == "bridge" else None)
        self.attentional = nn.Linear(hidden_size + memory_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def init_state(self, enc: Tensors) -> Tensors:
        """s_0 = tanh(W_b h_final) (the bridge) or zeros, for every layer; the LSTM's c_0 likewise."""
        final = enc["final"]
        shape = (final.size(0), self.state_size, self.num_layers, self.hidden_size)
        s0 = torch.tanh(self.bridge(final)).view(shape) if self.bridge is not None else final.new_zeros(shape)
        state = {"h": s0[:, 0]}
        if self.state_size == 2:
            state["c"] = s0[:, 1]
        if self.input_feeding:
            state["feed"] = final.new_zeros(final.size(0), self.hidden_size)
        return state

    def forward(self, emb: Tensor, enc: Tensors, state: Tensors) -> tuple[Tensor, Tensor | None, Tensors]:
        """Teacher forcing: embedded targets [B, T, E] -> attentional vectors [B, T, H], weights [B, T, S]."""
        w_emb, w_rest = self._first_layer_weights()
        # The embedding part of the first layer's input projection, for all steps in one product.
        wx_emb = F.linear(emb, w_emb, self.cells[0].bias_ih)
        layers, feed = self._unpack(state)
        outputs, weights = [], []
        products = StepProducts()  # the other products' weight gradients: one product over all steps
        for wx_i in wx_emb.unbind(1):  # one backward node for all steps, not a zero-filled copy of wx_emb per step
            t, a, layers = self._step(wx_i, w_rest, layers, feed, enc, products.linear)
            feed = t
            outputs.append(t)
            weights.append(a)
        attention = torch.stack(weights, 1) if weights[0] is not None else None
        return torch.stack(outputs, 1), attention, self._pack(layers, feed)

    def step(self, emb: Tensor, enc: Tensors, state: Tensors) -> tuple[Tensor, Tensor | None, Tensors]:
        """One decoding step: embedded previous token [B, E] -> t_i [B, H], a_i [B, S], new state."""
        w_emb, w_rest = self._first_layer_weights()
        layers, feed = self._unpack(state)
        t, a, layers = self._step(F.linear(emb, w_emb, self.cells[0].bias_ih), w_rest, layers, feed, enc)
        return t, a, self._pack(layers, t)

    def _step(self, wx_emb: Tensor, w_rest: Tensor, layers: LayerStates, feed: Tensor | None, enc: Tensors,
              linear: Linear = plain) -> tuple[Tensor, Tensor | None, LayerStates]:
        extra = [feed] if self.input_feeding else []
        if not self.attention.after_rnn:
            context, a = self.attention(layers[-1][0], enc, linear)
            extra.append(context)
        wx = wx_emb + linear(torch.cat(extra, -1), w_rest) if extra else wx_emb
        new_layers = [self.cells[0].step(wx, layers[0], linear)]
        for cell, layer_state in zip(self.cells[1:], layers[1:], strict=True):
            new_layers.append(cell(self.dropout(new_layers[-1][0]), layer_state, linear))
        s = new_layers[-1][0]
        if self.attention.after_rnn:
            context, a = self.attention(s, enc, linear)
        t = torch.tanh(linear(torch.cat([s, context], -1), self.attentional))
        return t, a, new_layers

    def _first_layer_weights(self) -> tuple[Tensor, Tensor]:
        """W_x of the first layer split by input part: [embedding | input feed and context]."""
        w = self.cells[0].weight_ih
        return w.split([self.emb_size, w.size(1) - self.emb_size], dim=1)

    def _unpack(self, state: Tensors) -> tuple[LayerStates, Tensor | None]:
        keys = ("h", "c")[: self.state_size]
        layers = [tuple(state[k][:, layer] for k in keys) for layer in range(self.num_layers)]
        return layers, state.get("feed")

    def _pack(self, layers: LayerStates, feed: Tensor | None) -> Tensors:
        state = {"h": torch.stack([s[0] for s in layers], 1)}
        if self.state_size == 2:
            state["c"] = torch.stack([s[1] for s in layers], 1)
        if self.input_feeding:
            state["feed"] = feed
        return state
