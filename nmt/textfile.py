"""Text files read strictly, line by line: UTF-8 or an error naming the file and line, in chunks of bounded
size, without line endings ("\\n", "\\r\\n"). Corpora, references, hypotheses and alignments are read this way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from nmt import NmtError

CHUNK_BYTES = 16 << 20  # text is read, decoded (and, by nmt.data, converted to Arrow) this many bytes at a time


def stream_chunks(f: BinaryIO, name: str) -> Iterator[list[str]]:
    """The lines of a UTF-8 byte stream, in chunks of about CHUNK_BYTES, without line endings ("\\n", "\\r\\n");
    invalid UTF-8 is an error naming ``name`` and the line."""
    number = 0  # lines before this chunk
    while raw := f.read(CHUNK_BYTES):
        raw += f.readline()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line_start = raw.rfind(b"\n", 0, e.start) + 1
            line = number + raw.count(b"\n", 0, e.start) + 1
            raise NmtError(f"{name}:{line}: invalid UTF-8 ({e.reason} at byte {e.start - line_start})") from None
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        if "\r" in text:
            lines = [line.rstrip("\r") for line in lines]
        number += len(lines)
        yield lines


def file_chunks(path: Path) -> Iterator[list[str]]:
    """The lines of a UTF-8 text file, in chunks of about CHUNK_BYTES, without line endings."""
    if not path.is_file():
        raise NmtError(f"data file not found: {path}")
    with open(path, "rb") as f:
        yield from stream_chunks(f, str(path))


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, without line endings; invalid UTF-8 is an error naming the line."""
    return [line for chunk in file_chunks(path) for line in chunk]


def read_stream(stream: BinaryIO, name: str) -> list[str]:
    """The lines of a UTF-8 byte stream (e.g. stdin, ``name`` "<stdin>"), as strict as :func:`read_lines`."""
    return [line for chunk in stream_chunks(stream, name) for line in chunk]


def mismatch(src_path: Path, src_lines: int, trg_path: Path, trg_lines: int) -> NmtError:
    return NmtError(f"parallel files differ in length: {src_path} has {src_lines} lines, {trg_path} has {trg_lines}")


def read_parallel(src_path: Path, trg_path: Path) -> tuple[list[str], list[str]]:
    """Both sides of a parallel corpus; their line counts must agree."""
    src, trg = read_lines(src_path), read_lines(trg_path)
    if len(src) != len(trg):
        raise mismatch(src_path, len(src), trg_path, len(trg))
    return src, trg
