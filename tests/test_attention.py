"""Attention weights are distributions over real source positions; keys are computed once per sentence."""

import pytest
import torch

from nmt import NmtError
from nmt.models.attention import BahdanauAttention, FixedContext, build_attention, masked_softmax
from tests.conftest import run_config


def _memory() -> tuple[torch.Tensor, torch.Tensor]:
    memory = torch.randn(3, 6, 8)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] + [0] * 5], dtype=torch.bool)
    return memory, mask


@pytest.mark.parametrize("kind", ["bahdanau", "luong_dot", "luong_general"])
def test_weights_sum_to_one_and_ignore_padding(kind: str) -> None:
    memory, mask = _memory()
    attention = build_attention(kind, 8, 8, 5)
    enc = {"memory": memory, "mask": mask, **attention.precompute(memory, mask, memory[:, 0])}
    context, weights = attention(torch.randn(3, 8), enc)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    assert (weights[~mask] == 0).all()
    assert (weights[mask] > 0).all()
    torch.testing.assert_close(context, torch.einsum("bs,bsm->bm", weights, memory))


def test_bahdanau_score_is_the_additive_formula() -> None:
    memory, mask = _memory()
    attention = BahdanauAttention(4, 8, 5)
    query = torch.randn(3, 4)
    enc = {"memory": memory, "mask": mask, **attention.precompute(memory, mask, memory[:, 0])}
    _, weights = attention(query, enc)
    W, U, v = attention.W.weight, attention.U.weight, attention.v.weight.squeeze(0)
    e = torch.tanh((query @ W.T).unsqueeze(1) + memory @ U.T) @ v  # e_ij = v^T tanh(W s + U h_j)
    torch.testing.assert_close(weights, masked_softmax(e, mask))


def test_luong_dot_needs_equal_sizes() -> None:
    """The schema refuses it, naming both sizes (the model trusts its config)."""
    with pytest.raises(NmtError, match=r"^model\.attention=luong_dot needs the encoder's output size \(64: "
                                       r"hidden_size x directions\) == model\.decoder_hidden_size \(128\)$"):
        run_config(["model.attention=luong_dot", "model.hidden_size=32"])


def test_fixed_context_is_the_summary_at_every_step() -> None:
    memory, mask = _memory()
    final = torch.randn(3, 8)
    attention = FixedContext()
    enc = {"memory": memory, "mask": mask, **attention.precompute(memory, mask, final)}
    for _ in range(2):
        context, weights = attention(torch.randn(3, 8), enc)
        assert weights is None
        assert torch.equal(context, final)


def test_unknown_attention_is_refused() -> None:
    with pytest.raises(NmtError, match=r"^model\.attention='cosine': input should be 'bahdanau', 'luong_dot', "
                                       r"'luong_general' or 'none'$"):
        run_config(["model.attention=cosine"])
