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

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from nmt import NmtError, checkpoint, data
from nmt.batching import make_batch, token_batches
from nmt.evaluate import score
from nmt.model import build_model, count_parameters
from nmt.tokenizer import PAD, build_tokenizers
from nmt.translate import Translator

log = logging.getLogger(__name__)

LOWER_IS_BETTER = {"loss"}
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
            batch = make_batch([self.src_ids[i] for i in indices], [self.trg_ids[i] for i in indices])
            loss, n = token_loss(model, batch)
            total, tokens = total + loss.item(), tokens + n
        hyps = self.translator.trg_tok.decode([h[0].tokens for h in self.translator.search(self.src_ids)])
        model.train(was_training)
        loss = total / tokens
        return {"loss": loss, "ppl": math.exp(min(loss, 50)), **score(hyps, self.refs)}, hyps


class MetricsLog:
    """Append-only JSON lines (``metrics.jsonl``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, **record: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train the model ``cfg`` describes in ``run_dir``; returns the final test (or dev) scores."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(tc.threads if tc.threads > 0 else (os.cpu_count() or 1))

    data_dir = data.prepare(cfg.data, run_dir)
    train_set = data.load_split(cfg.data, data_dir, "train")
    dev_src, dev_trg = data.as_lists(data.load_split(cfg.data, data_dir, "dev"))
    src_tok, trg_tok = build_tokenizers(cfg.tokenizer, run_dir, data.iter_texts(train_set, "src"),
                                        data.iter_texts(train_set, "trg"))
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    train_set, src_lengths, trg_lengths = data.filter_pairs(
        data.encode(cfg.data, "train", train_set, src_tok, trg_tok), cfg.data.max_length,
        cfg.data.get("max_ratio", 0.0))
    if not len(train_set):
        raise NmtError(f"no training pairs left in {data.describe(cfg.data, data_dir, 'train')} after filtering")

    model = build_model(cfg.model, len(src_tok), len(trg_tok))
    log.info("model %s: %s parameters; vocabulary %d (source) / %d (target); %d training pairs",
             cfg.model.name, f"{count_parameters(model):,}", len(src_tok), len(trg_tok), len(train_set))
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=tuple(tc.betas))
    higher_is_better = tc.metric not in LOWER_IS_BETTER
    scheduler = build_scheduler(tc, optimizer, higher_is_better)
    translator = Translator(model, src_tok, trg_tok, cfg.decode, cfg.data.max_length)
    greedy = OmegaConf.merge(cfg.decode, {"beam_size": 1, "nbest": 1})  # validation decodes greedily
    validate = Validator(Translator(model, src_tok, trg_tok, greedy, cfg.data.max_length), dev_src, dev_trg,
                         cfg.decode.batch_tokens)
    metrics = MetricsLog(run_dir / "metrics.jsonl")

    progress: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "best": None, "bad": 0, "finished": False,
                                "elapsed": 0.0}
    last = run_dir / "last.pt"
    if tc.resume and last.exists():
        state = checkpoint.load(last)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        progress = state["progress"]
        if progress["finished"]:
            log.info("%s: this run has finished already; nothing to do", run_dir)
            return progress.get("result", {})
        log.info("resuming from %s: epoch %d, batch %d, step %d", last, progress["epoch"], progress["batch"],
                 progress["step"])

    def save_checkpoint(path: Path) -> None:
        checkpoint.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                         "progress": progress}, path)

    def run_validation() -> bool:
        """Validate, keep the best checkpoint; True when early stopping says stop."""
        start = time.perf_counter()
        result, _ = validate()
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
        metrics.write(split="dev", step=progress["step"], epoch=progress["epoch"], lr=optimizer.param_groups[0]["lr"],
                      **{k: v for k, v in result.items() if k != "bleu_signature"})
        save_checkpoint(last)
        if improved:
            checkpoint.save({"model": model.state_dict(), "progress": progress}, run_dir / "best.pt")
        if tc.plot_attention > 0:
            from nmt.plot import plot_dev_attention

            plot_dev_attention(validate.translator, dev_src[: tc.plot_attention], run_dir / "attention",
                               progress["step"])
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
        bar = tqdm(batches, initial=progress["batch"], desc=f"epoch {progress['epoch'] + 1}", unit="batch",
                   file=sys.stderr, disable=None, dynamic_ncols=True)
        window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
        for indices in batches[progress["batch"]:]:
            rows = train_set[indices]
            batch = make_batch(rows["src_ids"], rows["trg_ids"])
            loss, n_tokens = token_loss(model, batch, tc.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            (loss / n_tokens).backward()
            if tc.clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad_norm)
            optimizer.step()
            if tc.schedule != "plateau":
                scheduler.step()
            progress["step"] += 1
            progress["batch"] += 1
            window_loss, window_tokens = window_loss + loss.item(), window_tokens + n_tokens
            bar.update()
            if progress["step"] % tc.log_every == 0:
                rate = window_tokens / (time.perf_counter() - window_start)
                bar.set_postfix(loss=f"{window_loss / window_tokens:.3f}", tok_s=f"{rate:.0f}")
                metrics.write(split="train", step=progress["step"], epoch=progress["epoch"],
                              loss=window_loss / window_tokens, tokens_per_s=rate,
                              lr=optimizer.param_groups[0]["lr"])
                window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
            progress["elapsed"] = time.perf_counter() - started
            out_of_time = 0 < tc.max_minutes * 60 <= progress["elapsed"]
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

    result = test(cfg, run_dir, data_dir, translator, metrics)
    progress["finished"], progress["result"] = True, result
    save_checkpoint(last)
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
    print(f"run directory: {run_dir}")
