"""The ``nmt`` command: train, translate, plot-attention."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from nmt import NmtError, __version__

EXAMPLES = """\
commands:
  train            train a model (Hydra: any config value can be overridden as key=value)
  translate        translate a text file (or stdin) with a trained run
  plot-attention   draw the attention matrix of one translation

examples:
  nmt train                                     # the default recipe: the date task, a Bahdanau GRU
  nmt train model.hidden_size=128 train.max_epochs=3 hydra.run.dir=runs/small
  nmt translate -m runs/small -i runs/small/data/test.txt -o test.hyp
  echo "Tuesday, 25 November 2026" | nmt translate -m runs/small
  nmt plot-attention -m runs/small --text "the 25th of November 2026" -o attention.png

`nmt COMMAND --help` describes each command.
"""


def _translate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate", help="translate a text file (or stdin) with a trained run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Translate detokenized text, one sentence per line: exactly one output line per input line,\n"
                    "in order (a blank line gives a blank line). Lines with invalid UTF-8 are decoded with\n"
                    "U+FFFD replacements and a warning naming the line; lines longer than the model's limit\n"
                    "are truncated with a warning.",
        epilog="examples:\n"
               "  nmt translate -m runs/dates -i test.txt -o test.hyp\n"
               "  cat test.txt | nmt translate -m runs/dates > test.hyp\n"
               "  nmt translate -m runs/dates            # interactive: one line in, one line out")
    p.add_argument("-m", "--model", required=True, type=Path, metavar="RUN_DIR", help="training run directory")
    p.add_argument("-i", "--input", type=Path, help="input file (default: stdin)")
    p.add_argument("-o", "--output", type=Path, help="output file (default: stdout)")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint file in RUN_DIR (default: best.pt)")
    p.add_argument("--batch-tokens", type=int, help="source tokens per batch (default: the run's decode setting)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")


def _plot_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot-attention", help="draw the attention matrix of one translation",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Translate one sentence and draw its attention weights as a heatmap\n"
                    "(source subwords across, output subwords down). The format follows the suffix of -o.",
        epilog="examples:\n"
               "  nmt plot-attention -m runs/dates --text \"Tuesday, 25 November 2026\" -o attention.png\n"
               "  nmt plot-attention -m runs/dates -i test.txt --line 3 -o line3.pdf")
    p.add_argument("-m", "--model", required=True, type=Path, metavar="RUN_DIR", help="training run directory")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the sentence to translate")
    source.add_argument("-i", "--input", type=Path, help="a text file; with --line, which line")
    p.add_argument("--line", type=int, default=1, help="line number in --input (1-based, default 1)")
    p.add_argument("-o", "--output", type=Path, default=Path("attention.png"), help="image file (.png/.svg/.pdf)")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint file in RUN_DIR (default: best.pt)")


def run_translate(args: argparse.Namespace) -> None:
    import torch

    from nmt.translate import Translator, read_lines_replacing, translate_stream

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"batch_tokens": args.batch_tokens} if args.batch_tokens else {}
    translator = Translator.from_run(args.model, args.checkpoint, **overrides)
    if args.input is not None and not args.input.is_file():
        raise NmtError(f"input file not found: {args.input}")
    source = open(args.input, "rb") if args.input else sys.stdin.buffer  # noqa: SIM115
    name = str(args.input) if args.input else "<stdin>"
    interactive = args.input is None and sys.stdin.isatty()
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        translate_stream(translator, read_lines_replacing(source, name), out, name,
                         chunk_lines=1 if interactive else 1000, progress=not interactive)
    finally:
        if args.input:
            source.close()
        if args.output:
            out.close()


def run_plot(args: argparse.Namespace) -> None:
    from nmt.data import read_lines
    from nmt.plot import plot_attention
    from nmt.translate import Translator

    if args.text is not None:
        text = args.text
    else:
        lines = read_lines(args.input)
        if not 1 <= args.line <= len(lines):
            raise NmtError(f"{args.input} has {len(lines)} lines; --line {args.line} is out of range")
        text = lines[args.line - 1]
    (t,) = Translator.from_run(args.model, args.checkpoint).translate([" ".join(text.split())])
    if t.attention is None:
        raise NmtError(f"the model in {args.model} has no attention (a fixed-context model): nothing to plot")
    path = plot_attention(t.attention, [*t.src_pieces, "</s>"], [*t.trg_pieces, "</s>"][: t.attention.size(0)],
                          args.output, title=f"{text}  ->  {t.text}")
    print(f"{t.text}\n{path}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``nmt`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        from nmt.train import main as train_main

        sys.argv = [f"{Path(sys.argv[0]).name} train", *argv[1:]]
        try:
            train_main()
        except NmtError as e:
            sys.exit(f"nmt train: error: {e}")
        return
    parser = argparse.ArgumentParser(prog="nmt", description="Neural machine translation with attention.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"nmt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train a model (see `nmt train --help`)", add_help=False)
    _translate_parser(sub)
    _plot_parser(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        {"translate": run_translate, "plot-attention": run_plot}[args.command](args)
    except NmtError as e:
        sys.exit(f"nmt {args.command}: error: {e}")
