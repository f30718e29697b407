"""The ``nmt`` command: train, translate, plot-attention, evaluate, align, evaluate-alignment, plot-metrics,
plot-length, average."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from nmt import NmtError, __version__

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
               "  nmt translate -m runs/dates --beam 5 --alignments test.align < test.txt > test.hyp\n"
               "  nmt translate -m runs/dates            # interactive: one line in, one line out\n\n"
               "n-best format (--nbest N): N lines per input line, 'LINE ||| TRANSLATION ||| LOG-PROBABILITY',\n"
               "LINE counting input lines from 0; a blank input line gives N lines with an empty translation.")
    p.add_argument("-m", "--model", required=True, type=Path, metavar="RUN_DIR", help="training run directory")
    p.add_argument("-i", "--input", type=Path, help="input file (default: stdin)")
    p.add_argument("-o", "--output", type=Path, help="output file (default: stdout)")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint file in RUN_DIR (default: best.pt)")
    p.add_argument("--beam", type=int, help="beam size; 1 is greedy search (default: the run's decode setting)")
    p.add_argument("--nbest", type=int, help="write the N best translations per input line (format below)")
    p.add_argument("--alpha", type=float, help="GNMT length penalty for ranking beams; 0: none")
    p.add_argument("--max-len-a", type=float, help="at most A * source length + B output subwords")
    p.add_argument("--max-len-b", type=int, help="see --max-len-a")
    p.add_argument("--min-length", type=int, help="no EOS before this many output subwords")
    p.add_argument("--no-repeat-ngram", type=int, help="never repeat an n-gram of this size in an output")
    p.add_argument("--batch-tokens", type=int, help="source subwords per batch")
    p.add_argument("--scores", action="store_true", help="prefix each translation with its log-probability and a tab")
    p.add_argument("--alignments", type=Path, metavar="FILE",
                   help="also write word alignments from attention, Pharaoh format ('i-j'), a line per input line")
    p.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantization for faster CPU inference")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: matrix products in bfloat16 (faster on CPUs with AVX-512 BF16; default fp32)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")


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
    p.add_argument("--format", choices=["png", "svg", "pdf"], help="with --all: the image format (default png)")
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
                    "tokenization, cased; chrF; TER), plus exact sentence match, and print sacrebleu's signature.",
        epilog="examples:\n"
               "  nmt evaluate -r runs/dates/data/test.iso -h runs/dates/test.hyp\n"
               "  nmt translate -m runs/m30k -i test.de | nmt evaluate -r test.en")
    p.add_argument("--help", action="help", help="show this help message and exit")
    p.add_argument("-r", "--ref", required=True, type=Path, help="reference file, one sentence per line")
    p.add_argument("-h", "--hyp", type=Path, help="translations, one per line (default: stdin)")


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
    p.add_argument("--last", type=int, default=5, help="how many of the latest checkpoints (default 5)")
    p.add_argument("-o", "--output", default="averaged.pt", help="file name in RUN_DIR (default averaged.pt)")


def run_average(args: argparse.Namespace) -> None:
    from nmt.checkpoint import average, save, step_checkpoints

    paths = args.checkpoints or step_checkpoints(args.run)[-args.last:]
    out = args.run / args.output
    save(average(paths), out)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {out}")


def run_evaluate(args: argparse.Namespace) -> None:
    from nmt.data import read_lines
    from nmt.evaluate import score

    refs = read_lines(args.ref)
    hyps = read_lines(args.hyp) if args.hyp else [line.rstrip("\r\n") for line in sys.stdin]
    if len(hyps) != len(refs):
        raise NmtError(f"{args.hyp or '<stdin>'} has {len(hyps)} lines, {args.ref} has {len(refs)}")
    result = score(hyps, refs, ter=True)
    print(f"BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  TER {result['ter']:.2f}  "
          f"exact {result['exact']:.2f}%  ({len(refs)} sentences)  [{result['bleu_signature']}]")


def run_translate(args: argparse.Namespace) -> None:
    import torch

    from nmt.translate import Translator, read_lines_replacing, translate_stream

    if args.threads:
        torch.set_num_threads(args.threads)
    options = {"beam_size": args.beam, "nbest": args.nbest, "alpha": args.alpha, "max_len_a": args.max_len_a,
               "max_len_b": args.max_len_b, "min_length": args.min_length, "no_repeat_ngram": args.no_repeat_ngram,
               "batch_tokens": args.batch_tokens}
    if args.nbest and not args.beam:
        options["beam_size"] = max(args.nbest, 5)
    translator = Translator.from_run(args.model, args.checkpoint, args.quantize, args.precision,
                                     **{k: v for k, v in options.items() if v is not None})
    if args.input is not None and not args.input.is_file():
        raise NmtError(f"input file not found: {args.input}")
    source = open(args.input, "rb") if args.input else sys.stdin.buffer  # noqa: SIM115
    name = str(args.input) if args.input else "<stdin>"
    interactive = args.input is None and sys.stdin.isatty()
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    alignments = open(args.alignments, "w", encoding="utf-8") if args.alignments else None  # noqa: SIM115
    try:
        translate_stream(translator, read_lines_replacing(source, name), out, name,
                         chunk_lines=1 if interactive else 1000, progress=not interactive,
                         nbest=args.nbest or 0, scores=args.scores, alignments=alignments)
    finally:
        for f, opened in ((source, args.input), (out, args.output), (alignments, args.alignments)):
            if opened:
                f.close()


def run_plot(args: argparse.Namespace) -> None:
    from nmt.alignment import force_decode, has_heads
    from nmt.data import read_lines
    from nmt.plot import plot_translation, select_heads
    from nmt.translate import Translator

    if args.all and (args.output is None or args.output.suffix.lower() in (".png", ".svg", ".pdf")):
        raise NmtError("--all writes an image per line into a folder: name it with -o FOLDER")
    if args.format and not args.all:
        raise NmtError("--format is for --all; otherwise the suffix of -o gives the format")
    if args.line is not None and args.input is None:
        raise NmtError("--line needs -i FILE")
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
        where = args.input if args.all else f"{args.input}:{args.line or 1}" if args.input else "--text"
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``nmt`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        from nmt.train import main as train_main

        sys.argv = [f"{Path(sys.argv[0]).name} train", *argv[1:]]
        train_main()
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
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        commands = {"translate": run_translate, "plot-attention": run_plot, "evaluate": run_evaluate,
                    "align": run_align, "evaluate-alignment": run_evaluate_alignment,
                    "plot-metrics": run_plot_metrics, "average": run_average,
                    "plot-length": run_plot_length}
        commands[args.command](args)
        sys.stdout.flush()
    except NmtError as e:
        sys.exit(f"nmt {args.command}: error: {e}")
    except BrokenPipeError:  # the reader of stdout left (`nmt align ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
