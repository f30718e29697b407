"""Micro-batching for the server: sentences of concurrent requests to one model are translated together.

Each served model has one worker thread. A request queues its sentences with its search settings (a
``nmt.config.DecodeConfig``: the model's, with the request's changes); the worker takes the oldest queued sentence's
settings, waits for more sentences with the same settings until ``max_wait`` seconds after that sentence's arrival
or after its own previous batch ended, whichever is later (so that the clients just answered can join; no wait once
``batch_tokens`` padded source subwords are queued), and translates up to ``batch_tokens`` of them, oldest first, in
one batch through ``Translator.translate`` (which sorts them by length). All workers share one compute lock, so one
batch runs at a time and each uses all of torch's threads. Search is batch-invariant: a sentence gets the same
translation alone or in any batch (with CTranslate2, except where its length limit, one per batch, binds).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import TypeAlias

from torch import Tensor

from nmt.alignment import force_decode
from nmt.config import DecodeConfig
from nmt.ct2 import CTranslate2Translator
from nmt.gradients import gradient_map
from nmt.translate import Translation, Translator

log = logging.getLogger(__name__)

AnyTranslator: TypeAlias = Translator | CTranslate2Translator  # nmt's engine, or CTranslate2 (no heads, gradients)


@dataclass
class Output:
    """A translated sentence and, when asked for, its attention per layer and head (Transformer) [layers, heads,
    target pieces + EOS, source pieces + EOS] from forced decoding of the translation, and its gradient flow map
    ||d log p(y_i) / d e_j|| [target pieces + EOS, source pieces + EOS] (``nmt.gradients``)."""

    translation: Translation
    heads: Tensor | None = None
    gradients: Tensor | None = None


class QueueFull(Exception):
    """The model's queue holds as many sentences as it may: the request should be retried later."""


@dataclass
class _Job:
    sentences: list[str]
    lengths: list[int]
    settings: DecodeConfig  # only requests with equal settings share a batch
    heads: bool
    gradients: bool
    future: Future = field(default_factory=Future)
    outputs: list[Output | None] = field(default_factory=list)
    started: bool = False  # the worker has taken a sentence: the request can no longer be cancelled
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """The queue and worker thread of one model (see the module docstring).

    ``submit`` returns a future of the request's outputs, in order; cancelling it before the worker reaches the
    request drops its sentences. With ``merge`` False every batch holds one request's sentences only and nothing
    waits (one-request-at-a-time serving, for comparison).
    """

    def __init__(self, translator: AnyTranslator, compute_lock: threading.Lock, batch_tokens: int, max_wait: float,
                 max_queue: int, merge: bool = True, name: str = "model") -> None:
        self.translator, self.compute_lock, self.name = translator, compute_lock, name
        self.batch_tokens, self.max_wait, self.max_queue, self.merge = batch_tokens, max_wait, max_queue, merge
        self._queue: deque[tuple[_Job, int]] = deque()  # (request, sentence index), oldest first
        self._cond = threading.Condition()
        self._stopping = False
        self._free_since = 0.0  # when the last batch ended: the clients it answered may send again at once
        self._translators: dict[DecodeConfig, AnyTranslator] = {}
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self.batches = self.sentences = self.requests = self.rejected = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Translate what is queued, then end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit(self, sentences: list[str], lengths: list[int], settings: DecodeConfig,
               heads: bool = False, gradients: bool = False) -> Future:
        """Queue non-blank sentences (``lengths``: their source subwords) for translation; raises QueueFull."""
        job = _Job(sentences, lengths, settings, heads, gradients, outputs=[None] * len(sentences))
        with self._cond:
            if self._stopping:
                raise QueueFull(f"model {self.name} is shutting down")
            if len(self._queue) + len(sentences) > self.max_queue:
                self.rejected += 1
                raise QueueFull(f"model {self.name} has {len(self._queue)} sentences queued (the limit is "
                                f"{self.max_queue})")
            self._queue.extend((job, i) for i in range(len(sentences)))
            self._cond.notify_all()
        return job.future

    def stats(self) -> dict[str, int]:
        """Counters since start: batches and sentences translated, requests answered and rejected, and the
        sentences queued now."""
        with self._cond:
            return {"batches": self.batches, "sentences": self.sentences, "requests": self.requests,
                    "rejected": self.rejected, "queued": len(self._queue)}

    def translator_for(self, settings: DecodeConfig) -> AnyTranslator:
        """The model's translator with these decoding settings (sharing its model and tokenizers)."""
        if settings not in self._translators:
            if len(self._translators) >= 64:  # requests choose the settings: keep the cache bounded
                self._translators.clear()
            translator = copy.copy(self.translator)
            translator.decode = settings
            self._translators[settings] = translator
        return self._translators[settings]

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            with self.compute_lock:
                self._translate(batch)
            self._free_since = time.monotonic()

    def _next_batch(self) -> list[tuple[_Job, int]] | None:
        """Wait for work (called holding the condition): the next batch, or None once stopped and drained."""
        while True:
            self._queue = deque((job, i) for job, i in self._queue if not job.future.done())  # cancelled, failed
            if not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
                continue
            first = self._queue[0][0]
            remaining = max(first.arrived, self._free_since) + self.max_wait - time.monotonic()
            if self.merge and not self._stopping and remaining > 0 and not self._full(first.settings):
                self._cond.wait(remaining)
                continue
            batch = self._take()
            if batch:
                return batch

    def _fits(self, width: int, count: int) -> bool:
        """Whether ``count`` sentences padded to ``width`` (EOS included) fit one batch (as token_batches counts)."""
        return width * count <= self.batch_tokens

    def _full(self, settings: DecodeConfig) -> bool:
        width = count = 0
        for job, i in self._queue:
            if job.settings == settings:
                width, count = max(width, job.lengths[i] + 1), count + 1
                if not self._fits(width, count):
                    return True
        return False

    def _take(self) -> list[tuple[_Job, int]]:
        """Pop the oldest sentences with the oldest one's settings (and, without merging, of its request only)
        that fit one batch; a request whose first sentence is taken can no longer be cancelled."""
        first_job = self._queue[0][0]
        batch: list[tuple[_Job, int]] = []
        rest: deque[tuple[_Job, int]] = deque()
        width = 0
        for job, i in self._queue:
            same = job is first_job if not self.merge else job.settings == first_job.settings
            w = max(width, job.lengths[i] + 1)
            if not same or (batch and not self._fits(w, len(batch) + 1)):
                rest.append((job, i))
                continue
            if not job.started:
                if job.future.cancelled() or not job.future.set_running_or_notify_cancel():
                    continue  # cancelled since the last look
                job.started = True
            batch.append((job, i))
            width = w
        self._queue = rest
        return batch

    def _translate(self, batch: list[tuple[_Job, int]]) -> None:
        """Translate a batch and hand each finished request its outputs; an error fails the batch's requests
        and the worker goes on."""
        settings = batch[0][0].settings
        try:
            translator = self.translator_for(settings)
            translations = translator.translate([job.sentences[i] for job, i in batch],
                                                lines=[i for _, i in batch])  # samples: by position in the request
            outputs = [Output(t) for t in translations]
            if isinstance(translator, Translator):  # the service asks CTranslate2 for neither
                self._add_heads_and_gradients(translator, batch, outputs)
        except Exception as e:
            log.exception("%s: a batch of %d sentences failed", self.name, len(batch))
            for job in {id(job): job for job, _ in batch}.values():
                self._finish(job, error=e)
            return
        done = []
        for (job, i), output in zip(batch, outputs, strict=True):
            job.outputs[i] = output
            if all(o is not None for o in job.outputs):
                done.append(job)
        with self._cond:
            self.batches += 1
            self.sentences += len(batch)
            self.requests += len(done)
        for job in done:
            self._finish(job)

    @staticmethod
    def _add_heads_and_gradients(translator: Translator, batch: list[tuple[_Job, int]], outputs: list[Output]) -> None:
        """For the requests that asked: per-layer, per-head attention of the translations (forced decoding, as
        ``nmt plot-attention``) and gradient flow maps."""
        wanted = [outputs[k] for k, (job, _) in enumerate(batch) if job.heads]
        if wanted:
            src = [translator.src_tok.ids(o.translation.src_pieces) for o in wanted]
            trg = [translator.trg_tok.ids(o.translation.trg_pieces) for o in wanted]
            for output, heads in zip(wanted, force_decode(translator, src, trg, all_heads=True), strict=True):
                output.heads = heads
        for (job, _), output in zip(batch, outputs, strict=True):
            if job.gradients:
                t = output.translation
                output.gradients = gradient_map(translator.model, translator.src_tok.ids(t.src_pieces),
                                                translator.trg_tok.ids(t.trg_pieces))

    @staticmethod
    def _finish(job: _Job, error: Exception | None = None) -> None:
        try:
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(job.outputs)
        except InvalidStateError:  # already failed by an earlier batch
            pass
