"""The ``nmt`` command, one module per command or family: train, translate, plot-attention, plot-gradients,
plot-metrics, plot-length, evaluate, score, align, evaluate-alignment, average, shortlist, export, serve, info,
data, completion.

One grammar (``nmt.cli.options``): ``-m RUN`` names runs everywhere, ``-i``/``-o`` are always paths (``-i`` the
source), ``-t`` given translations, ``-r`` references, ``--hypothesis`` system outputs, ``-h`` always help; the
model options and the decoding flags are the same wherever a model runs or decodes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from nmt import LOG_DATE_FORMAT, LOG_FORMAT, NmtError, __version__
from nmt.cli import average, environment, evaluate, export, plots, serve, shortlist, translate
from nmt.cli.options import warn_deprecated

EXAMPLES = """\
examples:
  nmt train                                     # the default recipe: the date task, a Bahdanau GRU
  nmt train model.hidden_size=128 train.max_epochs=3 hydra.run.dir=runs/small
  nmt translate -m runs/small -i runs/small/data/test.txt -o test.hyp
  echo "Wednesday, 25 November 2026" | nmt translate -m runs/small
  nmt plot-attention -m runs/small --text "the 25th of November 2026" -o attention.png
  nmt plot-gradients -m runs/small --text "the 25th of November 2026" -o gradients.png
  nmt evaluate -r runs/small/data/test.iso --hypothesis test.hyp
  nmt score -m runs/small -i runs/small/data/test.txt -t runs/small/data/test.iso -o test.scores
  nmt align -m runs/small -i runs/small/data/test.txt -t runs/small/data/test.iso -o test.align
  nmt plot-metrics -m runs/small -o metrics.png
  nmt average -m runs/small --last 5 && nmt translate -m runs/small --checkpoint averaged.pt -i test.txt
  nmt serve -m runs/small                       # http://127.0.0.1:8000/
  nmt info                                      # for a bug report: versions, hardware, choices, paths
  nmt data multi30k && nmt train experiment=multi30k_gru   # Multi30k German->English

`nmt COMMAND --help` (or -h) describes each command; `nmt completion bash` completes them in a shell.
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command but ``train`` (whose arguments are Hydra's: ``nmt train --help``)."""
    parser = argparse.ArgumentParser(prog="nmt", description="Neural machine translation with attention.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"nmt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train a model (Hydra: any config value can be overridden as key=value; "
                                 "`nmt train --help`)", add_help=False)
    translate.register(sub)
    plots.register(sub)
    evaluate.register(sub)
    average.register(sub)
    shortlist.register(sub)
    export.register(sub)
    serve.register(sub)
    environment.register(sub)
    return parser


def _old_spellings(argv: list[str]) -> list[str]:
    """``nmt evaluate -h FILE`` (``-h`` was the translations before it was help): ``--hypothesis FILE``."""
    if argv[:1] == ["evaluate"] and "-h" in argv:
        k = argv.index("-h")
        if k + 1 < len(argv) and not argv[k + 1].startswith("-") and Path(argv[k + 1]).is_file():
            warn_deprecated("-h FILE (translations)", "--hypothesis FILE; -h is help")
            return [*argv[:k], "--hypothesis", *argv[k + 1:]]
    return argv


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``nmt`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        from nmt.cli.train import main as train_main

        sys.argv = [f"{Path(sys.argv[0]).name} train"]
        train_main(argv[1:])
        return
    parser = build_parser()
    args = parser.parse_args(_old_spellings(argv))
    if args.command is None:
        parser.print_help()
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT, stream=sys.stderr)
    try:
        args.run(args)
        sys.stdout.flush()
    except NmtError as e:
        sys.exit(f"nmt {args.command}: error: {e}")
    except KeyboardInterrupt as e:  # Ctrl-C: one line, and the shell's status for an interrupted command
        detail = str(e)
        print(f"nmt {args.command}: interrupted{f': {detail}' if detail else ''}", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the reader of stdout left (`nmt align ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
