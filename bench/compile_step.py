"""Compiled decoding steps (`--compile`) against the eager model: greedy and beam 5 on the first N sentences of
Multi30k test_2016_flickr (de->en), in one process, fp32. The table starts with the machine (CPU model, the flags
that matter, cores, torch) and the threads.

    python bench/compile_step.py [--run RUN_DIR] [--sentences 1000] [--repeat 3] [--threads N] [--data DIR]

RUN_DIR is an nmt run trained on Multi30k de->en (e.g. `recipes/multi30k/run.sh gru`); without it the model is a
fresh `experiment=multi30k_gru model=bahdanau_gru` (JoeyNMT's sizes: bi-GRU 2x256, GRU decoder 512, Bahdanau
attention 256) with the recipe's joint BPE 8k trained on the training data here, and untrained weights, which
write outputs up to the length limit (more steps per sentence than a trained model: the steps are what is timed,
BLEU is not shown). DIR is the Multi30k folder (default: NMT_MULTI30K, else where `nmt data multi30k` downloads).

For each search, the eager model runs first, then the compiled step from nothing (torch's compiled graphs are reset
and its on-disk cache of compiled kernels is off, so that the first batch pays the whole cost a new process pays on
a machine without that cache). "first batch s" is the latency of the first batch (--batch-tokens source subwords):
for the compiled step, tracing and building its kernels; "all s" is the fastest of --repeat searches of all N
sentences after it (every graph built), "sent/s" its rate. "same" counts the sentences whose output (tokens) is the
eager model's, and BLEU (sacrebleu, a run only) is that of each output.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import sacrebleu
import torch
import torch._dynamo
import torch._inductor.config

from nmt import NmtError
from nmt.batching import token_batches
from nmt.decode_settings import with_changes
from nmt.download import MULTI30K
from nmt.hardware import machine, usable_cores
from nmt.translate import Translator

SEARCHES = {"greedy": {"beam_size": 1, "nbest": 1}, "beam 5": {"beam_size": 5, "nbest": 1, "alpha": 1.0}}


def fresh_translator(data: Path) -> Translator:
    """A Translator of a fresh bahdanau_gru (JoeyNMT's sizes) with the recipe's tokenizer trained on ``data``."""
    from hydra import compose, initialize_config_dir

    from nmt.config import CONF_DIR, validate
    from nmt.models.builder import build_model
    from nmt.tokenizer import build_tokenizers

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = validate(compose(config_name="config", overrides=["experiment=multi30k_gru", "model=bahdanau_gru",
                                                                f"data.dir={data}"]), check_files=False)
    lines = {lang: (data / f"train.{lang}").read_text(encoding="utf-8").splitlines() for lang in ("de", "en")}
    with tempfile.TemporaryDirectory() as tmp:
        src_tok, trg_tok = build_tokenizers(cfg.tokenizer, Path(tmp), lines["de"], lines["en"])
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, len(src_tok), len(trg_tok)).eval()
    return Translator(model, src_tok, trg_tok, cfg.decode, cfg.data.max_length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="nmt run directory (Multi30k de->en); default: a fresh model")
    parser.add_argument("--data", type=Path, default=MULTI30K.folder(),
                        help=f"the Multi30k folder (default: NMT_MULTI30K or {MULTI30K.default_dir})")
    parser.add_argument("--sentences", type=int, default=1000, help="the first N test sentences (default 1000)")
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--repeat", type=int, default=3, help="timed searches of all sentences; the fastest counts")
    parser.add_argument("--batch-tokens", type=int, default=1100,
                        help="source subwords per batch (1,100: about JoeyNMT's 64 sentences here)")
    args = parser.parse_args()
    needed = ["test_2016_flickr.de", "test_2016_flickr.en"] + ([] if args.run else ["train.de", "train.en"])
    try:
        MULTI30K.check(args.data, needed, "--data DIR")
    except NmtError as e:
        sys.exit(f"compile_step: {e}")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)  # the step's compile log
    torch.set_num_threads(args.threads)
    torch._inductor.config.fx_graph_cache = False  # every compile from nothing, as on a machine without the cache
    translator = Translator.from_run(args.run) if args.run else fresh_translator(args.data)
    sources = (args.data / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[: args.sentences]
    refs = (args.data / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()[: args.sentences]
    src_ids = translator.src_tok.encode(sources)
    src_ids = [ids[: translator.max_src_length] for ids in src_ids]
    first = [src_ids[i] for i in token_batches([len(s) for s in src_ids], None, args.batch_tokens)[0]]
    base = with_changes(translator.decode, {"batch_tokens": args.batch_tokens})

    print(f"machine: {machine().describe()}; {torch.get_num_threads()} threads")
    print(f"model: {args.run or 'fresh bahdanau_gru (JoeyNMT sizes)'}; {len(src_ids)} sentences, first batch "
          f"{len(first)}")
    print("| search | step | first batch s | all s | sent/s | same | BLEU |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, settings in SEARCHES.items():
        outputs = {}
        for step in ("eager", "compiled"):
            translator.decode = with_changes(base, {**settings, "compile": step == "compiled"})
            torch._dynamo.reset()
            start = time.perf_counter()
            translator.search(first)
            latency = time.perf_counter() - start
            best, hyps = float("inf"), []
            for _ in range(args.repeat):
                start = time.perf_counter()
                hyps = translator.search(src_ids)
                best = min(best, time.perf_counter() - start)
            outputs[step] = [n[0].tokens for n in hyps]
            same = sum(a == b for a, b in zip(outputs[step], outputs["eager"], strict=True))
            bleu = (f"{sacrebleu.corpus_bleu(translator.trg_tok.decode(outputs[step]), [refs]).score:.2f}"
                    if args.run else "-")
            print(f"| {name} | {step} | {latency:.2f} | {best:.2f} | {len(src_ids) / best:.1f} | "
                  f"{same}/{len(src_ids)} | {bleu} |", flush=True)


if __name__ == "__main__":
    main()
