"""Recurrent variants of the model family learn the date task.

Each test trains one `conf/model/` choice, shrunk to the date task's size, with 2 threads and the CPU budget
given in its parameters (`train.max_minutes`), and asserts its exact-match accuracy on the held-out test split.
Measured on the 2-core CPU: every variant below reaches 98-100%. The no-attention reversed-source LSTM
(`sutskever_lstm`) is tested with one layer on each side: with its two layers at these sizes it learns far more
slowly (after 90 s: dev loss 1.0, exact match 0.1%, measured), the fixed-context bottleneck made deeper.
"""

from pathlib import Path

import pytest

from nmt.train import train
from tests.conftest import SMALL_DATES, compose_config

SMALL_RNN = ["model.emb_size=64", "model.hidden_size=64", "model.decoder_hidden_size=128",
             "model.attention_size=64", "model.dropout=0.1", "train.threads=2"]
# The full 20,000-sentence task, up to 10 epochs in 75 s, halving the learning rate whenever dev stalls.
LONGER = ["train.max_epochs=10", "train.max_minutes=1.25", "train.lr_patience=0"]


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "overrides"), [
    ("elman_rnn", SMALL_DATES),
    ("luong_lstm", [*LONGER, "model.encoder_layers=1", "model.decoder_layers=1"]),
    ("bahdanau_gru", [*LONGER, "model.direction=forward", "model.input_feeding=false", "model.init=zeros"]),
    ("cho_gru", [*LONGER, "model.hidden_size=128"]),
    ("sutskever_lstm", [*LONGER, "model.hidden_size=128", "model.encoder_layers=1", "model.decoder_layers=1"]),
])
def test_variant_learns_dates(variant: str, overrides: list[str], tmp_path: Path) -> None:
    result = train(compose_config([f"model={variant}", *SMALL_RNN, *overrides]), tmp_path)
    print(f"{variant}: test exact match {result['exact']:.2f}%")  # shown with pytest -s
    assert result["exact"] >= 98.0
