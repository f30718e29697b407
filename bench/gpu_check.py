"""GPU check: with the torch already installed (a CUDA build) and downloading nothing, in a few minutes, on Multi30k
de->en (NMT_MULTI30K or --data):

  1. the GRU (experiment=multi30k_gru) and the Transformer (experiment=multi30k_transformer) train for --updates
     updates on the GPU (train.device=auto, precision auto: bf16 on compute capability 8.0+), then decode
     test_2016_flickr at beam 5 on the GPU, scored with sacrebleu;
  2. exact resume on the GPU: the GRU trains 60 updates, once straight through and once stopped by SIGINT after its
     first validation (update 20) and resumed from last.pt (which keeps the CUDA random state); their weights at
     update 60 are compared, and with those of a second straight run (how deterministic the GPU itself is);
  3. the same 60 updates under `torchrun --nproc_per_node=1`: a process group of one on nccl.

Each step runs in its own process under a time limit and prints its outcome as soon as it ends (a failed step prints
the last lines of its log and the check goes on); the machine and a table follow at the end. `--device cpu`
rehearses the whole check on a CPU (gloo instead of nccl), e.g. with `--updates 20`, before GPU time is spent.

    bench/gpu_check.sh                               (= python3 bench/gpu_check.py)
    bench/gpu_check.sh --out runs/gpu_check --updates 300
    NMT_MULTI30K=/data/multi30k bench/gpu_check.sh
    bench/gpu_check.sh --device cpu --updates 20     (a rehearsal on a CPU)
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from nmt import NmtError, checkpoint
from nmt.download import MULTI30K
from nmt.hardware import machine
from nmt.rundir import RunDir

SHORT = 60  # updates of the resume and torchrun checks, validated every 20
NMT = [sys.executable, "-m", "nmt"]


def say(line: str) -> None:
    print(line, flush=True)


def step(out: Path, name: str, cmd: list[str], limit: float, env: dict[str, str] | None = None) -> bool:
    """Run ``cmd`` (stdout to NAME.out, stderr to NAME.log) within ``limit`` seconds; print how it went."""
    start = time.monotonic()
    with open(out / f"{name}.out", "w") as stdout, open(out / f"{name}.log", "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env={**os.environ, **(env or {})})
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            code = f"no end within {limit:g} s"
    took = time.monotonic() - start
    if code == 0:
        say(f"ok      {name} ({took:.0f} s)")
        return True
    tail = (out / f"{name}.log").read_text(errors="replace").strip().splitlines()[-6:]
    say(f"FAILED  {name}: exit {code} after {took:.0f} s; the end of {out / name}.log:")
    for line in tail:
        say(f"          {line[:300]}")
    return False


def train_args(design: str, run: Path, device: str, updates: int, validate_every: int) -> list[str]:
    return ["train", f"experiment=multi30k_{design}", f"train.max_steps={updates}",
            f"train.validate_every={validate_every}", "train.log_every=20", "train.test=false",
            "train.plot_attention=0", f"train.device={'auto' if device == 'cuda' else device}",
            "train.start_over=true", f"hydra.run.dir={run}"]


def interrupted_and_resumed(out: Path, args: list[str], limit: float) -> bool:
    """Train, SIGINT once the first validation is written, then resume the run to its end."""
    run = out / "resumed"
    start = time.monotonic()
    with open(out / "resumed-first.log", "w") as log:
        proc = subprocess.Popen([*NMT, *args], stdout=subprocess.DEVNULL, stderr=log)
        metrics = run / "metrics.jsonl"
        while (proc.poll() is None and time.monotonic() - start < limit
               and '"dev"' not in (metrics.read_text() if metrics.exists() else "")):
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        code = proc.wait()
    if code != 130:
        say(f"FAILED  resumed: SIGINT after the first validation gave exit {code}, not 130 "
            f"({out / 'resumed-first.log'})")
        return False
    resume = [a.replace("train.start_over=true", "train.resume=true") for a in args]
    return step(out, "resumed", [*NMT, *resume], limit - (time.monotonic() - start))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def row(out: Path, name: str) -> str:
    """One line of the table, from what the run left (a dash where a step did not get that far)."""
    run = out / name
    train = [r for r in RunDir(run).metrics() if r["split"] == "train"] if (run / "metrics.jsonl").exists() else []
    if not train:
        return f"| {name} | - | - | - | - | - | - | - |"
    last = train[-1]
    memory = f"{last['gpu_memory_mib']:.0f}" if "gpu_memory_mib" in last else "-"
    decode = mem = bleu = "-"
    log = out / f"{name}-decode.log"
    if log.exists() and (m := re.search(r"\(([\d.]+) sentences/s\)(?:; peak GPU memory (\d+) MiB)?", log.read_text())):
        decode, mem = m.group(1), m.group(2) or "-"
    score = out / f"{name}-score.out"
    if score.exists() and score.read_text().startswith("BLEU"):
        bleu = score.read_text().split()[1]
    precision = OmegaConf.load(run / "config.yaml").train.precision
    return (f"| {name} | {precision} | {last['step']} | {last['tokens_per_s']:.0f} | {memory} | {decode} | {mem} | "
            f"{bleu} |")


def compare(out: Path, a: str, b: str) -> str:
    paths = [out / run / "checkpoints" / f"step-{SHORT}.pt" for run in (a, b)]
    if not all(p.exists() for p in paths):
        return f"{a} vs {b}: not compared (a run did not reach update {SHORT})"
    wa, wb = (checkpoint.load(p)["model"] for p in paths)
    if all(torch.equal(wa[k], wb[k]) for k in wa):
        return f"{a} vs {b}: bit-identical"
    diff = max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)
    return f"{a} vs {b}: max |difference| {diff:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.rsplit("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="examples:\n" + __doc__.rsplit("\n\n", 1)[1])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_check"), help="where the runs go")
    parser.add_argument("--updates", type=int, default=300, help="training updates of step 1 (default 300)")
    parser.add_argument("--data", type=Path, default=MULTI30K.folder(),
                        help=f"the Multi30k folder (default: NMT_MULTI30K or {MULTI30K.default_dir}; "
                             f"`nmt data multi30k` downloads it)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cuda, or cpu to rehearse the check without a GPU")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"gpu_check: no CUDA GPU visible to torch {torch.__version__}: nothing to check "
                 f"(--device cpu rehearses the check on this CPU)")
    src = args.data / "test_2016_flickr.de"
    try:
        MULTI30K.check(args.data, [f"{split}.{lang}" for split in ("train", "val", "test_2016_flickr")
                                   for lang in ("de", "en")], "--data DIR")
    except NmtError as e:
        sys.exit(f"gpu_check: {e}")
    os.environ["NMT_MULTI30K"] = str(args.data)
    out, device = args.out, args.device
    out.mkdir(parents=True, exist_ok=True)
    say(f"machine: {machine().describe()}")
    for design in ("gru", "transformer"):
        run = out / design
        if step(out, design, [*NMT, *train_args(design, run, device, args.updates, args.updates)], 300):
            hyp = run / "test.hyp"
            step(out, f"{design}-decode", [*NMT, "translate", "-m", str(run), "-i", str(src), "-o", str(hyp),
                                           "--beam", "5", "--device", device], 180)
            step(out, f"{design}-score", [*NMT, "evaluate", "-r", str(args.data / "test_2016_flickr.en"),
                                          "--hypothesis", str(hyp)], 60)
    short = {name: train_args("gru", out / name, device, SHORT, 20) for name in ("whole", "resumed", "whole2", "ddp")}
    step(out, "whole", [*NMT, *short["whole"]], 180)
    interrupted_and_resumed(out, short["resumed"], 240)
    step(out, "whole2", [*NMT, *short["whole2"]], 180)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--master_port",
                str(free_port()), "-m", "nmt", *short["ddp"]]
    if step(out, "ddp", torchrun, 180, env={"NCCL_DEBUG": "WARN"}):
        group = re.search(r"\d+ process(es)? \(\w+\)", (out / "ddp.log").read_text())
        say(f"        torchrun --nproc_per_node=1: {group[0] if group else 'no process group in the log'}")

    say(f"\nmachine: {machine().describe()}")
    say("\n| run | precision | updates | trg tok/s (last 20) | peak GPU MiB (train) | decode sent/s (beam 5) | "
        "peak GPU MiB (decode) | test BLEU |")
    say("|---|---|---|---|---|---|---|---|")
    for name in ("gru", "transformer", "whole", "ddp"):
        say(row(out, name))
    say(f"\nweights at update {SHORT} of the GRU:")
    for a, b in (("whole", "whole2"), ("whole", "resumed"), ("whole", "ddp")):
        say(f"  {compare(out, a, b)}")


if __name__ == "__main__":
    main()
