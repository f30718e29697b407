"""Training: data -> tokenizer -> batches -> model, with validation, checkpoints and a metrics log.

``nmt train [OVERRIDES]`` runs :func:`main` through Hydra; tests and tools call :func:`train` with a config
composed by Hydra's compose API. A run directory holds everything of its run:

    config.yaml        the resolved configuration (what ``nmt translate`` loads)
    spm.*.model        the sentencepiece model(s)
    best.pt, last.pt   checkpoints: best dev score, and the latest (with optimizer state, for resuming)
    metrics.jsonl      one JSON line per log interval ("train"), per validation ("dev") and the final "test"
    data/              the generated date task's splits (for the default recipe)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from nmt import NmtError, checkpoint, data, distributed
from nmt.batching import make_batch, token_batches
from nmt.evaluate import score
from nmt.model import build_model, count_parameters
from nmt.tokenizer import PAD, build_tokenizers
from nmt.translate import Translator

log = logging.getLogger(__name__)

LOWER_IS_BETTER = {"loss"}


@dataclass
class TrainConfig:
    """The types of the ``train`` group; its values and their documentation are in ``conf/train/default.yaml``.
    With this schema Hydra refuses a key that does not exist or a value of the wrong type, naming the key,
    before anything runs."""

    lr: float = MISSING
    betas: list[float] = MISSING
    schedule: str = MISSING
    lr_decay: float = MISSING
    lr_patience: int = MISSING
    min_lr: float = MISSING
    warmup: int = MISSING
    clip_grad_norm: float = MISSING
    label_smoothing: float = MISSING
    batch_tokens: int = MISSING
    accumulate: int = MISSING
    max_epochs: int = MISSING
    max_steps: int = MISSING
    max_minutes: float = MISSING
    validate_every: int = MISSING
    metric: str = MISSING
    patience: int = MISSING
    log_every: int = MISSING
    plot_attention: int = MISSING
    device: str = MISSING
    precision: str = MISSING
    threads: int = MISSING
    keep_last: int = MISSING
    keep_best: int = MISSING
    resume: bool = MISSING


ConfigStore.instance().store(group="train", name="schema", node=TrainConfig)
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")  # the repository's conf/


def token_loss(model: nn.Module, batch: Any, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of a batch's target tokens (padding ignored) and the number of those tokens."""
    logits, _ = model(batch.src, batch.src_mask, batch.trg_in)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.trg_out.flatten(), ignore_index=PAD, reduction="sum",
                           label_smoothing=label_smoothing)
    return loss, batch.n_target_tokens


def build_scheduler(tc: DictConfig, optimizer: torch.optim.Optimizer, higher_is_better: bool) -> Any:
    """``plateau``: decay by ``lr_decay`` when the dev metric stalls (stepped per validation, for RNNs);
    ``inverse_sqrt``: linear warm-up to ``lr`` over ``warmup`` updates, then lr * sqrt(warmup / step)
    (Vaswani et al. 2017, stepped per update, for the Transformer); ``constant``."""
    if tc.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if higher_is_better else "min", factor=tc.lr_decay, patience=tc.lr_patience,
            min_lr=tc.min_lr)
    if tc.schedule == "inverse_sqrt":
        warmup = max(1, tc.warmup)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / warmup, (warmup / (step + 1)) ** 0.5))
    if tc.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise NmtError(f"unknown train.schedule {tc.schedule!r}: choose plateau, inverse_sqrt or constant")


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

    def _tensorboard(self) -> Any:
        if self._board is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
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
                 trg_lengths: Any, tc: DictConfig, rank: int = 0, world: int = 1,
                 device: torch.device | None = None) -> tuple[float, int]:
    """One optimizer update from the batches in ``group``, each split over ``world`` ranks.

    The gradient is that of the summed token loss of every sentence in the group divided by their number of
    target tokens: the update one batch holding all of them would give, however many batches are accumulated
    (``train.accumulate``) and however many ranks share them (DistributedDataParallel averages over ranks,
    hence the factor ``world``). Returns this rank's summed loss and target tokens.
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
    if tc.clip_grad_norm > 0:
        nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad_norm)
    optimizer.step()
    return loss_sum, tokens


def train_device(name: str) -> torch.device:
    """``auto``: the GPU of this rank when there is one (LOCAL_RANK under torchrun), else the CPU."""
    if name == "auto":
        name = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


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


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the log lines a killed run wrote after its last checkpoint (the resumed run writes them again),
    and a last line the kill cut short."""

    def before(line: str) -> bool:
        try:
            return json.loads(line).get("step", 0) <= step
        except json.JSONDecodeError:
            return False

    if path.exists():
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(x for x in lines if before(x)), encoding="utf-8")


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train the model ``cfg`` describes in ``run_dir``; returns the final test (or dev) scores.

    Under torchrun every rank calls this; rank 0 prepares the data and tokenizer first and alone writes files.
    """
    tc = cfg.train
    if tc.precision not in ("fp32", "bf16"):
        raise NmtError(f"unknown train.precision {tc.precision!r}: choose fp32 or bf16")
    device = train_device(tc.device)
    rank, world = distributed.setup(device)
    is_main = rank == 0
    run_dir = Path(distributed.broadcast(str(run_dir)))
    if not is_main:
        logging.getLogger("nmt").setLevel(logging.WARNING)
        distributed.barrier()  # rank 0 prepares data, tokenizer and token cache; the others then read them
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed + rank)
    torch.set_num_threads(tc.threads if tc.threads > 0 else max(1, (os.cpu_count() or 1) // world))

    data_dir = data.prepare(cfg.data, run_dir)
    train_set = data.load_split(cfg.data, data_dir, "train")
    dev_src, dev_trg = data.as_lists(data.load_split(cfg.data, data_dir, "dev"))
    src_tok, trg_tok = build_tokenizers(cfg.tokenizer, run_dir, data.iter_texts(train_set, "src"),
                                        data.iter_texts(train_set, "trg"))
    if is_main:
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    train_set, src_lengths, trg_lengths = data.filter_pairs(
        data.encode(cfg.data, "train", train_set, src_tok, trg_tok), cfg.data.max_length,
        cfg.data.get("max_ratio", 0.0))
    if is_main:
        distributed.barrier()
    if not len(train_set):
        raise NmtError(f"no training pairs left in {data.describe(cfg.data, data_dir, 'train')} after filtering")

    model = build_model(cfg.model, len(src_tok), len(trg_tok)).to(device)
    log.info("model %s: %s parameters; vocabulary %d (source) / %d (target); %d training pairs; %s%s",
             cfg.model.name, f"{count_parameters(model):,}", len(src_tok), len(trg_tok), len(train_set), device,
             f", {world} processes" if world > 1 else "")
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=tuple(tc.betas))
    higher_is_better = tc.metric not in LOWER_IS_BETTER
    scheduler = build_scheduler(tc, optimizer, higher_is_better)
    translator = Translator(model, src_tok, trg_tok, cfg.decode, cfg.data.max_length)
    greedy = OmegaConf.merge(cfg.decode, {"beam_size": 1, "nbest": 1})  # validation decodes greedily
    validate = Validator(Translator(model, src_tok, trg_tok, greedy, cfg.data.max_length, tc.precision),
                         dev_src, dev_trg, cfg.decode.batch_tokens)
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    kept = Checkpoints(run_dir, tc.keep_last, tc.keep_best, higher_is_better)

    progress: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "best": None, "bad": 0, "finished": False,
                                "elapsed": 0.0}
    last = run_dir / "last.pt"
    if tc.resume and last.exists():
        state = checkpoint.load(last)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"][rank % len(state["rng"])])
        progress = state["progress"]
        if progress["finished"]:
            log.info("%s: this run has finished already; nothing to do", run_dir)
            distributed.shutdown()
            return progress.get("result", {})
        if is_main:
            _truncate_metrics(metrics.path, progress["step"])
        log.info("resuming from %s: epoch %d, batch %d, step %d", last, progress["epoch"], progress["batch"],
                 progress["step"])
    trained = nn.parallel.DistributedDataParallel(model) if world > 1 else model

    def save_checkpoint(path: Path) -> None:
        rng = distributed.gather(torch.get_rng_state())  # each rank draws its own dropout masks
        if is_main:
            checkpoint.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "rng": rng,
                             "progress": progress}, path)

    def run_validation() -> bool:
        """Validate on rank 0, keep checkpoints; True when early stopping says stop (the same on all ranks)."""
        start = time.perf_counter()
        result = distributed.broadcast(validate()[0] if is_main else None)
        progress["validated"] = progress["step"]
        value = result[tc.metric]
        improved = progress["best"] is None or (value > progress["best"] if higher_is_better
                                                else value < progress["best"])
        if improved:
            progress["best"], progress["bad"] = value, 0
        else:
            progress["bad"] += 1
        if tc.schedule == "plateau":
            scheduler.step(value)
        if is_main:
            metrics.write(split="dev", step=progress["step"], epoch=progress["epoch"],
                          elapsed=round(progress["elapsed"], 1), lr=optimizer.param_groups[0]["lr"],
                          **{k: v for k, v in result.items() if k != "bleu_signature"})
            if improved:
                checkpoint.save({"model": model.state_dict(), "progress": progress}, run_dir / "best.pt")
            kept.add(model.state_dict(), progress["step"], value)
            if tc.plot_attention > 0:
                from nmt.plot import plot_dev_attention

                plot_dev_attention(validate.translator, dev_src[: tc.plot_attention], run_dir / "attention",
                                   progress["step"])
        save_checkpoint(last)  # last: its existence vouches for the files above (a kill before leaves the old one)
        log.info("validation at step %d: loss %.3f ppl %.2f BLEU %.2f chrF %.2f exact %.2f%%%s (%.1f s)",
                 progress["step"], result["loss"], result["ppl"], result["bleu"], result["chrf"], result["exact"],
                 " *best*" if improved else "", time.perf_counter() - start)
        return 0 < tc.patience <= progress["bad"]

    model.train()
    started = time.perf_counter() - progress["elapsed"]
    stop = out_of_time = False
    while not stop and progress["epoch"] < tc.max_epochs:
        batches = token_batches(src_lengths, trg_lengths, tc.batch_tokens, shuffle=True,
                                seed=cfg.seed + progress["epoch"])
        groups = [batches[i: i + tc.accumulate] for i in range(0, len(batches), tc.accumulate)]
        bar = tqdm(total=len(groups), initial=progress["batch"], desc=f"epoch {progress['epoch'] + 1}",
                   unit="update", file=sys.stderr, disable=None if is_main else True, dynamic_ncols=True)
        window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
        for group in groups[progress["batch"]:]:
            loss, n_tokens = train_update(trained, optimizer, train_set, group, trg_lengths, tc, rank, world,
                                          device)
            if tc.schedule != "plateau":
                scheduler.step()
            progress["step"] += 1
            progress["batch"] += 1
            window_loss, window_tokens = window_loss + loss, window_tokens + n_tokens
            bar.update()
            if progress["step"] % tc.log_every == 0:
                window_loss, window_tokens = distributed.all_sum(window_loss, window_tokens)
                rate = window_tokens / (time.perf_counter() - window_start)
                bar.set_postfix(loss=f"{window_loss / window_tokens:.3f}", tok_s=f"{rate:.0f}")
                if is_main:
                    metrics.write(split="train", step=progress["step"], epoch=progress["epoch"],
                                  elapsed=round(time.perf_counter() - started, 1),
                                  loss=window_loss / window_tokens, tokens_per_s=rate,
                                  lr=optimizer.param_groups[0]["lr"])
                if is_main and not sys.stderr.isatty():  # no progress bar: a plain log line instead
                    log.info("epoch %d, step %d: loss %.3f, %.0f target tokens/s", progress["epoch"] + 1,
                             progress["step"], window_loss / window_tokens, rate)
                window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
            progress["elapsed"] = time.perf_counter() - started
            out_of_time = distributed.any_rank(0 < tc.max_minutes * 60 <= progress["elapsed"])
            if tc.validate_every and progress["step"] % tc.validate_every == 0:
                stop = run_validation()
            if stop or out_of_time or progress["step"] >= tc.max_steps > 0:
                stop = True
                break
        bar.close()
        if not stop:
            progress["epoch"] += 1
            progress["batch"] = 0
            if not tc.validate_every:
                stop = run_validation()
    if progress.get("validated") != progress["step"]:
        run_validation()
    if out_of_time:
        log.info("stopped: time budget of %s minutes reached", tc.max_minutes)
    elif stop:
        log.info("stopped at step %d", progress["step"])
    log.info("training took %.1f s (%d steps, %d epochs)", progress["elapsed"], progress["step"],
             progress["epoch"])

    result = test(cfg, run_dir, data_dir, translator, metrics) if is_main else {}
    progress["finished"], progress["result"] = True, result
    save_checkpoint(last)
    distributed.shutdown()
    return result


def test(cfg: DictConfig, run_dir: Path, data_dir: Path | None, translator: Translator, metrics: MetricsLog
         ) -> dict[str, Any]:
    """Translate the test split (when the data has one) with the best checkpoint; write and score it."""
    translator.model.load_state_dict(checkpoint.load(run_dir / "best.pt")["model"])
    if "test" not in cfg.data.splits:
        return {}
    src, refs = data.as_lists(data.load_split(cfg.data, data_dir, "test"))
    where = data.describe(cfg.data, data_dir, "test")
    hyps = [t.text for t in translator.translate(src, [f"{where}:{i + 1}" for i in range(len(src))])]
    (run_dir / "test.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    result = score(hyps, refs)
    metrics.write(split="test", **result)
    print(f"test ({len(refs)} sentences, {where}): BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  "
          f"exact match {result['exact']:.2f}%  [{result['bleu_signature']}]")
    return result


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of ``nmt train``."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        train(cfg, run_dir)
    except NmtError as e:  # a user's mistake: one line, no traceback (Hydra would print one)
        sys.exit(f"nmt train: error: {e}")
    if os.environ.get("RANK", "0") == "0":
        print(f"run directory: {run_dir}")
