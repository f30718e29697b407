"""The ``nmt`` command: train, translate, plot-attention, evaluate, align, evaluate-alignment, plot-metrics,
plot-length, average, serve, info, data."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import stat
import sys
from pathlib import Path
from typing import TextIO

from nmt import (
    IMAGE_SUFFIXES,
    LOG_DATE_FORMAT,
    LOG_FORMAT,
    NmtError,
    __version__,
    cannot_write,
    check_image_path,
    install_hint,
    missing,
)

log = logging.getLogger(__name__)

EXAMPLES = """\
commands:
  train              train a model (Hydra: any config value can be overridden as key=value)
  translate          translate a text file (or stdin) with a trained run
  plot-attention     draw the attention matrix of a translation
  evaluate           score translations against references (BLEU, chrF, TER, exact match)
  average            average the weights of a run's last checkpoints (for translate --checkpoint)
  align              word-align given translations by forced decoding (Pharaoh format)
  evaluate-alignment score word alignments against a gold standard (AER, precision, recall)
  plot-metrics       draw training curves (loss, perplexity, BLEU) of one or more runs
  plot-length        BLEU by source sentence length for one or more systems
  serve              serve runs over HTTP, with a web page (pip install 'nmt-attention[serve]')
  info               versions, extras, hardware and what nmt chooses on it, where nmt keeps its files
  data               download a corpus (Multi30k) and verify its checksums

examples:
  nmt train                                     # the default recipe: the date task, a Bahdanau GRU
  nmt train model.hidden_size=128 train.max_epochs=3 hydra.run.dir=runs/small
  nmt translate -m runs/small -i runs/small/data/test.txt -o test.hyp
  echo "Wednesday, 25 November 2026" | nmt translate -m runs/small
  nmt plot-attention -m runs/small --text "the 25th of November 2026" -o attention.png
  nmt evaluate -r runs/small/data/test.iso -h test.hyp
  nmt align -m runs/small -s runs/small/data/test.txt -t runs/small/data/test.iso -o test.align
  nmt plot-metrics runs/small -o metrics.png
  nmt average runs/small --last 5 && nmt translate -m runs/small --checkpoint averaged.pt -i test.txt
  nmt info                                      # for a bug report: versions, hardware, choices, paths
  nmt data multi30k && nmt train experiment=multi30k_gru   # Multi30k German->English

`nmt COMMAND --help` describes each command.
"""


def _translate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate", help="translate a text file (or stdin) with a trained run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Translate detokenized text, one sentence per line: exactly one output line per input line,\n"
                    "in order (a blank line gives a blank line). Lines with invalid UTF-8 are decoded with\n"
                    "U+FFFD replacements and a warning naming the line; lines longer than the model's limit\n"
                    "are truncated with a warning. From a pipe or a terminal each line is answered as soon as\n"
                    "the input pauses; a file or a steady stream is translated in batches. Every option is\n"
                    "checked, and an output that is the input (or the other output) refused, before anything is\n"
                    "read or written; Ctrl-C stops after writing the lines translated so far (exit status 130).\n\n"
                    "Several -m make an ensemble: at every step of greedy or beam search it takes the log of the\n"
                    "mean of the members' probabilities; its attention (and so its alignments) is the mean of the\n"
                    "members' attention. The runs must share their sentencepiece models (a joint vocabulary trained\n"
                    "on the same data, as two seeds of one recipe have).",
        epilog="examples:\n"
               "  nmt translate -m runs/dates -i test.txt -o test.hyp\n"
               "  nmt translate -m runs/tf-seed1 -m runs/tf-seed2 --beam 5 -i test.de -o test.hyp   # an ensemble\n"
               "  nmt translate -m runs/a -m runs/b --checkpoint averaged.pt --checkpoint best.pt -i test.de\n"
               "  cat test.txt | nmt translate -m runs/dates > test.hyp\n"
               "  nmt translate -m runs/dates --beam 5 --alignments test.align < test.txt > test.hyp\n"
               "  nmt translate -m runs/dates --device cuda --precision bf16 -i test.txt -o test.hyp\n"
               "  nmt translate -m runs/dates --quantize int8 --threads 4 -i test.txt -o test.hyp\n"
               "  nmt translate -m runs/dates            # interactive: one line in, one line out\n\n"
               "n-best format (--nbest N): N lines per input line, 'LINE ||| TRANSLATION ||| LOG-PROBABILITY',\n"
               "LINE counting input lines from 0; a blank input line gives N lines with an empty translation.")
    p.add_argument("-m", "--model", required=True, type=Path, action="append", metavar="RUN_DIR",
                   help="training run directory; repeat it for an ensemble of runs")
    p.add_argument("-i", "--input", type=Path, help="input file (default: stdin)")
    p.add_argument("-o", "--output", type=Path,
                   help="output file (default: stdout); not the input, nor the --alignments file")
    p.add_argument("--checkpoint", action="append",
                   help="checkpoint file in RUN_DIR (default: best.pt); with an ensemble once for all runs, or once "
                        "per run in their order")
    p.add_argument("--scores", action="store_true", help="prefix each translation with its log-probability and a tab")
    p.add_argument("--alignments", type=Path, metavar="FILE",
                   help="also write word alignments from attention, Pharaoh format ('i-j'), a line per input line")
    p.add_argument("--device", default="auto",
                   help="auto (a GPU when there is one, default), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="matrix products in fp32 or bf16; auto (default): bf16 where this hardware runs it faster "
                        "(a GPU with compute capability 8.0+; a CPU with AMX or AVX512-BF16 where a short "
                        "measurement at this model's sizes says so), logged")
    p.add_argument("--quantize", choices=["int8"],
                   help="dynamic int8 quantization of linear and recurrent layers, CPU only (faster on CPUs with "
                        "VNNI; logged)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads >= 0 (default 0: all cores)")
    _add_decode_flags(p)


def _add_decode_flags(p: argparse.ArgumentParser) -> None:
    """The decoding settings as flags (``nmt.config.DecodeConfig``, each field's ``Option``), for translate and
    serve; a flag not given is None (the run's own setting)."""
    from nmt.config import DecodeConfig
    from nmt.decode_settings import choices, option

    group = p.add_argument_group("decoding", "default: the run's decode setting; --nbest without --beam searches "
                                             "with max(N, 5) beams")
    for key, info in DecodeConfig.model_fields.items():
        flag = option(key).flag
        if info.annotation is bool:
            kind: dict[str, object] = {"action": "store_const", "const": True}
        elif choices(key):
            kind = {"choices": choices(key)}
        else:
            kind = {"type": info.annotation, "metavar": flag.removeprefix("--").replace("-", "_").upper()}
        group.add_argument(flag, dest=key, help=option(key).help, **kind)


def _decode_settings(args: argparse.Namespace) -> dict[str, object]:
    """The decoding settings given as flags (checked; one line naming the flag), None for the others; --nbest
    without --beam searches with max(N, 5) beams."""
    from nmt.decode_settings import KEYS, check_decode

    settings = {key: getattr(args, key) for key in KEYS}
    check_decode(settings, flags=True)
    if settings["nbest"] and not settings["beam_size"] and not settings["sample"]:
        settings["beam_size"] = max(settings["nbest"], 5)
    return settings


def _plot_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot-attention", help="draw the attention matrix of a translation (or of every line of a file)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Translate a sentence (beam search) and draw its attention weights as a heatmap: source\n"
                    "subwords across, output subwords down, or words with --words (a source word gets the sum of\n"
                    "its pieces' weights, a target word the average of its pieces' rows). The format follows the\n"
                    "suffix of -o (.png, .svg, .pdf). For a Transformer the attention is the last decoder layer's\n"
                    "cross-attention averaged over heads; --layer and --head pick one, --heads draws all heads of\n"
                    "a layer in one figure (the translation is decoded again with teacher forcing to get them).",
        epilog="examples:\n"
               "  nmt plot-attention -m runs/dates --text \"Wednesday, 25 November 2026\" -o attention.png\n"
               "  nmt plot-attention -m runs/dates -i test.txt --line 3 -o line3.pdf\n"
               "  nmt plot-attention -m runs/dates -i test.txt --all -o plots/   # plots/0001.png ... (line numbers)\n"
               "  nmt plot-attention -m runs/m30k --text \"Ein Hund läuft.\" --words -o words.svg\n"
               "  nmt plot-attention -m runs/tf --text \"25.11.26\" --layer 1 --head 3 -o l1h3.png\n"
               "  nmt plot-attention -m runs/tf --text \"25.11.26\" --heads --layer 2 -o heads.png")
    p.add_argument("-m", "--model", required=True, type=Path, metavar="RUN_DIR", help="training run directory")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the sentence to translate")
    source.add_argument("-i", "--input", type=Path, help="a text file: one line of it (--line) or all (--all)")
    lines = p.add_mutually_exclusive_group()
    lines.add_argument("--line", type=int, help="line number in --input (1-based, default 1)")
    lines.add_argument("--all", action="store_true",
                       help="every non-blank line of --input, into the folder -o, one image per line named by its "
                            "line number")
    p.add_argument("-o", "--output", type=Path,
                   help="image file (.png/.svg/.pdf; default attention.png), or with --all a folder")
    p.add_argument("--format", choices=[suffix[1:] for suffix in IMAGE_SUFFIXES],
                   help="with --all: the image format (default png)")
    p.add_argument("--beam", type=int, default=5, help="beam size; 1 is greedy search (default 5)")
    p.add_argument("--words", action="store_true", help="merge subword pieces into words")
    p.add_argument("--layer", type=int, help="Transformer: decoder layer, 1-based (default: the last)")
    heads = p.add_mutually_exclusive_group()
    heads.add_argument("--head", type=int, help="Transformer: attention head, 1-based (default: their average)")
    heads.add_argument("--heads", action="store_true", help="Transformer: a grid of all heads of the layer")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint file in RUN_DIR (default: best.pt)")


def _align_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align", help="word-align given translations by forced decoding (Pharaoh format)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read each reference translation into the model with teacher forcing (forced decoding) and\n"
                    "link each target word to the source word it attends to most. Output: one line per input\n"
                    "pair, Pharaoh format 'i-j' (source word i, target word j, 0-based, words split at spaces);\n"
                    "a pair with a blank side gives a blank line. SRC and TRG must have the same number of lines.",
        epilog="examples:\n"
               "  nmt align -m runs/dates -s runs/dates/data/test.txt -t runs/dates/data/test.iso -o test.align\n"
               "  nmt align -m runs/m30k -s test.de -t test.en | head")
    p.add_argument("-m", "--model", required=True, type=Path, metavar="RUN_DIR", help="training run directory")
    p.add_argument("-s", "--source", required=True, type=Path, metavar="SRC", help="source sentences, one per line")
    p.add_argument("-t", "--target", required=True, type=Path, metavar="TRG",
                   help="their translations, one per line")
    p.add_argument("-o", "--output", type=Path, help="alignment file (default: stdout)")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint file in RUN_DIR (default: best.pt)")


def _evaluate_alignment_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate-alignment", help="score word alignments: alignment error rate, precision, recall",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score predicted word alignments (Pharaoh 'i-j', a line per sentence) against a gold standard\n"
                    "of sure (S) and possible (P) links, S a subset of P (Och & Ney 2003), summed over the corpus:\n"
                    "  precision = |A&P| / |A|,  recall = |A&S| / |S|,  AER = 1 - (|A&S| + |A&P|) / (|A| + |S|)\n\n"
                    "gold formats (detected from the first non-blank line):\n"
                    "  Pharaoh: a line per sentence, 'i-j' a sure link, 'i?j' a possible one, 0-based positions;\n"
                    "  'SENT I J [S|P] [CONFIDENCE]': a link per line, the format of the HLT-NAACL 2003 shared task\n"
                    "    (the Hansards and Europarl gold standards): SENT the 1-based line of the sentence in PRED,\n"
                    "    I and J the 1-based source and target word positions, S sure (the default) or P possible;\n"
                    "    links to position 0 (NULL) are ignored, sentences without links have none.",
        epilog="examples:\n"
               "  nmt evaluate-alignment --gold test.gold.align --pred test.align\n"
               "  nmt evaluate-alignment --gold test.wa.nonullalign --pred test.align\n\n"
               "output: 'AER 23.45  precision 80.12  recall 71.03  (447 sentences; 4,123 predicted, 4,038 sure,\n"
               "19,222 possible links)', the scores in percent.")
    p.add_argument("--gold", required=True, type=Path, help="gold alignments (formats above)")
    p.add_argument("--pred", required=True, type=Path, help="predicted alignments, Pharaoh format")


def _plot_metrics_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot-metrics", help="draw training curves of one or more runs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Draw the training curves of runs from their metrics.jsonl over update steps: training and\n"
                    "dev loss, dev perplexity and dev BLEU, one color per run, named by its folder.",
        epilog="examples:\n"
               "  nmt plot-metrics runs/dates -o metrics.png\n"
               "  nmt plot-metrics runs/dates-gru runs/dates-lstm runs/dates-tf -o compare.pdf")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="training run directories")
    p.add_argument("-o", "--output", type=Path, default=Path("metrics.png"),
                   help="image file (.png/.svg/.pdf; default metrics.png)")


def _evaluate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score translations: BLEU, chrF, TER, exact match (sacrebleu)", add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score detokenized translations against references with sacrebleu (BLEU: 13a\n"
                    "tokenization, cased; chrF; TER), plus exact sentence match, and print sacrebleu's signature.\n"
                    "Both sides must be UTF-8 with the same number of lines, at least one (translations read from\n"
                    "stdin too: invalid UTF-8 is an error naming <stdin>:LINE).",
        epilog="examples:\n"
               "  nmt evaluate -r runs/dates/data/test.iso -h runs/dates/test.hyp\n"
               "  nmt translate -m runs/m30k -i test.de | nmt evaluate -r test.en")
    p.add_argument("--help", action="help", help="show this help message and exit")
    p.add_argument("-r", "--ref", required=True, type=Path, help="reference file, one sentence per line")
    p.add_argument("-h", "--hyp", type=Path, help="translations, one per line (default: stdin)")
    p.add_argument("--lowercase", action="store_true",
                   help="also BLEU on lowercased text (case:lc, as most published Multi30k results are)")


def _plot_length_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot-length", help="BLEU by source sentence length, for one or more systems",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Group the test sentences by source length in words and score each group with sacrebleu,\n"
                    "for each hypothesis file given (as in Bahdanau et al. 2015, Figure 2); print the table and\n"
                    "draw one line per system.",
        epilog="examples:\n"
               "  nmt plot-length -s test.de -r test.en runs/gru/test.hyp runs/cho/test.hyp --labels gru,cho\n"
               "  nmt plot-length -s test.de -r test.en a.hyp b.hyp --bins 8,12,16,20 -o length.svg")
    p.add_argument("-s", "--src", required=True, type=Path, help="source sentences, one per line")
    p.add_argument("-r", "--ref", required=True, type=Path, help="references, one per line")
    p.add_argument("hyps", nargs="+", type=Path, metavar="HYP", help="translations, one file per system")
    p.add_argument("--labels", help="comma-separated system names (default: the file names' folders)")
    p.add_argument("--bins", default="10,15,20,25", help="upper bin edges in words (default 10,15,20,25)")
    p.add_argument("-o", "--output", type=Path, default=Path("bleu_by_length.png"),
                   help="image file (.png/.svg/.pdf; default bleu_by_length.png)")


def run_plot_length(args: argparse.Namespace) -> None:
    from nmt.data import read_lines
    from nmt.evaluate import bleu_by_length
    from nmt.plot import plot_bleu_by_length

    labels = args.labels.split(",") if args.labels else [h.parent.name or h.stem for h in args.hyps]
    if len(labels) != len(args.hyps):
        raise NmtError(f"{len(labels)} labels for {len(args.hyps)} hypothesis files")
    try:
        edges = [int(x) for x in args.bins.split(",")]
    except ValueError:
        raise NmtError(f"--bins takes comma-separated word counts, got {args.bins!r}") from None
    src, refs = read_lines(args.src), read_lines(args.ref)
    results = {}
    for label, hyp in zip(labels, args.hyps, strict=True):
        hyps = read_lines(hyp)
        if len(hyps) != len(refs) or len(src) != len(refs):
            raise NmtError(f"{hyp} has {len(hyps)} lines, {args.src} {len(src)}, {args.ref} {len(refs)}")
        results[label] = bleu_by_length(src, hyps, refs, edges)
    print("\t".join(["source words", "sentences", *labels]))
    for k, (bin_label, n, _) in enumerate(results[labels[0]]):
        print("\t".join([bin_label, str(n), *(f"{results[x][k][2]:.2f}" for x in labels)]))
    print(plot_bleu_by_length(results, args.output))


def _average_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average", help="average the weights of checkpoints", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Average the model weights of a run's last N validation checkpoints (RUN_DIR/checkpoints/,\n"
                    "kept by train.keep_last) or of the checkpoint files given, into RUN_DIR/averaged.pt, which\n"
                    "`nmt translate --checkpoint averaged.pt` then uses.",
        epilog="examples:\n"
               "  nmt average runs/m30k --last 5\n"
               "  nmt average runs/m30k runs/m30k/checkpoints/step-9000.pt runs/m30k/checkpoints/step-10000.pt\n"
               "  nmt translate -m runs/m30k --checkpoint averaged.pt -i test.de -o test.hyp --beam 5")
    p.add_argument("run", type=Path, metavar="RUN_DIR", help="training run directory")
    p.add_argument("checkpoints", nargs="*", type=Path, help="checkpoint files (default: the last N of the run)")
    p.add_argument("--last", type=int, default=5, help="how many of the latest checkpoints, >= 1 (default 5)")
    p.add_argument("-o", "--output", default="averaged.pt",
                   help="a file name ending in .pt, written into RUN_DIR; not best.pt or last.pt (default averaged.pt)")


def run_average(args: argparse.Namespace) -> None:
    from nmt.checkpoint import average, save, step_checkpoints

    if args.last < 1:
        raise NmtError(f"--last {args.last}: must be at least 1 (the number of latest checkpoints to average)")
    name = args.output
    if Path(name).name != name or not name.endswith(".pt") or name == ".pt":
        raise NmtError(f"-o {name}: must be a file name ending in .pt (it is written into {args.run})")
    if name in ("best.pt", "last.pt"):
        raise NmtError(f"-o {name}: would overwrite the run's own {name}; choose another name (default averaged.pt)")
    if not args.run.is_dir():
        raise NmtError(f"run directory not found: {args.run}")
    paths = args.checkpoints or step_checkpoints(args.run)[-args.last:]
    out = args.run / name
    save(average(paths), out)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {out}")


def run_evaluate(args: argparse.Namespace) -> None:
    from nmt.data import read_lines, read_stream
    from nmt.evaluate import score

    refs = read_lines(args.ref)
    hyps = read_lines(args.hyp) if args.hyp else read_stream(sys.stdin.buffer, "<stdin>")
    if len(hyps) != len(refs):
        raise NmtError(f"{args.hyp or '<stdin>'} has {len(hyps)} lines, {args.ref} has {len(refs)}")
    if not refs:
        raise NmtError(f"{args.ref} is empty: nothing to score")
    result = score(hyps, refs, ter=True, lowercase=args.lowercase)
    print(f"BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  TER {result['ter']:.2f}  "
          f"exact {result['exact']:.2f}%  ({len(refs)} sentences)  [{result['bleu_signature']}]")
    if args.lowercase:
        print(f"BLEU {result['bleu_lc']:.2f} on lowercased text  [{result['bleu_lc_signature']}]")


def _file_identity(target: Path | int) -> tuple | None:
    """What makes two names one file: (device, inode) of an existing regular file (as os.path.samefile compares
    them, through symbolic and hard links), the resolved path of a file still to be created, or None for a
    pipe, a terminal or a device, which hold nothing to lose."""
    try:
        st = os.fstat(target) if isinstance(target, int) else os.stat(target)
    except FileNotFoundError:
        return None if isinstance(target, int) else ("new", str(target.resolve()))
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _check_translate_files(args: argparse.Namespace) -> None:
    """Refuse, before anything is opened or created: a missing input, an output into a missing folder or onto a
    folder, and an output that is the input or the other output."""
    if args.input is not None:
        if not args.input.exists():
            raise NmtError(f"input file not found: {args.input}")
        if args.input.is_dir():
            raise NmtError(f"-i {args.input} is a folder, not a file")
    outputs = [(f"{option} {path}", path) for option, path in (("-o", args.output), ("--alignments", args.alignments))
               if path is not None]
    for what, path in outputs:
        if path.is_dir():
            raise NmtError(f"{what} is a folder: name a file")
        if not path.parent.is_dir():
            raise NmtError(f"{what}: folder {path.parent} not found")
        if not os.access(path if path.exists() else path.parent, os.W_OK):
            raise NmtError(f"{what}: permission denied")
    source = (f"the input file (-i {args.input})", args.input) if args.input else ("the file on stdin", 0)
    if args.output is None:
        outputs.append(("the file stdout goes to", 1))
    for k, (what, target) in enumerate(outputs):
        identity = _file_identity(target)
        if identity is None:
            continue
        if identity == _file_identity(source[1]):
            raise NmtError(f"{what} is {source[0]}: writing it would destroy the input; choose another output file")
        for other, other_target in outputs[:k]:
            if identity == _file_identity(other_target):
                raise NmtError(f"{what} is the same file as {other}: the outputs would mix; choose two files")


def _open_output(files: contextlib.ExitStack, path: Path) -> TextIO:
    """Open an output file, to be closed by ``files``; a failure to open or to close it (the last flush, on a
    full disk) is one line naming it."""
    def close() -> None:
        try:
            f.close()  # closes the file even when its flush fails
        except OSError as e:
            raise cannot_write(e, path) from None

    try:
        f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the exit stack
    except OSError as e:
        raise cannot_write(e, path) from None
    files.callback(close)
    return f


def run_translate(args: argparse.Namespace) -> None:
    import torch

    from nmt.hardware import int8_engine, resolve_device
    from nmt.translate import Translator, WriteError, read_chunks, translate_chunks

    options = _decode_settings(args)
    if args.threads < 0:
        raise NmtError(f"--threads {args.threads}: must be an integer >= 0 (0: all cores)")
    _check_translate_files(args)
    device = resolve_device(args.device)
    if args.quantize:
        int8_engine(device)  # refuses a GPU before the model is loaded
    if args.threads:
        torch.set_num_threads(args.threads)
    translator = Translator.from_runs(args.model, args.checkpoint or ["best.pt"], args.quantize, args.precision,
                                      device, **options)
    log.info("translating on %s in %s: %s", device, translator.precision.name, translator.precision.reason)
    name = str(args.input) if args.input else "<stdin>"
    interactive = args.input is None and sys.stdin.isatty()
    with contextlib.ExitStack() as files:
        try:
            source = files.enter_context(open(args.input, "rb")) if args.input else sys.stdin.buffer
        except OSError as e:
            raise NmtError(f"cannot read {args.input}: {e.strerror}") from None
        out = _open_output(files, args.output) if args.output else sys.stdout
        alignments = _open_output(files, args.alignments) if args.alignments else None
        try:
            translate_chunks(translator, read_chunks(source.fileno(), name), out, name,
                             progress=sys.stderr.isatty() and not interactive, nbest=args.nbest or 0,
                             scores=args.scores, alignments=alignments)
        except WriteError:
            if out is sys.stdout:  # what could not be written must not be written again at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise


def run_plot(args: argparse.Namespace) -> None:
    if args.all and (args.output is None or args.output.suffix.lower() in IMAGE_SUFFIXES):
        raise NmtError("--all writes an image per line into a folder: name it with -o FOLDER")
    if args.format and not args.all:
        raise NmtError("--format is for --all; otherwise the suffix of -o gives the format")
    if args.line is not None and args.input is None:
        raise NmtError("--line needs -i FILE")
    if args.output is not None and not args.all:
        check_image_path(args.output)
    if args.text is not None and not args.text.strip():
        raise NmtError("nothing to translate: --text is blank")
    from nmt.alignment import force_decode, has_heads  # after the checks: a mistake costs no model loading
    from nmt.data import read_lines
    from nmt.plot import plot_translation, select_heads
    from nmt.translate import Translator

    if args.text is not None:
        jobs = [(args.text, args.output or Path("attention.png"))]
    else:
        lines = read_lines(args.input)
        if args.all:
            width = len(str(len(lines)))
            jobs = [(line, args.output / f"{n:0{width}d}.{args.format or 'png'}")
                    for n, line in enumerate(lines, 1) if line.strip()]
        else:
            line = 1 if args.line is None else args.line
            if not 1 <= line <= len(lines):
                raise NmtError(f"{args.input} has {len(lines)} lines; --line {line} is out of range")
            jobs = [(lines[line - 1], args.output or Path("attention.png"))]
    if not jobs or not jobs[0][0].strip():
        where = args.input if args.all else f"{args.input}:{args.line or 1}"
        raise NmtError(f"nothing to translate: {where} is blank")
    translator = Translator.from_run(args.model, args.checkpoint, beam_size=args.beam, nbest=1)
    translations = translator.translate([" ".join(text.split()) for text, _ in jobs])
    if any(t.attention is None for t in translations):
        raise NmtError(f"the model in {args.model} has no attention (a fixed-context model): nothing to plot")
    matrices, what = [t.attention for t in translations], [""] * len(translations)
    if args.layer is not None or args.head is not None or args.heads:
        if not has_heads(translator):
            raise NmtError(f"--layer, --head and --heads need a Transformer; the model in {args.model} has one "
                           f"attention per output step")
        src_ids = [translator.src_tok.sp.piece_to_id(t.src_pieces) for t in translations]
        trg_ids = [translator.trg_tok.sp.piece_to_id(t.trg_pieces) for t in translations]
        matrices = force_decode(translator, src_ids, trg_ids, all_heads=True)
        for k, heads in enumerate(matrices):
            matrices[k], description = select_heads(heads, args.layer, args.head, every_head=args.heads)
            what[k] = f"  ({description})"
    for (text, path), t, attention, note in zip(jobs, translations, matrices, what, strict=True):
        panels = [f"head {h + 1}" for h in range(attention.size(0))] if attention.dim() == 3 else None
        plot_translation(attention, t.src_pieces, t.trg_pieces, path, f"{text}  ->  {t.text}{note}", args.words,
                         panels)
    if args.all:
        print(f"{len(jobs)} images in {args.output}")
    else:
        print(f"{translations[0].text}\n{jobs[0][1]}")


def run_align(args: argparse.Namespace) -> None:
    from nmt.alignment import forced_attention
    from nmt.data import read_parallel
    from nmt.translate import Translator
    from nmt.words import pharaoh

    sources, targets = read_parallel(args.source, args.target)
    translator = Translator.from_run(args.model, args.checkpoint)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        for start in range(0, len(sources), 1000):
            chunk = forced_attention(translator, [" ".join(s.split()) for s in sources[start:start + 1000]],
                                     [" ".join(t.split()) for t in targets[start:start + 1000]])
            if any(f.attention is None and f.src_pieces and f.trg_pieces for f in chunk):
                raise NmtError(f"the model in {args.model} has no attention (a fixed-context model): "
                               f"nothing to align with")
            out.write("".join(pharaoh(f.attention, f.src_pieces, f.trg_pieces) + "\n" for f in chunk))
    finally:
        if args.output:
            out.close()


def run_evaluate_alignment(args: argparse.Namespace) -> None:
    from nmt.alignment import read_gold, read_pharaoh, score_alignments

    predicted = [sure | possible for sure, possible in read_pharaoh(args.pred)]
    gold = read_gold(args.gold, len(predicted))
    s = score_alignments(gold, predicted)
    print(f"AER {100 * s.aer:.2f}  precision {100 * s.precision:.2f}  recall {100 * s.recall:.2f}  "
          f"({s.sentences} sentences; {s.predicted:,} predicted, {s.sure:,} sure, {s.possible:,} possible links)")


def run_plot_metrics(args: argparse.Namespace) -> None:
    from nmt.plot import plot_metrics

    names = [d.name for d in args.runs]
    labels = names if len(set(names)) == len(names) else [str(d) for d in args.runs]
    print(plot_metrics(args.runs, args.output, labels))


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve runs over HTTP: LibreTranslate's API, nmt's own, and a web page",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve one or more runs over HTTP (FastAPI on uvicorn), each named NAME or by its folder:\n"
                    "  POST /translate, GET /languages   LibreTranslate's API (the language pair picks the model)\n"
                    "  POST /v1/translate                n-best lists, token scores, pieces, alignments, attention\n"
                    "  GET /v1/models, GET /health       the models (scores, batching counters); readiness\n"
                    "  GET /v1/limits                    the most a request may ask for (the --max-* options)\n"
                    "  GET /                             a page to translate and explore attention\n"
                    "  GET /openapi.json                 the API's description\n"
                    "Models load as for `nmt translate` and are warmed up before /health says ready. Concurrent\n"
                    "requests to a model with the same search settings are translated together (micro-batching)\n"
                    "by one worker per model; one batch runs at a time, on all --threads. SIGTERM or Ctrl-C lets\n"
                    "requests in flight finish. The access log records no text.",
        epilog="examples:\n"
               "  nmt serve -m runs/dates                                # http://127.0.0.1:8000/\n"
               "  nmt serve -m de-en=runs/m30k_gru -m tf=runs/m30k_tf --beam 5 --port 8080\n"
               "  nmt serve -m runs/m30k --host 0.0.0.0 --api-key-file keys.txt --cors-origin https://example.org\n"
               "  curl -s localhost:8000/translate -H 'Content-Type: application/json' \\\n"
               "       -d '{\"q\": \"Wednesday, 25 November 2026\", \"source\": \"txt\", \"target\": \"iso\"}'")
    p.add_argument("-m", "--model", required=True, action="append", metavar="[NAME=]RUN_DIR",
                   help="a training run to serve, named NAME (default: the folder's name); repeat for more; the "
                        "first is the default model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint file in each RUN_DIR (default: best.pt)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one, default), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="matrix products in fp32 or bf16; auto (default): as `nmt translate --precision auto`")
    p.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantization, CPU only")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads, shared by all models: each batch uses them all (default 0: all cores)")
    batching = p.add_argument_group("micro-batching")
    batching.add_argument("--batch-wait-ms", type=float, default=5.0,
                          help="how long an idle worker waits for more requests to join a batch, at most (after "
                               "the first request's arrival or the previous batch's end; default 5)")
    batching.add_argument("--no-batching", action="store_true",
                          help="translate one request at a time (for comparison)")
    batching.add_argument("--queue-size", type=int, default=1024,
                          help="sentences a model may have waiting; more get 503 with Retry-After (default 1024)")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-body-bytes", type=int, default=1 << 20, help="request body size (default 1 MiB)")
    limits.add_argument("--max-chars", type=int, default=1000, help="characters per sentence (default 1000)")
    limits.add_argument("--max-sentences", type=int, default=100, help="sentences per request (default 100)")
    limits.add_argument("--max-beam", type=int, default=16, help="largest beam a request may ask for (default 16)")
    limits.add_argument("--max-nbest", type=int, default=8,
                        help="most hypotheses per sentence a request may ask for (default 8)")
    limits.add_argument("--request-timeout", type=float, default=60.0,
                        help="seconds a request may wait for its translation; then 504 (default 60)")
    access = p.add_argument_group("access")
    access.add_argument("--api-key-file", type=Path, metavar="FILE",
                        help="require an API key (one per line of FILE) for translation requests; off by default")
    access.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="allow browser pages from ORIGIN (e.g. https://example.org; repeat for more) to call "
                             "the API; off by default")
    _add_decode_flags(p)


def run_serve(args: argparse.Namespace) -> None:
    if absent := missing("serve"):
        raise NmtError(f"the server's packages are not installed ({', '.join(absent)}): {install_hint('serve')}")
    import torch

    from nmt.hardware import int8_engine, resolve_device
    from nmt.rundir import RunDir
    from nmt.server.app import check_port, create_app, read_api_keys, serve
    from nmt.server.service import ServerSettings, load_model, model_specs

    decode = _decode_settings(args)
    positive = {"--port": args.port, "--queue-size": args.queue_size, "--max-body-bytes": args.max_body_bytes,
                "--max-chars": args.max_chars, "--max-sentences": args.max_sentences, "--max-beam": args.max_beam,
                "--max-nbest": args.max_nbest, "--request-timeout": args.request_timeout}
    for option, value in positive.items():
        if not value > 0:
            raise NmtError(f"{option} {value}: must be positive")
    if args.port > 65535:
        raise NmtError(f"--port {args.port}: must be at most 65535")
    if not 0 <= args.batch_wait_ms <= 1000:
        raise NmtError(f"--batch-wait-ms {args.batch_wait_ms}: must be from 0 to 1000")
    if args.threads < 0:
        raise NmtError(f"--threads {args.threads}: must be an integer >= 0 (0: all cores)")
    if args.beam_size is not None and args.beam_size > args.max_beam:
        raise NmtError(f"--beam {args.beam_size} is over --max-beam {args.max_beam}")
    if args.nbest is not None and args.nbest > args.max_nbest:
        raise NmtError(f"--nbest {args.nbest} is over --max-nbest {args.max_nbest}")
    if args.queue_size < args.max_sentences:
        raise NmtError(f"--queue-size {args.queue_size} is under --max-sentences {args.max_sentences}: a full request "
                       f"could never be queued")
    specs = model_specs(args.model)
    for _, run_dir in specs:
        RunDir(run_dir).config()
        if not (run_dir / args.checkpoint).is_file():
            raise NmtError(f"checkpoint not found: {run_dir / args.checkpoint}")
    settings = ServerSettings(
        max_body_bytes=args.max_body_bytes, max_chars=args.max_chars, max_sentences=args.max_sentences,
        max_beam=args.max_beam, max_nbest=args.max_nbest, max_queue=args.queue_size, batch_wait_ms=args.batch_wait_ms,
        batch_tokens=args.batch_tokens, batching=not args.no_batching, request_timeout=args.request_timeout,
        api_keys=read_api_keys(args.api_key_file) if args.api_key_file else frozenset(),
        cors_origins=tuple(args.cors_origin))
    device = resolve_device(args.device)
    if args.quantize:
        int8_engine(device)
    check_port(args.host, args.port)
    if args.threads:
        torch.set_num_threads(args.threads)
    log.info("%d torch threads, shared by all models", torch.get_num_threads())
    models = [load_model(name, run_dir, checkpoint=args.checkpoint, quantize=args.quantize, precision=args.precision,
                         device=device, **decode) for name, run_dir in specs]
    serve(create_app(models, settings), args.host, args.port, graceful_timeout=args.request_timeout + 5)


def _info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info", help="versions, extras, hardware and what nmt chooses on it, where nmt keeps its files",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print what nmt runs with on this machine: nmt's version and location; the versions of Python,\n"
                    "torch (CPU or CUDA build) and the libraries nmt uses; whether the optional extras (serve,\n"
                    "tensorboard) are installed; the CPU (model, cores, torch threads, the instruction-set flags\n"
                    "that matter for speed) and GPUs; the device, precision (training and decoding) and int8\n"
                    "engine that `auto` and `--quantize int8` choose here; and where the token cache,\n"
                    "hardware.json and the Multi30k data are. Nothing is measured: where `precision: auto` needs\n"
                    "a measurement that is not cached yet, it says so.",
        epilog="examples:\n"
               "  nmt info\n"
               "  nmt info --json > info.json\n"
               "  nmt info --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"torch\"])'")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run_info(args: argparse.Namespace) -> None:
    import json

    from nmt.info import collect, format_report

    info = collect()
    print(json.dumps(info, indent=1) if args.json else format_report(info))


def _data_parser(sub: argparse._SubParsersAction) -> None:
    from nmt.download import CORPORA, MULTI30K

    p = sub.add_parser(
        "data", help="download a corpus (Multi30k) and verify its checksums",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Download a corpus into DIR, where the configs that use it read it. multi30k: the raw text\n"
                    "of Multi30k Task 1 (Elliott et al. 2016): English image captions of Flickr30k and their\n"
                    "translations into German, French and Czech, one sentence per line, as the data configs\n"
                    "multi30k_deen, multi30k_ende and multi30k_fren read them, from the dataset's repository:\n"
                    f"  {MULTI30K.base_url}/FILE.gz\n"
                    "Each file is downloaded gzipped, decompressed, checked against the SHA-256 recorded in nmt and\n"
                    "only then given its name. Files already in DIR that verify are kept (a second run resumes an\n"
                    "interrupted one); one that does not is refused and left as it is, unless --force. The folder is\n"
                    "printed on stdout.\n\n"
                    f"{MULTI30K.title}'s files:\n{MULTI30K.table()}\n"
                    "val is the development set. The test sets are for reporting results only: test_2016_flickr\n"
                    "(the recipes' test set) and the later test_2017_flickr, test_2017_mscoco and test_2018_flickr;\n"
                    "choose every setting (checkpoint, beam size, length penalty) on val, never on a test set.",
        epilog="examples:\n"
               f"  nmt data multi30k                # all files, into ${MULTI30K.env} or {MULTI30K.default_dir}\n"
               "  nmt data multi30k --languages de en --splits train val test_2016_flickr\n"
               "  nmt data multi30k --dir data/multi30k && nmt train experiment=multi30k_gru data.dir=data/multi30k\n"
               "  export NMT_MULTI30K=$(nmt data multi30k --dir /data/multi30k)   # then every config reads it\n"
               "  nmt data multi30k --mirror https://mirror.example.org/multi30k/task1/raw\n"
               "  nmt data multi30k --mirror file:///srv/multi30k/raw      # a folder of the .gz files")
    p.add_argument("corpus", choices=sorted(CORPORA), help="the corpus: multi30k (Multi30k Task 1)")
    p.add_argument("--dir", type=Path,
                   help=f"where the files go (default: ${MULTI30K.env} if set, else {MULTI30K.default_dir})")
    p.add_argument("--languages", nargs="+", metavar="LANG",
                   help=f"only these languages, of {' '.join(MULTI30K.languages())} (default: all)")
    p.add_argument("--splits", nargs="+", metavar="SPLIT", help="only these splits (default: all, as listed above)")
    p.add_argument("--mirror", metavar="URL",
                   help="download URL/FILE.gz instead, from a mirror of the repository's files (http://, https://, "
                        "or file:// for a local folder)")
    p.add_argument("--force", action="store_true",
                   help="replace the files in DIR whose checksum is wrong (without it they are refused)")


def run_data(args: argparse.Namespace) -> None:
    from nmt.download import CORPORA, download

    corpus = CORPORA[args.corpus]
    folder = (args.dir or corpus.folder()).expanduser()
    download(corpus, folder, corpus.select(args.splits, args.languages), base_url=args.mirror, force=args.force)
    print(os.path.abspath(folder))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``nmt`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        from nmt.train import main as train_main

        sys.argv = [f"{Path(sys.argv[0]).name} train"]
        train_main(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="nmt", description="Neural machine translation with attention.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"nmt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train a model (see `nmt train --help`)", add_help=False)
    _translate_parser(sub)
    _plot_parser(sub)
    _evaluate_parser(sub)
    _align_parser(sub)
    _evaluate_alignment_parser(sub)
    _plot_metrics_parser(sub)
    _average_parser(sub)
    _plot_length_parser(sub)
    _serve_parser(sub)
    _info_parser(sub)
    _data_parser(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT, stream=sys.stderr)
    try:
        commands = {"translate": run_translate, "plot-attention": run_plot, "evaluate": run_evaluate,
                    "align": run_align, "evaluate-alignment": run_evaluate_alignment,
                    "plot-metrics": run_plot_metrics, "average": run_average,
                    "plot-length": run_plot_length, "serve": run_serve, "info": run_info,
                    "data": run_data}
        commands[args.command](args)
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
