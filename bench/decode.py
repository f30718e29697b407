"""Decoding benchmark: Multi30k test_2016_flickr (1,000 sentences), greedy and beam 5, in fp32, int8 (dynamic
quantization) and bf16 (autocast), beam 5 with `--stop beams` too, and JoeyNMT 2.3 decoding the same test set
with an equally sized RNN, in the same invocation. The table starts with the machine (CPU model, the flags that
matter, cores, GPU, torch).

    python bench/decode.py --run RUN_DIR [--joey ../shared/bench/joeynmt] [--data DIR] [--shortlist K] [--ct2]

RUN_DIR is an nmt run trained on Multi30k de->en (e.g. `recipes/multi30k/run.sh gru`); DIR is the Multi30k folder
(default: NMT_MULTI30K, else the folder `nmt data multi30k` downloads into). JoeyNMT's
side runs the harness in ../shared/bench/joeynmt (`bench.sh decode rnn BEAM`, batch 64 sentences), which needs
its venv (`setup.sh`) and a checkpoint: the harness's `rnn` config trained for --joey-updates updates (default 600,
trained once and kept in its work folder as models/rnn_decode), or the one JOEY_CKPT names. An under-trained
JoeyNMT model writes outputs of other lengths than a trained one: compare target tokens/s as well as sentences/s.
Each configuration runs --repeat times (default 3), round by round, each time in its own process under
/usr/bin/time (wall time, peak RSS), and the table shows its fastest run (timings on a shared machine vary by 10% or
more from one run to the next; the fastest is the least disturbed). "decode s" is the
translation loop (tokenization, search, detokenization) without Python start-up and model loading; sentences/s and
target tokens/s (sentencepiece pieces of the output, EOS excluded) are over it. Prints a Markdown table. With
--shortlist K (the run needs its table: `nmt shortlist -m RUN_DIR`), greedy and beam 5 in fp32 and beam 5 in int8
also run over a vocabulary shortlist of K target subwords per source subword. With --ct2 (a Transformer run;
needs ctranslate2) the run is exported to CTranslate2 (`nmt export`) and `nmt translate --engine ctranslate2` decodes
greedy and beam 5 in fp32 and int8 with the same batches and threads. Its length penalty differs from nmt's
(length^alpha against GNMT's): give --alpha 0 to compare the same search (then both engines write the same
translations, up to a close call).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import joeyharness
import sacrebleu
import sentencepiece as spm

from nmt import NmtError
from nmt.download import MULTI30K
from nmt.hardware import machine


def measure(hyp_file: Path, ref: list[str], sp: spm.SentencePieceProcessor) -> tuple[float, int]:
    hyps = hyp_file.read_text(encoding="utf-8").splitlines()
    return sacrebleu.corpus_bleu(hyps, [ref]).score, sum(len(x) for x in sp.encode(hyps))


def search_label(beam: int, stop: str = "bound", shortlist: int = 0) -> str:
    """The table's name of a search: greedy, beam K, or beam K with --stop beams; with a shortlist of K."""
    label = "greedy" if beam == 1 else f"beam {beam}" + (", --stop beams" if stop == "beams" else "")
    return label + (f", shortlist {shortlist}" if shortlist else "")


def run_ours(run: Path, src: Path, beam: int, stop: str, weights: str, shortlist: int, threads: int,
             batch_tokens: int, out: Path, alpha: float | None, engine: str = "nmt") -> tuple[float, float, float]:
    """(decode s, wall s, peak RSS MiB) of `nmt translate` in a fresh process."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "nmt", "translate", "-m", str(run), "-i", str(src),
           "-o", str(out), "--beam", str(beam), "--threads", str(threads), "--batch-tokens", str(batch_tokens),
           "--engine", engine]
    cmd += ["--stop", stop, "--shortlist", str(shortlist)] if engine == "nmt" else []
    cmd += ["--alpha", str(alpha)] if alpha is not None else []
    cmd += ["--quantize", "int8"] if weights == "int8" else ["--precision", weights]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    lines, rate = re.search(r"translated (\d+) lines in [\d.]+ s \(([\d.]+) sentences/s\)", result.stderr).groups()
    decode = int(lines) / float(rate)  # the rate has more digits than the seconds
    return decode, joeyharness.wall_seconds(result.stderr), joeyharness.peak_rss_mib(result.stderr)


def joey_checkpoint(harness: Path, updates: int, threads: int) -> Path:
    """JOEY_CKPT, or a checkpoint of the harness's `rnn` config after ``updates`` updates (trained once)."""
    if os.environ.get("JOEY_CKPT"):
        return Path(os.environ["JOEY_CKPT"])
    checkpoint = joeyharness.work_folder() / "models" / "rnn_decode" / f"{updates}.ckpt"
    if not checkpoint.is_file():
        print(f"JoeyNMT: training {updates} updates for its checkpoint ...", file=sys.stderr)
        joeyharness.train(harness, "rnn_decode", updates, threads, validate_at_end=True)
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="nmt run directory (Multi30k de->en)")
    parser.add_argument("--data", type=Path, default=MULTI30K.folder(),
                        help=f"the Multi30k folder (default: NMT_MULTI30K or {MULTI30K.default_dir})")
    parser.add_argument("--joey", type=Path, help="JoeyNMT harness folder (../shared/bench/joeynmt)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--joey-updates", type=int, default=600,
                        help="updates of the JoeyNMT model that decodes (a multiple of 100; default 600)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each configuration, round by round; the table shows the fastest (default 3)")
    parser.add_argument("--batch-tokens", type=int, default=1100,
                        help="source subwords per batch (1,100: about JoeyNMT's 64 sentences here)")
    parser.add_argument("--shortlist", type=int, default=0,
                        help="also search over a vocabulary shortlist of K (nmt shortlist -m RUN_DIR first)")
    parser.add_argument("--ct2", action="store_true",
                        help="also decode with CTranslate2 on the same weights (a Transformer run)")
    parser.add_argument("--alpha", type=float, help="length penalty of every row (default: the run's)")
    args = parser.parse_args()
    try:
        MULTI30K.check(args.data, ["test_2016_flickr.de", "test_2016_flickr.en"], "--data DIR")
    except NmtError as e:
        sys.exit(f"decode: {e}")

    from nmt.models.builder import count_parameters
    from nmt.translate import Translator

    translator = Translator.from_run(args.run)
    src, ref_file = args.data / "test_2016_flickr.de", args.data / "test_2016_flickr.en"
    ref = ref_file.read_text(encoding="utf-8").splitlines()
    sp = translator.trg_tok.sp
    n = len(ref)
    ours = [(beam, "bound", weights, 0) for beam in (1, 5) for weights in ("fp32", "int8", "bf16")]
    listed = [(1, "bound", "fp32", args.shortlist), (5, "bound", "fp32", args.shortlist),
              (5, "bound", "int8", args.shortlist)] if args.shortlist else []
    configs = [("nmt", *c) for c in [*ours, (5, "beams", "fp32", 0), (5, "beams", "int8", 0), *listed]]
    if args.ct2:
        configs += [("CTranslate2", beam, "bound", weights, 0) for beam in (1, 5) for weights in ("fp32", "int8")]
    if args.joey:
        checkpoint = joey_checkpoint(args.joey, args.joey_updates, args.threads)
        configs += [("JoeyNMT 2.3", beam, "bound", "fp32", 0) for beam in (1, 5)]
    fastest: dict[tuple, tuple] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.ct2:
            from nmt.export import export_ctranslate2

            exported = export_ctranslate2(args.run, Path(tmp) / "ct2")
        for _ in range(args.repeat):  # round by round: a slow spell of the machine falls on every configuration
            for system, beam, stop, weights, shortlist in configs:
                if system in ("nmt", "CTranslate2"):
                    hyp = Path(tmp) / f"{system}{beam}{stop}{weights}{shortlist}.hyp"
                    ct2 = system == "CTranslate2"
                    decode, wall, rss = run_ours(exported if ct2 else args.run, src, beam, stop, weights, shortlist,
                                                 args.threads, args.batch_tokens, hyp, args.alpha,
                                                 "ctranslate2" if ct2 else "nmt")
                else:
                    decode, wall, rss, hyp = joeyharness.decode(args.joey, checkpoint, beam, args.threads)
                bleu, tokens = measure(hyp, ref, sp)
                key = (system, beam, stop, weights, shortlist)
                if key not in fastest or decode < fastest[key][5]:
                    fastest[key] = (system, beam, search_label(beam, stop, shortlist), weights, bleu, decode,
                                    n / decode, tokens / decode, wall, rss)
    rows = [fastest[c] for c in configs]

    print(f"machine: {machine().describe()}")
    alpha = f"length penalty {args.alpha}" if args.alpha is not None else "the run's length penalty"
    print(f"nmt model: {args.run} ({count_parameters(translator.model):,} parameters); {n} sentences, {alpha}, "
          f"{args.threads} threads; the fastest of {args.repeat} runs of each configuration; target tokens counted "
          f"with the nmt run's sentencepiece model\n")
    print("| system | search | weights | BLEU | decode s | sent/s | trg tok/s | wall s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for system, _, search, weights, bleu, decode, sps, tps, wall, rss in rows:
        print(f"| {system} | {search} | {weights} | {bleu:.2f} | {decode:.1f} | {sps:.1f} | {tps:.0f} | {wall:.1f} "
              f"| {rss:.0f} |")
    for system, beam, stop, weights, shortlist in configs:
        if shortlist:
            row, full = fastest[(system, beam, stop, weights, shortlist)], fastest[(system, beam, stop, weights, 0)]
            print(f"shortlist over the full search, {row[2]} {weights}: {row[6] / full[6]:.2f}x sentences/s, "
                  f"BLEU {row[4] - full[4]:+.2f}")
    ct2 = {(r[1], r[3]): r[6] for r in rows if r[0] == "CTranslate2"}
    for system, beam, stop, weights, shortlist in configs:
        if system == "nmt" and (beam, weights) in ct2 and stop == "bound" and not shortlist:
            row = fastest[(system, beam, stop, weights, shortlist)]
            print(f"nmt over CTranslate2, {row[2]} {weights}: {row[6] / ct2[(beam, weights)]:.2f}x sentences/s")
    joey = {r[1]: r[6] for r in rows if r[0] == "JoeyNMT 2.3"}
    if joey:
        for system, beam, search, weights, *rest in rows:
            if system == "nmt":
                print(f"speed-up over JoeyNMT, {search} {weights}: {rest[2] / joey[beam]:.2f}x sentences/s")


if __name__ == "__main__":
    main()
