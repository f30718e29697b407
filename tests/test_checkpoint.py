"""Checkpoints load without running code, failures name the file, and a run keeps the last and the best of its
validations' checkpoints."""

import pickle
from pathlib import Path

import pytest
import torch

from nmt import NmtError, checkpoint
from nmt.checkpoint import Checkpoints
from nmt.rundir import RunDir


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


def test_checkpoints_keep_the_last_and_the_best(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    kept = Checkpoints(run, keep_last=2, keep_best=2, higher_is_better=True)
    for step, bleu in [(1, 10.0), (2, 30.0), (3, 25.0), (4, 5.0), (5, 7.0), (6, 6.0)]:
        kept.add({"w": torch.full((2,), float(step))}, step, bleu)
    assert [p.name for p in run.step_checkpoints()] == ["step-2.pt", "step-3.pt", "step-5.pt", "step-6.pt"]
    assert checkpoint.step_checkpoints(tmp_path) == run.step_checkpoints()


def test_lower_is_better_keeps_the_lowest_and_none_is_kept_when_asked(tmp_path: Path) -> None:
    lowest = RunDir(tmp_path / "ppl")
    lowest.path.mkdir()
    kept = Checkpoints(lowest, keep_last=1, keep_best=1, higher_is_better=False)
    for step, ppl in [(1, 9.0), (2, 3.0), (3, 4.0), (4, 5.0)]:
        kept.add({"w": torch.zeros(1)}, step, ppl)
    assert [p.name for p in lowest.step_checkpoints()] == ["step-2.pt", "step-4.pt"]
    none = RunDir(tmp_path / "none")
    none.path.mkdir()
    Checkpoints(none, keep_last=0, keep_best=0, higher_is_better=True).add({"w": torch.zeros(1)}, 1, 1.0)
    with pytest.raises(NmtError, match=rf"^no checkpoints in {none.checkpoints} \(train\.keep_last keeps them\)$"):
        none.step_checkpoints()
