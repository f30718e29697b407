"""The decoding step compiled by torch.compile (``decode.compile``, ``--compile``).

Search calls a model's ``step`` once per output position, with batches that shrink as sentences finish (beam
search), sources of every length, and self-attention caches that grow (the Transformer). :class:`CompiledSteps`
runs ``step`` through ``torch.compile`` with dynamic shapes, so that these sizes are symbols of a graph rather than
constants of it: a new size reuses the graph. Only a few cases compile a graph of their own, once per process:
greedy against beam search, a batch of one row, a Transformer's first step (an empty cache). To keep it so, sizes
are not specialized to 1 where torch can avoid it nor equal sizes assumed equal, and the step's inputs always have
the same layout: contiguous encoder outputs, decoder states that share no storage, tokens that are no view.

The outputs are the eager step's up to the order of floating-point operations. Compiling costs seconds at the
first batches (inductor generates and builds C++ kernels): :meth:`CompiledSteps.report` logs it at INFO with the
first batch's latency against the later batches'. Inductor needs a C++ compiler: without one, or when compiling
fails, one warning line, and search runs the eager step.
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.fx.experimental._config as shape_config
from torch import Tensor, nn

from nmt.models.protocol import Tensors

log = logging.getLogger(__name__)

Backend = str | Callable[..., Any]  # a torch.compile backend: "inductor", "eager", "aot_eager" or a function
_failed: set[Backend] = set()  # backends that failed to compile in this process: not tried again


@functools.cache
def _compiler_found(names: tuple[str | None, ...]) -> bool:
    """Whether a C++ compiler that inductor would use (``names``: its ``cpp.cxx`` setting) is on the PATH; warns,
    once per setting, when none is."""
    if any(name and shutil.which(name) for name in names):
        return True
    log.warning("--compile: no C++ compiler (%s) for torch.compile's inductor: decoding without compiling",
                ", ".join(name for name in names if name) or "none set")
    return False


def compiled(model: nn.Module, backend: Backend = "inductor") -> nn.Module:
    """``model`` with its ``step`` compiled by ``backend`` (:class:`CompiledSteps`); ``model`` itself where inductor
    finds no C++ compiler (one warning) or the backend failed before in this process."""
    if backend in _failed:
        return model
    if backend == "inductor":
        import torch._inductor.config as inductor_config

        cxx = inductor_config.cpp.cxx
        if not _compiler_found(tuple(cxx) if isinstance(cxx, list | tuple) else (cxx,)):
            return model
    return CompiledSteps(model, backend)


class CompiledSteps(nn.Module):
    """A model (``nmt.models.protocol``) for one search: ``encode`` and ``init_state`` are the model's, ``step`` runs
    compiled. ``compile_seconds``: the time of the steps that compiled a graph."""

    def __init__(self, model: nn.Module, backend: Backend = "inductor") -> None:
        super().__init__()
        import torch._dynamo  # here, not at the top: a second of start-up that only compiling needs

        self.model, self.backend = model, backend
        self._step: Callable[..., tuple[Tensor, Tensor | None, Tensors]] = torch.compile(
            model.step, dynamic=True, backend=backend)
        self.compile_seconds = 0.0
        self._batch_starts: list[float] = []

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensors:
        self._batch_starts.append(time.perf_counter())  # search encodes once per batch
        return {key: value.contiguous() for key, value in self.model.encode(src, src_mask).items()}

    def init_state(self, enc: Tensors) -> Tensors:
        return {key: value.clone() for key, value in self.model.init_state(enc).items()}

    def step(self, prev: Tensor, enc: Tensors, state: Tensors) -> tuple[Tensor, Tensor | None, Tensors]:
        graphs, start = torch._dynamo.utils.counters["stats"]["unique_graphs"], time.perf_counter()
        try:
            with shape_config.patch(backed_size_oblivious=True, use_duck_shape=False):
                out = self._step(prev.clone(), enc, state)
        except torch._dynamo.exc.BackendCompilerFailed as e:
            _failed.add(self.backend)
            log.warning("--compile: torch.compile failed (%s): decoding without compiling",
                        " ".join(str(e.inner_exception).split())[:200])
            self._step = self.model.step
            return self.model.step(prev, enc, state)
        if torch._dynamo.utils.counters["stats"]["unique_graphs"] != graphs:
            self.compile_seconds += time.perf_counter() - start
        return out

    def report(self) -> None:
        """Log at INFO, if this search compiled a graph: the time compiling took, the first batch's latency and the
        later batches' mean."""
        if not self.compile_seconds:
            return
        ends = [*self._batch_starts[1:], time.perf_counter()]
        first, *later = (end - start for start, end in zip(self._batch_starts, ends, strict=True))
        rest = f", the {len(later)} later batches {sum(later) / len(later):.3f} s each on average" if later else ""
        log.info("--compile: the decoding step compiled in %.1f s; first batch %.2f s%s", self.compile_seconds,
                 first, rest)
