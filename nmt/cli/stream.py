"""``nmt translate``'s streams: lines read from a file, a pipe or a terminal in chunks that answer as soon as the
input pauses, one output line per input line written whole, and Ctrl-C that stops after the lines translated so
far (:class:`StreamInterrupted`)."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TextIO

import torch
from tqdm import tqdm

from nmt import NmtError, cannot_write
from nmt.translate import PartialTranslation, Translation, Translator

log = logging.getLogger(__name__)

PAUSE = 0.005  # seconds without new input after which the lines that have arrived are translated
READ_BYTES = 1 << 16  # input is read this many bytes at a time


class StreamInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`translate_chunks`, after the first ``lines`` input lines were translated and
    written."""

    def __init__(self, lines: int) -> None:
        super().__init__(f"stopped after translating and writing the first {lines:,} lines")
        self.lines = lines


class WriteError(NmtError):
    """An output could not be written (a full disk, a failing device)."""


def _decode_line(raw: bytes, name: str, number: int) -> str:
    """One line as UTF-8 without its line ending; invalid bytes become U+FFFD with a warning naming the line."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("%s:%d: invalid UTF-8, undecodable bytes replaced by U+FFFD", name, number)
        line = raw.decode("utf-8", errors="replace")
    return line.rstrip("\r\n")


def read_lines_replacing(stream: Iterable[bytes], name: str) -> Iterator[str]:
    """Decode lines as UTF-8; invalid bytes become U+FFFD with a warning naming the line (nothing is dropped)."""
    for number, raw in enumerate(stream, 1):
        yield _decode_line(raw, name, number)


def _input_waiting(fd: int, wait: float) -> bool:
    """Whether more input (or its end) arrives on ``fd`` within ``wait`` seconds."""
    try:
        return bool(select.select([fd], [], [], wait)[0])
    except (OSError, ValueError):  # no select() for this kind of file (a pipe on Windows): answer now
        return False


def read_chunks(fd: int, name: str, max_lines: int = 1000, wait: float = PAUSE) -> Iterator[list[str]]:
    """The lines of the file descriptor ``fd`` (decoded as :func:`read_lines_replacing` does), in chunks.

    A chunk ends after ``max_lines`` lines, at the end of the input, or when the input pauses: when lines have
    arrived and nothing more comes within ``wait`` seconds. So a file or a steady stream is read in large
    chunks, while a program (or a person) that writes a line and waits for its translation gets it at once.
    A last line without a line break counts as a line.
    """
    lines: list[bytes] = []
    partial: list[bytes] = []  # the pieces of a line whose end has not arrived yet
    number = 0  # lines yielded so far

    def chunk(n: int) -> list[str]:
        nonlocal lines, number
        out = [_decode_line(raw, name, number + i + 1) for i, raw in enumerate(lines[:n])]
        lines, number = lines[n:], number + n
        return out

    while True:
        if lines and not _input_waiting(fd, wait):
            yield chunk(len(lines))
        data = os.read(fd, READ_BYTES)
        if not data:
            break
        if b"\n" not in data:
            partial.append(data)
            continue
        pieces = data.split(b"\n")
        pieces[0] = b"".join([*partial, pieces[0]])
        tail = pieces.pop()
        partial = [tail] if tail else []
        lines.extend(pieces)
        while len(lines) >= max_lines:
            yield chunk(max_lines)
    if partial:
        lines.append(b"".join(partial))
    if lines:
        yield chunk(len(lines))


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


class _CtrlC:
    """Ctrl-C while a stream is translated: a KeyboardInterrupt at once (the search stops where it is), except while
    output lines are written (``held``): then right after the write, so that lines are written whole; a second
    Ctrl-C during a write that blocks is delivered at once. Every Ctrl-C is also remembered, and ``held`` raises
    after the write of a chunk once one has come: the stream stops even where a library swallowed the exception."""

    def __init__(self) -> None:
        self.received = self.holding = False

    def __call__(self, signum: int, frame: object) -> None:
        again, self.received = self.received, True
        if not self.holding or again:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """This handler for SIGINT while the block runs (only the main thread can install one: elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.received:
            raise KeyboardInterrupt


def _write(f: TextIO, text: str) -> None:
    """Write and flush; a failed write is a :class:`WriteError` naming the file (a closed pipe stays a
    BrokenPipeError, for the caller to end quietly)."""
    try:
        f.write(text)
        f.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise WriteError(str(cannot_write(e, getattr(f, "name", "the output")))) from None


def _batched(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def translate_chunks(translator: Translator, chunks: Iterable[list[str]], out: TextIO, name: str,
                     progress: bool = True, nbest: int = 0, scores: bool = False,
                     alignments: TextIO | None = None, first: int = 0) -> int:
    """Translate chunks of lines, writing (and flushing) one output line per input line, in order, a chunk's
    lines before the next chunk is read. Blank lines give blank lines; ``alignments`` receives a Pharaoh line per
    input line; ``progress`` draws a progress bar on stderr; ``first`` is the input's line number of the first line
    (0-based: for names, n-best numbering and sampling). Returns the number of lines translated.

    Ctrl-C stops with :class:`StreamInterrupted` after writing every line translated before it that follows
    the lines written (the longest in-order prefix); a failed write is a :class:`WriteError`.
    """
    start, count = time.perf_counter(), first
    bar = tqdm(unit=" sent", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    ctrl_c = _CtrlC()
    with ctrl_c.installed():
        try:
            for chunk in chunks:
                texts = [" ".join(line.split()) for line in chunk]
                keep = [i for i, t in enumerate(texts) if t]
                results: list[Translation | None] = [None] * len(chunk)
                interrupted = False  # Ctrl-C may come after the chunk's last sentence: it still stops the stream
                try:
                    done = translator.translate([texts[i] for i in keep], [f"{name}:{count + i + 1}" for i in keep],
                                                [count + i for i in keep]) if keep else []
                except PartialTranslation as e:
                    done, interrupted = e.done, True
                for i, t in zip(keep, done, strict=True):
                    results[i] = t
                ready = next((i for i, t in enumerate(results) if t is None and texts[i]), len(chunk))
                with ctrl_c.held():
                    _write(out, "".join(format_translation(t, count + i, nbest, scores)
                                        for i, t in enumerate(results[:ready])))
                    if alignments is not None:
                        _write(alignments, "".join((t.alignment if t else "") + "\n" for t in results[:ready]))
                    count += ready
                bar.update(ready)
                if interrupted:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise StreamInterrupted(count - first) from None
        finally:
            bar.close()
    elapsed = time.perf_counter() - start
    device = translator.device
    memory = (f"; peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
              if device.type == "cuda" else "")
    done = count - first
    log.info("translated %d lines in %.1f s (%.1f sentences/s)%s", done, elapsed, done / max(elapsed, 1e-9),
             memory)
    return done


def translate_stream(translator: Translator, lines: Iterable[str], out: TextIO, name: str,
                     chunk_lines: int = 1000, progress: bool = True, nbest: int = 0, scores: bool = False,
                     alignments: TextIO | None = None) -> int:
    """Translate ``lines`` chunk by chunk (``chunk_lines`` at a time) with :func:`translate_chunks`: memory stays
    bounded by the chunk, and a chunk's output is written before the next is read."""
    return translate_chunks(translator, _batched(lines, chunk_lines), out, name, progress, nbest, scores,
                            alignments)
