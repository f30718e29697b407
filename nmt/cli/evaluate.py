"""The commands that read given translations: ``evaluate`` (BLEU, chrF, TER, exact match), ``score`` (the
model's log-probabilities of them), ``align`` (word alignments by forced decoding) and ``evaluate-alignment``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
from pathlib import Path

from nmt import NmtError
from nmt.cli.options import (
    add_command,
    add_model_options,
    add_output,
    add_runs,
    check_input,
    check_outputs,
    deprecated,
    load_translator,
    open_output,
    require,
)

log = logging.getLogger(__name__)

EVALUATE = """\
Score detokenized translations against references with sacrebleu (BLEU: 13a tokenization,
cased; chrF; TER), plus exact sentence match, and print sacrebleu's signature. Both sides must
be UTF-8 with the same number of lines, at least one (translations read from stdin too:
invalid UTF-8 is an error naming <stdin>:LINE)."""

SCORE = """\
Read each given translation into the model with teacher forcing (forced decoding, fairseq's
--score-reference) and print, one line per pair, the sentence's log-probability log p(y|x)
(natural log, EOS included), its per-token perplexity, and each target subword with its
log-probability log p(y_i | y_<i, x):
  -4.2810<TAB>1.8523<TAB>▁2026:-0.0012 -:-0.0003 ... </s>:-0.0001
A pair with a blank side gives an empty line. The total (tokens, perplexity) goes to stderr.
Several -m score with the ensemble's mean probabilities."""

ALIGN = """\
Read each given translation into the model with teacher forcing (forced decoding) and link
each target word to the source word it attends to most. Output: one line per input pair,
Pharaoh format 'i-j' (source word i, target word j, 0-based, words split at spaces); a pair
with a blank side gives a blank line. -i and -t must have the same number of lines."""

EVALUATE_ALIGNMENT = """\
Score predicted word alignments (Pharaoh 'i-j', a line per sentence) against a gold standard
of sure (S) and possible (P) links, S a subset of P (Och & Ney 2003), summed over the corpus:
  precision = |A&P| / |A|,  recall = |A&S| / |S|,  AER = 1 - (|A&S| + |A&P|) / (|A| + |S|)

gold formats (detected from the first non-blank line):
  Pharaoh: a line per sentence, 'i-j' a sure link, 'i?j' a possible one, 0-based positions;
  'SENT I J [S|P] [CONFIDENCE]': a link per line, the format of the HLT-NAACL 2003 shared task
    (the Hansards and Europarl gold standards): SENT the 1-based line of the sentence in the
    hypothesis, I and J the 1-based source and target word positions, S sure (the default) or P
    possible; links to position 0 (NULL) are ignored, sentences without links have none.

output: 'AER 23.45  precision 80.12  recall 71.03  (447 sentences; 4,123 predicted, 4,038 sure,
19,222 possible links)', the scores in percent."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "evaluate", "score translations: BLEU, chrF, TER, exact match (sacrebleu)", EVALUATE, [
        "nmt evaluate -r runs/dates/data/test.iso --hypothesis runs/dates/test.hyp",
        "nmt translate -m runs/m30k -i test.de | nmt evaluate -r test.en"], run_evaluate)
    p.add_argument("-r", "--reference", type=Path, metavar="PATH", help="references, one per line")
    p.add_argument("--hypothesis", type=Path, metavar="PATH", help="translations, one per line (default: stdin)")
    deprecated(p, "--ref", new="-r/--reference", dest="reference")
    deprecated(p, "--hyp", new="--hypothesis", dest="hypothesis")
    p.add_argument("--lowercase", action="store_true",
                   help="also BLEU on lowercased text (case:lc, as most published Multi30k results are)")

    p = add_command(sub, "score", "the model's log-probabilities of given translations (forced decoding)", SCORE, [
        "nmt score -m runs/dates -i runs/dates/data/test.txt -t runs/dates/data/test.iso -o test.scores",
        "nmt score -m runs/m30k -i test.de -t test.en | cut -f1 | sort -g | head   # the least likely pairs",
        "nmt score -m runs/m30k -i test.de -t test.en --jsonl -o scores.jsonl"], run_score)
    _pair_options(p)
    p.add_argument("--jsonl", action="store_true",
                   help="one JSON object per line: score, perplexity, src_pieces, trg_pieces, token_scores")
    add_model_options(p)

    p = add_command(sub, "align", "word-align given translations by forced decoding (Pharaoh format)", ALIGN, [
        "nmt align -m runs/dates -i runs/dates/data/test.txt -t runs/dates/data/test.iso -o test.align",
        "nmt align -m runs/m30k -i test.de -t test.en | head"], run_align)
    _pair_options(p)
    deprecated(p, "-s", "--source", new="-i/--input", dest="input")
    add_model_options(p)

    p = add_command(sub, "evaluate-alignment", "score word alignments: alignment error rate, precision, recall",
                    EVALUATE_ALIGNMENT, ["nmt evaluate-alignment -r test.gold.align --hypothesis test.align",
                                         "nmt evaluate-alignment -r test.wa.nonullalign --hypothesis test.align"],
                    run_evaluate_alignment)
    p.add_argument("-r", "--reference", type=Path, metavar="PATH", help="gold alignments (formats above)")
    p.add_argument("--hypothesis", type=Path, metavar="PATH", help="predicted alignments, Pharaoh format")
    deprecated(p, "--gold", new="-r/--reference", dest="reference")
    deprecated(p, "--pred", new="--hypothesis", dest="hypothesis")


def _pair_options(p: argparse.ArgumentParser) -> None:
    add_runs(p)
    p.add_argument("-i", "--input", type=Path, metavar="PATH", help="source sentences, one per line")
    p.add_argument("-t", "--target", type=Path, metavar="PATH", help="their given translations, one per line")
    add_output(p, "output file (default: stdout)")


def run_evaluate(args: argparse.Namespace) -> None:
    from nmt.evaluate import score
    from nmt.textfile import read_lines, read_stream

    require(args, ("reference", "-r/--reference"))
    refs = read_lines(args.reference)
    hyp = args.hypothesis
    hyps = read_lines(hyp) if hyp else read_stream(sys.stdin.buffer, "<stdin>")
    if len(hyps) != len(refs):
        raise NmtError(f"{hyp or '<stdin>'} has {len(hyps)} lines, {args.reference} has {len(refs)}")
    if not refs:
        raise NmtError(f"{args.reference} is empty: nothing to score")
    result = score(hyps, refs, ter=True, lowercase=args.lowercase)
    print(f"BLEU {result['bleu']:.2f}  chrF {result['chrf']:.2f}  TER {result['ter']:.2f}  "
          f"exact {result['exact']:.2f}%  ({len(refs)} sentences)  [{result['bleu_signature']}]")
    if args.lowercase:
        print(f"BLEU {result['bleu_lc']:.2f} on lowercased text  [{result['bleu_lc_signature']}]")


def _read_pairs(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from nmt.textfile import read_parallel

    require(args, ("input", "-i/--input"), ("target", "-t/--target"))
    check_input(args.input)
    check_input(args.target, "-t")
    check_outputs(args.input, {"-o": args.output})
    return read_parallel(args.input, args.target)


def run_score(args: argparse.Namespace) -> None:
    from nmt.scoring import score_pairs

    sources, targets = _read_pairs(args)
    translator = load_translator(args)
    total, tokens = 0.0, 0
    with contextlib.ExitStack() as files:
        out = open_output(files, args.output) if args.output else sys.stdout
        for start in range(0, len(sources), 1000):
            chunk = score_pairs(translator, [" ".join(s.split()) for s in sources[start:start + 1000]],
                                [" ".join(t.split()) for t in targets[start:start + 1000]])
            for s in chunk:
                if s is not None:
                    total, tokens = total + s.score, tokens + len(s.token_scores)
            out.write("".join(_score_line(s, args.jsonl) + "\n" for s in chunk))
    log.info("scored %d pairs: %d target tokens, log-probability %.2f, perplexity %.3f", len(sources), tokens,
             total, math.exp(-total / tokens) if tokens else float("nan"))


def _score_line(s: object, jsonl: bool) -> str:
    from nmt.plot import EOS_LABEL
    from nmt.scoring import Scored

    if not isinstance(s, Scored):
        return json.dumps(None) if jsonl else ""
    if jsonl:
        return json.dumps({"score": round(s.score, 4), "perplexity": round(s.perplexity, 4),
                           "src_pieces": s.src_pieces, "trg_pieces": s.trg_pieces,
                           "token_scores": [round(x, 4) for x in s.token_scores]}, ensure_ascii=False)
    tokens = " ".join(f"{piece}:{x:.4f}" for piece, x in zip([*s.trg_pieces, EOS_LABEL], s.token_scores, strict=True))
    return f"{s.score:.4f}\t{s.perplexity:.4f}\t{tokens}"


def run_align(args: argparse.Namespace) -> None:
    from nmt.alignment import forced_attention
    from nmt.words import pharaoh

    sources, targets = _read_pairs(args)
    translator = load_translator(args)
    with contextlib.ExitStack() as files:
        out = open_output(files, args.output) if args.output else sys.stdout
        for start in range(0, len(sources), 1000):
            chunk = forced_attention(translator, [" ".join(s.split()) for s in sources[start:start + 1000]],
                                     [" ".join(t.split()) for t in targets[start:start + 1000]])
            if any(f.attention is None and f.src_pieces and f.trg_pieces for f in chunk):
                raise NmtError(f"the model in {', '.join(str(m) for m in args.model)} has no attention (a "
                               f"fixed-context model): nothing to align with")
            out.write("".join(pharaoh(f.attention, f.src_pieces, f.trg_pieces) + "\n" for f in chunk))


def run_evaluate_alignment(args: argparse.Namespace) -> None:
    from nmt.alignment import read_gold, read_pharaoh, score_alignments

    require(args, ("reference", "-r/--reference"), ("hypothesis", "--hypothesis"))
    predicted = [sure | possible for sure, possible in read_pharaoh(args.hypothesis)]
    gold = read_gold(args.reference, len(predicted))
    s = score_alignments(gold, predicted)
    print(f"AER {100 * s.aer:.2f}  precision {100 * s.precision:.2f}  recall {100 * s.recall:.2f}  "
          f"({s.sentences} sentences; {s.predicted:,} predicted, {s.sure:,} sure, {s.possible:,} possible links)")
