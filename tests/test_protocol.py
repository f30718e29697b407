"""The Seq2Seq contract (nmt.models.protocol), for every design: each recurrent variant, each Transformer variant,
and an ensemble of either. What search, training, alignment and the server rely on: step-by-step decoding equals
teacher forcing (also after reordering rows, as beam search does), padding changes no sentence, attention is a
distribution over the real source positions, the scored rows are the full logits there, gradients reach every
parameter, encoder outputs and states are batch-first, greedy search follows the model, and per-head attention
where a design says it has heads."""

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nmt.batching import make_batch
from nmt.models.protocol import select
from nmt.search import greedy_search, max_output_lengths
from nmt.tokenizer import EOS, PAD
from tests.helpers import (
    RNN_VARIANTS,
    SOURCES,
    TARGETS,
    TRANSFORMER_VARIANTS,
    small_ensemble,
    small_rnn,
    small_transformer,
)

DESIGNS: dict[str, Callable[[], nn.Module]] = {
    **{f"rnn-{i}": (lambda o=o: small_rnn(**o)) for i, o in enumerate(RNN_VARIANTS)},
    **{f"transformer-{i}": (lambda o=o: small_transformer(**o)) for i, o in enumerate(TRANSFORMER_VARIANTS)},
    "ensemble-rnn": lambda: small_ensemble("rnn"),
    "ensemble-transformer": lambda: small_ensemble("transformer"),
}


@pytest.fixture(params=list(DESIGNS))
def model(request: pytest.FixtureRequest) -> nn.Module:
    torch.manual_seed(0)
    return DESIGNS[request.param]()


def test_step_by_step_equals_teacher_forcing_also_after_reordering(model: nn.Module) -> None:
    batch = make_batch(SOURCES, TARGETS)
    logits, attention = model(batch.src, batch.src_mask, batch.trg_in)
    enc = model.encode(batch.src, batch.src_mask)
    state = model.init_state(enc)
    order = torch.arange(len(SOURCES))
    for i in range(batch.trg_in.size(1)):
        if i == 2:  # reorder the rows mid-sentence, as beam search does: every tensor must follow
            order = torch.tensor([2, 0, 1])
            enc, state = select(enc, order), select(state, order)
        log_probs, a, state = model.step(batch.trg_in[order, i], enc, state)
        torch.testing.assert_close(log_probs, F.log_softmax(logits[order, i], -1), rtol=1e-5, atol=1e-5)
        if attention is None:
            assert a is None
        else:
            torch.testing.assert_close(a, attention[order, i], rtol=1e-5, atol=1e-6)


def test_encoder_output_and_state_are_batch_first(model: nn.Module) -> None:
    batch = make_batch(SOURCES)
    enc = model.encode(batch.src, batch.src_mask)
    state = model.init_state(enc)
    assert enc and state
    assert all(t.size(0) == len(SOURCES) for t in (*enc.values(), *state.values()))
    _, _, state = model.step(batch.src.new_full((len(SOURCES),), 1), enc, state)
    assert all(t.size(0) == len(SOURCES) for t in state.values())


def test_padding_does_not_change_a_sentence(model: nn.Module) -> None:
    batch = make_batch(SOURCES, TARGETS)
    logits, attention = model(batch.src, batch.src_mask, batch.trg_in)
    hyps = greedy_search(model, batch.src, batch.src_mask, max_output_lengths(batch.src_mask, 1.5, 5))
    for b in range(len(SOURCES)):
        alone = make_batch([SOURCES[b]], [TARGETS[b]])
        logits_1, attention_1 = model(alone.src, alone.src_mask, alone.trg_in)
        t, s = alone.trg_in.size(1), alone.src.size(1)
        torch.testing.assert_close(F.log_softmax(logits[b, :t], -1), F.log_softmax(logits_1[0], -1),
                                   rtol=1e-5, atol=1e-5)
        if attention is not None:
            torch.testing.assert_close(attention[b, :t, :s], attention_1[0], rtol=1e-5, atol=1e-6)
        (hyp,) = greedy_search(model, alone.src, alone.src_mask, max_output_lengths(alone.src_mask, 1.5, 5))
        assert hyp.tokens == hyps[b].tokens
        assert abs(hyp.score - hyps[b].score) < 1e-5


@pytest.mark.parametrize("training", [False, True])
def test_attention_is_a_distribution_over_real_source_positions(model: nn.Module, training: bool) -> None:
    batch = make_batch(SOURCES, TARGETS)
    _, attention = model.train(training)(batch.src, batch.src_mask, batch.trg_in)
    if attention is None:
        return
    torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:2]))
    assert (attention.masked_select(~batch.src_mask.unsqueeze(1)) == 0).all()


def test_scored_positions_get_the_full_logits_there(model: nn.Module) -> None:
    batch = make_batch(SOURCES, TARGETS)
    full, _ = model(batch.src, batch.src_mask, batch.trg_in)
    scored = batch.trg_out != PAD
    rows, _ = model(batch.src, batch.src_mask, batch.trg_in, scored)
    torch.testing.assert_close(rows, full[scored])


def test_gradients_reach_every_parameter(model: nn.Module) -> None:
    batch = make_batch(SOURCES, TARGETS)
    logits, _ = model.train()(batch.src, batch.src_mask, batch.trg_in)
    F.cross_entropy(logits.flatten(0, 1), batch.trg_out.flatten(), ignore_index=PAD).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_greedy_search_follows_the_model(model: nn.Module) -> None:
    """Teacher forcing on each hypothesis picks the same tokens with the same scores, and EOS after them where the
    search stopped before its length limit (at the limit, EOS is forced)."""
    batch = make_batch(SOURCES)
    limits = max_output_lengths(batch.src_mask, 1.5, 5)
    hyps = greedy_search(model, batch.src, batch.src_mask, limits)
    assert len(hyps) == len(SOURCES)
    for b, hyp in enumerate(hyps):
        chosen = len(hyp.tokens) + (len(hyp.tokens) + 1 < int(limits[b]))  # the steps whose token the model chose
        alone = make_batch([SOURCES[b]], [hyp.tokens])
        log_probs = F.log_softmax(model(alone.src, alone.src_mask, alone.trg_in)[0][0, :chosen], -1)
        assert log_probs.argmax(-1).tolist() == [*hyp.tokens, EOS][:chosen]
        torch.testing.assert_close(torch.tensor(hyp.token_scores[:chosen]), log_probs.max(-1).values,
                                   rtol=1e-5, atol=1e-5)


def test_heads_where_the_design_has_them(model: nn.Module) -> None:
    """A design with heads gives every layer's and head's cross-attention, distributions whose last layer's mean is
    its attention; the others refuse to."""
    batch = make_batch(SOURCES, TARGETS)
    if not model.has_heads:
        with pytest.raises((TypeError, ValueError)):
            model(batch.src, batch.src_mask, batch.trg_in, return_all_attention=True)
        return
    _, every = model(batch.src, batch.src_mask, batch.trg_in, return_all_attention=True)
    assert every.shape == (3, 2, 4, batch.trg_in.size(1), batch.src.size(1))  # [B, layers, heads, T, S]
    torch.testing.assert_close(every.sum(-1), torch.ones(every.shape[:-1]))
    assert (every[~batch.src_mask[:, None, None, None, :].expand_as(every)] == 0).all()
    torch.testing.assert_close(model(batch.src, batch.src_mask, batch.trg_in)[1], every[:, -1].mean(1))


def test_an_ensemble_of_transformers_has_heads_and_of_differing_designs_not() -> None:
    assert small_ensemble("transformer").has_heads and not small_ensemble("rnn").has_heads
    from nmt.models.ensemble import Ensemble

    assert not Ensemble([small_transformer(), small_transformer(num_heads=2)]).has_heads
    assert not Ensemble([small_transformer(), small_rnn()]).has_heads
