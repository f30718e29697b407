"""Attention: which source annotations h_j the decoder reads at output step i.

Every attention module turns scores e_ij into weights a_ij = softmax_j(e_ij), masked so that padding gets
exactly zero weight, and returns the context c_i = sum_j a_ij h_j. Whatever depends only on the source (the
key projection U h_j) is computed once per sentence in ``precompute``, not once per step, and the hypotheses of
a beam share it: the queries come as k consecutive rows per sentence of ``enc`` (k = 1 under teacher forcing and
in greedy search), and each group of k reads its sentence's annotations.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.models.protocol import Tensors
from nmt.models.stepwise import Linear, plain


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dim where ``mask`` is True; exactly 0 where it is False."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


class Attention(nn.Module):
    """Base class. ``after_rnn``: the query is the new state s_i (Luong) rather than s_{i-1} (Bahdanau)."""

    after_rnn = False

    def precompute(self, memory: Tensor, mask: Tensor, final: Tensor) -> Tensors:
        """Per-sentence tensors reused at every decoding step (batch first, so beams can reorder them)."""
        return {}

    def forward(self, query: Tensor, enc: Tensors, linear: Linear = plain) -> tuple[Tensor, Tensor | None]:
        """Queries [N * k, Q] of the N sentences of ``enc`` -> (context c_i [N * k, M], weights a_i [N * k, S] or
        None); ``linear`` computes the query's projection (``nmt.models.stepwise``)."""
        raise NotImplementedError


def _grouped(query: Tensor, enc: Tensors) -> Tensor:
    """Queries [N * k, Q] -> [N, k, Q]: the k hypotheses of each of the N sentences of ``enc``."""
    return query.view(enc["mask"].size(0), -1, query.size(-1))


def _read(weights: Tensor, enc: Tensors) -> tuple[Tensor, Tensor]:
    """c_i = sum_j a_ij h_j, one batched product per sentence for its k queries: weights [N, k, S] ->
    (contexts [N * k, M], weights [N * k, S])."""
    return torch.bmm(weights, enc["memory"]).flatten(0, 1), weights.flatten(0, 1)


class BahdanauAttention(Attention):
    """Additive attention (Bahdanau et al. 2015): e_ij = v^T tanh(W s_{i-1} + U h_j)."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int) -> None:
        super().__init__()
        self.W = nn.Linear(query_size, attention_size, bias=False)
        self.U = nn.Linear(memory_size, attention_size, bias=False)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def precompute(self, memory: Tensor, mask: Tensor, final: Tensor) -> Tensors:
        return {"keys": self.U(memory)}

    def forward(self, query: Tensor, enc: Tensors, linear: Linear = plain) -> tuple[Tensor, Tensor | None]:
        e = self.v(torch.tanh(_grouped(linear(query, self.W), enc).unsqueeze(2) + enc["keys"].unsqueeze(1)))
        return _read(masked_softmax(e.squeeze(-1), enc["mask"].unsqueeze(1)), enc)


class LuongAttention(Attention):
    """Multiplicative attention (Luong et al. 2015), queried with the new state s_i.

    ``dot``: e_ij = s_i^T h_j (needs equal sizes); ``general``: e_ij = s_i^T W_a h_j.
    """

    after_rnn = True

    def __init__(self, query_size: int, memory_size: int, score: str = "general") -> None:
        super().__init__()
        assert score == "general" or (score == "dot" and query_size == memory_size), (score, query_size, memory_size)
        self.W_a = nn.Linear(memory_size, query_size, bias=False) if score == "general" else None

    def precompute(self, memory: Tensor, mask: Tensor, final: Tensor) -> Tensors:
        return {"keys": memory if self.W_a is None else self.W_a(memory)}

    def forward(self, query: Tensor, enc: Tensors, linear: Linear = plain) -> tuple[Tensor, Tensor | None]:
        e = torch.bmm(_grouped(query, enc), enc["keys"].transpose(1, 2))
        return _read(masked_softmax(e, enc["mask"].unsqueeze(1)), enc)


class FixedContext(Attention):
    """No attention (Cho et al. 2014): one summary vector c = h_final of the encoder, fed at every step.

    This is the fixed-length bottleneck that attention removes; there are no weights to return.
    """

    def precompute(self, memory: Tensor, mask: Tensor, final: Tensor) -> Tensors:
        return {"summary": final}

    def forward(self, query: Tensor, enc: Tensors, linear: Linear = plain) -> tuple[Tensor, Tensor | None]:
        summary = enc["summary"]  # one row per sentence: a view for its k queries (a copy only for k > 1)
        return summary.unsqueeze(1).expand(-1, query.size(0) // summary.size(0), -1).flatten(0, 1), None


def build_attention(kind: str, query_size: int, memory_size: int, attention_size: int) -> Attention:
    """``bahdanau``, ``luong_dot``, ``luong_general`` or ``none``."""
    if kind == "bahdanau":
        return BahdanauAttention(query_size, memory_size, attention_size)
    if kind in ("luong_dot", "luong_general"):
        return LuongAttention(query_size, memory_size, kind.removeprefix("luong_"))
    assert kind == "none", kind
    return FixedContext()
