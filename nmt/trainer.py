"""The :class:`Trainer`: the steps of a training run (update, validate, keep checkpoints, test), given its parts
built (``nmt.train.build_trainer``), with a typed :class:`Progress` that is also what ``last.pt`` stores."""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from nmt import NmtError, checkpoint, data, distributed
from nmt.batching import make_batch, token_batches
from nmt.config import LOWER_IS_BETTER, RunConfig
from nmt.evaluate import score
from nmt.interrupts import Interrupted, Interrupts
from nmt.loss import token_loss
from nmt.optim import train_update
from nmt.rundir import MetricsLog, RunDir
from nmt.tokenizer import Tokenizer
from nmt.translate import Translator

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Place:
    """Where this process trains: its device, and its rank among ``world`` processes (0 of 1 without torchrun)."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that validates and writes files."""
        return self.rank == 0


@dataclass
class Epoch:
    """The updates of an epoch: its training pairs, their target lengths, and its batches of sentence indices,
    ``train.accumulate`` batches per update."""

    pairs: Any  # a tokenised split, or a sampled ``data.Segmentation``: ``pairs[indices]`` gives rows
    trg_lengths: np.ndarray
    groups: list[list[list[int]]]


@dataclass
class TrainingData:
    """What training reads of the corpus: the filtered, tokenised training pairs and their lengths (with
    ``tokenizer.sampling`` also their texts, segmented anew each epoch), the dev split, the tokenizers, and the
    folder of the corpus files (None for a hub corpus)."""

    data_dir: Path | None
    train_set: Dataset
    src_lengths: np.ndarray
    trg_lengths: np.ndarray
    train_texts: Dataset | None
    dev_src: list[str]
    dev_trg: list[str]
    src_tok: Tokenizer
    trg_tok: Tokenizer

    def epoch(self, epoch: int, cfg: RunConfig) -> Epoch:
        """The updates of ``epoch``: the cached best segmentation, or with ``tokenizer.sampling`` one sampled anew,
        seeded by the epoch (so that a resumed run samples the same), in shuffled token batches (seeded by the
        epoch too)."""
        pairs, lengths = self.train_set, (self.src_lengths, self.trg_lengths)
        if self.train_texts is not None:
            pairs = data.sample_segmentation(self.train_texts, self.train_set, self.src_tok, self.trg_tok,
                                             cfg.tokenizer.sampling, cfg.seed + 1000 * epoch, cfg.data.max_length)
            lengths = (pairs.src_lengths, pairs.trg_lengths)
        tc = cfg.train
        batches = token_batches(*lengths, tc.batch_tokens, shuffle=True, seed=cfg.seed + epoch)
        return Epoch(pairs, lengths[1], [batches[i: i + tc.accumulate] for i in range(0, len(batches), tc.accumulate)])


@dataclass
class Window:
    """The updates since the last log line: their summed loss and target tokens, and when they began."""

    loss: float = 0.0
    tokens: int = 0
    start: float = field(default_factory=time.perf_counter)


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


class Trainer:
    """A training run's steps, from the parts ``nmt.train.build_trainer`` builds: ``model`` (``wrapped`` in
    DistributedDataParallel under torchrun), its optimizer and schedule, the data, the ``translator`` of the test
    (beam search as configured) and the ``validator`` (greedy), and the run directory's checkpoints and metrics."""

    def __init__(self, cfg: RunConfig, run_dir: RunDir, place: Place, interrupts: Interrupts, progress: Progress,
                 data: TrainingData, model: nn.Module, wrapped: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: Any, translator: Translator, validator: Validator, checkpoints: checkpoint.Checkpoints,
                 metrics: MetricsLog) -> None:
        self.cfg, self.run_dir, self.place, self.interrupts, self.progress = cfg, run_dir, place, interrupts, progress
        self.data, self.model, self.wrapped, self.optimizer, self.scheduler = data, model, wrapped, optimizer, scheduler
        self.translator, self.validator, self.checkpoints, self.metrics = translator, validator, checkpoints, metrics
        self.higher_is_better = cfg.train.metric not in LOWER_IS_BETTER
        self.window = Window()

    def run(self) -> dict[str, Any]:
        """Train (or go on training), then translate and score the test split; returns the test scores."""
        p = self.progress
        if not p.trained:
            self.interrupts.at_once = False
            why = self.train()
            self.interrupts.at_once = True
            if p.validated != p.step:
                self.validate()
            p.trained = True
            log.info("stopped: %s; training took %.1f s (%d steps, %d epochs)", why, p.elapsed, p.step, p.epoch)
        p.result = self.test()
        p.finished = True
        self.save_last()
        return p.result

    def train(self) -> str:
        """Update until a budget, early stopping or the last epoch ends training; returns why it ended. A signal
        stops it after the current update, with ``last.pt`` saved there (:class:`Interrupted`)."""
        p, tc = self.progress, self.cfg.train
        started = time.perf_counter() - p.elapsed
        self.model.train()
        if self._validation_pending() and self.validate():
            return "early stopping"
        while p.epoch < tc.max_epochs:
            epoch = self.data.epoch(p.epoch, self.cfg)
            with self._progress_bar(len(epoch.groups)) as bar:
                self.window = Window()
                for group in epoch.groups[p.batch:]:
                    if spent := self._budget_spent():
                        return spent
                    self.update(epoch, group, bar)
                    p.elapsed = time.perf_counter() - started
                    out_of_time = self._stop_if_signalled()
                    if tc.validate_every and p.step % tc.validate_every == 0 and self.validate():
                        return f"early stopping (train.patience={tc.patience})"
                    if spent := self._budget_spent(out_of_time):
                        return spent
            p.epoch, p.batch = p.epoch + 1, 0
            if not tc.validate_every and self.validate():
                return f"early stopping (train.patience={tc.patience})"
        return f"train.max_epochs={tc.max_epochs} done"

    def _progress_bar(self, updates: int) -> tqdm:
        return tqdm(total=updates, initial=self.progress.batch, desc=f"epoch {self.progress.epoch + 1}",
                    unit="update", file=sys.stderr, disable=None if self.place.is_main else True, dynamic_ncols=True)

    def _stop_if_signalled(self) -> bool:
        """Stop every rank after this update if any received a signal (saving ``last.pt``); returns whether any is
        out of time (``train.max_minutes``)."""
        p = self.progress
        signum, out_of_time = distributed.all_max(self.interrupts.received,
                                                  int(0 < self.cfg.train.max_minutes * 60 <= p.elapsed))
        if signum:
            self.save_last()
            raise Interrupted(signum, message=f"interrupted by {signal.Signals(signum).name} at step {p.step}: saved "
                                              f"{self.run_dir.last}; continue with train.resume=true")
        return bool(out_of_time)

    def _budget_spent(self, out_of_time: bool = False) -> str:
        """Why the budget of updates or minutes is spent, or "" while it is not."""
        tc = self.cfg.train
        if 0 < tc.max_steps <= self.progress.step:
            return f"train.max_steps={tc.max_steps} reached"
        return f"time budget of train.max_minutes={tc.max_minutes:g} reached" if out_of_time else ""

    def update(self, epoch: Epoch, group: list[list[int]], bar: tqdm) -> None:
        """One optimizer update, its schedule step and its log line; a non-finite gradient stops training."""
        p, tc, place = self.progress, self.cfg.train, self.place
        loss, n_tokens, norm = train_update(self.wrapped, self.optimizer, epoch.pairs, group, epoch.trg_lengths, tc,
                                            place.rank, place.world, place.device)
        if not math.isfinite(norm):
            raise NmtError(f"training diverged at step {p.step + 1}: the gradient norm is {norm} (loss per token "
                           f"{loss / max(n_tokens, 1):.4g}); that update was not applied, and last.pt and best.pt "
                           f"keep step {max(p.validated, 0)} (try a lower train.lr or train.clip_grad_norm)")
        if tc.schedule != "plateau":
            self.scheduler.step()
        p.step, p.batch = p.step + 1, p.batch + 1
        self.window.loss, self.window.tokens = self.window.loss + loss, self.window.tokens + n_tokens
        bar.update()
        if p.step % tc.log_every == 0:
            self._log_window(bar)
            self.window = Window()

    def _log_window(self, bar: tqdm) -> None:
        """The loss and speed of the updates since the last log line: on the progress bar and in the metrics."""
        p, device = self.progress, self.place.device
        loss_sum, tokens = distributed.all_sum(self.window.loss, self.window.tokens)
        rate = tokens / (time.perf_counter() - self.window.start)
        bar.set_postfix(loss=f"{loss_sum / tokens:.3f}", tok_s=f"{rate:.0f}")
        if self.place.is_main:
            memory = ({"gpu_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20}
                      if device.type == "cuda" else {})
            self.metrics.write(split="train", step=p.step, epoch=p.epoch, elapsed=round(p.elapsed, 1),
                               loss=loss_sum / tokens, tokens_per_s=rate, lr=self.optimizer.param_groups[0]["lr"],
                               **memory)
            if not sys.stderr.isatty():  # no progress bar: a plain log line instead
                log.info("epoch %d, step %d: loss %.3f, %.0f target tokens/s", p.epoch + 1, p.step, loss_sum / tokens,
                         rate)

    def _validation_pending(self) -> bool:
        """Whether a stopped run owes the validation of its last step (a signal came right before it)."""
        p, every = self.progress, self.cfg.train.validate_every
        return p.step > 0 and p.validated != p.step and (p.step % every == 0 if every else p.batch == 0)

    def validate(self) -> bool:
        """Validate on rank 0, keep checkpoints; True when early stopping says stop (the same on all ranks)."""
        p, tc = self.progress, self.cfg.train
        start = time.perf_counter()
        self.interrupts.phase = "validation"
        result = distributed.broadcast(self.validator()[0] if self.place.is_main else None)
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
        if self.place.is_main:
            self._keep(result, value, improved)
        self.save_last()  # last: its existence vouches for the files above (a kill before leaves the old one)
        log.info("validation at step %d: loss %.3f ppl %.2f BLEU %.2f chrF %.2f exact %.2f%%%s (%.1f s)", p.step,
                 result["loss"], result["ppl"], result["bleu"], result["chrf"], result["exact"],
                 " *best*" if improved else "", time.perf_counter() - start)
        return 0 < tc.patience <= p.bad

    def _keep(self, result: dict[str, Any], value: float, improved: bool) -> None:
        """What a validation leaves: its metrics line, ``best.pt`` when it improved, its step checkpoint, and the
        attention plots of the first dev sentences."""
        p, tc = self.progress, self.cfg.train
        self.metrics.write(split="dev", step=p.step, epoch=p.epoch, elapsed=round(p.elapsed, 1),
                           lr=self.optimizer.param_groups[0]["lr"],
                           **{k: v for k, v in result.items() if k != "bleu_signature"})
        if improved:
            checkpoint.save({"model": self.model.state_dict(), "progress": asdict(p)}, self.run_dir.best)
        self.checkpoints.add(self.model.state_dict(), p.step, value)
        if tc.plot_attention > 0:
            from nmt.plot import plot_dev_attention

            plot_dev_attention(self.validator.translator, self.data.dev_src[: tc.plot_attention],
                               self.run_dir.attention, p.step)

    def save_last(self) -> None:
        """``last.pt``: weights, optimizer, schedule, progress and every rank's random state (exact resume)."""
        device = self.place.device
        rng = distributed.gather(torch.get_rng_state())  # each rank draws its own dropout masks
        cuda_rng = distributed.gather(torch.cuda.get_rng_state(device)) if device.type == "cuda" else []
        if self.place.is_main:
            checkpoint.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                             "scheduler": self.scheduler.state_dict(), "rng": rng, "cuda_rng": cuda_rng,
                             "progress": asdict(self.progress)}, self.run_dir.last)

    def test(self) -> dict[str, Any]:
        """Translate the test split (when the data has one and ``train.test``) with the best checkpoint; write and
        score it. A signal stops it at once; the run stays resumable (a resume runs the test)."""
        if not self.place.is_main or self.cfg.data.splits.test is None:
            return {}
        if not self.cfg.train.test:
            log.info("test split not translated (train.test=false)")
            return {}
        try:
            return self._test()
        except Interrupted as e:
            self.save_last()
            raise Interrupted(e.signum, message=f"interrupted by {e.name} during the test decode: training is "
                                                f"complete and saved; train.resume=true runs the test") from None

    def _test(self) -> dict[str, Any]:
        cfg, translator, data_dir = self.cfg, self.translator, self.data.data_dir
        translator.model.load_state_dict(checkpoint.load(self.run_dir.best)["model"])
        src, refs = data.as_lists(data.load_split(cfg.data, data_dir, "test"))
        where = data.describe(cfg.data, data_dir, "test")
        hyps = [t.text for t in translator.translate(src, [f"{where}:{i + 1}" for i in range(len(src))])]
        self.run_dir.test_hyp.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
        result = score(hyps, refs)
        self.metrics.write(split="test", **result)
        print(f"test ({len(refs)} sentences, {where}): BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  "
              f"exact match {result['exact']:.2f}%  [{result['bleu_signature']}]")
        return result
