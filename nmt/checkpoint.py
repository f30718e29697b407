"""Checkpoints: written atomically, loaded without executing code (``weights_only=True``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from nmt import NmtError


def save(obj: dict[str, Any], path: Path) -> None:
    """Write to a temporary file, then rename: a crash at any moment leaves the previous file intact."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
    """A run's kept validation checkpoints, ``checkpoints/step-N.pt``, oldest first."""
    paths = sorted((run_dir / "checkpoints").glob("step-*.pt"), key=lambda p: int(p.stem.removeprefix("step-")))
    if not paths:
        raise NmtError(f"no checkpoints in {run_dir / 'checkpoints'} (train.keep_last keeps them)")
    return paths


def average(paths: list[Path]) -> dict[str, Any]:
    """The element-wise mean of the model weights in ``paths`` (checkpoint averaging, Vaswani et al. 2017)."""
    if not paths:
        raise NmtError("no checkpoints to average")
    first = load(paths[0])["model"]
    total = {name: value.double() for name, value in first.items()}
    for path in paths[1:]:
        weights = load(path)["model"]
        if weights.keys() != total.keys():
            raise NmtError(f"cannot average {path}: its parameters differ from those of {paths[0]}")
        for name, value in weights.items():
            total[name] += value.double()
    return {"model": {name: (value / len(paths)).to(first[name].dtype) for name, value in total.items()}}
