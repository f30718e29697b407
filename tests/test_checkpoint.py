"""Checkpoints load without running code, and failures name the file."""

import pickle
from pathlib import Path

import pytest
import torch

from nmt import NmtError, checkpoint


class Payload:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def test_round_trip(tmp_path: Path) -> None:
    state = {"model": {"w": torch.arange(3.0)}, "progress": {"step": 7, "best": None}}
    checkpoint.save(state, tmp_path / "a.pt")
    loaded = checkpoint.load(tmp_path / "a.pt")
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["progress"] == state["progress"]
    assert not (tmp_path / "a.pt.tmp").exists()


def test_code_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(NmtError, match=r"cannot read checkpoint .*evil\.pt"):
        checkpoint.load(tmp_path / "evil.pt")


def test_corrupt_and_missing_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint" + pickle.dumps(1))
    with pytest.raises(NmtError, match=r"cannot read checkpoint .*bad\.pt") as err:
        checkpoint.load(tmp_path / "bad.pt")
    assert "\n" not in str(err.value)
    with pytest.raises(NmtError, match=r"checkpoint not found: .*none\.pt"):
        checkpoint.load(tmp_path / "none.pt")


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    checkpoint.save({"v": torch.ones(1)}, tmp_path / "last.pt")
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises, the old file must survive
        checkpoint.save({"v": lambda: 0}, tmp_path / "last.pt")
    assert torch.equal(checkpoint.load(tmp_path / "last.pt")["v"], torch.ones(1))
