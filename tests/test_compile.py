"""Compiled decoding steps (``decode.compile``, ``nmt.models.compiled``): the same search output as the eager
model, no new graph as batches shrink or change size, the eager fallback without a C++ compiler, and the compile
cost logged. The quick tests trace with torch.compile's "eager" backend (dynamo with dynamic shapes, no C++); one
slow test builds the real inductor kernels."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import nmt.models.compiled
from nmt.batching import make_batch
from nmt.models.compiled import CompiledSteps, compiled
from nmt.search import Hypothesis, beam_search, greedy_search, max_output_lengths
from nmt.translate import Translator
from tests.helpers import SOURCES, small_rnn, small_transformer

DESIGNS = {"rnn": small_rnn, "transformer": small_transformer}


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    """Each test starts with no compiled graph and no backend marked as failed."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
    nmt.models.compiled._failed.clear()


@torch.no_grad()
def _search(model: nn.Module, sources: list[list[int]], beam: int) -> list[list[Hypothesis]]:
    batch = make_batch(sources)
    lengths = max_output_lengths(batch.src_mask, 1.5, 10)
    if beam == 1:
        return [[h] for h in greedy_search(model, batch.src, batch.src_mask, lengths)]
    return beam_search(model, batch.src, batch.src_mask, lengths, beam, alpha=1.0, nbest=2)


def _assert_same(got: list[list[Hypothesis]], want: list[list[Hypothesis]], tol: float = 0.0) -> None:
    assert [[h.tokens for h in n] for n in got] == [[h.tokens for h in n] for n in want]
    for g, w in zip((h for n in got for h in n), (h for n in want for h in n), strict=True):
        assert g.token_scores == pytest.approx(w.token_scores, abs=tol)
        assert torch.allclose(g.attention, w.attention, atol=tol, rtol=0)


def _counting() -> tuple[Callable[..., Any], list[int]]:
    """A torch.compile backend that runs the traced graph as it is, and the list of graphs it was given."""
    graphs: list[int] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list[Tensor]) -> Callable[..., Any]:
        graphs.append(len(graphs))
        return gm.forward

    return backend, graphs


@pytest.mark.parametrize("design", DESIGNS)
def test_compiled_steps_search_as_the_eager_model_and_new_sizes_compile_no_new_graph(design: str) -> None:
    """Traced steps (run as traced, no C++) give the eager model's greedy and beam search outputs; after one greedy
    and one beam search, batches of other sizes (beam search's shrinking as sentences finish, down to one sentence)
    reuse the graphs: the sizes are symbols of them."""
    model = DESIGNS[design]()
    backend, graphs = _counting()
    for beam in (1, 3):
        _search(CompiledSteps(model, backend), SOURCES, beam)
    warm = len(graphs)
    assert 1 <= warm <= 3
    rows: list[int] = []
    for sources in ([*SOURCES, *SOURCES], SOURCES[1:]):
        for beam in (1, 4):
            steps = CompiledSteps(model, backend)
            step = steps.step
            steps.step = lambda prev, enc, state, step=step: rows.append(prev.size(0)) or step(prev, enc, state)
            _assert_same(_search(steps, sources, beam), _search(model, sources, beam), tol=1e-6)
    assert len(graphs) == warm
    assert len({n for n in rows if n % 4 == 0}) >= 3  # beam search's batch shrank as sentences finished


def test_no_cpp_compiler_warns_once_and_searches_eagerly(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (None, "no-such-c++-compiler"))
    model = small_rnn()
    with caplog.at_level(logging.WARNING, logger="nmt.models.compiled"):
        assert compiled(model) is model and compiled(model) is model
    (record,) = caplog.records
    assert record.getMessage() == ("--compile: no C++ compiler (no-such-c++-compiler) for torch.compile's inductor: "
                                   "decoding without compiling")


def test_a_failing_backend_warns_once_and_searches_eagerly(caplog: pytest.LogCaptureFixture) -> None:
    def failing(gm: torch.fx.GraphModule, example_inputs: list[Tensor]) -> Callable[..., Any]:
        raise RuntimeError("the compiler\nbroke")

    model = small_rnn()
    with caplog.at_level(logging.WARNING, logger="nmt.models.compiled"):
        _assert_same(_search(compiled(model, failing), SOURCES, 3), _search(model, SOURCES, 3))
        assert compiled(model, failing) is model  # not tried again
    (record,) = caplog.records
    assert record.getMessage() == ("--compile: torch.compile failed (the compiler broke): decoding without "
                                   "compiling")


def test_translator_compiles_the_step_and_logs_the_cost(dates_run: tuple[Path, dict],
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    sentences = ["Wednesday, 25 November 2026", "3 March 2001", "nov 2nd, 2010", "the 3rd of May 1999"]
    eager = Translator.from_run(dates_run[0], beam_size=3, nbest=2, batch_tokens=20)
    fast = Translator.from_run(dates_run[0], beam_size=3, nbest=2, batch_tokens=20, compile=True)
    assert fast.decode.compile and not eager.decode.compile
    monkeypatch.setattr("nmt.translate.compiled", lambda model: compiled(model, "eager"))
    with caplog.at_level(logging.INFO, logger="nmt.models.compiled"):
        got = fast.translate(sentences)
        again = fast.translate(sentences)  # compiled already: nothing to report
    want = eager.translate(sentences)
    assert [t.nbest for t in got] == [t.nbest for t in again]
    assert [[text for text, _ in t.nbest] for t in got] == [[text for text, _ in t.nbest] for t in want]
    (record,) = caplog.records
    assert record.getMessage().startswith("--compile: the decoding step compiled in ")
    assert "; first batch " in record.getMessage() and " later batches " in record.getMessage()


@pytest.mark.slow
def test_inductor_steps_search_as_the_eager_model() -> None:
    """The real compiler (C++ kernels built by inductor, seconds per graph) on the small recurrent model, the
    step the compiler is for (a cell and attention), in beam search (its first step and a shrinking batch): the same
    outputs, scores equal up to the order of floating-point operations. The cheap backend's tests above cover the
    Transformer."""
    model = small_rnn()
    steps = compiled(model)
    assert isinstance(steps, CompiledSteps), "no C++ compiler for inductor here"
    _assert_same(_search(steps, SOURCES, 3), _search(model, SOURCES, 3), tol=1e-5)
