"""Gradient flow through time (nmt.gradients): the norms decay along the vanilla RNN's recurrence when its recurrent
weight is small, and not where attention gives a short path; the gates decay less; path lengths by encoder
direction; the source embedding is the one measured, also when a table is shared; int8 refused in one line."""

import pytest
import torch

from nmt import NmtError
from nmt.gradients import flow_by_path, gradient_map, path_lengths
from tests.helpers import small_rnn, small_transformer

SRC, TRG = list(range(4, 17)), list(range(4, 12))  # 13 source and 8 target subwords (14 and 9 with EOS)


def decay(model: torch.nn.Module) -> float:
    """How many times weaker the gradient is at the far end of the recurrent paths (12 to 21 steps) than at
    their near end (0 to 2 steps)."""
    flow = flow_by_path(model, [(SRC, TRG)])
    near = [v for d, v in flow.items() if d <= 2]
    far = [v for d, v in flow.items() if d >= 12]
    return (sum(near) / len(near)) / (sum(far) / len(far))


def vanilla(attention: str, cell: str = "rnn") -> torch.nn.Module:
    """A vanilla (or gated) RNN reading left to right, its encoder's recurrent weight scaled down to 0.5 of its
    initialisation: factors diag(1 - h^2) W_hh well below 1."""
    torch.manual_seed(0)
    model = small_rnn(cell=cell, attention=attention, direction="forward")
    with torch.no_grad():
        model.encoder.rnn.weight_hh_l0.mul_(0.5)
    return model


def test_the_vanilla_rnn_s_gradient_vanishes_along_the_recurrence_and_attention_gives_a_short_path() -> None:
    without, with_attention = decay(vanilla("none")), decay(vanilla("bahdanau"))
    assert without > 1000, without  # measured 19,865 (a random model: the factors, not training, do it)
    assert with_attention < 10, with_attention  # measured 1.84: every source word is one step from every target
    assert decay(vanilla("none", "lstm")) < without / 100  # measured 33.3: the gates keep a path


def test_path_lengths_follow_the_encoder_s_reading_order() -> None:
    forward = path_lengths(small_rnn(direction="forward"), 4, 2)
    assert forward.tolist() == [[3, 2, 1, 0], [4, 3, 2, 1]]
    assert path_lengths(small_rnn(direction="reverse"), 4, 2).tolist() == [[0, 1, 2, 3], [1, 2, 3, 4]]
    assert path_lengths(small_rnn(direction="bi"), 4, 2).tolist() == [[0, 1, 1, 0], [1, 2, 2, 1]]
    assert torch.equal(path_lengths(small_transformer(), 4, 2), forward)


def test_the_map_is_of_the_source_embeddings_and_leaves_the_model_as_it_was() -> None:
    """[target + EOS, source + EOS], also for a Transformer whose source and target share one table (the target's
    embedding is not the one measured); weights keep their gradients off and on as they were, mode included."""
    for model in (small_rnn(), small_transformer(shared_embeddings=True, tie_embeddings=True)):
        model.train()
        g = gradient_map(model, SRC, TRG)
        assert g.shape == (len(TRG) + 1, len(SRC) + 1) and (g >= 0).all() and g.sum() > 0
        assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_an_int8_model_is_refused_in_one_line() -> None:
    model = torch.ao.quantization.quantize_dynamic(small_rnn(), {torch.nn.Linear}, dtype=torch.qint8)
    with pytest.raises(NmtError, match=r"int8 model .* has no backward pass"):
        gradient_map(model, SRC, TRG)
