"""The recurrent encoder-decoder beyond the Seq2Seq contract (tests/test_protocol.py): the attention keys projected
once per sentence, tied embeddings, the model the default config builds."""

import pytest
import torch

from nmt import NmtError
from nmt.batching import make_batch
from nmt.models.builder import build_model, count_parameters
from nmt.models.recurrent import RecurrentSeq2Seq
from nmt.search import greedy_search
from tests.conftest import run_config
from tests.helpers import SOURCES, small_rnn


def test_key_projection_runs_once_per_sentence_not_per_step() -> None:
    model = small_rnn()
    calls = []
    model.decoder.attention.U.register_forward_hook(lambda *_: calls.append(1))
    batch = make_batch(SOURCES)
    greedy_search(model, batch.src, batch.src_mask, torch.tensor([8, 8, 8]))
    assert len(calls) == 1


def test_tied_embeddings_share_the_output_matrix() -> None:
    model = small_rnn(tie_embeddings=True, emb_size=14)
    assert model.output.weight.data_ptr() == model.trg_embed.weight.data_ptr()
    assert count_parameters(model) < count_parameters(small_rnn(emb_size=14))
    with pytest.raises(NmtError, match=r"^model\.tie_embeddings needs model\.emb_size \(64\) == "
                                       r"model\.decoder_hidden_size \(128\)$"):  # the schema's check: models trust it
        run_config(["model.tie_embeddings=true"])


def test_build_model_from_the_default_config() -> None:
    cfg = run_config()
    model = build_model(cfg.model, 300, 300)
    assert isinstance(model, RecurrentSeq2Seq)
    assert model.encoder.direction == "bi" and model.decoder.bridge is not None
    assert model.decoder.cells[0].hidden_size == cfg.model.decoder_hidden_size
