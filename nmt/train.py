"""Training put together: :func:`train` launches a run in its directory, builds its :class:`~nmt.trainer.Trainer`
(:func:`build_trainer`) and runs it; ``nmt train [OVERRIDES]`` (``nmt.cli.train``) is Hydra's entry around it.

Tests and tools call :func:`train` with a config composed by Hydra's compose API (turned there into the typed
``nmt.config.RunConfig`` that everything below reads) or a ``RunConfig``. The run directory (``nmt.rundir.RunDir``)
receives the resolved ``config.yaml``, the sentencepiece model(s), ``best.pt`` and ``last.pt``, ``checkpoints/``,
``metrics.jsonl`` and ``test.hyp`` (and ``data/``, the generated date task's splits, for the default recipe).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from nmt import NmtError, checkpoint, data, distributed
from nmt.config import LOWER_IS_BETTER, RunConfig, check_data_files, validate
from nmt.hardware import Precision, resolve_device, resolve_precision, usable_cores
from nmt.interrupts import Interrupted, Interrupts
from nmt.models.builder import build_model, count_parameters
from nmt.optim import build_optimizer, build_scheduler
from nmt.rundir import MetricsLog, RunDir
from nmt.trainer import Place, Progress, Trainer, TrainingData, Validator
from nmt.translate import Translator

log = logging.getLogger(__name__)


def train(cfg: RunConfig | DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train the model ``cfg`` describes in ``run_dir``; returns the final test scores. A config composed by Hydra
    is validated here, where it enters, into the typed ``RunConfig``.

    Under torchrun every rank calls this; rank 0 prepares the data and tokenizer first and alone writes files.
    """
    run, directory = cfg if isinstance(cfg, RunConfig) else validate(cfg, check_files=False), RunDir(run_dir)
    with session(directory) as interrupts:
        try:
            launched = launch(run, directory)
            if launched.progress.finished:
                log.info("%s: this run has finished already; nothing to do", launched.run_dir)
                return launched.progress.result
            trainer = build_trainer(launched, interrupts)
        except Interrupted as e:
            raise Interrupted(e.signum, message=f"interrupted by {e.name} before the first update: nothing to "
                                                f"save") from None
        return trainer.run()


@contextlib.contextmanager
def session(run_dir: RunDir) -> Iterator[Interrupts]:
    """A training in ``run_dir``: SIGINT and SIGTERM are handled (``nmt.interrupts``); at the end rank 0 releases
    the directory's lock, and the process group is left (all ranks together when all got to the end)."""
    ended = False
    try:
        with Interrupts() as interrupts:
            yield interrupts
        ended = True
    except Interrupted as e:
        if e.abort:
            raise Interrupted(e.signum, abort=True, message=f"aborted by a second {e.name}: the run resumes from its "
                                                            f"last.pt (train.resume=true)") from None
        raise
    finally:
        if distributed.is_main_process():
            run_dir.unlock()
        distributed.shutdown(synchronize=ended)


@dataclass
class Launch:
    """A run this process takes part in: the config to train with (for a resume, the saved one with the allowed
    changes), its directory, where this process trains, and where the run stands (``state``: ``last.pt``, when it
    resumes)."""

    cfg: RunConfig
    run_dir: RunDir
    place: Place
    progress: Progress
    state: dict[str, Any] | None
    kept_precision: bool  # a resumed run keeps the precision train.precision=auto chose when it started


def launch(run: RunConfig, run_dir: RunDir) -> Launch:
    """Check the data files, join the process group, claim the run directory, set threads and seed, and read
    ``last.pt`` when resuming."""
    check_data_files(run.data)
    device = resolve_device(run.train.device)
    place = Place(device, *distributed.setup(device))
    if not place.is_main:
        logging.getLogger("nmt").setLevel(logging.WARNING)
    run_dir = RunDir(distributed.broadcast(str(run_dir)))
    cfg = _claim(run_dir, run, place.is_main)
    tc = cfg.train
    torch.set_num_threads(tc.threads if tc.threads > 0 else
                          max(1, usable_cores() // distributed.local_world_size(place.world)))
    torch.manual_seed(cfg.seed + place.rank)
    state = checkpoint.load(run_dir.last) if tc.resume and run_dir.last.exists() else None
    progress = Progress() if state is None else Progress.from_checkpoint(state, run_dir.last)
    return Launch(cfg, run_dir, place, progress, state, run.train.precision == "auto" != tc.precision)


def _claim(run_dir: RunDir, run: RunConfig, is_main: bool) -> RunConfig:
    """Rank 0 claims the run directory (``RunDir.claim``); every rank gets the outcome."""
    outcome: tuple[str, Any] = ("", None)
    if is_main:
        try:
            outcome = ("", run_dir.claim(run).document())
        except NmtError as e:
            outcome = (str(e), None)
    error, document = distributed.broadcast(outcome)
    if error:
        raise NmtError(error)
    return RunConfig.model_validate(document)


def build_trainer(launched: Launch, interrupts: Interrupts) -> Trainer:
    """The trainer of a launched run with its parts built: the data and tokenizers (rank 0 first), the model and
    the precision it trains in (which ``config.yaml`` records), optimizer, schedule, translators, checkpoints and
    metrics log, all restored from ``last.pt`` when the run resumes."""
    place, run_dir = launched.place, launched.run_dir
    corpus = load_training_data(launched.cfg, run_dir, place.is_main)
    model = build_model(launched.cfg.model, len(corpus.src_tok), len(corpus.trg_tok)).to(place.device)
    precision = _precision(launched, model)
    cfg = launched.cfg.with_setting("train.precision", precision.name)
    if place.is_main:
        run_dir.save_config(cfg)
    log.info("model %s: %s parameters; vocabulary %d (source) / %d (target); %d training pairs; %s%s",
             cfg.model.name, f"{count_parameters(model):,}", len(corpus.src_tok), len(corpus.trg_tok),
             len(corpus.train_set), place.device, distributed.describe())
    tc = cfg.train
    optimizer = build_optimizer(tc, model)
    higher_is_better = tc.metric not in LOWER_IS_BETTER
    scheduler = build_scheduler(tc, optimizer, higher_is_better)
    translator = Translator(model, corpus.src_tok, corpus.trg_tok, cfg.decode, cfg.data.max_length, precision,
                            run_dir.best)
    greedy = Translator(model, corpus.src_tok, corpus.trg_tok, cfg.decode.greedy(), cfg.data.max_length, precision)
    validator = Validator(greedy, corpus.dev_src, corpus.dev_trg, cfg.decode.batch_tokens)  # greedy decoding
    metrics = run_dir.metrics_log()
    if launched.state is not None:
        _resume(launched, model, optimizer, scheduler, metrics)
    wrapped = (nn.parallel.DistributedDataParallel(
        model, device_ids=[place.device.index or 0] if place.device.type == "cuda" else None)
        if place.world > 1 else model)
    kept = checkpoint.Checkpoints(run_dir, tc.keep_last, tc.keep_best, higher_is_better)
    return Trainer(cfg, run_dir, place, interrupts, launched.progress, data=corpus, model=model, wrapped=wrapped,
                   optimizer=optimizer, scheduler=scheduler, translator=translator, validator=validator,
                   checkpoints=kept, metrics=metrics)


def load_training_data(cfg: RunConfig, run_dir: RunDir, is_main: bool) -> TrainingData:
    """Prepare and read the corpus, train or load the tokenizers, tokenise and filter the training pairs: rank 0
    first (data, tokenizer and token cache), then the other ranks read what it wrote."""
    if not is_main:
        distributed.barrier()
    data_dir = data.prepare(cfg.data, run_dir.path)
    train_set = data.load_split(cfg.data, data_dir, "train")
    dev_src, dev_trg = data.as_lists(data.load_split(cfg.data, data_dir, "dev"))
    src_tok, trg_tok = run_dir.train_tokenizers(cfg.tokenizer, data.iter_texts(train_set, "src"),
                                                data.iter_texts(train_set, "trg"))
    encoded, src_lengths, trg_lengths, kept = data.filter_pairs(
        data.encode(cfg.data, "train", train_set, src_tok, trg_tok), cfg.data.max_length, cfg.data.max_ratio)
    texts = train_set.select(kept) if cfg.tokenizer.sampling > 0 else None
    if is_main:
        distributed.barrier()
    if not len(encoded):
        raise NmtError(f"no training pairs left in {data.describe(cfg.data, data_dir, 'train')} after filtering "
                       f"(data.max_length={cfg.data.max_length}, data.max_ratio={cfg.data.max_ratio})")
    return TrainingData(data_dir, encoded, src_lengths, trg_lengths, texts, dev_src, dev_trg, src_tok, trg_tok)


def _precision(launched: Launch, model: nn.Module) -> Precision:
    """Rank 0 resolves ``train.precision`` for the model (``auto`` may measure its products) and every rank uses its
    choice; a resumed run keeps what ``auto`` chose when it started."""
    cfg, place = launched.cfg, launched.place
    if launched.kept_precision:
        precision = Precision(cfg.train.precision, f"kept from {launched.run_dir.config_file}, where "
                                                   f"train.precision=auto chose it")
    else:
        precision = resolve_precision(cfg.train.precision, place.device, model=model) if place.is_main else None
        precision = distributed.broadcast(precision)
    log.info("precision %s: %s", precision.name, precision.reason)
    return precision


def _resume(launched: Launch, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            metrics: MetricsLog) -> None:
    """Restore the weights, optimizer, schedule and random states of ``last.pt``; drop the metrics lines written
    after it."""
    state, last, p, place = launched.state, launched.run_dir.last, launched.progress, launched.place
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"][place.rank % len(state["rng"])])
        if place.device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state(state["cuda_rng"][place.rank % len(state["cuda_rng"])], place.device)
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        reason = str(e).strip().splitlines()
        raise NmtError(f"{last} does not fit this run: {reason[-1] if reason else type(e).__name__}") from None
    if place.is_main:
        metrics.truncate(p.step)
    log.info("resuming from %s: epoch %d, batch %d, step %d", last, p.epoch, p.batch, p.step)
