"""Plots: attention matrices a_ij as heatmaps (output tokens down, source tokens across), of subwords or words,
of one head or a grid of heads; the attention of dev sentences during training; training curves of any logged
metric against updates or time; gradient flow through time (``nmt.gradients``) as a map and as curves."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.colors import LogNorm
from matplotlib.ticker import LogFormatter
from torch import Tensor

from nmt import NmtError, check_image_path
from nmt.rundir import RunDir
from nmt.translate import Translator
from nmt.words import WORD_START, word_attention, words

EOS_LABEL = "</s>"
CELL = 0.32  # inches per token


def _check(weights: Tensor, dims: int, src_tokens: list[str], trg_tokens: list[str], path: Path) -> None:
    if weights.dim() != dims or tuple(weights.shape[-2:]) != (len(trg_tokens), len(src_tokens)):
        raise ValueError(f"attention of shape {tuple(weights.shape)} for {len(trg_tokens)} target and "
                         f"{len(src_tokens)} source tokens")
    check_image_path(path)


def _figure(rows: int, cols: int, panel_w: float, panel_h: float, src_tokens: list[str],
            trg_tokens: list[str]) -> tuple[Any, Any]:
    """A figure sized to the sentence: room for each token, for the longest labels and for the colorbar."""
    width = 1.6 + 0.08 * max(map(len, trg_tokens)) + cols * (panel_w + 0.3)
    height = 1.2 + 0.06 * max(map(len, src_tokens)) + rows * (panel_h + 0.4)
    return plt.subplots(rows, cols, figsize=(width, height), squeeze=False, layout="constrained")


def _draw(ax: Any, weights: Tensor, src_tokens: list[str], trg_tokens: list[str], x: bool = True,
          y: bool = True) -> Any:
    image = ax.imshow(weights.detach().cpu().float().numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(src_tokens)), src_tokens if x else [], rotation=60, ha="right",
                  rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(len(trg_tokens)), trg_tokens if y else [], fontsize=9)
    return image


def _save(fig: Any, path: Path, title: str | None) -> Path:
    if title:
        width = fig.get_size_inches()[0]
        fig.suptitle(textwrap.fill(title, max(40, int(width * 11))), fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_attention(weights: Tensor, src_tokens: list[str], trg_tokens: list[str], path: Path,
                   title: str | None = None) -> Path:
    """Draw ``weights`` [len(trg_tokens), len(src_tokens)] to ``path`` (PNG, SVG or PDF by its suffix)."""
    _check(weights, 2, src_tokens, trg_tokens, path)
    fig, axes = _figure(1, 1, max(2.5, CELL * len(src_tokens)), max(1.8, CELL * len(trg_tokens)), src_tokens,
                        trg_tokens)
    ax = axes[0, 0]
    image = _draw(ax, weights, src_tokens, trg_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    return _save(fig, path, title)


def plot_attention_grid(weights: Tensor, src_tokens: list[str], trg_tokens: list[str], path: Path,
                        title: str | None = None, panel_titles: list[str] | None = None) -> Path:
    """Draw attention matrices ``weights`` [panels, len(trg_tokens), len(src_tokens)] (e.g. the heads of a layer)
    in one figure, at most four in a row; the tokens label the outer axes."""
    _check(weights, 3, src_tokens, trg_tokens, path)
    panels = weights.size(0)
    cols = min(4, panels)
    rows = math.ceil(panels / cols)
    fig, axes = _figure(rows, cols, max(2.0, CELL * len(src_tokens)), max(1.5, CELL * len(trg_tokens)),
                        src_tokens, trg_tokens)
    image = None
    for k, ax in enumerate(axes.flat):
        if k >= panels:
            ax.set_axis_off()
            continue
        image = _draw(ax, weights[k], src_tokens, trg_tokens, x=k + cols >= panels, y=k % cols == 0)
        if panel_titles:
            ax.set_title(panel_titles[k], fontsize=10)
    fig.colorbar(image, ax=axes, fraction=0.03, pad=0.01)
    return _save(fig, path, title)


def to_words(weights: Tensor, src_pieces: list[str], trg_pieces: list[str]) -> tuple[Tensor, list[str], list[str]]:
    """Merge subword attention [..., target pieces + EOS, source pieces + EOS] into words (sum over a source word's
    pieces, average over a target word's pieces: ``nmt.words.word_attention``); EOS stays a word of its own.
    Returns the word attention and the detokenized words of both sides."""
    src = [*src_pieces, WORD_START + EOS_LABEL]
    trg = [*trg_pieces, WORD_START + EOS_LABEL][: weights.size(-2)]
    flat = weights.reshape(-1, *weights.shape[-2:])
    merged = torch.stack([word_attention(w, src, trg) for w in flat])
    return merged.reshape(*weights.shape[:-2], *merged.shape[-2:]), words(src), words(trg)


def plot_translation(attention: Tensor, src_pieces: list[str], trg_pieces: list[str], path: Path,
                     title: str | None = None, by_words: bool = False,
                     panel_titles: list[str] | None = None) -> Path:
    """Draw a translation's attention [target pieces + EOS, source pieces + EOS] labeled with its pieces (or,
    ``by_words``, merged into words), or a grid of such matrices [panels, ...] with ``panel_titles``."""
    src, trg = [*src_pieces, EOS_LABEL], [*trg_pieces, EOS_LABEL][: attention.size(-2)]
    if by_words:
        attention, src, trg = to_words(attention, src_pieces, trg_pieces)
    if attention.dim() == 3:
        return plot_attention_grid(attention, src, trg, path, title, panel_titles)
    return plot_attention(attention, src, trg, path, title)


def select_heads(attention: Tensor, layer: int | None = None, head: int | None = None,
                 every_head: bool = False) -> tuple[Tensor, str]:
    """From per-layer, per-head attention [layers, heads, T, S]: layer ``layer`` (1-based, default the last), and
    its head ``head`` (1-based), the mean over its heads, or with ``every_head`` all its heads [heads, T, S].
    Returns the attention and a description for a title."""
    layers, heads = attention.shape[:2]
    layer = layers if layer is None else layer
    if not 1 <= layer <= layers:
        raise NmtError(f"layer {layer} out of range: the model has {layers} decoder layers (1 to {layers})")
    if every_head:
        return attention[layer - 1], f"layer {layer}"
    if head is None:
        return attention[layer - 1].mean(0), f"layer {layer}, mean of {heads} heads"
    if not 1 <= head <= heads:
        raise NmtError(f"head {head} out of range: the model has {heads} heads (1 to {heads})")
    return attention[layer - 1, head - 1], f"layer {layer}, head {head}"


def plot_dev_attention(translator: Translator, sentences: list[str], out_dir: Path, step: int) -> list[Path]:
    """Translate ``sentences`` greedily and draw their attention to ``out_dir/step{step}_{i}.png`` (i from 1);
    nothing for a model without attention. Returns the files written."""
    greedy = Translator(translator.model, translator.src_tok, translator.trg_tok, translator.decode.greedy(),
                        translator.max_src_length)
    paths = []
    for i, (text, t) in enumerate(zip(sentences, greedy.translate(sentences), strict=True), 1):
        if t.attention is None:
            break
        paths.append(plot_translation(t.attention, t.src_pieces, t.trg_pieces, out_dir / f"step{step}_{i}.png",
                                      title=f"step {step}:  {text}  ->  {t.text}"))
    return paths


METRIC_TITLES = {"loss": "loss (per target token)", "ppl": "dev perplexity", "bleu": "dev BLEU", "chrf": "dev chrF",
                 "exact": "dev exact match (%)"}
AXES = {"step": "update step", "elapsed": "training time (s)"}


def plot_metrics(run_dirs: list[Path], path: Path, labels: list[str] | None = None,
                 metrics: Sequence[str] = ("loss", "ppl", "bleu"), against: Sequence[str] = ("step",)) -> Path:
    """Training curves of one or more runs, one color per run: a panel per logged metric (``loss``: training and
    dev; any other: dev; ``ppl`` on a log scale), a row per x axis in ``against`` (``step``: update steps,
    ``elapsed``: seconds of training). ``labels`` name the runs in the legends (default: the folder names). A
    metric no run logged is one ``NmtError`` line."""
    check_image_path(path)
    labels = labels or [Path(d).name for d in run_dirs]
    runs = [RunDir(d).metrics() for d in run_dirs]
    logged = {key for records in runs for r in records if r.get("split") == "dev" for key in r}
    if unknown := [m for m in metrics if m not in logged]:
        raise NmtError(f"no run logged the dev metric {unknown[0]!r} (logged: {', '.join(sorted(logged))})")
    if bad := [a for a in against if a not in AXES]:
        raise NmtError(f"cannot draw against {bad[0]!r}: choose {' or '.join(AXES)}")
    fig, axes = plt.subplots(len(against), len(metrics), figsize=(5 * len(metrics), 4.2 * len(against)),
                             squeeze=False, layout="constrained")
    for row, x in enumerate(against):
        for col, metric in enumerate(metrics):
            ax = axes[row][col]
            for k, (label, records) in enumerate(zip(labels, runs, strict=True)):
                _curves(ax, records, metric, x, label, f"C{k % 10}")
            ax.set_title(METRIC_TITLES.get(metric, f"dev {metric}"), fontsize=11)
            ax.set_xlabel(AXES[x])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            if metric == "ppl":
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(LogFormatter())
                ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    return _save(fig, path, None)


def _curves(ax: Any, records: list[dict[str, Any]], metric: str, x: str, label: str, color: str) -> None:
    """One run's curve of ``metric`` against ``x`` (the training loss too, for ``loss``)."""
    def series(split: str) -> tuple[list, list]:
        points = [(r[x], r[metric]) for r in records if r.get("split") == split and metric in r and x in r]
        return [a for a, _ in points], [v for _, v in points]

    if metric == "loss":
        ax.plot(*series("train"), color=color, alpha=0.6, label=f"{label} (train)")
        ax.plot(*series("dev"), color=color, linestyle="--", marker="o", label=f"{label} (dev)")
    else:
        ax.plot(*series("dev"), color=color, marker="o", label=label)


def plot_gradient_map(norms: Tensor, src_tokens: list[str], trg_tokens: list[str], path: Path,
                      title: str | None = None) -> Path:
    """g_ij = ||d log p(y_i) / d e_j|| (``nmt.gradients.gradient_map``) as a heatmap, output tokens down, source
    tokens across, on a log colour scale: the orders of magnitude between near and far are the lesson."""
    _check(norms, 2, src_tokens, trg_tokens, path)
    values = norms.detach().cpu().float().clamp(min=1e-12)
    fig, axes = _figure(1, 1, CELL * len(src_tokens), CELL * len(trg_tokens), src_tokens, trg_tokens)
    ax = axes[0][0]
    image = ax.imshow(values.numpy(), cmap="magma", norm=LogNorm(vmin=max(float(values.min()),
                                                                          float(values.max()) * 1e-8),
                                                                 vmax=float(values.max())), aspect="auto")
    ax.set_xticks(range(len(src_tokens)), src_tokens, rotation=60, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(len(trg_tokens)), trg_tokens, fontsize=9)
    fig.colorbar(image, ax=ax, label="gradient norm")
    return _save(fig, path, title)


def plot_gradient_flow(curves: dict[str, dict[int, float]], path: Path, title: str | None = None) -> Path:
    """Mean gradient norm against the length of the recurrent path (``nmt.gradients.flow_by_path``), one line per
    model, on a log scale: a straight falling line is a gradient vanishing geometrically."""
    check_image_path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for k, (name, flow) in enumerate(curves.items()):
        ax.plot(list(flow), list(flow.values()), marker="o", markersize=3, color=f"C{k % 10}", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("steps between source word j and target word i through the recurrence")
    ax.set_ylabel("mean ||d log p(y_i) / d e_j||")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    return _save(fig, path, title)


def plot_bleu_by_length(results: dict[str, list[tuple[str, int, float]]], path: Path) -> Path:
    """BLEU against source sentence length, one line per system (``nmt.evaluate.bleu_by_length`` rows)."""
    check_image_path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    for k, (name, rows) in enumerate(results.items()):
        ax.plot([f"{label}\n({n})" for label, n, _ in rows], [b for _, _, b in rows], marker="o", color=f"C{k % 10}",
                label=name)
    ax.set_xlabel("source sentence length in words (sentences)")
    ax.set_ylabel("BLEU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return _save(fig, path, "BLEU by source sentence length")
