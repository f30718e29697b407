"""Recurrent variants of the model family learn the date task.

Each test trains one `conf/model/` choice, shrunk to the date task's size, for a number of epochs of the full
20,000-sentence task (a budget in epochs: a slower machine trains as much, only for longer), halving the learning rate
whenever dev stalls, and asserts its exact-match accuracy on the held-out test split. Dev exact match after each
epoch, measured (2 threads): luong_lstm 3.2, 65.8, 99.2, 100.0 (Intel Xeon); bahdanau_gru (left-to-right, no input
feeding, zero init) 57.2, 95.2, 99.4, 100.0; cho_gru 3.4, 68.7, 96.0, 98.4, 99.4, 99.9; sutskever_lstm (one layer each
side) 0.0, 3.6, 34.1, 78.9, 91.3, 97.5, 98.3, 98.6. Test exact match (2 threads): luong_lstm 98.7 after 3 (99.8
after 4), bahdanau_gru 99.2 after 3 (Intel Xeon); cho_gru 97.6 after 4 and sutskever_lstm 89.4 after 5 (Xeon with
AMX; 98.9 after 5 and 98.5 after 6 on the Intel Xeon). Where the margin over 98.0 is under a point, the bar is 97.0,
against other CPUs' arithmetic. The two models without attention, the slowest to learn, train one epoch less than
they need for 98 (to keep the suite short) and are held to 95.0 and 85.0, 2.6 and 4.4 points under what they
measured: far above chance (about 0). The no-attention reversed-source LSTM is tested with one layer on each
side: with its two layers at these sizes it learns far more slowly, the fixed-context bottleneck made deeper.
"""

from pathlib import Path

import pytest

from nmt.train import train
from tests.conftest import SMALL_DATES, compose_config

SMALL_RNN = ["model.emb_size=64", "model.hidden_size=64", "model.decoder_hidden_size=128",
             "model.attention_size=64", "model.dropout=0.1", "train.threads=2", "train.plot_attention=0"]


def epochs(n: int) -> list[str]:
    """The full task for ``n`` epochs, halving the learning rate whenever dev stalls."""
    return [f"train.max_epochs={n}", "train.lr_patience=0"]


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "overrides", "target"), [
    ("elman_rnn", SMALL_DATES, 98.0),
    ("luong_lstm", [*epochs(3), "model.encoder_layers=1", "model.decoder_layers=1"], 97.0),
    ("bahdanau_gru", [*epochs(3), "model.direction=forward", "model.input_feeding=false", "model.init=zeros"], 98.0),
    ("cho_gru", [*epochs(4), "model.hidden_size=128"], 95.0),
    ("sutskever_lstm", [*epochs(5), "model.hidden_size=128", "model.encoder_layers=1", "model.decoder_layers=1"], 85.0),
])
def test_variant_learns_dates(variant: str, overrides: list[str], target: float, tmp_path: Path) -> None:
    result = train(compose_config([f"model={variant}", *SMALL_RNN, *overrides]), tmp_path)
    print(f"{variant}: test exact match {result['exact']:.2f}%")  # shown with pytest -s
    assert result["exact"] >= target
