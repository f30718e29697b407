"""Ensembles: several trained models decoding as one, behind the interface of
``nmt.models.protocol``.

At every step the members' next-token distributions are averaged,

    log p(y_i | y_<i, x) = log (1/M sum_m p_m(y_i | y_<i, x))

so greedy and beam search run unchanged on the ensemble. Its attention, and the alignments and plots drawn from
it, is the mean of the members' attention. Each member keeps its own encoder output and decoder state, stored in
the ensemble's dicts under the prefix ``"m."`` (``"0.memory"``, ``"1.k0"``, ...), so that search expands and
reorders them for beams like any model's. The members must read and write the same subwords: their runs share
their sentencepiece models.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nmt.models.output import shared
from nmt.models.protocol import Tensors


def _part(tensors: Tensors, m: int) -> Tensors:
    prefix = f"{m}."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _prefixed(tensors: Tensors, m: int) -> Tensors:
    return {f"{m}.{k}": v for k, v in tensors.items()}


def _mean_attention(weights: list[Tensor | None]) -> Tensor | None:
    return None if any(a is None for a in weights) else torch.stack(weights).mean(0)


class Ensemble(nn.Module):
    """The members' mean distribution at every step (see the module docstring)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def has_heads(self) -> bool:
        """Whether every member keeps per-head attention, in the same layers and heads (their mean is then the
        ensemble's)."""
        shapes = {(len(m.decoder), m.num_heads) if m.has_heads else None for m in self.members}
        return None not in shapes and len(shapes) == 1

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensors:
        enc = {"mask": src_mask}
        for m, member in enumerate(self.members):
            enc.update(_prefixed(member.encode(src, src_mask), m))
        return enc

    def init_state(self, enc: Tensors) -> Tensors:
        state: Tensors = {}
        for m, member in enumerate(self.members):
            state.update(_prefixed(member.init_state(_part(enc, m)), m))
        return state

    def step(self, prev: Tensor, enc: Tensors, state: Tensors) -> tuple[Tensor, Tensor | None, Tensors]:
        """log (1/M sum_m p_m(y_i | y_<i, x)) [B, V], the mean attention [B, S] (or None), every member's state."""
        log_probs, weights, new_state = [], [], {}
        for m, member in enumerate(self.members):
            lp, a, s = member.step(prev, _part(enc, m) | shared(enc), _part(state, m))
            log_probs.append(lp.float())
            weights.append(a)
            new_state.update(_prefixed(s, m))
        return self._mean(log_probs), _mean_attention(weights), new_state

    def forward(self, src: Tensor, src_mask: Tensor, trg_in: Tensor, scored: Tensor | None = None,
                return_all_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: the log of the members' mean probabilities [B, T, V] (or [N, V] for the ``scored``
        positions; normalized, so usable as logits) and their mean attention [B, T, S] (with
        ``return_all_attention``, members that have heads: their mean per layer and head, [B, layers, heads, T, S])."""
        if return_all_attention and not self.has_heads:
            raise ValueError("return_all_attention needs members that all keep the same layers and heads")
        options = {"return_all_attention": True} if return_all_attention else {}
        log_probs, weights = [], []
        for member in self.members:
            logits, a = member(src, src_mask, trg_in, scored, **options)
            log_probs.append(F.log_softmax(logits.float(), dim=-1))
            weights.append(a)
        return self._mean(log_probs), _mean_attention(weights)

    def _mean(self, log_probs: list[Tensor]) -> Tensor:
        return torch.logsumexp(torch.stack(log_probs), 0) - math.log(len(log_probs))
