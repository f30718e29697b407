"""Every recurrent variant of the model family learns the date task (issue: the model family).

Each test trains one `conf/model/` choice, shrunk to the date task's size, on 10,000 generated sentences for
at most 3 epochs and a CPU budget of 90 s (2 threads), and asserts its exact-match accuracy on the held-out
test split. The fixed-context baseline (no attention) must squeeze the whole date through one vector; it is
held to a lower bar, and the test records what it reaches.
"""

from pathlib import Path

import pytest

from nmt.train import train
from tests.conftest import SMALL_DATES, compose_config

SMALL_RNN = ["model.emb_size=64", "model.hidden_size=64", "model.decoder_hidden_size=128",
             "model.attention_size=64", "model.dropout=0.1", "train.max_minutes=1.5"]


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "overrides", "required"), [
    ("elman_rnn", [], 98.0),
    ("luong_lstm", ["model.encoder_layers=1", "model.decoder_layers=1"], 98.0),
    ("sutskever_lstm", ["model.hidden_size=128"], 98.0),
    ("bahdanau_gru", ["model.direction=forward", "model.input_feeding=false", "model.init=zeros"], 98.0),
    ("cho_gru", ["model.hidden_size=128"], 80.0),
])
def test_variant_learns_dates(variant: str, overrides: list[str], required: float, tmp_path: Path) -> None:
    cfg = compose_config([*SMALL_DATES, f"model={variant}", *SMALL_RNN, *overrides])
    result = train(cfg, tmp_path)
    print(f"{variant} {' '.join(overrides)}: exact match {result['exact']:.1f}%")
    assert result["exact"] >= required
