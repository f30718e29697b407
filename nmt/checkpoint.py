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
