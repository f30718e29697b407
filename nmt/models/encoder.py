"""Recurrent encoder: source embeddings -> annotations h_j, one per source position.

Directions:
- ``bi``: forward and backward RNNs, h_j = [h_j(fwd); h_j(bwd)] (Bahdanau et al. 2015);
- ``reverse``: one RNN reading the source reversed (Sutskever et al. 2014);
- ``forward``: one RNN reading left to right.
The annotations are always returned in source order, so that attention weight a_ij refers to source word j.
The RNN runs through torch's fused layers on packed sequences: padding never enters the recurrence. It runs in
fp32 on a CPU even under bf16 autocast (see ``nmt.hardware``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nmt.models.cells import FUSED, init_forget_bias

DIRECTIONS = ("bi", "reverse", "forward")


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of ``x`` [B, S, ...] within its length; padding stays at the end."""
    positions = torch.arange(x.size(1), device=x.device).unsqueeze(0)
    idx = torch.where(positions < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - positions, positions)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


class RecurrentEncoder(nn.Module):
    """A stack of RNN/GRU/LSTM layers with dropout between them."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 direction: str = "bi", dropout: float = 0.0) -> None:
        super().__init__()
        assert direction in DIRECTIONS, direction
        self.direction = direction
        self.num_directions = 2 if direction == "bi" else 1
        self.output_size = self.num_directions * hidden_size
        self.rnn = FUSED[cell](input_size, hidden_size, num_layers, batch_first=True,
                               bidirectional=direction == "bi", dropout=dropout if num_layers > 1 else 0.0)
        if cell == "lstm":
            for name, bias_ih in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    init_forget_bias(bias_ih, getattr(self.rnn, name.replace("bias_ih", "bias_hh")))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Embedded source ``x`` [B, S, E], ``mask`` [B, S] -> annotations [B, S, D*H], final state [B, D*H].

        The final state is the top layer's last state in each direction (after the last word read).
        """
        lengths = mask.sum(1)
        if self.direction == "reverse":
            x = reverse_padded(x, lengths)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        with torch.autocast("cpu", enabled=False):  # its steps' row counts all differ: fp32 spares oneDNN a kernel each
            out, h_n = self.rnn(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        if self.direction == "reverse":
            memory = reverse_padded(memory, lengths)
        if isinstance(h_n, tuple):  # LSTM: (h_n, c_n)
            h_n = h_n[0]
        final = torch.cat(list(h_n[-self.num_directions:]), dim=-1)
        return memory, final
