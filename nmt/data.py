"""Parallel corpora: where a split's files are, and reading them with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from nmt import NmtError, dates


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, without line endings; invalid UTF-8 is an error naming the line."""
    if not path.is_file():
        raise NmtError(f"data file not found: {path}")
    lines = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                lines.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as e:
                raise NmtError(f"{path}:{number}: invalid UTF-8 ({e.reason} at byte {e.start})") from None
    return lines


def read_parallel(src_path: Path, trg_path: Path) -> tuple[list[str], list[str]]:
    """Both sides of a parallel corpus; their line counts must agree."""
    src, trg = read_lines(src_path), read_lines(trg_path)
    if len(src) != len(trg):
        raise NmtError(f"parallel files differ in length: {src_path} has {len(src)} lines, "
                       f"{trg_path} has {len(trg)}")
    return src, trg


def prepare(cfg: DictConfig, run_dir: Path) -> Path:
    """The folder holding the corpus files; the generated date task is written into the run directory."""
    if cfg.get("generate") == "dates":
        out = run_dir / "data"
        if not (out / f"{cfg.splits.train}.{cfg.src_lang}").exists():
            dates.write_splits(out, {cfg.splits[s]: cfg.sizes[s] for s in cfg.sizes}, cfg.seed,
                               cfg.src_lang, cfg.trg_lang)
        return out
    path = Path(cfg.dir)
    if not path.is_dir():
        raise NmtError(f"data directory not found: {path} (set data.dir=...)")
    return path


def split_files(cfg: DictConfig, data_dir: Path, split: str) -> tuple[Path, Path]:
    """The source and target files of ``split`` (train, dev or test), e.g. ``val.de`` and ``val.en``."""
    name = cfg.splits[split]
    return data_dir / f"{name}.{cfg.src_lang}", data_dir / f"{name}.{cfg.trg_lang}"
