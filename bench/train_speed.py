"""Training speed benchmark: the Bahdanau GRU recipe on Multi30k de->en at JoeyNMT's sizes, and JoeyNMT 2.3 on
the same data with the same sizes, in one invocation (so the ratio is measured on the same machine state).

    python bench/train_speed.py [--updates 300] [--warmup 30] [--precisions fp32,bf16] [--joey DIR]

Every table starts with the machine (CPU model, the flags that matter, usable cores, GPU, torch) and the threads.
Budgets and timing windows are counted in updates, not seconds, so that a slower machine gives a figure, later.

nmt: `experiment=multi30k_gru model=bahdanau_gru`, the sizes of JoeyNMT's `rnn` config (bi-GRU 2x256,
GRU decoder 512, emb 256, Bahdanau attention 256, dropout 0.3, input feeding, bridge, joint BPE 8k, batches of
2,000 padded tokens). Each precision runs in its own process: WARMUP updates, then UPDATES timed updates through
the training code's own `train_update` (forward, backward, clipping, batch creation) and optimizer
(`build_optimizer`: fused Adam), no validation. Target tokens include EOS, as
JoeyNMT's harness counts them.

Arithmetic: the useful multiply-adds of each sentence (its own source and target lengths, no padding) are
counted from the model's matrix products: the encoder GRUs, the key projection, the bridge, per target position
the decoder GRU, the attention query, energies and context, the attentional layer and the output projection;
forward + backward = 3x forward; 1 multiply-add = 2 FLOPs. The
machine's matmul GFLOP/s is torch.matmul timed on the two shapes that dominate (the output projection of a
batch and a decoder step), in the same process.

JoeyNMT (--joey, the harness folder ../shared/bench/joeynmt, with its venv from setup.sh): its `rnn` config with
`updates` set to WARMUP + UPDATES + 1 and no validation before that, run by the harness's own wrapper
(`scripts/run_joey.py`, per-update log); the same window is timed: updates WARMUP+1 .. WARMUP+UPDATES, from the
start of the first to the start of the one after the last. Its peak RSS is that of the whole run. Its GFLOP/s use
the same useful count per target token at its own measured tokens/s (it also computes on the padding of its
unsorted batches, which this does not credit). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joeyharness

from nmt import NmtError
from nmt.download import MULTI30K
from nmt.hardware import machine

ROOT = Path(__file__).resolve().parent.parent


def forward_macs(cfg: dict, batch: int, src: int, trg: int, vocab: int) -> int:
    """Multiply-adds of one teacher-forced forward pass of the recurrent model on a [batch, src] x [batch, trg]
    batch (padding included)."""
    e, h, d, a = cfg["emb_size"], cfg["hidden_size"], cfg["decoder_hidden_size"], cfg["attention_size"]
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[cfg["cell"]]
    directions = 2 if cfg["direction"] == "bi" else 1
    memory = directions * h
    encoder = directions * gates * h * (e + h) * src                    # W_x x_t and W_h h_{t-1}, per direction
    keys = memory * a * src                                            # U h_j, once per sentence
    step = (gates * d * (e + d + memory + d)                           # W_x [E y; t_{i-1}; c_i] and W_h s_{i-1}
            + d * a + src * (a + memory)                               # W s_{i-1}, v^T tanh(..) and sum_j a_ij h_j
            + (d + memory) * d                                         # t_i = tanh(W_t [s_i; c_i])
            + d * vocab)                                               # W_o t_i
    bridge = memory * d
    return batch * (encoder + keys + bridge + trg * step)


def matmul_gflops(shapes: list[tuple[int, int, int]], dtype: str, seconds: float = 1.0) -> float:
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    flops = elapsed = 0.0
    for m, k, n in shapes:
        x, w = torch.randn(m, k, dtype=dt), torch.randn(k, n, dtype=dt)
        for _ in range(3):
            x @ w
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / len(shapes):
            x @ w
            count += 1
        elapsed += time.perf_counter() - start
        flops += 2.0 * m * k * n * count
    return flops / elapsed / 1e9


def worker(precision: str, updates: int, warmup: int, threads: int) -> dict:
    """Time ``updates`` training updates in this process; returns the measured figures."""
    import torch
    from hydra import compose, initialize_config_dir

    from nmt import data
    from nmt.batching import token_batches
    from nmt.config import CONF_DIR, validate
    from nmt.models.builder import build_model, count_parameters
    from nmt.optim import build_optimizer, train_update
    from nmt.tokenizer import build_tokenizers

    torch.set_num_threads(threads)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        # model=bahdanau_gru: the JoeyNMT config's sizes (the recipe's own model is wider), the same arithmetic
        cfg = validate(compose(config_name="config", overrides=["experiment=multi30k_gru", "model=bahdanau_gru",
                                                                f"train.precision={precision}"]))
    torch.manual_seed(cfg.seed)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = data.prepare(cfg.data, Path(tmp))
        raw = data.load_split(cfg.data, data_dir, "train")
        src_tok, trg_tok = build_tokenizers(cfg.tokenizer, Path(tmp), data.iter_texts(raw, "src"),
                                            data.iter_texts(raw, "trg"))
        train_set, src_lengths, trg_lengths, _ = data.filter_pairs(
            data.encode(cfg.data, "train", raw, src_tok, trg_tok), cfg.data.max_length, cfg.data.max_ratio)
    model = build_model(cfg.model, len(src_tok), len(trg_tok))
    model.train()
    optimizer = build_optimizer(cfg.train, model)  # the trainer's own (fused Adam)
    batches = [b for epoch in range(1 + (warmup + updates) // 100)  # epochs in training order, enough of them
               for b in token_batches(src_lengths, trg_lengths, cfg.train.batch_tokens, shuffle=True,
                                      seed=cfg.seed + epoch)]
    epoch_trg = int(sum(trg_lengths)) + len(trg_lengths)
    model_cfg = cfg.model.model_dump()
    for indices in batches[:warmup]:
        train_update(model, optimizer, train_set, [indices], trg_lengths, cfg.train)
    timed = batches[warmup: warmup + updates]
    start = time.perf_counter()
    for indices in timed:
        train_update(model, optimizer, train_set, [indices], trg_lengths, cfg.train)
    wall = time.perf_counter() - start
    trg = int(sum(trg_lengths[i] + 1 for b in timed for i in b))
    src = int(sum(src_lengths[i] + 1 for b in timed for i in b))
    macs = sum(forward_macs(model_cfg, 1, int(src_lengths[i]) + 1, int(trg_lengths[i]) + 1, len(trg_tok))
               for b in timed for i in b)
    tokens_per_update = trg / len(timed)
    shapes = [(int(tokens_per_update), model_cfg["decoder_hidden_size"], len(trg_tok)),
              (len(timed[0]), 2 * model_cfg["decoder_hidden_size"], 3 * model_cfg["decoder_hidden_size"])]
    return {"system": "nmt", "precision": precision, "params": count_parameters(model), "updates": len(timed),
            "s_per_update": wall / len(timed), "trg_tok_s": trg / wall, "src_trg_tok_s": (src + trg) / wall,
            "sent_s": sum(map(len, timed)) / wall, "epoch_s": epoch_trg / (trg / wall), "epoch_trg": epoch_trg,
            "macs_per_trg_token": 3 * macs / trg, "gflops": 2 * 3 * macs / wall / 1e9,
            "matmul_gflops": matmul_gflops(shapes, precision),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_joey(harness: Path, warmup: int, updates: int, threads: int, macs_per_trg_token: float,
             epoch_trg: int) -> dict:
    work, rows = joeyharness.train(harness, "rnn_speed", warmup + updates + 1, threads)
    window = range(warmup + 1, warmup + updates + 1)
    wall = rows[window.stop][0] - rows[window.start][0]
    trg, src = sum(rows[i][3] for i in window), sum(rows[i][4] for i in window)
    rss = joeyharness.peak_rss_mib((work / "rnn_speed.time").read_text())
    params = int(re.search(r"Total params: (\d+)", (work / "models/rnn_speed/train.log").read_text()).group(1))
    return {"system": "JoeyNMT 2.3", "precision": "fp32", "params": params, "updates": updates,
            "s_per_update": wall / updates, "trg_tok_s": trg / wall, "src_trg_tok_s": (src + trg) / wall,
            "sent_s": sum(rows[i][2] for i in window) / wall, "epoch_s": epoch_trg / (trg / wall),
            "macs_per_trg_token": macs_per_trg_token, "gflops": 2 * macs_per_trg_token * trg / wall / 1e9,
            "matmul_gflops": float("nan"), "peak_rss_mib": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=300, help="timed updates (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed updates first (default 30)")
    parser.add_argument("--precisions", default="fp32,bf16", help="nmt runs, comma-separated (default fp32,bf16)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--joey", type=Path, help="JoeyNMT harness folder (../shared/bench/joeynmt)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.updates, args.warmup, args.threads)))
        return
    try:
        MULTI30K.check(MULTI30K.folder(), ["train.de", "train.en"], None)
    except NmtError as e:
        sys.exit(f"train_speed: {e}")
    rows = []
    for precision in args.precisions.split(","):
        done = subprocess.run([sys.executable, __file__, "--worker", precision, "--updates", str(args.updates),
                               "--warmup", str(args.warmup), "--threads", str(args.threads)],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            sys.exit(f"nmt {precision} run failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"nmt {precision}: {rows[-1]['trg_tok_s']:.0f} target tokens/s", file=sys.stderr)
    if args.joey:
        print(f"JoeyNMT: {args.warmup + args.updates + 1} updates ...", file=sys.stderr)
        rows.append(run_joey(args.joey, args.warmup, args.updates, args.threads, rows[0]["macs_per_trg_token"],
                             rows[0]["epoch_trg"]))
    print(f"machine: {machine().describe()}")
    print(f"Multi30k de->en training, {args.threads} threads; {args.updates} timed updates after {args.warmup}\n")
    print("| system | precision | params | updates | s/update | trg tok/s | src+trg tok/s | sent/s | s/epoch "
          "| MMAC/trg tok (fwd+bwd) | GFLOP/s | matmul GFLOP/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['precision']} | {r['params']:,} | {r['updates']} | {r['s_per_update']:.3f} "
              f"| {r['trg_tok_s']:.0f} | {r['src_trg_tok_s']:.0f} | {r['sent_s']:.1f} | {r['epoch_s']:.0f} "
              f"| {r['macs_per_trg_token'] / 1e6:.1f} | {r['gflops']:.1f} | {r['matmul_gflops']:.1f} "
              f"| {r['peak_rss_mib']:.0f} |")
    joey = next((r for r in rows if r["system"] != "nmt"), None)
    for r in rows:
        if r["system"] == "nmt":
            line = f"nmt {r['precision']}: {r['gflops'] / r['matmul_gflops']:.2f} of the matmul GFLOP/s"
            if joey:
                line += f"; {r['trg_tok_s'] / joey['trg_tok_s']:.2f}x JoeyNMT's target tokens/s"
            print(line)


if __name__ == "__main__":
    main()
