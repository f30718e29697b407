"""The output layer's log-probabilities, log p(y_i | y_<i, x) = log_softmax(W_o t_i + b_o), over the whole target
vocabulary or over a search's shortlist.

A shortlist (``enc["shortlist"]``, one boolean row over the vocabulary per sentence, set by search) limits each
sentence to its own candidate subwords: the projection runs over the union of the rows' candidates only (the saving:
the output projection is the largest product of a decoding step), each row is masked to its own sentence's
candidates, and the softmax renormalises over them. Subwords outside a sentence's list get -inf. With every row
full the result is the plain one, computed the plain way.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from nmt.models.protocol import Tensors


def log_probs(output: nn.Module, t: Tensor, enc: Tensors) -> Tensor:
    """[rows, V] log-probabilities from the output layer ``output`` on ``t`` [rows, H]; ``enc`` has one row per
    sentence, its k consecutive rows of ``t`` (beams) share it."""
    allowed = enc.get("shortlist")
    if allowed is None:
        return F.log_softmax(output(t), dim=-1)
    beams = t.size(0) // allowed.size(0)
    ids = allowed.any(0).nonzero().squeeze(1)
    if ids.numel() == allowed.size(1) or not isinstance(getattr(output, "weight", None), Tensor):
        # the whole vocabulary (or an int8 layer, whose packed weights cannot be sliced): project all, then mask
        outside = ~allowed.repeat_interleave(beams, dim=0)
        return F.log_softmax(output(t).masked_fill(outside, float("-inf")), dim=-1)
    bias = output.bias.index_select(0, ids) if output.bias is not None else None
    logits = F.linear(t, output.weight.index_select(0, ids), bias)
    outside = ~allowed.index_select(1, ids).repeat_interleave(beams, dim=0)
    scores = F.log_softmax(logits.masked_fill(outside, float("-inf")), dim=-1)
    full = scores.new_full((t.size(0), allowed.size(1)), float("-inf"))
    return full.index_copy_(1, ids, scores)


def shared(enc: Tensors) -> Tensors:
    """What every member of an ensemble reads from the ensemble's encoder output besides its own part."""
    return {key: enc[key] for key in ("shortlist",) if key in enc}

