"""Attention plots: the alignment matrix a_ij as a heatmap, output tokens down, source tokens across."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402


def plot_attention(weights: Tensor, src_tokens: list[str], trg_tokens: list[str], path: Path,
                   title: str | None = None) -> Path:
    """Draw ``weights`` [len(trg_tokens), len(src_tokens)] to ``path`` (PNG, SVG or PDF by its suffix)."""
    if tuple(weights.shape) != (len(trg_tokens), len(src_tokens)):
        raise ValueError(f"attention of shape {tuple(weights.shape)} for {len(trg_tokens)} target and "
                         f"{len(src_tokens)} source tokens")
    cell = 0.32
    fig, ax = plt.subplots(figsize=(max(4.0, 1.8 + cell * len(src_tokens)), max(3.0, 1.4 + cell * len(trg_tokens))))
    image = ax.imshow(weights.detach().cpu().float().numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(src_tokens)), src_tokens, rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(len(trg_tokens)), trg_tokens, fontsize=9)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
