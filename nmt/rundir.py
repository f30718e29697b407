"""A run directory as one object (:class:`RunDir`): the names of its files, the reading and writing of its config,
metrics and tokenizer models, the paths of its checkpoints, and its ownership.

Run directories are owned: one training at a time, and a run's files are never replaced or mixed silently.

- A lock (``RUN_DIR/.lock``, an OS file lock held while training): a second training on the same directory fails at
  once, naming the process that holds it. The OS releases the lock when its process dies, so a lock left by a
  killed run is simply taken over.
- A directory that holds a run (its ``config.yaml``, checkpoints or metrics) is trained into only with
  ``train.resume=true``, or with ``train.start_over=true``, which first moves the old run into ``RUN_DIR/old-N/``
  (nothing is deleted).
- A resumed run may change only what does not change the model or its training (``RESUMABLE_CHANGES``); any other
  difference from the saved ``config.yaml`` is refused, naming the keys, before a file is touched.
- ``config.yaml`` is written after these checks, atomically: the resolved config the run was given (its
  ``RunConfig.document()``), key for key; :meth:`RunDir.config` reads it back as the typed ``RunConfig``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import yaml
from omegaconf import DictConfig, OmegaConf

from nmt import NmtError, install_hint
from nmt.config import RunConfig, TokenizerConfig, validate
from nmt.tokenizer import Tokenizer, build_tokenizers, load_tokenizers

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

log = logging.getLogger(__name__)

LOCK = ".lock"
# What a resumed run may change: budgets, early stopping, logging, hardware, decoding, where the cache lives, how
# the corpus is downloaded.
RESUMABLE_CHANGES = ("train.max_epochs", "train.max_steps", "train.max_minutes", "train.patience", "train.log_every",
                     "train.threads", "train.device", "train.plot_attention", "train.resume", "train.start_over",
                     "train.test", "decode.", "data.cache_dir", "data.download", "name")

_held: dict[Path, IO[str]] = {}  # locks this process holds, by run directory


class RunDir(os.PathLike):
    """A training run's directory (``str()`` and ``os.fspath()`` give its path). The sentencepiece models are named
    by ``nmt.tokenizer``, the generated date task's ``data/`` by ``nmt.data``."""

    CONFIG = "config.yaml"  # the resolved configuration
    BEST = "best.pt"  # the weights of the best dev score
    LAST = "last.pt"  # everything needed to resume
    CHECKPOINTS = "checkpoints"  # step-N.pt: the weights of kept validations, and their scores in index.json
    METRICS = "metrics.jsonl"  # one JSON record per log interval, validation and test
    LOG = "train.log"  # written by Hydra's logging (its job is named train)
    TEST_HYP = "test.hyp"  # the test split's translations
    ATTENTION = "attention"  # plots of dev sentences' attention at each validation
    TENSORBOARD = "tensorboard"  # TensorBoard event files
    SHORTLIST = "shortlist.pt"  # the lexical table of decode.shortlist (nmt shortlist)
    RUN_FILES = (CONFIG, LAST, BEST, METRICS, CHECKPOINTS)  # any of them: the directory holds a run

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # files

    def checkpoint(self, name: str) -> Path:
        """A checkpoint file of the run by its name: ``best.pt``, ``last.pt``, ``averaged.pt``, ..."""
        return self.path / name

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def best(self) -> Path:
        return self.checkpoint(self.BEST)

    @property
    def last(self) -> Path:
        return self.checkpoint(self.LAST)

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def checkpoint_index(self) -> Path:
        return self.checkpoints / "index.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def test_hyp(self) -> Path:
        return self.path / self.TEST_HYP

    @property
    def attention(self) -> Path:
        return self.path / self.ATTENTION

    def step_checkpoint(self, step: int | str) -> Path:
        """The weights kept from the validation at update ``step``."""
        return self.checkpoints / f"step-{step}.pt"

    def step_checkpoints(self) -> list[Path]:
        """The kept validation checkpoints, ``checkpoints/step-N.pt``, oldest first."""
        paths = sorted(self.checkpoints.glob("step-*.pt"), key=lambda p: int(p.stem.removeprefix("step-")))
        if not paths:
            raise NmtError(f"no checkpoints in {self.checkpoints} (train.keep_last keeps them)")
        return paths

    # contents

    def config(self) -> RunConfig:
        """The saved ``config.yaml``, typed; a missing, unreadable or truncated file is one line naming it."""
        if not self.config_file.is_file():
            raise NmtError(f"run config not found: {self.config_file} (is {self} a training run directory?)")
        return _read_config(self.config_file)

    def save_config(self, cfg: RunConfig) -> None:
        """Write ``config.yaml``, the resolved config ``cfg`` was validated from, atomically (a temporary file, then
        rename)."""
        tmp = self.config_file.with_name(f"{self.CONFIG}.{os.getpid()}.tmp")
        try:
            OmegaConf.save(OmegaConf.create(cfg.document()), tmp)
            os.replace(tmp, self.config_file)
        finally:
            tmp.unlink(missing_ok=True)

    def metrics(self, skip_damaged: bool = False) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl``. A missing file, or a line that is not a JSON object, is one line naming
        the file (and line); with ``skip_damaged`` they are left out instead (no file: no records)."""
        path = self.metrics_file
        if not skip_damaged and not path.is_file():
            raise NmtError(f"metrics not found: {path} (is {self} a training run directory?)")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            if skip_damaged:
                return []
            raise
        records = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                if skip_damaged or not line.strip():
                    continue
                raise NmtError(f"{path}:{number}: not a JSON record ({e.msg})") from None
            if isinstance(record, dict):
                records.append(record)
            elif not skip_damaged:
                raise NmtError(f"{path}:{number}: not a JSON object")
        return records

    def metrics_log(self) -> MetricsLog:
        """The writer of ``metrics.jsonl`` and of TensorBoard's event files in ``tensorboard/``."""
        return MetricsLog(self.metrics_file, self.path / self.TENSORBOARD)

    def tokenizers(self, joint: bool) -> tuple[Tokenizer, Tokenizer]:
        """The run's source and target tokenizers (the same object when ``joint``); a missing one is one line."""
        return load_tokenizers(self.path, joint)

    def train_tokenizers(self, cfg: TokenizerConfig, src_texts: Iterable[str],
                         trg_texts: Iterable[str]) -> tuple[Tokenizer, Tokenizer]:
        """The run's tokenizers, trained on the training texts unless the run has them already."""
        return build_tokenizers(cfg, self.path, src_texts, trg_texts)

    # ownership

    def lock(self) -> None:
        """Hold the lock until this process ends (creating the directory); taken already by this process is fine,
        by another one is a one-line error naming it."""
        _lock(self.path.resolve())

    def unlock(self) -> None:
        """Release the lock (at the end of a training, so that the same process may train another run)."""
        handle = _held.pop(self.path.resolve(), None)
        if handle is not None:
            handle.truncate(0)
            handle.close()

    def holds_run(self) -> bool:
        """Whether the directory has files of a training run (not just Hydra's log or the lock)."""
        return any((self.path / name).exists() for name in self.RUN_FILES)

    def claim(self, cfg: RunConfig) -> RunConfig:
        """Lock the directory and decide what a training there may do with what it holds; returns the config to
        train with (for a resume, the saved one with the allowed changes). Nothing changes when refused."""
        if self.path.exists() and not self.path.is_dir():
            raise NmtError(f"hydra.run.dir={self} is a file, not a directory")
        self.lock()
        try:
            return self._decide(cfg)
        except NmtError:
            self.unlock()
            raise

    def _decide(self, cfg: RunConfig) -> RunConfig:
        if not self.holds_run():
            return cfg
        if cfg.train.resume:
            return self.resume_config(cfg)
        if cfg.train.start_over:
            self.move_aside()
            return cfg
        held = ", ".join(n for n in self.RUN_FILES if (self.path / n).exists())
        raise NmtError(f"{self} holds a run already ({held}): continue it with train.resume=true, or move it into "
                       f"{self}/old-N and start anew with train.start_over=true")

    def resume_config(self, cfg: RunConfig) -> RunConfig:
        """The config a resumed run trains with: ``cfg``, which may differ from the saved one only in what a resume
        may change (any other difference is refused, naming the keys); ``train.precision: auto`` keeps the
        precision the run resolved when it started."""
        return _resumed(self.config(), cfg, self)

    def move_aside(self) -> Path:
        """Move the run into ``old-N`` (the first free N), keeping the lock in place."""
        n = 1
        while (self.path / f"old-{n}").exists():
            n += 1
        target = self.path / f"old-{n}"
        target.mkdir()
        for entry in sorted(self.path.iterdir()):
            if entry.name != LOCK and entry != target and not (entry.is_dir() and entry.name.startswith("old-")):
                entry.rename(target / entry.name)
        log.info("moved the previous run in %s to %s", self, target)
        return target


class MetricsLog:
    """Append-only JSON lines (``metrics.jsonl``), and TensorBoard event files in ``board_dir`` when the
    ``tensorboard`` package is installed (scalars ``SPLIT/KEY`` over update steps)."""

    def __init__(self, path: Path, board_dir: Path) -> None:
        self.path, self.board_dir = path, board_dir
        self._board: Any = None

    def write(self, **record: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        board = self._tensorboard()
        if board is not None and "step" in record:
            for key, value in record.items():
                if key not in ("split", "step") and isinstance(value, (int, float)):
                    board.add_scalar(f"{record['split']}/{key}", value, record["step"])
            board.flush()

    def truncate(self, step: int) -> None:
        """Drop the lines a stopped run wrote after its last checkpoint (the resumed run writes them again), and a
        last line a kill cut short."""

        def before(line: str) -> bool:
            try:
                return json.loads(line).get("step", 0) <= step
            except json.JSONDecodeError:
                return False

        if self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            self.path.write_text("".join(x for x in lines if before(x)), encoding="utf-8")

    def _tensorboard(self) -> Any:
        if self._board is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                log.info("no TensorBoard logs (metrics.jsonl only): tensorboard is not installed (%s)",
                         install_hint("tensorboard"))
                self._board = False
            else:
                self._board = SummaryWriter(str(self.board_dir))
        return self._board or None


def _try_lock(handle: IO[str]) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _lock(run_dir: Path) -> None:
    """:meth:`RunDir.lock` of the resolved path ``run_dir``."""
    if run_dir in _held:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK, "a+", encoding="utf-8")  # noqa: SIM115 (held open: the lock lives with the file)
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


def _read_config(path: Path) -> RunConfig:
    """A ``config.yaml`` read and validated; damage is one line naming the file (and the YAML line)."""
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


def _resumed(saved: RunConfig, cfg: RunConfig, run_dir: RunDir) -> RunConfig:
    """:meth:`RunDir.resume_config` with the run's ``saved`` config."""
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
