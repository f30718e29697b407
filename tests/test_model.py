"""The recurrent encoder-decoder: teacher forcing, step-by-step decoding, padding, gradients."""

import pytest
import torch
from torch.nn import functional as F

from nmt.batching import make_batch
from nmt.models.builder import build_model, count_parameters
from nmt.models.recurrent import RecurrentSeq2Seq
from nmt.search import greedy_search, max_output_lengths
from tests.conftest import compose_config

VARIANTS = [
    {},
    {"cell": "lstm", "direction": "reverse", "encoder_layers": 2, "decoder_layers": 2},
    {"cell": "rnn", "direction": "forward", "init": "zeros", "input_feeding": False},
    {"attention": "luong_general"},
    {"attention": "luong_dot", "hidden_size": 16, "decoder_hidden_size": 32},
    {"attention": "none"},
    {"tie_embeddings": True, "emb_size": 32, "decoder_hidden_size": 32},
]


def small_model(**options: object) -> RecurrentSeq2Seq:
    settings = {"emb_size": 12, "hidden_size": 10, "decoder_hidden_size": 14, "attention_size": 9, "dropout": 0.0}
    return RecurrentSeq2Seq(23, 19, **{**settings, **options}).eval()


SOURCES = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]
TARGETS = [[4, 5, 6], [7, 8, 9, 10, 11], [12]]


@pytest.mark.parametrize("options", VARIANTS)
def test_step_by_step_equals_teacher_forcing(options: dict) -> None:
    model = small_model(**options)
    batch = make_batch(SOURCES, TARGETS)
    logits, _ = model(batch.src, batch.src_mask, batch.trg_in)
    enc = model.encode(batch.src, batch.src_mask)
    state = model.init_state(enc)
    for i in range(batch.trg_in.size(1)):
        log_probs, _, state = model.step(batch.trg_in[:, i], enc, state)
        torch.testing.assert_close(log_probs, F.log_softmax(logits[:, i], -1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options", VARIANTS)
def test_padding_does_not_change_a_sentence(options: dict) -> None:
    model = small_model(**options)
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


def test_attention_is_a_distribution_over_real_source_positions() -> None:
    model = small_model()
    batch = make_batch(SOURCES, TARGETS)
    _, attention = model(batch.src, batch.src_mask, batch.trg_in)
    torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:2]))
    assert (attention.masked_select(~batch.src_mask.unsqueeze(1)) == 0).all()


@pytest.mark.parametrize("options", VARIANTS)
def test_gradients_reach_every_parameter(options: dict) -> None:
    model = small_model(**options).train()
    batch = make_batch(SOURCES, TARGETS)
    logits, _ = model(batch.src, batch.src_mask, batch.trg_in)
    F.cross_entropy(logits.flatten(0, 1), batch.trg_out.flatten(), ignore_index=0).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_key_projection_runs_once_per_sentence_not_per_step() -> None:
    model = small_model()
    calls = []
    model.decoder.attention.U.register_forward_hook(lambda *_: calls.append(1))
    batch = make_batch(SOURCES)
    greedy_search(model, batch.src, batch.src_mask, torch.tensor([8, 8, 8]))
    assert len(calls) == 1


def test_tied_embeddings_share_the_output_matrix() -> None:
    model = small_model(tie_embeddings=True, emb_size=14)
    assert model.output.weight.data_ptr() == model.trg_embed.weight.data_ptr()
    assert count_parameters(model) < count_parameters(small_model(emb_size=14))
    with pytest.raises(ValueError, match="tie_embeddings"):
        small_model(tie_embeddings=True)


def test_build_model_from_the_default_config() -> None:
    cfg = compose_config()
    model = build_model(cfg.model, 300, 300)
    assert isinstance(model, RecurrentSeq2Seq)
    assert model.encoder.direction == "bi" and model.decoder.bridge is not None
    assert model.decoder.cells[0].hidden_size == cfg.model.decoder_hidden_size
