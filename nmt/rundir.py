"""Run directories are owned: one training at a time, and a run's files are never replaced or mixed silently.

- A lock (``RUN_DIR/.lock``, an OS file lock held while training): a second training on the same directory fails at
  once, naming the process that holds it. The OS releases the lock when its process dies, so a lock left by a
  killed run is simply taken over.
- A directory that holds a run (its ``config.yaml``, checkpoints or metrics) is trained into only with
  ``train.resume=true``, or with ``train.start_over=true``, which first moves the old run into ``RUN_DIR/old-N/``
  (nothing is deleted).
- A resumed run may change only what does not change the model or its training (``RESUMABLE_CHANGES``); any other
  difference from the saved ``config.yaml`` is refused, naming the keys, before a file is touched.
- ``config.yaml`` is written after these checks, atomically: the resolved config the run was given (its
  ``RunConfig.document()``), key for key; ``load_config`` reads it back as the typed ``RunConfig``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from pathlib import Path
from typing import IO, Any

import yaml
from omegaconf import DictConfig, OmegaConf

from nmt import NmtError
from nmt.config import RunConfig, validate

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

log = logging.getLogger(__name__)

LOCK = ".lock"
RUN_FILES = ("config.yaml", "last.pt", "best.pt", "metrics.jsonl", "checkpoints")
# What a resumed run may change: budgets, early stopping, logging, hardware, decoding, where the cache lives, how
# the corpus is downloaded.
RESUMABLE_CHANGES = ("train.max_epochs", "train.max_steps", "train.max_minutes", "train.patience", "train.log_every",
                     "train.threads", "train.device", "train.plot_attention", "train.resume", "train.start_over",
                     "train.test", "decode.", "data.cache_dir", "data.download", "name")

_held: dict[Path, IO[str]] = {}  # locks this process holds, by run directory


def _try_lock(handle: IO[str]) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def lock(run_dir: Path) -> None:
    """Hold ``run_dir``'s lock until this process ends (creating the directory); taken already by this process
    is fine, by another one is a one-line error naming it."""
    run_dir = run_dir.resolve()
    if run_dir in _held:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open: the lock lives as long as the file)
    if not _try_lock(handle):
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise NmtError(f"{run_dir} is in use by {holder}: wait for it to end, or train into another hydra.run.dir")
    handle.seek(0)
    previous = handle.read().strip()
    if previous:
        log.info("%s: taking over the lock of %s, which is no longer running", run_dir, previous)
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()} since "
                 f"{dt.datetime.now().isoformat(timespec='seconds')}\n")
    handle.flush()
    _held[run_dir] = handle


def unlock(run_dir: Path) -> None:
    """Release the lock (at the end of a training, so that the same process may train another run)."""
    handle = _held.pop(run_dir.resolve(), None)
    if handle is not None:
        handle.truncate(0)
        handle.close()


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` has files of a training run (not just Hydra's log or the lock)."""
    return any((run_dir / name).exists() for name in RUN_FILES)


def load_config(run_dir: Path) -> RunConfig:
    """A run's saved ``config.yaml``, typed; a missing, unreadable or truncated file is one line naming it."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise NmtError(f"run config not found: {path} (is {run_dir} a training run directory?)")
    try:
        cfg = OmegaConf.load(path)
    except yaml.YAMLError as e:
        mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        raise NmtError(f"cannot read run config {path}:{where} {problem or str(e).splitlines()[0]}") from None
    except (OSError, ValueError) as e:
        raise NmtError(f"cannot read run config {path}: {e}") from None
    if not isinstance(cfg, DictConfig):
        raise NmtError(f"{path} is not an nmt run config (not a mapping)")
    try:
        return validate(cfg, check_files=False)
    except NmtError as e:
        raise NmtError(f"{path} is damaged or not an nmt run config: {e}") from None


def _leaves(cfg: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(cfg, dict):
        out: dict[str, Any] = {}
        for key, value in cfg.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: cfg}


def config_changes(saved: RunConfig, new: RunConfig) -> list[str]:
    """The keys whose values differ between a run's saved config and a new one, as 'key: old -> new'."""
    old, now = _leaves(saved.document()), _leaves(new.document())
    return [f"{key}: {old.get(key, '(none)')!r} -> {now.get(key, '(none)')!r}"
            for key in sorted(old.keys() | now.keys()) if old.get(key) != now.get(key)]


def resume_config(run_dir: Path, cfg: RunConfig) -> RunConfig:
    """The config a resumed run trains with: ``cfg``, which may differ from the saved one only in what a resume may
    change (any other difference is refused, naming the keys); ``train.precision: auto`` keeps the precision the
    run resolved when it started."""
    saved = load_config(run_dir)
    new = cfg.with_setting("train.precision", saved.train.precision) if cfg.train.precision == "auto" else cfg
    resumable = RESUMABLE_CHANGES
    if saved.train.schedule == "cosine":  # train.max_steps is where its learning rate ends: part of the training
        resumable = tuple(key for key in RESUMABLE_CHANGES if key != "train.max_steps")
    forbidden = [c for c in config_changes(saved, new) if not c.split(":")[0].startswith(resumable)]
    if forbidden:
        raise NmtError(f"{run_dir} holds a run with another configuration; a resume may change only budgets "
                       f"(not train.max_steps under train.schedule=cosine), patience, logging, threads, device and "
                       f"decoding, not: {'; '.join(forbidden)} (train into another hydra.run.dir, or use "
                       f"train.start_over=true)")
    return new


def move_aside(run_dir: Path) -> Path:
    """Move the run in ``run_dir`` into ``run_dir/old-N`` (the first free N), keeping the lock in place."""
    n = 1
    while (run_dir / f"old-{n}").exists():
        n += 1
    target = run_dir / f"old-{n}"
    target.mkdir()
    for entry in sorted(run_dir.iterdir()):
        if entry.name != LOCK and entry != target and not (entry.is_dir() and entry.name.startswith("old-")):
            entry.rename(target / entry.name)
    log.info("moved the previous run in %s to %s", run_dir, target)
    return target


def claim(run_dir: Path, cfg: RunConfig) -> RunConfig:
    """Lock ``run_dir`` and decide what a training there may do with what it holds; returns the config to train
    with (for a resume, the saved one with the allowed changes). Nothing in the directory changes when refused."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NmtError(f"hydra.run.dir={run_dir} is a file, not a directory")
    lock(run_dir)
    try:
        return _decide(run_dir, cfg)
    except NmtError:
        unlock(run_dir)
        raise


def _decide(run_dir: Path, cfg: RunConfig) -> RunConfig:
    if not holds_run(run_dir):
        return cfg
    if cfg.train.resume:
        return resume_config(run_dir, cfg)
    if cfg.train.start_over:
        move_aside(run_dir)
        return cfg
    raise NmtError(f"{run_dir} holds a run already ({', '.join(n for n in RUN_FILES if (run_dir / n).exists())}): "
                   f"continue it with train.resume=true, or move it into {run_dir}/old-N and start anew with "
                   f"train.start_over=true")


def save_config(cfg: RunConfig, run_dir: Path) -> None:
    """Write ``config.yaml``, the resolved config ``cfg`` was validated from, atomically (a temporary file, then
    rename)."""
    path = run_dir / "config.yaml"
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        OmegaConf.save(OmegaConf.create(cfg.document()), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
