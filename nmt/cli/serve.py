"""``nmt serve``: runs over HTTP (LibreTranslate's API, nmt's own, a web page)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from nmt import NmtError, install_hint, missing
from nmt.cli.options import add_command, add_decode_flags, add_model_options, decode_settings, model_place

log = logging.getLogger(__name__)

DESCRIPTION = """\
Serve one or more runs over HTTP (FastAPI on uvicorn), each named NAME or by its folder:
  POST /translate, GET /languages   LibreTranslate's API (the language pair picks the model)
  POST /v1/translate                n-best lists, samples, token scores, pieces, alignments,
                                    attention, gradient flow
  GET /v1/models, GET /health       the models (scores, batching counters); readiness
  GET /v1/limits                    the most a request may ask for (the --max-* options)
  GET /                             a page to translate and explore attention and gradients
  GET /openapi.json                 the API's description
Models load as for `nmt translate` and are warmed up before /health says ready. The decoding
flags set each model's defaults (a request may override them). Concurrent requests to a model
with the same search settings are translated together (micro-batching) by one worker per model;
one batch runs at a time, on all --threads. --workers N serves the port from N processes, each
with its own copy of the models, batching and --threads (N x --threads should not exceed the
cores). --engine ctranslate2 serves each run's CTranslate2 export (nmt export) with the same
API, but for what CTranslate2 cannot give: gradients, sampling and shortlists (refused),
per-head attention and token scores (null). SIGTERM or Ctrl-C lets requests in flight finish.
The access log records no text."""

EXAMPLES = [
    "nmt serve -m runs/dates                                # http://127.0.0.1:8000/",
    "nmt serve -m de-en=runs/m30k_gru -m tf=runs/m30k_tf --beam 5 --port 8080",
    "nmt serve -m runs/m30k --host 0.0.0.0 --api-key-file keys.txt --cors-origin https://example.org",
    "nmt serve -m runs/dates --workers 4 --threads 2                # 8 cores, many clients",
    "nmt serve -m runs/m30k_tf --engine ctranslate2 --quantize int8  # after nmt export -m runs/m30k_tf",
    "curl -s localhost:8000/translate -H 'Content-Type: application/json' \\",
    "     -d '{\"q\": \"Wednesday, 25 November 2026\", \"source\": \"txt\", \"target\": \"iso\"}'",
]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "serve", "serve runs over HTTP: LibreTranslate's API, nmt's own, and a web page",
                    DESCRIPTION, EXAMPLES, run)
    p.add_argument("-m", "--model", required=True, action="append", metavar="[NAME=]RUN",
                   help="a training run to serve, named NAME (default: the folder's name); repeat for more; the "
                        "first is the default model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="server processes sharing the port, each loading its own copy of the models, with its own "
                        "micro-batching and --threads (default 1: this process serves)")
    add_model_options(p, "checkpoint file in each RUN (default: best.pt)", engine=True)
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
    access.add_argument("--api-key-file", type=Path, metavar="PATH",
                        help="require an API key (one per line of the file) for translation requests; off by default")
    access.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="allow browser pages from ORIGIN (e.g. https://example.org; repeat for more) to call "
                             "the API; off by default")
    add_decode_flags(p)


def _check_limits(args: argparse.Namespace) -> None:
    positive = {"--port": args.port, "--workers": args.workers, "--queue-size": args.queue_size,
                "--max-body-bytes": args.max_body_bytes, "--max-chars": args.max_chars,
                "--max-sentences": args.max_sentences, "--max-beam": args.max_beam, "--max-nbest": args.max_nbest,
                "--request-timeout": args.request_timeout}
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


def run(args: argparse.Namespace) -> None:
    if absent := missing("serve"):
        raise NmtError(f"the server's packages are not installed ({', '.join(absent)}): {install_hint('serve')}")
    import torch

    from nmt.ct2 import export_folder
    from nmt.rundir import RunDir
    from nmt.server.app import bind_socket, check_port, create_app, read_api_keys, serve
    from nmt.server.service import EXPORTED_CHECKPOINT, ServerSettings, model_specs
    from nmt.server.workers import ServeSetup, serve_workers

    decode = decode_settings(args)
    _check_limits(args)
    if args.checkpoint and args.engine == "ctranslate2":
        raise NmtError(EXPORTED_CHECKPOINT)
    if args.checkpoint and len(args.checkpoint) > 1:
        raise NmtError("serve takes one --checkpoint, the file in each RUN")
    checkpoint = args.checkpoint[0] if args.checkpoint else "best.pt"
    specs = model_specs(args.model)
    for _, run_dir in specs:
        RunDir(run_dir).config()
        if args.engine == "ctranslate2":
            export_folder(run_dir)
        elif not (run_dir / checkpoint).is_file():
            raise NmtError(f"checkpoint not found: {run_dir / checkpoint}")
    settings = ServerSettings(
        max_body_bytes=args.max_body_bytes, max_chars=args.max_chars, max_sentences=args.max_sentences,
        max_beam=args.max_beam, max_nbest=args.max_nbest, max_queue=args.queue_size, batch_wait_ms=args.batch_wait_ms,
        batch_tokens=args.batch_tokens, batching=not args.no_batching, request_timeout=args.request_timeout,
        api_keys=read_api_keys(args.api_key_file) if args.api_key_file else frozenset(),
        cors_origins=tuple(args.cors_origin))
    device = model_place(args)
    setup = ServeSetup(specs=tuple(specs), checkpoint=checkpoint, quantize=args.quantize, precision=args.precision,
                       device=str(device), decode=decode, settings=settings,
                       graceful_timeout=args.request_timeout + 5, threads=args.threads, engine=args.engine)
    if args.workers > 1:
        _check_cores(args.workers, torch.get_num_threads())
        with bind_socket(args.host, args.port) as sock:
            host = f"[{args.host}]" if ":" in args.host else args.host
            serve_workers(setup, sock, args.workers, f"{host}:{args.port}")
        return
    check_port(args.host, args.port)
    log.info("%d torch threads, shared by all models", torch.get_num_threads())
    serve(create_app(setup.load(), settings), args.host, args.port, graceful_timeout=setup.graceful_timeout)


def _check_cores(workers: int, threads: int) -> None:
    """Warn, in one line, when the workers' torch threads together outnumber the cores this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers * threads > cores:
        log.warning("--workers %d x %d torch threads each is more than the %d cores here: the workers will contend "
                    "for them; --threads %d fits", workers, threads, cores, max(1, cores // workers))
