"""Training: data -> tokenizer -> batches -> model, with validation, checkpoints and a metrics log.

``nmt train [OVERRIDES]`` runs :func:`main`; tests and tools call :func:`train` with a config composed by Hydra's
compose API (turned there into the typed ``nmt.config.RunConfig`` that everything below reads) or a ``RunConfig``.
The :class:`Trainer` has one method per step of a run (set up, update, validate, save, test), and a typed
:class:`Progress` that is also what ``last.pt`` stores. A run directory holds everything of its run:

    config.yaml        the resolved configuration (what ``nmt translate`` loads)
    spm.*.model        the sentencepiece model(s)
    best.pt, last.pt   checkpoints: best dev score, and the latest (with optimizer state, for resuming)
    checkpoints/       the weights of recent and best validations (for ``nmt average``)
    metrics.jsonl      one JSON line per log interval ("train"), per validation ("dev") and the final "test"
    data/              the generated date task's splits (for the default recipe)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from nmt import NmtError, checkpoint, data, distributed, install_hint, rundir
from nmt.batching import make_batch, token_batches
from nmt.config import CONF_DIR, LOWER_IS_BETTER, RunConfig, TrainConfig, check_data_files, validate
from nmt.evaluate import score
from nmt.hardware import Precision, resolve_device, resolve_precision, usable_cores
from nmt.models.builder import build_model, count_parameters
from nmt.tokenizer import PAD, build_tokenizers
from nmt.translate import Translator

log = logging.getLogger(__name__)


class CrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of logits z [N, V] against targets y [N] with label smoothing eps,

        loss = sum_n (1 - eps) (-log p_n(y_n)) + eps (-1/V sum_v log p_n(v)),    p_n = softmax(z_n),

    whose gradient p - q (q: the smoothed one-hot targets) is computed in place of the saved log-probabilities:
    ``F.cross_entropy`` computes the same, but writes and reads two more N x V tensors in its backward pass."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
        log_probs = F.log_softmax(logits.float(), dim=-1)
        nll = -log_probs.gather(1, target[:, None]).sum()
        loss = nll if smoothing == 0 else (1 - smoothing) * nll - smoothing * log_probs.mean(-1).sum()
        ctx.save_for_backward(log_probs, target)
        ctx.smoothing = smoothing
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        log_probs, target = ctx.saved_tensors
        smoothing = ctx.smoothing
        g = log_probs.exp_()  # p, over the saved log-probabilities (backward runs once)
        if smoothing:
            g.sub_(smoothing / g.size(1))
        g.scatter_add_(1, target[:, None], g.new_full((g.size(0), 1), smoothing - 1.0))
        return g.mul_(grad), None, None


def token_loss(model: nn.Module, batch: Any, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of a batch's target tokens and the number of those tokens; padding is not projected
    onto the vocabulary at all (``scored``)."""
    scored = batch.trg_out != PAD
    logits, _ = model(batch.src, batch.src_mask, batch.trg_in, scored)
    return CrossEntropy.apply(logits, batch.trg_out[scored], label_smoothing), batch.n_target_tokens


def build_optimizer(tc: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2015) with the ``train`` group's learning rate and betas, as one fused kernel per
    parameter (CPU and GPU)."""
    return torch.optim.Adam(model.parameters(), lr=tc.lr, betas=tuple(tc.betas), fused=True)


def build_scheduler(tc: TrainConfig, optimizer: torch.optim.Optimizer, higher_is_better: bool) -> Any:
    """``plateau``: decay by ``lr_decay`` when the dev metric stalls (stepped per validation, for RNNs);
    ``inverse_sqrt``: linear warm-up to ``lr`` over ``warmup`` updates, then lr * sqrt(warmup / step)
    (Vaswani et al. 2017, stepped per update, for the Transformer); ``cosine``: linear warm-up, then
    min_lr + (lr - min_lr) (1 + cos(pi t)) / 2 with t going from 0 to 1 at ``max_steps`` (Loshchilov & Hutter
    2017, without restarts: the whole decay fits the run's budget of updates); ``constant``."""
    if tc.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if higher_is_better else "min", factor=tc.lr_decay, patience=tc.lr_patience,
            min_lr=tc.min_lr)
    if tc.schedule == "inverse_sqrt":
        warmup = max(1, tc.warmup)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / warmup, (warmup / (step + 1)) ** 0.5))
    if tc.schedule == "cosine":
        warmup, max_steps, floor = tc.warmup, tc.max_steps, min(tc.min_lr / tc.lr, 1.0)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_factor(step, warmup, max_steps, floor))
    if tc.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise NmtError(f"unknown train.schedule {tc.schedule!r}: choose plateau, inverse_sqrt, cosine or constant")


def cosine_factor(step: int, warmup: int, max_steps: int, floor: float) -> float:
    """The multiple of ``lr`` after ``step`` updates under ``cosine``: (step + 1) / warmup while warming up, then
    half a cosine from 1 down to ``floor`` (min_lr / lr) at ``max_steps``, and ``floor`` after it."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


class Validator:
    """Dev-set loss (teacher forcing) and the scores of its decoded translations."""

    def __init__(self, translator: Translator, src: list[str], refs: list[str], batch_tokens: int) -> None:
        self.translator, self.refs = translator, refs
        self.src_ids = translator.src_tok.encode(src)
        self.src_ids = [s[: translator.max_src_length] for s in self.src_ids]
        self.trg_ids = translator.trg_tok.encode(refs)
        self.batches = token_batches([len(s) for s in self.src_ids], [len(t) for t in self.trg_ids], batch_tokens)

    @torch.no_grad()
    def __call__(self) -> tuple[dict[str, Any], list[str]]:
        model = self.translator.model
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        for indices in self.batches:
            batch = make_batch([self.src_ids[i] for i in indices], [self.trg_ids[i] for i in indices]).to(
                self.translator.device)
            loss, n = token_loss(model, batch)
            total, tokens = total + loss.item(), tokens + n
        hyps = self.translator.trg_tok.decode([h[0].tokens for h in self.translator.search(self.src_ids)])
        model.train(was_training)
        loss = total / tokens
        return {"loss": loss, "ppl": math.exp(min(loss, 50)), **score(hyps, self.refs)}, hyps


class MetricsLog:
    """Append-only JSON lines (``metrics.jsonl``), and TensorBoard event files in ``RUN_DIR/tensorboard/`` when
    the ``tensorboard`` package is installed (scalars ``SPLIT/KEY`` over update steps)."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
                self._board = SummaryWriter(str(self.path.parent / "tensorboard"))
        return self._board or None


def shard(indices: list[int], rank: int, world: int) -> tuple[list[int], bool]:
    """This rank's share of a batch: every ``world``-th sentence. A rank left without a sentence borrows the
    first one and reports False, so that it still joins the gradient all-reduce, with weight 0."""
    mine = indices[rank::world]
    return (mine, True) if mine else (indices[:1], False)


def train_update(model: nn.Module, optimizer: torch.optim.Optimizer, train_set: Any, group: list[list[int]],
                 trg_lengths: Any, tc: TrainConfig, rank: int = 0, world: int = 1,
                 device: torch.device | None = None) -> tuple[float, int, float]:
    """One optimizer update from the batches in ``group``, each split over ``world`` ranks.

    The gradient is that of the summed token loss of every sentence in the group divided by their number of
    target tokens: the update one batch holding all of them would give, however many batches are accumulated
    (``train.accumulate``) and however many ranks share them (DistributedDataParallel averages over ranks,
    hence the factor ``world``). Returns this rank's summed loss and target tokens, and the gradient norm; a
    non-finite gradient is not applied (the caller stops: the training diverged).
    """
    total = sum(trg_lengths[i] + 1 for indices in group for i in indices)  # + EOS
    autocast = torch.autocast(device.type if device else "cpu", dtype=torch.bfloat16,
                              enabled=tc.precision == "bf16")
    optimizer.zero_grad(set_to_none=True)
    loss_sum, tokens = 0.0, 0
    for j, indices in enumerate(group):
        mine, real = shard(indices, rank, world)
        rows = train_set[mine]
        batch = make_batch(rows["src_ids"], rows["trg_ids"])
        if device is not None:
            batch = batch.to(device)
        accumulating = world > 1 and j < len(group) - 1  # all-reduce only after the group's last backward
        with model.no_sync() if accumulating else contextlib.nullcontext():
            with autocast:
                loss, n = token_loss(model, batch, tc.label_smoothing)
            (loss * (world / total if real else 0.0)).backward()
        if real:
            loss_sum, tokens = loss_sum + loss.item(), tokens + n
    norm = float(nn.utils.clip_grad_norm_(model.parameters(),
                                          tc.clip_grad_norm if tc.clip_grad_norm > 0 else math.inf))
    if math.isfinite(norm):
        optimizer.step()
    return loss_sum, tokens, norm


class Checkpoints:
    """``last.pt`` (everything needed to resume), ``best.pt`` (weights of the best dev score), and the weights
    of every validation in ``checkpoints/step-N.pt``, of which the last ``keep_last`` and the best
    ``keep_best`` are kept (for ``nmt average``)."""

    def __init__(self, run_dir: Path, keep_last: int, keep_best: int, higher_is_better: bool) -> None:
        self.dir, self.keep_last, self.keep_best = run_dir / "checkpoints", keep_last, keep_best
        self.index = self.dir / "index.json"
        self.sign = 1.0 if higher_is_better else -1.0

    def add(self, weights: dict[str, Any], step: int, value: float) -> None:
        if self.keep_last <= 0 and self.keep_best <= 0:
            return
        self.dir.mkdir(exist_ok=True)
        scores = json.loads(self.index.read_text()) if self.index.exists() else {}
        checkpoint.save({"model": weights, "step": step}, self.dir / f"step-{step}.pt")
        scores[str(step)] = value
        last = sorted(scores, key=int)[-self.keep_last:] if self.keep_last > 0 else []
        best = sorted(scores, key=lambda k: -self.sign * scores[k])[: self.keep_best]
        for k in set(scores) - set(last) - set(best):
            (self.dir / f"step-{k}.pt").unlink(missing_ok=True)
            del scores[k]
        tmp = self.index.with_name(self.index.name + ".tmp")
        tmp.write_text(json.dumps(scores, indent=0))
        os.replace(tmp, self.index)


@dataclass
class Progress:
    """Where a run stands; ``last.pt`` stores it, so that a resumed run continues exactly where it stopped."""

    step: int = 0  # updates done
    epoch: int = 0  # epochs completed
    batch: int = 0  # updates done in the current epoch
    elapsed: float = 0.0  # seconds of training (validations included)
    best: float | None = None  # best dev score so far
    bad: int = 0  # validations since the best one
    validated: int = -1  # the step of the last validation
    trained: bool = False  # training has ended (budget, early stopping, last epoch); the test may remain
    finished: bool = False  # the test split has been translated too: nothing is left to do
    result: dict[str, Any] = field(default_factory=dict)  # the final scores

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], path: Path) -> Progress:
        """The progress in a checkpoint, also one written before this record existed (a plain dict)."""
        raw = state.get("progress")
        if not isinstance(raw, dict) or not isinstance(raw.get("step"), int):
            raise NmtError(f"{path} holds no training progress: not a last.pt of nmt train")
        known = {f.name for f in fields(cls)}
        progress = cls(**{k: v for k, v in raw.items() if k in known})
        if "trained" not in raw:  # older checkpoints: the test ran right after training, in the same process
            progress.trained = progress.finished
        return progress


class Interrupted(NmtError):
    """Training stopped by SIGINT or SIGTERM; ``status`` is the conventional exit status (130, 143)."""

    def __init__(self, signum: int, abort: bool = False, message: str = "") -> None:
        self.signum, self.abort = signum, abort
        self.name = signal.Signals(signum).name
        self.status = 128 + signum
        super().__init__(message or f"{'aborted by a second' if abort else 'interrupted by'} {self.name}")


class Interrupts:
    """SIGINT (Ctrl-C) and SIGTERM during a run. The first asks for a stop at the next safe point: after the
    current update, or after the running validation; before training starts and during the final test decode it
    stops at once (``at_once``). The second aborts at once."""

    def __init__(self) -> None:
        self.received = 0  # the signal number of the first one, 0 for none
        self.at_once = True
        self.phase = "update"
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.received:
            raise Interrupted(signum, abort=True)
        self.received = signum
        if self.at_once:
            raise Interrupted(signum)
        log.warning("%s: stopping after the current %s, then saving last.pt (once more to abort at once)",
                    signal.Signals(signum).name, self.phase)


class Trainer:
    """A training run: its data, model, optimizer, schedule and checkpoints, and the steps of training them."""

    def __init__(self, cfg: RunConfig, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.interrupts = Interrupts()
        self.progress = Progress()
        self.is_main = os.environ.get("RANK", "0") == "0"

    def run(self) -> dict[str, Any]:
        """Train (or resume), then translate and score the test split; returns the test scores."""
        ended = False  # every rank got to the end: they leave the process group together
        try:
            with self.interrupts:
                try:
                    self.set_up()
                except Interrupted as e:
                    raise Interrupted(e.signum, message=f"interrupted by {e.name} before the first update: nothing "
                                                        f"to save") from None
                p = self.progress
                if p.finished:
                    log.info("%s: this run has finished already; nothing to do", self.run_dir)
                    ended = True
                    return p.result
                if not p.trained:
                    self.interrupts.at_once = False
                    why = self.train()
                    self.interrupts.at_once = True
                    if p.validated != p.step:
                        self.validate()
                    p.trained = True
                    log.info("stopped: %s; training took %.1f s (%d steps, %d epochs)", why, p.elapsed, p.step,
                             p.epoch)
                p.result = self.test()
                p.finished = True
                self.save_last()
            ended = True
            return p.result
        except Interrupted as e:
            if e.abort:
                raise Interrupted(e.signum, abort=True, message=f"aborted by a second {e.name}: the run resumes "
                                                                f"from its last.pt (train.resume=true)") from None
            raise
        finally:
            if self.is_main:
                rundir.unlock(self.run_dir)
            distributed.shutdown(synchronize=ended)

    # set-up

    def set_up(self) -> None:
        """Check the data files and claim the run directory; prepare data and tokenizer (rank 0 first), build the
        model and its optimizer; resume from ``last.pt`` when asked."""
        check_data_files(self.cfg.data)
        tc = self.cfg.train
        self.device = resolve_device(tc.device)
        self.rank, self.world = distributed.setup(self.device)
        self.is_main = self.rank == 0
        if not self.is_main:
            logging.getLogger("nmt").setLevel(logging.WARNING)
        self.run_dir = Path(distributed.broadcast(str(self.run_dir)))
        requested = self.cfg.train.precision
        self.cfg = self._claim()
        tc = self.cfg.train
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
        torch.set_num_threads(tc.threads if tc.threads > 0 else max(1, usable_cores() // local_world))
        torch.manual_seed(self.cfg.seed + self.rank)
        last = self.run_dir / "last.pt"
        state = checkpoint.load(last) if tc.resume and last.exists() else None
        if state is not None:
            self.progress = Progress.from_checkpoint(state, last)
            if self.progress.finished:
                return
        self._prepare_data()
        self._build(kept_precision=requested == "auto" != tc.precision)
        if state is not None:
            self._resume(state, last)
        self.wrapped = (nn.parallel.DistributedDataParallel(self.model, device_ids=self._device_ids())
                        if self.world > 1 else self.model)

    def _claim(self) -> RunConfig:
        """Rank 0 locks the run directory and checks what it holds (``nmt.rundir``); every rank gets the outcome."""
        outcome: tuple[str, Any] = ("", None)
        if self.is_main:
            try:
                outcome = ("", rundir.claim(self.run_dir, self.cfg).document())
            except NmtError as e:
                outcome = (str(e), None)
        error, document = distributed.broadcast(outcome)
        if error:
            raise NmtError(error)
        return RunConfig.model_validate(document)

    def _precision(self, kept: bool) -> Precision:
        """Rank 0 resolves ``train.precision`` for the model (``auto`` may measure its products) and every rank uses
        its choice; a resumed run keeps what ``auto`` chose when it started (``kept``)."""
        if kept:
            precision = Precision(self.cfg.train.precision, f"kept from {self.run_dir / 'config.yaml'}, where "
                                                            f"train.precision=auto chose it")
        else:
            precision = (resolve_precision(self.cfg.train.precision, self.device, model=self.model)
                         if self.is_main else None)
            precision = distributed.broadcast(precision)
        log.info("precision %s: %s", precision.name, precision.reason)
        return precision

    def _device_ids(self) -> list[int] | None:
        return [self.device.index or 0] if self.device.type == "cuda" else None

    def _prepare_data(self) -> None:
        cfg = self.cfg
        if not self.is_main:
            distributed.barrier()  # rank 0 prepares data, tokenizer and token cache; the others then read them
        self.data_dir = data.prepare(cfg.data, self.run_dir)
        train_set = data.load_split(cfg.data, self.data_dir, "train")
        self.dev_src, self.dev_trg = data.as_lists(data.load_split(cfg.data, self.data_dir, "dev"))
        self.src_tok, self.trg_tok = build_tokenizers(cfg.tokenizer, self.run_dir, data.iter_texts(train_set, "src"),
                                                      data.iter_texts(train_set, "trg"))
        self.train_set, self.src_lengths, self.trg_lengths, kept = data.filter_pairs(
            data.encode(cfg.data, "train", train_set, self.src_tok, self.trg_tok), cfg.data.max_length,
            cfg.data.max_ratio)
        self.train_texts = train_set.select(kept) if cfg.tokenizer.sampling > 0 else None
        if self.is_main:
            distributed.barrier()
        if not len(self.train_set):
            raise NmtError(f"no training pairs left in {data.describe(cfg.data, self.data_dir, 'train')} after "
                           f"filtering (data.max_length={cfg.data.max_length}, data.max_ratio={cfg.data.max_ratio})")

    def _build(self, kept_precision: bool) -> None:
        self.model = build_model(self.cfg.model, len(self.src_tok), len(self.trg_tok)).to(self.device)
        self.precision = self._precision(kept_precision)
        # config.yaml records what auto chose; a resume keeps it
        self.cfg = cfg = self.cfg.with_setting("train.precision", self.precision.name)
        tc = cfg.train
        if self.is_main:
            rundir.save_config(cfg, self.run_dir)
        log.info("model %s: %s parameters; vocabulary %d (source) / %d (target); %d training pairs; %s%s",
                 cfg.model.name, f"{count_parameters(self.model):,}", len(self.src_tok), len(self.trg_tok),
                 len(self.train_set), self.device, distributed.describe())
        self.optimizer = build_optimizer(tc, self.model)
        self.higher_is_better = tc.metric not in LOWER_IS_BETTER
        self.scheduler = build_scheduler(tc, self.optimizer, self.higher_is_better)
        self.translator = Translator(self.model, self.src_tok, self.trg_tok, cfg.decode, cfg.data.max_length,
                                     self.precision, self.run_dir / "best.pt")
        greedy = cfg.decode.greedy()  # validation decodes greedily
        self.validator = Validator(Translator(self.model, self.src_tok, self.trg_tok, greedy, cfg.data.max_length,
                                              self.precision), self.dev_src, self.dev_trg, cfg.decode.batch_tokens)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.kept = Checkpoints(self.run_dir, tc.keep_last, tc.keep_best, self.higher_is_better)

    def _resume(self, state: dict[str, Any], last: Path) -> None:
        """Restore the weights, optimizer, schedule and random states of ``last.pt``."""
        p = self.progress
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"][self.rank % len(state["rng"])])
            if self.device.type == "cuda" and state.get("cuda_rng"):
                torch.cuda.set_rng_state(state["cuda_rng"][self.rank % len(state["cuda_rng"])], self.device)
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            reason = str(e).strip().splitlines()
            raise NmtError(f"{last} does not fit this run: {reason[-1] if reason else type(e).__name__}") from None
        if self.is_main:
            self.metrics.truncate(p.step)
        log.info("resuming from %s: epoch %d, batch %d, step %d", last, p.epoch, p.batch, p.step)

    # training

    def train(self) -> str:
        """Update until a budget, early stopping or the last epoch ends training; returns why it ended. A
        signal stops it after the current update, with ``last.pt`` saved there (:class:`Interrupted`)."""
        p, tc = self.progress, self.cfg.train
        started = time.perf_counter() - p.elapsed
        self.model.train()
        if self._validation_pending() and self.validate():
            return "early stopping"
        while p.epoch < tc.max_epochs:
            groups = self._groups(p.epoch)
            with tqdm(total=len(groups), initial=p.batch, desc=f"epoch {p.epoch + 1}", unit="update",
                      file=sys.stderr, disable=None if self.is_main else True, dynamic_ncols=True) as bar:
                self._window = [0.0, 0, time.perf_counter()]
                for group in groups[p.batch:]:
                    if spent := self._budget_spent():
                        return spent
                    self.update(group, bar)
                    p.elapsed = time.perf_counter() - started
                    signum, out_of_time = distributed.all_max(
                        self.interrupts.received, int(0 < tc.max_minutes * 60 <= p.elapsed))
                    if signum:
                        self.save_last()
                        raise Interrupted(signum, message=f"interrupted by {signal.Signals(signum).name} at step "
                                                          f"{p.step}: saved {self.run_dir / 'last.pt'}; continue "
                                                          f"with train.resume=true")
                    if tc.validate_every and p.step % tc.validate_every == 0 and self.validate():
                        return f"early stopping (train.patience={tc.patience})"
                    if spent := self._budget_spent(out_of_time):
                        return spent
            p.epoch, p.batch = p.epoch + 1, 0
            if not tc.validate_every and self.validate():
                return f"early stopping (train.patience={tc.patience})"
        return f"train.max_epochs={tc.max_epochs} done"

    def _budget_spent(self, out_of_time: bool = False) -> str:
        """Why the budget of updates or minutes is spent, or "" while it is not."""
        tc = self.cfg.train
        if 0 < tc.max_steps <= self.progress.step:
            return f"train.max_steps={tc.max_steps} reached"
        return f"time budget of train.max_minutes={tc.max_minutes:g} reached" if out_of_time else ""

    def _segment(self, epoch: int) -> None:
        """The training pairs of an epoch (``self.pairs``, ``self.pair_lengths``): the cached best segmentation,
        or with ``tokenizer.sampling`` one sampled anew, seeded by the epoch (so that a resumed run samples the
        same)."""
        alpha = self.cfg.tokenizer.sampling
        if self.train_texts is None:
            self.pairs, self.pair_lengths = self.train_set, (self.src_lengths, self.trg_lengths)
            return
        sampled = data.sample_segmentation(self.train_texts, self.train_set, self.src_tok, self.trg_tok, alpha,
                                           self.cfg.seed + 1000 * epoch, self.cfg.data.max_length)
        self.pairs, self.pair_lengths = sampled, (sampled.src_lengths, sampled.trg_lengths)

    def _groups(self, epoch: int) -> list[list[list[int]]]:
        """The updates of an epoch: its shuffled token batches (seeded by the epoch), ``accumulate`` at a time."""
        tc = self.cfg.train
        self._segment(epoch)
        batches = token_batches(*self.pair_lengths, tc.batch_tokens, shuffle=True, seed=self.cfg.seed + epoch)
        return [batches[i: i + tc.accumulate] for i in range(0, len(batches), tc.accumulate)]

    def update(self, group: list[list[int]], bar: Any) -> None:
        """One optimizer update, its schedule step and its log line; a non-finite gradient stops training."""
        p, tc = self.progress, self.cfg.train
        loss, n_tokens, norm = train_update(self.wrapped, self.optimizer, self.pairs, group, self.pair_lengths[1],
                                            tc, self.rank, self.world, self.device)
        if not math.isfinite(norm):
            raise NmtError(f"training diverged at step {p.step + 1}: the gradient norm is {norm} (loss per token "
                           f"{loss / max(n_tokens, 1):.4g}); that update was not applied, and last.pt and best.pt "
                           f"keep step {max(p.validated, 0)} (try a lower train.lr or train.clip_grad_norm)")
        if tc.schedule != "plateau":
            self.scheduler.step()
        p.step, p.batch = p.step + 1, p.batch + 1
        window = self._window
        window[0], window[1] = window[0] + loss, window[1] + n_tokens
        bar.update()
        if p.step % tc.log_every == 0:
            loss_sum, tokens = distributed.all_sum(window[0], window[1])
            rate = tokens / (time.perf_counter() - window[2])
            bar.set_postfix(loss=f"{loss_sum / tokens:.3f}", tok_s=f"{rate:.0f}")
            if self.is_main:
                memory = ({"gpu_memory_mib": torch.cuda.max_memory_allocated(self.device) / 2**20}
                          if self.device.type == "cuda" else {})
                self.metrics.write(split="train", step=p.step, epoch=p.epoch, elapsed=round(p.elapsed, 1),
                                   loss=loss_sum / tokens, tokens_per_s=rate,
                                   lr=self.optimizer.param_groups[0]["lr"], **memory)
                if not sys.stderr.isatty():  # no progress bar: a plain log line instead
                    log.info("epoch %d, step %d: loss %.3f, %.0f target tokens/s", p.epoch + 1, p.step,
                             loss_sum / tokens, rate)
            self._window = [0.0, 0, time.perf_counter()]

    # validation and checkpoints

    def _validation_pending(self) -> bool:
        """Whether a stopped run owes the validation of its last step (a signal came right before it)."""
        p, every = self.progress, self.cfg.train.validate_every
        return p.step > 0 and p.validated != p.step and (p.step % every == 0 if every else p.batch == 0)

    def validate(self) -> bool:
        """Validate on rank 0, keep checkpoints; True when early stopping says stop (the same on all ranks)."""
        p, tc = self.progress, self.cfg.train
        start = time.perf_counter()
        self.interrupts.phase = "validation"
        result = distributed.broadcast(self.validator()[0] if self.is_main else None)
        self.interrupts.phase = "update"
        p.validated = p.step
        value = result[tc.metric]
        improved = math.isfinite(value) and (p.best is None or (value > p.best if self.higher_is_better
                                                                else value < p.best))
        if improved:
            p.best, p.bad = value, 0
        else:
            p.bad += 1
        if tc.schedule == "plateau":
            self.scheduler.step(value)
        if self.is_main:
            self.metrics.write(split="dev", step=p.step, epoch=p.epoch, elapsed=round(p.elapsed, 1),
                               lr=self.optimizer.param_groups[0]["lr"],
                               **{k: v for k, v in result.items() if k != "bleu_signature"})
            if improved:
                checkpoint.save({"model": self.model.state_dict(), "progress": asdict(p)}, self.run_dir / "best.pt")
            self.kept.add(self.model.state_dict(), p.step, value)
            if tc.plot_attention > 0:
                from nmt.plot import plot_dev_attention

                plot_dev_attention(self.validator.translator, self.dev_src[: tc.plot_attention],
                                   self.run_dir / "attention", p.step)
        self.save_last()  # last: its existence vouches for the files above (a kill before leaves the old one)
        log.info("validation at step %d: loss %.3f ppl %.2f BLEU %.2f chrF %.2f exact %.2f%%%s (%.1f s)", p.step,
                 result["loss"], result["ppl"], result["bleu"], result["chrf"], result["exact"],
                 " *best*" if improved else "", time.perf_counter() - start)
        return 0 < tc.patience <= p.bad

    def save_last(self) -> None:
        """``last.pt``: weights, optimizer, schedule, progress and every rank's random state (exact resume)."""
        rng = distributed.gather(torch.get_rng_state())  # each rank draws its own dropout masks
        cuda_rng = distributed.gather(torch.cuda.get_rng_state(self.device)) if self.device.type == "cuda" else []
        if self.is_main:
            checkpoint.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                             "scheduler": self.scheduler.state_dict(), "rng": rng, "cuda_rng": cuda_rng,
                             "progress": asdict(self.progress)}, self.run_dir / "last.pt")

    # test

    def test(self) -> dict[str, Any]:
        """Translate the test split (when the data has one and ``train.test``) with the best checkpoint; write and
        score it. A signal stops it at once; the run stays resumable (a resume runs the test)."""
        cfg = self.cfg
        if not self.is_main:
            return {}
        if cfg.data.splits.test is None:
            return {}
        if not cfg.train.test:
            log.info("test split not translated (train.test=false)")
            return {}
        try:
            return self._test()
        except Interrupted as e:
            self.save_last()
            raise Interrupted(e.signum, message=f"interrupted by {e.name} during the test decode: training is "
                                                f"complete and saved; train.resume=true runs the test") from None

    def _test(self) -> dict[str, Any]:
        cfg, translator = self.cfg, self.translator
        translator.model.load_state_dict(checkpoint.load(self.run_dir / "best.pt")["model"])
        src, refs = data.as_lists(data.load_split(cfg.data, self.data_dir, "test"))
        where = data.describe(cfg.data, self.data_dir, "test")
        hyps = [t.text for t in translator.translate(src, [f"{where}:{i + 1}" for i in range(len(src))])]
        (self.run_dir / "test.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
        result = score(hyps, refs)
        self.metrics.write(split="test", **result)
        print(f"test ({len(refs)} sentences, {where}): BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  "
              f"exact match {result['exact']:.2f}%  [{result['bleu_signature']}]")
        return result


def train(cfg: RunConfig | DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train the model ``cfg`` describes in ``run_dir``; returns the final test scores. A config composed by Hydra
    is validated here, where it enters, into the typed ``RunConfig``.

    Under torchrun every rank calls this; rank 0 prepares the data and tokenizer first and alone writes files.
    """
    return Trainer(cfg if isinstance(cfg, RunConfig) else validate(cfg, check_files=False), run_dir).run()


def _fail(error: NmtError) -> None:
    """Exit with one line: the error, and the conventional status of an interrupting signal (1 otherwise)."""
    print(f"nmt train: {'' if isinstance(error, Interrupted) else 'error: '}{error}", file=sys.stderr)
    sys.exit(error.status if isinstance(error, Interrupted) else 1)


def _hydra_error(e: Exception) -> NmtError:
    """Hydra's composition errors on one line: an unknown option with the ones there are, a bad override."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(e, MissingConfigException) and e.missing_cfg_file and "/" in e.missing_cfg_file:
        group, option = e.missing_cfg_file.rsplit("/", 1)
        return NmtError(f"{group}={option}: no such option (choose {', '.join(e.options or [])})")
    if isinstance(e, OverrideParseException):
        return NmtError(f"cannot parse the override {e.override!r}: {e.message.splitlines()[0]}")
    return NmtError(" ".join(str(e).split("\n\n")[0].split()))


def precheck(argv: list[str]) -> list[str]:
    """Compose and validate the config ``nmt train ARGV`` asks for, and claim its run directory, before Hydra
    creates anything; a mistake is one line. Returns the arguments for Hydra (with the run directory made
    explicit, so that Hydra trains where the claim was made)."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args, _ = get_args_parser().parse_known_args(argv)
    if (args.help or args.hydra_help or args.info or args.shell_completion or args.multirun or args.config_path
            or args.experimental_rerun):
        return argv
    overrides = list(args.overrides)
    if args.config_dir:
        overrides.append(f"hydra.searchpath=[file://{os.path.abspath(args.config_dir)}]")
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="train"):
            cfg = compose(args.config_name or "config", overrides=overrides, return_hydra_config=True)
        run_dir = Path(cfg.hydra.run.dir)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        _fail(_hydra_error(e))
    try:
        run = validate(cfg)
        if args.cfg is None and os.environ.get("RANK", "0") == "0":
            rundir.claim(run_dir, run)
    except NmtError as e:
        _fail(e)
    return argv if args.cfg else [*argv, f"hydra.run.dir={run_dir}"]


def main(argv: list[str]) -> None:
    """``nmt train ARGV``: the pre-check, then Hydra's own entry point (which parses ARGV again, configures
    logging and the run directory) around :func:`train`."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    argv = precheck(argv)

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
    def run(cfg: DictConfig) -> None:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            train(cfg, run_dir)
        except NmtError as e:  # a user's mistake or a signal: one line, no traceback (Hydra would print one)
            _fail(e)
        if os.environ.get("RANK", "0") == "0":
            print(f"run directory: {run_dir}")

    sys.argv = [sys.argv[0], *argv]
    run()
