"""Checkpoints: written atomically, loaded without executing code (``weights_only=True``), checked before a
model takes their weights, averaged, and kept or dropped after each validation (:class:`Checkpoints`). Their file
names are the run directory's (``nmt.rundir.RunDir``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nmt import NmtError, cannot_write
from nmt.rundir import RunDir


def save(obj: dict[str, Any], path: Path) -> None:
    """Write to a temporary file, then rename: a crash at any moment leaves the previous file intact.

    A failed write (a full disk, a missing folder) is one ``NmtError`` line naming ``path``, and removes the
    temporary file; any other failure (an object that cannot be saved) removes it too and propagates.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise cannot_write(e, path) from None
        raise


def load(path: Path) -> dict[str, Any]:
    """Load a checkpoint with tensors and plain Python values only; any failure names the file."""
    if not path.is_file():
        raise NmtError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a corrupt file: report them all the same way
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NmtError(f"cannot read checkpoint {path}: {reason}") from None


def step_checkpoints(run_dir: Path) -> list[Path]:
    """A run's kept validation checkpoints, oldest first (:meth:`RunDir.step_checkpoints`)."""
    return RunDir(run_dir).step_checkpoints()


class Checkpoints:
    """The weights of every validation in ``checkpoints/step-N.pt``, of which the last ``keep_last`` and the best
    ``keep_best`` (by their scores in ``checkpoints/index.json``) are kept, for ``nmt average``."""

    def __init__(self, run_dir: RunDir, keep_last: int, keep_best: int, higher_is_better: bool) -> None:
        self.run_dir, self.keep_last, self.keep_best = run_dir, keep_last, keep_best
        self.sign = 1.0 if higher_is_better else -1.0

    def add(self, weights: dict[str, Any], step: int, value: float) -> None:
        """Keep the weights of the validation at ``step``, which scored ``value``; drop those no longer kept."""
        if self.keep_last <= 0 and self.keep_best <= 0:
            return
        self.run_dir.checkpoints.mkdir(exist_ok=True)
        index = self.run_dir.checkpoint_index
        scores = json.loads(index.read_text()) if index.exists() else {}
        save({"model": weights, "step": step}, self.run_dir.step_checkpoint(step))
        scores[str(step)] = value
        last = sorted(scores, key=int)[-self.keep_last:] if self.keep_last > 0 else []
        best = sorted(scores, key=lambda k: -self.sign * scores[k])[: self.keep_best]
        for k in set(scores) - set(last) - set(best):
            self.run_dir.step_checkpoint(k).unlink(missing_ok=True)
            del scores[k]
        tmp = index.with_name(index.name + ".tmp")
        tmp.write_text(json.dumps(scores, indent=0))
        os.replace(tmp, index)


def average(paths: list[Path]) -> dict[str, Any]:
    """The element-wise mean of the model weights in ``paths`` (checkpoint averaging, Vaswani et al. 2017)."""
    if not paths:
        raise NmtError("no checkpoints to average")
    first = load_model_weights(paths[0])
    total = {name: value.double() for name, value in first.items()}
    for path in paths[1:]:
        weights = load_model_weights(path)
        if weights.keys() != total.keys():
            raise NmtError(f"cannot average {path}: its parameters differ from those of {paths[0]}")
        for name, value in weights.items():
            total[name] += value.double()
    return {"model": {name: (value / len(paths)).to(first[name].dtype) for name, value in total.items()}}


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def load_model_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model weights of the checkpoint ``path``. A file that is not an nmt checkpoint, and non-finite
    weights (a diverged training), are each one ``NmtError`` line naming the file."""
    state = load(path)
    if not isinstance(state, dict) or "model" not in state:
        found = f"keys {', '.join(map(str, state))}" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise NmtError(f"{path} is not an nmt checkpoint: no 'model' entry of weights (found {found})")
    weights = state["model"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise NmtError(f"{path} is not an nmt checkpoint: its 'model' entry is not a dict of tensors")
    broken = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
        raise NmtError(f"checkpoint {path} has non-finite weights (NaN or infinity) in {broken[0]}{more}: its "
                       f"training diverged; use another checkpoint")
    return weights


def load_weights(model: nn.Module, path: Path) -> None:
    """Load the weights of the checkpoint ``path`` into ``model``: checked as :func:`load_model_weights` does,
    and weights that do not fit the model are one ``NmtError`` line naming the file, the first differing
    parameter and both shapes."""
    weights = load_model_weights(path)
    expected = model.state_dict()
    problems = [f"parameter {k} has shape {_shape(weights[k])} in the checkpoint, {_shape(v)} in the model"
                for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    problems += [f"it has no weights for parameter {k}" for k in expected if k not in weights]
    problems += [f"it has weights for {k}, which the model does not have" for k in weights if k not in expected]
    if problems:
        more = f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else ""
        raise NmtError(f"checkpoint {path} does not fit the run's model: {problems[0]}{more}")
    model.load_state_dict(weights)
