"""Translation with a trained run: the Python API that ``nmt translate``, validation and plotting all use.

    from nmt.translate import Translator
    translator = Translator.from_run("runs/dates")
    [t.text for t in translator.translate(["Wednesday, 25 November 2026"])]   # ['2026-11-25']
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from nmt import NmtError, checkpoint
from nmt.batching import make_batch, token_batches
from nmt.config import DecodeConfig
from nmt.decode_settings import check_decode, with_changes
from nmt.hardware import Precision, int8_engine, resolve_device, resolve_precision
from nmt.lexicon import Lexicon
from nmt.models.builder import build_model
from nmt.models.compiled import CompiledSteps, compiled
from nmt.models.ensemble import Ensemble
from nmt.rundir import RunDir
from nmt.search import Hypothesis, NonFiniteScoresError, beam_search, greedy_search, max_output_lengths, sampler
from nmt.tokenizer import Tokenizer
from nmt.words import pharaoh

log = logging.getLogger(__name__)

class PartialTranslation(KeyboardInterrupt):
    """Ctrl-C during :meth:`Translator.search` or :meth:`Translator.translate`: ``done`` holds, in input order,
    what was finished before it (n-best lists, or translations) and None (search: an empty list) for the rest."""

    def __init__(self, done: list) -> None:
        super().__init__()
        self.done = done


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


class Translator:
    """A model with its tokenizers and decoding settings (the typed ``decode`` group); translates lists of sentences
    in length-sorted batches.

    ``precision`` is a resolved :class:`nmt.hardware.Precision`, or "fp32", "bf16" or "auto", resolved here for
    the model's device; ``checkpoint_path`` (where the weights came from) is named by an error about its scores.
    """

    def __init__(self, model: nn.Module, src_tok: Tokenizer, trg_tok: Tokenizer, decode: DecodeConfig,
                 max_src_length: int, precision: Precision | str = "fp32", checkpoint_path: Path | str | None = None,
                 shortlists: Sequence[Path] = ()) -> None:
        self.model, self.src_tok, self.trg_tok, self.decode = model, src_tok, trg_tok, decode
        self.max_src_length, self.checkpoint_path = max_src_length, checkpoint_path
        self.shortlists = list(shortlists)  # each run's lexical table (decode.shortlist), read when first used
        self._lexicons: list[Lexicon] | None = None
        self.precision = (precision if isinstance(precision, Precision) else
                          resolve_precision(precision, self.device, model=model, backward=False))

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint_name: str = RunDir.BEST, quantize: str | None = None,
                 precision: Precision | str = "fp32", device: torch.device | str = "cpu", fresh: bool = False,
                 **decode: object) -> Translator:
        """Load a run directory: its config, sentencepiece model(s) and a checkpoint (``best.pt`` by default),
        onto ``device`` ("cpu", "cuda", "cuda:N", or "auto": a GPU when there is one).

        ``quantize="int8"`` applies dynamic int8 quantization to the linear and fused recurrent layers (the
        output projection, attention, bridge and encoder RNN) for faster CPU inference (refused on a GPU);
        ``precision="bf16"`` runs the matrix products in bfloat16 (autocast), "auto" where this hardware runs
        them faster (see :mod:`nmt.hardware`). Keyword arguments override the run's ``decode`` settings (e.g.
        ``beam_size=5``; None keeps the run's). A damaged run directory or checkpoint is one ``NmtError`` line
        naming the file.
        """
        return cls.from_runs([run_dir], [checkpoint_name], quantize, precision, device, fresh, **decode)

    @classmethod
    def from_runs(cls, run_dirs: Sequence[str | Path], checkpoint_names: Sequence[str], quantize: str | None = None,
                  precision: Precision | str = "fp32", device: torch.device | str = "cpu", fresh: bool = False,
                  **decode: object) -> Translator:
        """Load one run (as :meth:`from_run`), or several as an :class:`nmt.models.ensemble.Ensemble` that averages
        their probabilities at every step: one checkpoint name per run, or one for all. The runs must share their
        sentencepiece models (a one-line error names the two that differ); the decoding settings are the first
        run's, with ``decode`` overriding them. ``fresh``: the runs' designs with new weights initialised from
        each config's seed (no checkpoint is read)."""
        runs = [RunDir(r) for r in run_dirs]
        names = list(checkpoint_names) * len(runs) if len(checkpoint_names) == 1 else list(checkpoint_names)
        if len(names) != len(runs):
            raise NmtError(f"{len(names)} checkpoints for {len(runs)} runs: give one checkpoint for all, or one "
                           f"per run, in the order of the runs")
        device = resolve_device(device) if isinstance(device, str) else device
        if quantize not in (None, "int8"):
            raise NmtError(f"unknown quantization {quantize!r} (supported: int8)")
        engine = int8_engine(device) if quantize else None  # refuses a GPU before anything is loaded
        check_decode(decode)
        configs = [run.config() for run in runs]
        tokenizers = [run.tokenizers(cfg.tokenizer.joint) for run, cfg in zip(runs, configs, strict=True)]
        for run, (src, trg) in zip(runs[1:], tokenizers[1:], strict=True):
            for side, mine, first in (("source", src, tokenizers[0][0]), ("target", trg, tokenizers[0][1])):
                if mine.path.read_bytes() != first.path.read_bytes():
                    raise NmtError(f"cannot ensemble {runs[0]} and {run}: their {side} sentencepiece models differ "
                                   f"({first.path}, {mine.path}); an ensemble averages the probabilities of the "
                                   f"same subwords")
        src_tok, trg_tok = tokenizers[0]
        members = []
        for run, name, cfg in zip(runs, names, configs, strict=True):
            if fresh:
                torch.manual_seed(cfg.seed)
            model = build_model(cfg.model, len(src_tok), len(trg_tok))
            if not fresh:
                checkpoint.load_weights(model, run.checkpoint(name))
            members.append(model.eval())
        model = members[0] if len(members) == 1 else Ensemble(members)
        if engine is not None:
            log.info("%s", engine)
            with warnings.catch_warnings():  # torch's notices that its quantization API will move: not ours
                warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
                warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions .* deprecated")
                model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear, nn.GRU, nn.LSTM},
                                                               dtype=torch.qint8)
        settings = with_changes(configs[0].decode, decode)
        max_length = min(cfg.data.max_length for cfg in configs)
        paths = ", ".join(f"fresh weights of {run}" if fresh else str(run.checkpoint(name))
                          for run, name in zip(runs, names, strict=True))
        translator = cls(model.to(device), src_tok, trg_tok, settings, max_length, precision, paths,
                         [run.path / RunDir.SHORTLIST for run in runs])
        if settings.shortlist:
            translator.lexicons()  # a missing table is one line before any input is read
        return translator

    def lexicons(self) -> list[Lexicon]:
        """The runs' lexical tables for ``decode.shortlist`` (an ensemble searches the union of its members' lists);
        a missing one is an ``NmtError`` naming the command that builds it."""
        if self._lexicons is None:
            for path in self.shortlists:
                if not path.is_file():
                    raise NmtError(f"decode.shortlist needs {path}: build it with 'nmt shortlist -m {path.parent}'")
            self._lexicons = [Lexicon.load(path) for path in self.shortlists]
        return self._lexicons

    def _shortlist(self, src: Tensor) -> Tensor | None:
        """Each sentence's candidate target subwords [B, V] (None: the full vocabulary)."""
        k = self.decode.shortlist
        if not k:
            return None
        if not self.shortlists:
            raise NmtError("decode.shortlist needs a run's shortlist.pt; this model was not loaded from a run")
        allowed = torch.zeros(src.size(0), len(self.trg_tok), dtype=torch.bool)
        for lexicon in self.lexicons():
            allowed |= lexicon.candidates(src, k, len(self.trg_tok))
        return allowed.to(self.device)

    def translate(self, sentences: list[str], names: list[str] | None = None,
                  lines: Sequence[int] | None = None) -> list[Translation]:
        """Translate detokenized sentences; ``names`` (e.g. 'file:line') label truncation warnings, ``lines`` number
        them for sampling (default: their positions in the list; see :meth:`search`).

        Ctrl-C raises :class:`PartialTranslation` with the sentences translated so far (None for the others).
        """
        src_ids = source_ids(self.src_tok, sentences, self.max_src_length, names)
        try:
            searched = self.search(src_ids, lines)
        except PartialTranslation as e:
            raise PartialTranslation([self._translation(ids, hyps) if hyps else None
                                      for ids, hyps in zip(src_ids, e.done, strict=True)]) from None
        return [self._translation(ids, hyps) for ids, hyps in zip(src_ids, searched, strict=True)]

    def _translation(self, src_ids: list[int], hyps: list[Hypothesis]) -> Translation:
        texts = self.trg_tok.decode([h.tokens for h in hyps])
        best = hyps[0]
        src_pieces, trg_pieces = self.src_tok.pieces(src_ids), self.trg_tok.pieces(best.tokens)
        nbest = [(text, h.score) for text, h in zip(texts, hyps, strict=True)]
        return Translation(texts[0], best.score, best.token_scores, src_pieces, trg_pieces, best.attention,
                           pharaoh(best.attention, src_pieces, trg_pieces), nbest)

    @torch.no_grad()
    def search(self, src_ids: list[list[int]], lines: Sequence[int] | None = None) -> list[list[Hypothesis]]:
        """Decode subword id sequences in batches of similar length; n-best lists come back in input order.

        Greedy search for ``beam_size`` 1, beam search otherwise, or with ``sample`` ``nbest`` samples per
        sentence, sample n of the sentence numbered L (``lines``, default its position) drawn from a generator
        seeded by (``seed``, L, n) (settings from ``self.decode``). NaN scores are an ``NmtError`` naming the
        checkpoint; Ctrl-C raises :class:`PartialTranslation` with the lists finished so far (empty for the others).
        """
        d = self.decode
        was_training = self.model.training
        self.model.eval()
        model = compiled(self.model) if d.compile else self.model  # compiled: a new wrapper, torch's graphs reused
        results: list[list[Hypothesis]] = [[] for _ in src_ids]
        lines = range(len(src_ids)) if lines is None else lines
        copies = d.nbest if d.sample else 1  # the rows of a sentence in a batch: one per sample
        try:
            for indices in token_batches([len(s) for s in src_ids], None, max(1, d.batch_tokens // copies)):
                batch = make_batch([src_ids[i] for i in indices for _ in range(copies)]).to(self.device)
                max_lengths = max_output_lengths(batch.src_mask, d.max_len_a, d.max_len_b)
                shortlist = self._shortlist(batch.src)
                with self.precision.autocast(self.device):
                    if d.sample:
                        pick = sampler(_uniforms([(lines[i], n) for i in indices for n in range(copies)],
                                                 max_lengths, d.seed).to(self.device), d.temperature, d.top_k,
                                       d.top_p)
                        rows = greedy_search(model, batch.src, batch.src_mask, max_lengths, d.min_length,
                                             d.no_repeat_ngram, pick, shortlist)
                        nbest = [rows[k : k + copies] for k in range(0, len(rows), copies)]
                    elif d.beam_size == 1:
                        nbest = [[h] for h in greedy_search(model, batch.src, batch.src_mask, max_lengths,
                                                            d.min_length, d.no_repeat_ngram, shortlist=shortlist)]
                    else:
                        nbest = beam_search(model, batch.src, batch.src_mask, max_lengths, d.beam_size,
                                            d.alpha, d.nbest, d.min_length, d.no_repeat_ngram, d.stop, shortlist)
                for i, hyps in zip(indices, nbest, strict=True):
                    results[i] = hyps
        except NonFiniteScoresError:
            who = f"the model of checkpoint {self.checkpoint_path}" if self.checkpoint_path else "the model"
            raise NmtError(f"{who} gives NaN scores: its weights are broken (did its training diverge?)") from None
        except KeyboardInterrupt:
            raise PartialTranslation(results) from None
        finally:
            self.model.train(was_training)
        if isinstance(model, CompiledSteps):
            model.report()
        return results

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def source_ids(tok: Tokenizer, sentences: list[str], max_length: int, names: list[str] | None = None
               ) -> list[list[int]]:
    """The subword ids of detokenized sentences; one longer than ``max_length`` is truncated to it, with a warning
    naming it (``names``, e.g. 'file:line', else its position)."""
    src_ids = tok.encode(sentences)
    for i, ids in enumerate(src_ids):
        if len(ids) > max_length:
            where = names[i] if names else f"sentence {i + 1}"
            log.warning("%s: %d subwords, truncated to the model's limit of %d", where, len(ids), max_length)
            src_ids[i] = ids[:max_length]
    return src_ids


def _uniforms(rows: list[tuple[int, int]], max_lengths: Tensor, seed: int) -> Tensor:
    """[rows, steps]: for sample n of the sentence numbered L, the uniforms of a generator seeded by (seed, L, n),
    as many as its own length limit (so that they do not depend on its batch), zero-padded."""
    out = torch.zeros(len(rows), int(max_lengths.max()))
    for r, ((line, n), length) in enumerate(zip(rows, max_lengths.tolist(), strict=True)):
        key = int.from_bytes(hashlib.sha256(f"{seed}:{line}:{n}".encode()).digest()[:8], "little") >> 1
        out[r, :length] = torch.rand(length, generator=torch.Generator().manual_seed(key))
    return out
