"""Translation with a trained run: the Python API that ``nmt translate``, validation and plotting all use.

    from nmt.translate import Translator
    translator = Translator.from_run("runs/dates")
    [t.text for t in translator.translate(["Wednesday, 25 November 2026"])]   # ['2026-11-25']
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm import tqdm

from nmt import NmtError, checkpoint
from nmt.batching import make_batch, token_batches
from nmt.model import build_model
from nmt.search import Hypothesis, beam_search, greedy_search, max_output_lengths
from nmt.tokenizer import Tokenizer, load_tokenizers
from nmt.words import pharaoh

log = logging.getLogger(__name__)


@dataclass
class Translation:
    """A translated sentence: its log-probability (total and per token, EOS last), the subword pieces of both
    sides, attention [target pieces + EOS, source pieces + EOS], the word alignment in Pharaoh format, and the
    n-best list as (text, log-probability) pairs, best first."""

    text: str
    score: float
    token_scores: list[float]
    src_pieces: list[str]
    trg_pieces: list[str]
    attention: Tensor | None
    alignment: str
    nbest: list[tuple[str, float]]


def load_run_config(run_dir: Path) -> DictConfig:
    """The resolved configuration a training run saved."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise NmtError(f"run config not found: {path} (is {run_dir} a training run directory?)")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:
        raise NmtError(f"cannot read run config {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, DictConfig) or "model" not in cfg or "tokenizer" not in cfg:
        raise NmtError(f"{path} is not an nmt run config (no model or tokenizer section)")
    return cfg


class Translator:
    """A model with its tokenizers and decoding settings; translates lists of sentences in length-sorted batches."""

    def __init__(self, model: nn.Module, src_tok: Tokenizer, trg_tok: Tokenizer, decode: DictConfig,
                 max_src_length: int, precision: str = "fp32") -> None:
        if precision not in ("fp32", "bf16"):
            raise NmtError(f"unknown precision {precision!r} (supported: fp32, bf16)")
        self.model, self.src_tok, self.trg_tok, self.decode = model, src_tok, trg_tok, decode
        self.max_src_length, self.precision = max_src_length, precision

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint_name: str = "best.pt", quantize: str | None = None,
                 precision: str = "fp32", **decode: object) -> Translator:
        """Load a run directory: its config, sentencepiece model(s) and a checkpoint (``best.pt`` by default).

        ``quantize="int8"`` applies dynamic int8 quantization to the linear and fused recurrent layers (the
        output projection, attention, bridge and encoder RNN) for faster CPU inference; ``precision="bf16"``
        runs the matrix products in bfloat16 (autocast; fast on CPUs with AVX-512 BF16 or AMX). Keyword
        arguments override the run's ``decode`` settings (e.g. ``beam_size=5``).
        """
        run_dir = Path(run_dir)
        cfg = load_run_config(run_dir)
        src_tok, trg_tok = load_tokenizers(run_dir, cfg.tokenizer.joint)
        model = build_model(cfg.model, len(src_tok), len(trg_tok))
        state = checkpoint.load(run_dir / checkpoint_name)
        try:
            model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as e:
            raise NmtError(f"checkpoint {run_dir / checkpoint_name} does not fit the run's model: "
                           f"{str(e).splitlines()[0]}") from None
        model.eval()
        if quantize == "int8":
            model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear, nn.GRU, nn.LSTM}, dtype=torch.qint8)
        elif quantize is not None:
            raise NmtError(f"unknown quantization {quantize!r} (supported: int8)")
        settings = OmegaConf.merge(cfg.decode, decode)
        return cls(model, src_tok, trg_tok, settings, cfg.data.max_length, precision)

    def translate(self, sentences: list[str], names: list[str] | None = None) -> list[Translation]:
        """Translate detokenized sentences; ``names`` (e.g. 'file:line') label truncation warnings."""
        src_ids = self.src_tok.encode(sentences)
        for i, ids in enumerate(src_ids):
            if len(ids) > self.max_src_length:
                where = names[i] if names else f"sentence {i + 1}"
                log.warning("%s: %d subwords, truncated to the model's limit of %d", where, len(ids),
                            self.max_src_length)
                src_ids[i] = ids[: self.max_src_length]
        translations = []
        for ids, hyps in zip(src_ids, self.search(src_ids), strict=True):
            texts = self.trg_tok.decode([h.tokens for h in hyps])
            best = hyps[0]
            src_pieces, trg_pieces = self.src_tok.pieces(ids), self.trg_tok.pieces(best.tokens)
            nbest = [(text, h.score) for text, h in zip(texts, hyps, strict=True)]
            translations.append(Translation(texts[0], best.score, best.token_scores, src_pieces, trg_pieces,
                                            best.attention, pharaoh(best.attention, src_pieces, trg_pieces), nbest))
        return translations

    @torch.no_grad()
    def search(self, src_ids: list[list[int]]) -> list[list[Hypothesis]]:
        """Decode subword id sequences in batches of similar length; n-best lists come back in input order.

        Greedy search for ``beam_size`` 1, beam search otherwise (settings from ``self.decode``).
        """
        d = self.decode
        if d.nbest > d.beam_size:
            raise NmtError(f"nbest ({d.nbest}) cannot exceed the beam size ({d.beam_size})")
        was_training = self.model.training
        self.model.eval()
        results: list[list[Hypothesis]] = [[] for _ in src_ids]
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        for indices in token_batches([len(s) for s in src_ids], None, d.batch_tokens):
            batch = make_batch([src_ids[i] for i in indices]).to(self.device)
            max_lengths = max_output_lengths(batch.src_mask, d.max_len_a, d.max_len_b)
            with autocast:
                if d.beam_size == 1:
                    nbest = [[h] for h in greedy_search(self.model, batch.src, batch.src_mask, max_lengths)]
                else:
                    nbest = beam_search(self.model, batch.src, batch.src_mask, max_lengths, d.beam_size, d.alpha,
                                        d.nbest, d.min_length, d.no_repeat_ngram)
            for i, hyps in zip(indices, nbest, strict=True):
                results[i] = hyps
        self.model.train(was_training)
        return results

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def read_lines_replacing(stream: Iterable[bytes], name: str) -> Iterator[str]:
    """Decode lines as UTF-8; invalid bytes become U+FFFD with a warning naming the line (nothing is dropped)."""
    for number, raw in enumerate(stream, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            log.warning("%s:%d: invalid UTF-8, undecodable bytes replaced by U+FFFD", name, number)
            line = raw.decode("utf-8", errors="replace")
        yield line.rstrip("\r\n")


def format_translation(t: Translation | None, line: int, nbest: int, scores: bool) -> str:
    """The output lines of one input line (``t`` None for a blank line): the text, or 'SCORE\\tTEXT' with
    ``scores``, or with ``nbest`` N lines 'LINE ||| TEXT ||| SCORE'."""
    if nbest:
        entries = t.nbest if t is not None else []
        entries = entries + [("", float("-inf"))] * (nbest - len(entries))  # always N lines
        return "".join(f"{line} ||| {text} ||| {score:.4f}\n" for text, score in entries)
    if t is None:
        return "\n"
    return f"{t.score:.4f}\t{t.text}\n" if scores else t.text + "\n"


def translate_stream(translator: Translator, lines: Iterable[str], out: TextIO, name: str,
                     chunk_lines: int = 1000, progress: bool = True, nbest: int = 0, scores: bool = False,
                     alignments: TextIO | None = None) -> int:
    """Translate ``lines`` chunk by chunk, writing one output line per input line, in order.

    Memory stays bounded by the chunk; the output of a chunk is written (and flushed) before the next is read.
    Blank lines give blank lines. ``alignments`` receives a Pharaoh line per input line. Returns the number of
    lines translated.
    """
    start, count = time.perf_counter(), 0
    bar = tqdm(unit=" sent", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    chunk: list[str] = []

    def flush() -> None:
        nonlocal count
        texts = [" ".join(line.split()) for line in chunk]
        keep = [i for i, t in enumerate(texts) if t]
        names = [f"{name}:{count + i + 1}" for i in keep]
        results: list[Translation | None] = [None] * len(chunk)
        for i, t in zip(keep, translator.translate([texts[i] for i in keep], names) if keep else [], strict=True):
            results[i] = t
        out.write("".join(format_translation(t, count + i, nbest, scores) for i, t in enumerate(results)))
        out.flush()
        if alignments is not None:
            alignments.write("".join((t.alignment if t else "") + "\n" for t in results))
            alignments.flush()
        count += len(chunk)
        bar.update(len(chunk))
        chunk.clear()

    for line in lines:
        chunk.append(line)
        if len(chunk) >= chunk_lines:
            flush()
    if chunk:
        flush()
    bar.close()
    elapsed = time.perf_counter() - start
    log.info("translated %d lines in %.1f s (%.1f sentences/s)", count, elapsed, count / max(elapsed, 1e-9))
    return count
