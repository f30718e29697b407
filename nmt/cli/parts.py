"""``nmt translate`` under ``torchrun``: a file translated in parts by many processes (on one machine or many, with
the file on a shared file system).

The input is cut into parts of ``lines`` lines, a cut that does not depend on the number of processes; rank r
translates the parts k with k mod W = r, each written under a temporary name and renamed (so that a part file is
complete or absent) into OUTPUT.parts/; a run started again skips the parts already written; after a barrier rank
0 joins the parts in input order into OUTPUT (and the alignments) and removes the folder. The output is the one a
single process writes. OUTPUT.parts/run.json records what the parts are of (the input, the models, the settings):
parts of another translation are refused in one line.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from pathlib import Path

from nmt import NmtError, distributed
from nmt.cli.stream import read_lines_replacing, translate_chunks
from nmt.translate import Translator

log = logging.getLogger(__name__)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _claim(folder: Path, what: dict) -> None:
    """Rank 0 records what the parts are of; every rank checks it after the barrier."""
    record = folder / "run.json"
    if distributed.is_main_process():
        folder.mkdir(exist_ok=True)
        if not record.exists():
            _write(record, json.dumps(what, sort_keys=True))
    distributed.barrier()
    if json.loads(record.read_text(encoding="utf-8")) != json.loads(json.dumps(what, sort_keys=True)):
        raise NmtError(f"{folder} holds parts of another translation (another input, model or setting): remove it "
                       f"to start afresh")


def translate_parts(translator: Translator, source: Path, output: Path, alignments: Path | None, rank: int,
                    world: int, lines: int, nbest: int = 0, scores: bool = False) -> None:
    """Translate ``source`` into ``output`` (and ``alignments``) as rank ``rank`` of ``world`` (module docstring)."""
    with open(source, "rb") as f:
        text = list(read_lines_replacing(f, str(source)))
    folder = output.with_name(output.name + ".parts")
    st = source.stat()
    _claim(folder, {"input": str(source.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "lines": lines,
                    "models": str(translator.checkpoint_path), "decode": translator.decode.model_dump(),
                    "nbest": nbest, "scores": scores, "alignments": alignments is not None})
    parts = range(0, len(text), lines)
    for k in range(rank, len(parts), world):
        part = folder / f"{k:06d}.txt"
        if part.exists():
            log.info("part %d of %d: already translated, skipped", k + 1, len(parts))
            continue
        out, align = io.StringIO(), io.StringIO() if alignments is not None else None
        first = parts[k]
        translate_chunks(translator, [text[first:first + lines]], out, str(source), progress=False, nbest=nbest,
                         scores=scores, alignments=align, first=first)
        if align is not None:
            _write(folder / f"{k:06d}.align", align.getvalue())
        _write(part, out.getvalue())  # last: a part file means the part is complete
    distributed.barrier()
    if rank == 0:
        names = [f"{k:06d}" for k in range(len(parts))]
        _write(output, "".join((folder / f"{n}.txt").read_text(encoding="utf-8") for n in names))
        if alignments is not None:
            _write(alignments, "".join((folder / f"{n}.align").read_text(encoding="utf-8") for n in names))
        shutil.rmtree(folder)
        log.info("joined %d parts of %d lines from %d processes into %s", len(parts), len(text), world, output)
