"""Serving benchmark: `nmt serve` with micro-batching on and off, under N concurrent clients each sending one
sentence at a time, in the same invocation.

    python bench/serve.py --run RUN_DIR [--clients 1,8,32] [--duration 20] [--beam 5]

RUN_DIR is an nmt run on Multi30k de->en (e.g. `recipes/multi30k/run.sh gru`); the sentences are
test_2016_flickr.de of the Multi30k folder (--data; default: NMT_MULTI30K, else the folder `nmt data multi30k`
downloads into) or --input FILE, sent in order, one per request (POST /translate, LibreTranslate's API), by
one asyncio client process. For each mode (micro-batching on: the server's defaults; off: `--no-batching`, one
request at a time with no added wait; both with the same --threads) a server is started on 127.0.0.1, warmed up,
and loaded by 1, 8 and 32 clients for --duration seconds each (after --warmup seconds not counted). Requests that
finish within the window count; latency is from sending a request to its answer. Prints a Markdown table with the
machine, and checks the target: at 32 clients, 4x the throughput of one-request-at-a-time serving, p99 under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import numpy as np

from nmt import NmtError
from nmt.download import MULTI30K


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int, args: argparse.Namespace, batching: bool, log: Path) -> subprocess.Popen:
    """`nmt serve` on 127.0.0.1:PORT, once its /health says ready."""
    cmd = [sys.executable, "-m", "nmt", "serve", "-m", f"bench={run}", "--port", str(port), "--beam", str(args.beam),
           "--threads", str(args.threads), "--device", args.device, "--precision", args.precision,
           "--queue-size", "100000"]
    cmd += [] if batching else ["--no-batching"]
    with open(log, "w", encoding="utf-8") as f:
        server = subprocess.Popen(cmd, stdout=f, stderr=f)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"nmt serve exited with status {server.returncode}; its log: {log}")
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx2.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    sys.exit(f"nmt serve was not ready within 300 s; its log: {log}")


async def load(url: str, body: dict, sentences: list[str], clients: int, warmup: float,
               duration: float) -> tuple[list[float], int]:
    """``clients`` loops of one request at a time: latencies (s) of the requests sent and answered within the
    measured window, and the number of failed requests."""
    latencies: list[float] = []
    failures = 0
    next_sentence = 0
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        start = time.monotonic() + warmup
        end = start + duration

        async def client() -> None:
            nonlocal next_sentence, failures
            while time.monotonic() < end:
                text = sentences[next_sentence % len(sentences)]
                next_sentence += 1
                sent = time.monotonic()
                response = await http.post("/translate", json={**body, "q": text})
                answered = time.monotonic()
                if response.status_code != 200:
                    failures += 1
                elif sent >= start and answered <= end:
                    latencies.append(answered - sent)

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, failures


def batching_counters(url: str) -> dict[str, int]:
    return httpx2.get(f"{url}/v1/models", timeout=30).json()[0]["batching"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="nmt run directory (Multi30k de->en)")
    parser.add_argument("--data", type=Path, default=MULTI30K.folder(),
                        help=f"the Multi30k folder (default: NMT_MULTI30K or {MULTI30K.default_dir})")
    parser.add_argument("--input", type=Path, help="sentences, one per line (default: DATA/test_2016_flickr.SRC)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients per cell (default 1,8,32)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per cell (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell (default 2)")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="the server's torch threads, both modes (default: all usable cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]

    from nmt.hardware import machine
    from nmt.rundir import RunDir

    cfg = RunDir(args.run).config()
    source, target = str(cfg.data.src_lang), str(cfg.data.trg_lang)
    if args.input is None:
        try:
            MULTI30K.check(args.data, [f"test_2016_flickr.{source}"], "--data DIR, or give --input FILE")
        except NmtError as e:
            sys.exit(f"serve: {e}")
    input_file = args.input or args.data / f"test_2016_flickr.{source}"
    sentences = [line for line in input_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    body = {"source": source, "target": target}

    rows, throughput = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, batching in (("on", True), ("off", False)):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = start_server(args.run, port, args, batching, Path(tmp) / f"server-{mode}.log")
            try:
                for n in clients:
                    before = batching_counters(url)
                    latencies, failures = asyncio.run(load(url, body, sentences, n, args.warmup, args.duration))
                    after = batching_counters(url)
                    batches = after["batches"] - before["batches"]
                    sent = after["sentences"] - before["sentences"]
                    ms = 1000 * np.array(latencies or [float("nan")])
                    throughput[mode, n] = len(latencies) / args.duration
                    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
                    rows.append(f"| {mode} | {n} | {len(latencies):,} | {throughput[mode, n]:.1f} | {p50:.0f} | "
                                f"{p95:.0f} | {p99:.0f} | {sent / max(batches, 1):.1f} | {failures} |")
                    if n == 32:
                        throughput[mode, "p99"] = p99
            finally:
                os.kill(server.pid, signal.SIGTERM)
                server.wait(120)

    print(f"Machine: {machine().describe()}; server: {args.threads} torch threads, {args.device}, {args.precision}")
    print(f"Run: {args.run} ({source}->{target}), beam {args.beam}; sentences: {input_file} ({len(sentences):,}), "
          f"one per request; {args.duration:g} s per cell after {args.warmup:g} s of warm-up\n")
    print("| micro-batching | clients | requests | requests/s | p50 ms | p95 ms | p99 ms | sentences/batch | "
          "failed |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    top = max(clients)
    ratio = throughput["on", top] / max(throughput["off", top], 1e-9)
    p99 = throughput["on", "p99"] if top == 32 else None
    print(f"\nAt {top} clients, micro-batching serves {ratio:.2f}x the requests/s of one-request-at-a-time serving "
          f"({throughput['on', top]:.1f} vs {throughput['off', top]:.1f}).")
    if p99 is not None:
        met = ratio >= 4 and p99 < 1000
        print(f"Target at 32 clients (>= 4x one-at-a-time throughput, p99 < 1 s): {'met' if met else 'not met'} "
              f"({ratio:.2f}x, p99 {p99:.0f} ms).")

if __name__ == "__main__":
    main()
