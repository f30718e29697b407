"""What ``nmt serve`` serves: the loaded runs, the server's limits, and the work behind each endpoint (model
choice, search settings checked against the limits, translation through each model's micro-batcher), free of
HTTP details: ``nmt.server.app`` maps it onto the API.

Text is read as ``nmt translate`` reads a line: lone UTF-16 surrogates (from JSON escapes) become U+FFFD, runs of
whitespace (tabs, control separators) one space. Nothing is truncated: a sentence over a limit is refused.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from nmt import NmtError
from nmt.alignment import has_heads
from nmt.config import LOWER_IS_BETTER, DecodeConfig, RunConfig, TransformerConfig
from nmt.ct2 import CTranslate2Translator
from nmt.models.builder import build_model, count_parameters
from nmt.rundir import RunDir
from nmt.server.batcher import AnyTranslator, MicroBatcher, Output, QueueFull
from nmt.server.schemas import Language, Limits, ModelInfo, Scored, SentenceResult
from nmt.translate import Translator
from nmt.words import word_ids, words

log = logging.getLogger(__name__)

WARM_UP = "Wednesday, 25 November 2026"  # any text warms a model up
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SURROGATE = re.compile("[\ud800-\udfff]")
ENGINES = ("nmt", "ctranslate2")
EXPORTED_CHECKPOINT = "--engine ctranslate2 runs the exported checkpoint: choose it with 'nmt export --checkpoint'"
LANGUAGE_NAMES = {"ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish", "fi": "Finnish",
                  "fr": "French", "it": "Italian", "ja": "Japanese", "nl": "Dutch", "pl": "Polish",
                  "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "tr": "Turkish", "uk": "Ukrainian",
                  "zh": "Chinese"}


@dataclass
class ServerSettings:
    """Limits and batching of a server (``nmt serve --help`` describes each)."""

    max_body_bytes: int = 1 << 20
    max_chars: int = 1000
    max_sentences: int = 100
    max_beam: int = 16
    max_nbest: int = 8
    max_queue: int = 1024
    batch_wait_ms: float = 5.0
    batch_tokens: int | None = None  # None: each run's decode.batch_tokens
    batching: bool = True
    request_timeout: float = 60.0
    api_keys: frozenset[str] = frozenset()
    cors_origins: tuple[str, ...] = ()


@dataclass
class ServedModel:
    """A loaded run, under the name the API knows it by, translated by nmt's engine or by CTranslate2 (its
    export)."""

    name: str
    run_dir: Path
    translator: AnyTranslator
    config: RunConfig
    checkpoint: str = RunDir.BEST
    quantize: str | None = None
    attention: str = field(default="none", init=False)  # set by the warm-up: 'heads', 'single' or 'none'

    @property
    def source(self) -> str:
        return self.config.data.src_lang

    @property
    def target(self) -> str:
        return self.config.data.trg_lang

    @property
    def engine(self) -> str:
        return "ctranslate2" if isinstance(self.translator, CTranslate2Translator) else "nmt"

    @cached_property
    def parameters(self) -> int:
        """The model's parameters; for CTranslate2, those of the run's model built without weights (the export
        holds the same)."""
        if isinstance(self.translator, CTranslate2Translator):
            with torch.device("meta"):  # shapes only, no memory
                model = build_model(self.config.model, len(self.translator.src_tok), len(self.translator.trg_tok))
            return count_parameters(cast(nn.Module, model))  # every Seq2Seq is a module
        return count_parameters(self.translator.model)


def model_specs(specs: list[str]) -> list[tuple[str, Path]]:
    """``[NAME=]RUN_DIR`` arguments -> (name, run directory); the name defaults to the directory's name."""
    named = []
    for spec in specs:
        name, _, path = spec.partition("=")
        if not path or not NAME.fullmatch(name):
            name, path = Path(spec).resolve().name, spec
        named.append((name, Path(path)))
    seen: set[str] = set()
    for name, _ in named:
        if name in seen:
            raise NmtError(f"two models are named {name!r}: name them apart with -m NAME=RUN_DIR")
        seen.add(name)
    return named


def load_model(name: str, run_dir: str | Path, checkpoint: str = RunDir.BEST, quantize: str | None = None,
               precision: str = "fp32", device: torch.device | str = "cpu", engine: str = "nmt", threads: int = 0,
               **decode: Any) -> ServedModel:
    """Load a run as ``nmt translate`` does (``decode`` overrides the run's decoding settings, e.g. beam_size).
    ``engine`` "ctranslate2": the run's export (``nmt export --format ctranslate2``, in the run's ``ctranslate2/``)
    on ``threads`` CPU threads (0: torch's), returning attention for alignments; its checkpoint is the exported
    one."""
    run_dir = Path(run_dir)
    config = RunDir(run_dir).config()
    if engine == "nmt":
        translator: AnyTranslator = Translator.from_run(run_dir, checkpoint_name=checkpoint, quantize=quantize,
                                                        precision=precision, device=device, **decode)
    elif engine == "ctranslate2":
        if checkpoint != RunDir.BEST:
            raise NmtError(EXPORTED_CHECKPOINT)
        translator = CTranslate2Translator.load(run_dir, quantize, precision, device, threads, attention=True,
                                                **decode)
        checkpoint = translator.checkpoint_name
    else:
        raise ValueError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    return ServedModel(name, run_dir, translator, config, checkpoint, quantize)


def run_scores(run_dir: Path, metric: str) -> dict[str, dict[str, float | int]]:
    """The best dev record (by the run's training ``metric``) and the test record of a run's metrics, leaving out
    damaged lines (none without the file)."""
    dev, test = [], None
    for record in RunDir(run_dir).metrics(skip_damaged=True):
        if record.get("split") == "dev" and metric in record:
            dev.append(record)
        elif record.get("split") == "test":
            test = record
    scores = {}
    if dev:
        best = min if metric in LOWER_IS_BETTER else max
        scores["dev"] = best(dev, key=lambda r: r[metric])
    if test:
        scores["test"] = test
    return {split: {k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and k not in ("elapsed", "lr") and math.isfinite(v)} for split, r in scores.items()}


class ApiError(Exception):
    """A request the server refuses: its status code and a message in plain words."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def clean(text: str) -> str:
    """A sentence as ``nmt translate`` reads a line: lone surrogates (from JSON escapes) become U+FFFD, and runs
    of whitespace one space."""
    return " ".join(SURROGATE.sub("\ufffd", text).split())


class Service:
    """The served models, their micro-batchers, the limits, and the work behind every endpoint."""

    def __init__(self, models: list[ServedModel], settings: ServerSettings) -> None:
        if not models:
            raise ValueError("no models to serve")
        self.models = {m.name: m for m in models}
        self.settings = settings
        self.status = "starting"
        self.compute_lock = threading.Lock()  # one batch at a time, of any model: the thread budget is shared
        self.batchers = {m.name: MicroBatcher(
            m.translator, self.compute_lock, settings.batch_tokens or m.translator.decode.batch_tokens,
            settings.batch_wait_ms / 1000, settings.max_queue, merge=settings.batching, name=m.name)
            for m in models}

    def start(self) -> None:
        """Warm every model up (a first translation), then start the workers."""
        for m in self.models.values():
            with self.compute_lock:
                t = m.translator.translate([WARM_UP])[0]
            heads = isinstance(m.translator, Translator) and has_heads(m.translator)
            m.attention = "heads" if heads else "single" if t.attention is not None else "none"
        for b in self.batchers.values():
            b.start()
        self.status = "ready"
        log.info("ready: %s", ", ".join(f"{m.name} ({m.source}->{m.target}, {m.run_dir})"
                                        for m in self.models.values()))

    def stop(self) -> None:
        self.status = "draining"
        for b in self.batchers.values():
            b.stop()

    def check_key(self, key: str | None, headers: Mapping[str, str]) -> None:
        """With API keys configured: the key from the body, or an ``Authorization: Bearer KEY`` or ``X-API-Key``
        header."""
        if not self.settings.api_keys:
            return
        auth = headers.get("authorization", "")
        key = key or (auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("x-api-key"))
        if not key:
            raise ApiError(403, "an API key is required: send api_key in the body, or an 'Authorization: Bearer "
                                "KEY' or 'X-API-Key' header")
        if not any(hmac.compare_digest(key.encode(), k.encode()) for k in self.settings.api_keys):
            raise ApiError(403, "invalid API key")

    def model(self, name: str | None) -> ServedModel:
        if name is None:
            return next(iter(self.models.values()))
        if name not in self.models:
            raise ApiError(400, f"unknown model {name!r}; served: {', '.join(self.models)}")
        return self.models[name]

    def model_for_pair(self, source: str, target: str, name: str | None) -> ServedModel:
        """The model for a language pair: the one named, or the first served for the pair."""
        pairs = ", ".join(f"{m.source}->{m.target} ({m.name})" for m in self.models.values())
        if source == "auto":
            raise ApiError(400, f"source 'auto' (language detection) is not supported: give the source language; "
                                f"served pairs: {pairs}")
        if name is not None:
            m = self.model(name)
            if (m.source, m.target) != (source, target):
                raise ApiError(400, f"model {name!r} translates {m.source}->{m.target}, not {source}->{target}")
            return m
        for m in self.models.values():
            if (m.source, m.target) == (source, target):
                return m
        raise ApiError(400, f"no model translates {source}->{target}; served pairs: {pairs}")

    def search_settings(self, m: ServedModel, **requested: Any) -> DecodeConfig:
        """The model's decoding settings with a request's (None: the default), checked against the server's caps.
        An n-best list without a beam size searches with the model's beam, or as ``nmt translate`` does, with
        max(nbest, 5) beams where the model's default is greedy search."""
        d = m.translator.decode
        if requested.get("nbest") is not None and requested.get("beam_size") is None:
            requested["beam_size"] = max(requested["nbest"], d.beam_size if d.beam_size > 1 else 5)
        values = {**d.model_dump(), **{k: v for k, v in requested.items() if v is not None}}
        beam, nbest, min_length = values["beam_size"], values["nbest"], values["min_length"]
        if beam > self.settings.max_beam:
            raise ApiError(422, f"beam size {beam} is over this server's limit of {self.settings.max_beam}")
        if nbest > self.settings.max_nbest:
            raise ApiError(422, f"{nbest} hypotheses per sentence are over this server's limit of "
                                f"{self.settings.max_nbest}")
        if nbest > beam and not values["sample"]:
            raise ApiError(422, f"nbest ({nbest}) cannot exceed the beam size ({beam})")
        if values["no_repeat_ngram"] == 1 and min_length >= len(m.translator.trg_tok) - 1:
            raise ApiError(422, f"min_length {min_length} cannot be met without repeating a subword (the target "
                                f"vocabulary has {len(m.translator.trg_tok)})")
        if isinstance(m.translator, CTranslate2Translator):
            for key, what in (("sample", "does not sample as nmt does"), ("shortlist", "has no shortlists")):
                if values[key]:
                    raise ApiError(422, f"{key}: model {m.name} runs on CTranslate2 (--engine ctranslate2), which "
                                        f"{what}: serve the run with nmt's own engine for {key}")
        elif values["shortlist"]:
            try:
                widest = min(lexicon.table.size(1) for lexicon in m.translator.lexicons())
            except NmtError as e:
                raise ApiError(422, f"model {m.name} has no shortlist: {e}") from None
            if values["shortlist"] > widest:
                raise ApiError(422, f"shortlist {values['shortlist']} is over model {m.name}'s table of {widest} "
                                    f"target subwords per source subword")
        return DecodeConfig.model_validate(values)  # each value is in its field's range: the request's schema says so

    def check_sentences(self, lines: list[str]) -> None:
        """The per-request limits: sentences per request and characters per sentence (before cleaning)."""
        if len(lines) > self.settings.max_sentences:
            raise ApiError(413, f"{len(lines)} sentences in one request; this server's limit is "
                                f"{self.settings.max_sentences}")
        for n, line in enumerate(lines, 1):
            if len(line) > self.settings.max_chars:
                raise ApiError(413, f"sentence {n} has {len(line)} characters; this server's limit is "
                                    f"{self.settings.max_chars}")

    async def translate(self, m: ServedModel, texts: list[str], settings: DecodeConfig,
                        heads: bool = False, gradients: bool = False) -> list[Output | None]:
        """Translate cleaned sentences through the model's micro-batcher; a blank sentence gives None. ``heads``
        adds a Transformer's per-head attention, ``gradients`` the gradient flow map of each translation."""
        if gradients and m.engine == "ctranslate2":
            raise ApiError(400, f"gradients: model {m.name} runs on CTranslate2 (--engine ctranslate2), which has "
                                f"no backward pass: serve the run with nmt's own engine for gradients")
        if gradients and m.quantize:
            raise ApiError(400, f"model {m.name} is quantized to {m.quantize}: it has no backward pass, so no "
                                f"gradients (serve it without --quantize)")
        keep = [i for i, t in enumerate(texts) if t]
        if not keep:
            raise ApiError(400, "nothing to translate: the input is empty")
        lengths = [len(ids) for ids in m.translator.src_tok.encode([texts[i] for i in keep])]
        for i, n in zip(keep, lengths, strict=True):
            if n > m.translator.max_src_length:
                raise ApiError(413, f"sentence {i + 1} has {n} subwords; model {m.name} takes at most "
                                    f"{m.translator.max_src_length}")
        try:
            future = self.batchers[m.name].submit([texts[i] for i in keep], lengths, settings, heads, gradients)
        except QueueFull as e:
            raise ApiError(503, f"busy: {e}; retry shortly", {"Retry-After": "1"}) from None
        timeout = self.settings.request_timeout
        try:
            outputs = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:  # the builtin TimeoutError from Python 3.11
            raise ApiError(504, f"the translation took longer than this server's limit of {timeout:g} s") from None
        results: list[Output | None] = [None] * len(texts)
        for i, output in zip(keep, outputs, strict=True):
            results[i] = output
        return results

    def limits(self) -> Limits:
        """The limits this service and the body-size middleware enforce, read from the same settings."""
        s = self.settings
        return Limits(max_chars=s.max_chars, max_sentences=s.max_sentences, max_body_bytes=s.max_body_bytes,
                      max_beam=s.max_beam, max_nbest=s.max_nbest, request_timeout=s.request_timeout)

    def model_info(self, m: ServedModel) -> ModelInfo:
        cfg = m.config
        transformer = cfg.model if m.attention == "heads" and isinstance(cfg.model, TransformerConfig) else None
        return ModelInfo(
            name=m.name, run=str(m.run_dir), checkpoint=m.checkpoint, design=cfg.model.name,
            arch=cfg.model.arch, engine=m.engine, parameters=m.parameters, source=m.source,
            target=m.target, max_length=m.translator.max_src_length,
            device=str(m.translator.device), precision=m.translator.precision.name, quantize=m.quantize,
            attention=m.attention, layers=transformer.num_layers if transformer else None,
            heads=transformer.num_heads if transformer else None,
            decode={k: v for k, v in m.translator.decode.model_dump().items() if isinstance(v, (int, float))},
            scores=run_scores(m.run_dir, cfg.train.metric),
            batching=self.batchers[m.name].stats())

    def languages(self) -> list[Language]:
        codes: dict[str, list[str]] = {}
        for m in self.models.values():
            codes.setdefault(m.source, [])
            codes.setdefault(m.target, [])
            if m.target not in codes[m.source]:
                codes[m.source].append(m.target)
        return [Language(code=c, name=LANGUAGE_NAMES.get(c, c), targets=t) for c, t in codes.items()]


def _matrix(t: torch.Tensor) -> list:
    return t.double().round(decimals=5).tolist()


def sentence_result(output: Output | None, attention: bool, token_scores: bool = True) -> SentenceResult:
    """The API's view of a translated sentence (a blank one for None); without ``token_scores`` (an engine that
    gives none) they are null."""
    if output is None:
        return SentenceResult(text="", score=0.0, token_scores=[] if token_scores else None, nbest=[], src_pieces=[],
                              trg_pieces=[], src_words=[], trg_words=[], src_word_ids=[], trg_word_ids=[],
                              alignment="")
    t = output.translation
    return SentenceResult(
        text=t.text, score=t.score, token_scores=t.token_scores if token_scores else None,
        nbest=[Scored(text=x, score=s) for x, s in t.nbest],
        src_pieces=t.src_pieces, trg_pieces=t.trg_pieces, src_words=words(t.src_pieces),
        trg_words=words(t.trg_pieces), src_word_ids=word_ids(t.src_pieces), trg_word_ids=word_ids(t.trg_pieces),
        alignment=t.alignment,
        attention=_matrix(t.attention) if attention and t.attention is not None else None,
        attention_heads=_matrix(output.heads) if attention and output.heads is not None else None,
        gradients=_matrix(output.gradients) if output.gradients is not None else None)
