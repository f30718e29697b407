"""``nmt translate``: a text file, a pipe or a terminal through a run (or an ensemble of runs)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from nmt import NmtError, distributed
from nmt.cli.options import (
    add_command,
    add_decode_flags,
    add_model_options,
    add_output,
    add_runs,
    check_input,
    check_outputs,
    decode_settings,
    load_translator,
    model_place,
    open_output,
)

log = logging.getLogger(__name__)

DESCRIPTION = """\
Translate detokenized text, one sentence per line: exactly one output line per input line,
in order (a blank line gives a blank line). Lines with invalid UTF-8 are decoded with
U+FFFD replacements and a warning naming the line; lines longer than the model's limit
are truncated with a warning. From a pipe or a terminal each line is answered as soon as
the input pauses; a file or a steady stream is translated in batches. Every option is
checked, and an output that is the input (or the other output) refused, before anything is
read or written; Ctrl-C stops after writing the lines translated so far (exit status 130).

Several -m make an ensemble: at every step of greedy or beam search it takes the log of the
mean of the members' probabilities; its attention (and so its alignments) is the mean of the
members' attention. The runs must share their sentencepiece models (a joint vocabulary trained
on the same data, as two seeds of one recipe have).

n-best format (--nbest N): N lines per input line, 'LINE ||| TRANSLATION ||| LOG-PROBABILITY',
LINE counting input lines from 0; a blank input line gives N lines with an empty translation.
With --sample, the N lines are N samples.

Under torchrun (any number of processes and machines, -i and -o on a file system they share),
the input is cut into parts of --part-lines lines; process r translates parts r, r + W, ...,
each written whole into OUTPUT.parts/, and process 0 joins them in order into OUTPUT: the
output of one process. Started again, it skips the parts already written. Each process uses
the cores of its machine divided among its processes, unless --threads says otherwise."""

EXAMPLES = [
    "nmt translate -m runs/dates -i test.txt -o test.hyp",
    "nmt translate -m runs/tf-seed1 -m runs/tf-seed2 --beam 5 -i test.de -o test.hyp   # an ensemble",
    "nmt translate -m runs/a -m runs/b --checkpoint averaged.pt --checkpoint best.pt -i test.de",
    "cat test.txt | nmt translate -m runs/dates > test.hyp",
    "nmt translate -m runs/dates --beam 5 --alignments test.align < test.txt > test.hyp",
    "nmt translate -m runs/m30k --sample --top-p 0.9 --nbest 4 --seed 1 -i test.de   # 4 samples per line",
    "nmt translate -m runs/dates --device cuda --precision bf16 -i test.txt -o test.hyp",
    "nmt translate -m runs/dates --quantize int8 --threads 4 -i test.txt -o test.hyp",
    "nmt translate -m runs/m30k_tf --engine ctranslate2 --beam 5 -i test.de -o test.hyp   # after nmt export",
    "nmt translate -m runs/dates            # interactive: one line in, one line out",
    "torchrun --nproc_per_node=2 -m nmt translate -m runs/m30k -i corpus.de -o corpus.en   # 2 processes",
]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "translate", "translate a text file (or stdin) with a trained run", DESCRIPTION, EXAMPLES,
                    run)
    add_runs(p)
    p.add_argument("-i", "--input", type=Path, metavar="PATH", help="source sentences, one per line (default: stdin)")
    add_output(p, "translations (default: stdout); not the input, nor the --alignments file")
    p.add_argument("--scores", action="store_true", help="prefix each translation with its log-probability and a tab")
    p.add_argument("--alignments", type=Path, metavar="PATH",
                   help="also write word alignments from attention, Pharaoh format ('i-j'), a line per input line")
    p.add_argument("--part-lines", type=int, default=1000, metavar="N",
                   help="under torchrun: input lines per part, the unit a process translates and a rerun skips "
                        "(default 1000)")
    add_model_options(p, engine=True)
    add_decode_flags(p)


def run(args: argparse.Namespace) -> None:
    from nmt.cli.stream import WriteError, read_chunks, translate_chunks

    options = decode_settings(args)
    if args.input is not None:
        check_input(args.input)
    check_outputs(args.input, {"-o": args.output, "--alignments": args.alignments})
    if distributed.launched():
        _run_parts(args, options)
        return
    translator = load_translator(args, **options)
    log.info("translating on %s in %s: %s", translator.device, translator.precision.name,
             translator.precision.reason)
    name = str(args.input) if args.input else "<stdin>"
    interactive = args.input is None and sys.stdin.isatty()
    with contextlib.ExitStack() as files:
        try:
            source = files.enter_context(open(args.input, "rb")) if args.input else sys.stdin.buffer
        except OSError as e:
            raise NmtError(f"cannot read {args.input}: {e.strerror}") from None
        out = open_output(files, args.output) if args.output else sys.stdout
        alignments = open_output(files, args.alignments) if args.alignments else None
        try:
            translate_chunks(translator, read_chunks(source.fileno(), name), out, name,
                             progress=sys.stderr.isatty() and not interactive, nbest=args.nbest or 0,
                             scores=args.scores, alignments=alignments)
        except WriteError:
            if out is sys.stdout:  # what could not be written must not be written again at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise


def _run_parts(args: argparse.Namespace, options: dict[str, object]) -> None:
    """``nmt translate`` as one of torchrun's processes (``nmt.cli.parts``)."""
    import torch

    from nmt.cli.parts import translate_parts
    from nmt.hardware import usable_cores

    if args.input is None or args.output is None:
        raise NmtError("under torchrun nmt translate reads a file and writes one: give -i FILE and -o FILE "
                       "(processes cannot share stdin and stdout)")
    if args.part_lines < 1:
        raise NmtError(f"--part-lines {args.part_lines}: must be at least 1")
    device = model_place(args)
    rank, world = distributed.setup(device)
    if not args.threads:
        torch.set_num_threads(max(1, usable_cores() // distributed.local_world_size(world)))
    translator = load_translator(args, **options)
    log.info("process %d of %d translating on %s, %d threads", rank + 1, world, device, torch.get_num_threads())
    translate_parts(translator, args.input, args.output, args.alignments, rank, world, args.part_lines,
                    args.nbest or 0, args.scores)
    distributed.shutdown(synchronize=True)
