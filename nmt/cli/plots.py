"""The plotting commands: ``plot-attention``, ``plot-gradients``, ``plot-metrics`` and ``plot-length``."""

from __future__ import annotations

import argparse
from pathlib import Path

from nmt import NmtError, check_image_path
from nmt.cli.options import (
    IMAGE_FORMATS,
    add_command,
    add_decode_flags,
    add_model_options,
    add_output,
    add_runs,
    check_input,
    decode_settings,
    deprecated,
    load_translator,
    model_place,
    require,
    warn_deprecated,
)

ATTENTION = """\
Translate a sentence with the run's own search settings (or the decoding flags) and draw its
attention weights as a heatmap: source subwords across, output subwords down, or words with
--words (a source word gets the sum of its pieces' weights, a target word the average of its
pieces' rows). The format follows the suffix of -o (.png, .svg, .pdf). For a Transformer the
attention is the last decoder layer's cross-attention averaged over heads; --layer and --head
pick one, --heads draws all heads of a layer in one figure (the translation is decoded again
with teacher forcing to get them). Several -m draw an ensemble's mean attention."""

GRADIENTS = """\
Gradient flow through time: the norm of the gradient of log p(y_i), the probability of target
word i, with respect to the embedding of source word j, g_ij = ||d log p(y_i) / d e_j||.

With --text (or -i and --line) it draws g as a heatmap for one sentence pair: the source
against its translation by the model, or against -t/--target's given translation. With --pairs
N it draws a curve for each run: g averaged over the first N pairs of -i/-t (default: the run's
dev set) by the length of the recurrent path between j and i, (S - 1 - j) encoder steps and i
decoder steps. The vanilla RNN's curve falls geometrically (each step multiplies by
diag(1 - h_t^2) W_hh), the LSTM's and GRU's much less; attention gives every j a path of one
step, and a Transformer has none to decay along. --init measures the run's design with fresh
weights (its config's seed): the decay is visible before any training.

Gradients are computed in fp32; an int8 model has no backward pass."""

METRICS = """\
Draw the training curves of runs from their metrics.jsonl: a panel per logged metric (loss:
training and dev; any other: dev, e.g. bleu, ppl, exact for the date task, chrf) against update
steps, or against seconds of training (--against elapsed), or both; one color per run, named by
its folder."""

LENGTH = """\
Group the test sentences by source length in words and score each group with sacrebleu, for
each translation file given (as in Bahdanau et al. 2015, Figure 2); print the table and draw one
line per system."""


def register(sub: argparse._SubParsersAction) -> None:
    _attention_parser(sub)
    _gradients_parser(sub)
    p = add_command(sub, "plot-metrics", "draw training curves (any logged metric) of one or more runs", METRICS, [
        "nmt plot-metrics -m runs/dates -o metrics.png",
        "nmt plot-metrics -m runs/dates-gru -m runs/dates-lstm -m runs/dates-tf -o compare.pdf",
        "nmt plot-metrics -m runs/rnn -m runs/gru --metric exact --against step --against elapsed -o cells.png"],
        run_metrics)
    add_runs(p, what="training run directory; repeat it to compare runs", required=False)
    p.add_argument("runs", nargs="*", type=Path, help=argparse.SUPPRESS)
    add_output(p, "image file (.png/.svg/.pdf; default metrics.png)", Path("metrics.png"))
    p.add_argument("--metric", action="append", metavar="NAME",
                   help="a logged metric to draw (repeatable; default: loss, ppl and bleu)")
    p.add_argument("--against", action="append", choices=["step", "elapsed"],
                   help="x axis: update steps or seconds of training (repeatable: a row each; default step)")
    p = add_command(sub, "plot-length", "BLEU by source sentence length, for one or more systems", LENGTH, [
        "nmt plot-length -i test.de -r test.en --hypothesis runs/gru/test.hyp --hypothesis runs/cho/test.hyp",
        "nmt plot-length -i test.de -r test.en --hypothesis a.hyp --hypothesis b.hyp --labels a,b -o length.svg"],
        run_length)
    p.add_argument("-i", "--input", type=Path, metavar="PATH", help="source sentences, one per line")
    p.add_argument("-r", "--reference", type=Path, metavar="PATH", help="references, one per line")
    p.add_argument("--hypothesis", type=Path, action="append", metavar="PATH",
                   help="translations, one per line; repeat it, one file per system")
    deprecated(p, "-s", "--src", new="-i/--input", dest="input")
    deprecated(p, "--ref", new="-r/--reference", dest="reference")
    p.add_argument("hyps", nargs="*", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--labels", help="comma-separated system names (default: the file names' folders)")
    p.add_argument("--bins", default="10,15,20,25", help="upper bin edges in words (default 10,15,20,25)")
    add_output(p, "image file (.png/.svg/.pdf; default bleu_by_length.png)", Path("bleu_by_length.png"))


def _attention_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "plot-attention", "draw the attention matrix of a translation (or of every line of a file)",
                    ATTENTION, [
                        "nmt plot-attention -m runs/dates --text \"Wednesday, 25 November 2026\" -o attention.png",
                        "nmt plot-attention -m runs/dates -i test.txt --line 3 --beam 5 -o line3.pdf",
                        "nmt plot-attention -m runs/dates -i test.txt --all -o plots/   # plots/0001.png ...",
                        "nmt plot-attention -m runs/m30k --text \"Ein Hund läuft.\" --words -o words.svg",
                        "nmt plot-attention -m runs/tf --text \"25.11.26\" --layer 1 --head 3 -o l1h3.png",
                        "nmt plot-attention -m runs/tf --text \"25.11.26\" --heads --layer 2 -o heads.png"],
                    run_attention)
    add_runs(p)
    _sentence_options(p)
    lines = p.add_mutually_exclusive_group()
    lines.add_argument("--line", type=int, help="line number in --input (1-based, default 1)")
    lines.add_argument("--all", action="store_true",
                       help="every non-blank line of --input, into the folder -o, one image per line named by its "
                            "line number")
    add_output(p, "image file (.png/.svg/.pdf; default attention.png), or with --all a folder")
    p.add_argument("--format", choices=IMAGE_FORMATS, help="with --all: the image format (default png)")
    p.add_argument("--words", action="store_true", help="merge subword pieces into words")
    p.add_argument("--layer", type=int, help="Transformer: decoder layer, 1-based (default: the last)")
    heads = p.add_mutually_exclusive_group()
    heads.add_argument("--head", type=int, help="Transformer: attention head, 1-based (default: their average)")
    heads.add_argument("--heads", action="store_true", help="Transformer: a grid of all heads of the layer")
    add_model_options(p)
    add_decode_flags(p, exclude=("nbest",))


def _sentence_options(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the source sentence")
    source.add_argument("-i", "--input", type=Path, metavar="PATH",
                        help="source sentences, one per line: one of them (--line) or all (--all)")


def _gradients_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "plot-gradients", "draw gradient flow through time: which source words can still move "
                                           "which target words", GRADIENTS, [
                        "nmt plot-gradients -m runs/dates-rnn --text \"25 November 2026\" -o map.png",
                        "nmt plot-gradients -m runs/m30k --text \"Ein Hund läuft.\" -t \"A dog runs.\" -o map.svg",
                        "nmt plot-gradients -m runs/dates-rnn -m runs/dates-lstm --pairs 50 -o flow.png",
                        "nmt plot-gradients -m runs/dates-rnn --init --pairs 50 -o flow-at-init.pdf"],
                    run_gradients)
    add_runs(p, what="training run directory; repeat it for one curve per run (--pairs)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="a source sentence: the gradient map of it and its translation")
    source.add_argument("--pairs", type=int, metavar="N",
                        help="the curve over the first N sentence pairs of -i/-t (default: each run's dev set)")
    source.add_argument("--line", type=int, help="the gradient map of this line (1-based) of -i (and -t)")
    p.add_argument("-i", "--input", type=Path, metavar="PATH", help="source sentences, one per line")
    p.add_argument("-t", "--target", metavar="TEXT_OR_PATH",
                   help="the given translation of --text, or with -i a file of translations, one per line "
                        "(default: the model's own greedy translation)")
    p.add_argument("--init", action="store_true", help="fresh weights from the run's config and seed, not trained")
    add_output(p, "image file (.png/.svg/.pdf; default gradients.png)", Path("gradients.png"))
    add_model_options(p)


def run_attention(args: argparse.Namespace) -> None:
    if args.all and (args.output is None or args.output.suffix.lower() in {f".{f}" for f in IMAGE_FORMATS}):
        raise NmtError("--all writes an image per line into a folder: name it with -o FOLDER")
    if args.format and not args.all:
        raise NmtError("--format is for --all; otherwise the suffix of -o gives the format")
    if args.line is not None and args.input is None:
        raise NmtError("--line needs -i FILE")
    if args.output is not None and not args.all:
        check_image_path(args.output)
    if args.text is not None and not args.text.strip():
        raise NmtError("nothing to translate: --text is blank")
    if args.input is not None:
        check_input(args.input)
    settings = decode_settings(args)
    from nmt.alignment import force_decode, has_heads  # after the checks: a mistake costs no model loading
    from nmt.plot import plot_translation, select_heads
    from nmt.textfile import read_lines

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
    translator = load_translator(args, **(settings | {"nbest": 1}))
    models = ", ".join(str(m) for m in args.model)
    translations = translator.translate([" ".join(text.split()) for text, _ in jobs])
    if any(t.attention is None for t in translations):
        raise NmtError(f"the model in {models} has no attention (a fixed-context model): nothing to plot")
    matrices, what = [t.attention for t in translations], [""] * len(translations)
    if args.layer is not None or args.head is not None or args.heads:
        if not has_heads(translator):
            raise NmtError(f"--layer, --head and --heads need a Transformer; the model in {models} has one "
                           f"attention per output step")
        src_ids = [translator.src_tok.ids(t.src_pieces) for t in translations]
        trg_ids = [translator.trg_tok.ids(t.trg_pieces) for t in translations]
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


def _check_gradient_args(args: argparse.Namespace) -> None:
    """Every mistake of ``plot-gradients`` in one line, before a model is loaded."""
    check_image_path(args.output)
    if args.quantize:
        raise NmtError("--quantize int8: an int8 model has no backward pass, so no gradients (leave it out)")
    if args.precision == "bf16":
        raise NmtError("--precision bf16: gradients are measured in fp32 (leave it out)")
    if args.pairs is not None and args.pairs < 1:
        raise NmtError(f"--pairs {args.pairs}: must be at least 1")
    if args.pairs is None and len(args.model) > 1:
        raise NmtError("a gradient map is of one run: give one -m (or --pairs N for a curve per run)")
    if args.line is not None and args.input is None:
        raise NmtError("--line needs -i FILE")
    if args.text is not None and not args.text.strip():
        raise NmtError("nothing to measure: --text is blank")
    if args.input is not None:
        check_input(args.input)
        if args.target is not None:
            check_input(Path(args.target), "-t")
    elif args.pairs is not None and args.target is not None:
        raise NmtError("-t with --pairs is a file of translations of -i: give -i too")


def _gradient_pairs(args: argparse.Namespace, run: Path) -> tuple[list[str], list[str | None]]:
    """The source sentences to measure, and their given translations (None: the model's own)."""
    from nmt.textfile import read_lines, read_parallel

    if args.text is not None:
        return [" ".join(args.text.split())], [args.target]
    targets: list[str | None]
    if args.input is not None and args.target is not None:
        sources, given = read_parallel(args.input, Path(args.target))
        targets = list(given)
    elif args.input is not None:
        sources = read_lines(args.input)
        targets = [None] * len(sources)
    else:
        from nmt import data
        from nmt.rundir import RunDir

        cfg = RunDir(run).config().data
        sources, dev = data.as_lists(data.load_split(cfg, data.prepare(cfg, run), "dev"))
        targets = list(dev)
    if args.line is not None:
        if not 1 <= args.line <= len(sources):
            raise NmtError(f"{args.input} has {len(sources)} lines; --line {args.line} is out of range")
        if not sources[args.line - 1].strip():
            raise NmtError(f"nothing to measure: {args.input}:{args.line} is blank")
        return [sources[args.line - 1]], [targets[args.line - 1]]
    keep = [k for k, s in enumerate(sources) if s.strip()][: args.pairs]
    return [sources[k] for k in keep], [targets[k] for k in keep]


def run_gradients(args: argparse.Namespace) -> None:
    _check_gradient_args(args)
    from nmt.gradients import flow_by_path, gradient_map
    from nmt.plot import EOS_LABEL, plot_gradient_flow, plot_gradient_map
    from nmt.translate import Translator

    device = model_place(args)
    checkpoints = args.checkpoint or ["best.pt"]
    if len(checkpoints) not in (1, len(args.model)):
        raise NmtError(f"{len(checkpoints)} checkpoints for {len(args.model)} runs: give one for all, or one per run")
    curves: dict[str, dict[int, float]] = {}
    for k, run in enumerate(args.model):
        translator = Translator.from_run(run, checkpoints[k % len(checkpoints)], precision="fp32", device=device,
                                         beam_size=1, nbest=1, sample=False, fresh=args.init)
        sources, given = _gradient_pairs(args, run)
        own = iter(translator.translate([s for s, t in zip(sources, given, strict=True) if t is None]))
        targets = [t if t is not None else next(own).text for t in given]
        ids = [(translator.src_tok.encode([s])[0][: translator.max_src_length], translator.trg_tok.encode([t])[0])
               for s, t in zip(sources, targets, strict=True)]
        if args.pairs is None:
            g = gradient_map(translator.model, *ids[0])
            src, trg = (translator.src_tok.pieces(ids[0][0]), translator.trg_tok.pieces(ids[0][1]))
            print(plot_gradient_map(g, [*src, EOS_LABEL], [*trg, EOS_LABEL], args.output,
                                    f"{sources[0]}  ->  {targets[0]}{'  (fresh weights)' if args.init else ''}"))
            return
        curves[run.name + (" (init)" if args.init else "")] = flow_by_path(translator.model, ids)
    weights = "fresh weights" if args.init else "trained weights"
    print(plot_gradient_flow(curves, args.output, f"gradient flow over {args.pairs} pairs, {weights}"))


def run_metrics(args: argparse.Namespace) -> None:
    from nmt.plot import plot_metrics

    if args.runs:
        warn_deprecated("RUN as a positional argument", "-m RUN")
    runs = [*(args.model or []), *args.runs]
    if not runs:
        raise NmtError("name a run: -m RUN (repeat it to compare runs)")
    names = [d.name for d in runs]
    labels = names if len(set(names)) == len(names) else [str(d) for d in runs]
    print(plot_metrics(runs, args.output, labels, args.metric or ("loss", "ppl", "bleu"), args.against or ("step",)))


def run_length(args: argparse.Namespace) -> None:
    from nmt.evaluate import bleu_by_length
    from nmt.plot import plot_bleu_by_length
    from nmt.textfile import read_lines

    if args.hyps:
        warn_deprecated("translation files as positional arguments", "--hypothesis PATH")
    args.hypothesis = [*(args.hypothesis or []), *args.hyps] or None
    require(args, ("input", "-i/--input"), ("reference", "-r/--reference"), ("hypothesis", "--hypothesis"))
    hyps = args.hypothesis
    labels = args.labels.split(",") if args.labels else [h.parent.name or h.stem for h in hyps]
    if len(labels) != len(hyps):
        raise NmtError(f"{len(labels)} labels for {len(hyps)} hypothesis files")
    try:
        edges = [int(x) for x in args.bins.split(",")]
    except ValueError:
        raise NmtError(f"--bins takes comma-separated word counts, got {args.bins!r}") from None
    src, refs = read_lines(args.input), read_lines(args.reference)
    results = {}
    for label, hyp in zip(labels, hyps, strict=True):
        hyp_lines = read_lines(hyp)
        if len(hyp_lines) != len(refs) or len(src) != len(refs):
            raise NmtError(f"{hyp} has {len(hyp_lines)} lines, {args.input} {len(src)}, {args.reference} {len(refs)}")
        results[label] = bleu_by_length(src, hyp_lines, refs, edges)
    print("\t".join(["source words", "sentences", *labels]))
    for k, (bin_label, n, _) in enumerate(results[labels[0]]):
        print("\t".join([bin_label, str(n), *(f"{results[x][k][2]:.2f}" for x in labels)]))
    print(plot_bleu_by_length(results, args.output))
