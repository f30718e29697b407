"""``nmt serve --workers N``: N server processes behind one port.

The parent binds the address once, then starts N workers (multiprocessing's ``spawn``: fresh interpreters, no
forked torch state), each of which loads the models itself (its own copies, micro-batchers and torch threads) and
serves the shared socket on uvicorn; the kernel hands each new connection to one of them. The parent supervises:

- startup: a worker that cannot load its models (or exits before it serves) stops the server, in one line;
- a worker that dies later is logged in one line and replaced by a new one under the same index;
- SIGTERM or SIGINT is forwarded to every worker as SIGTERM: each stops accepting, lets its requests in flight
  finish (for at most the graceful timeout), and exits; then the parent does (SIGINT: as an interrupt).

Workers ignore SIGINT until their server runs, so that Ctrl-C in a terminal, which reaches the whole process
group, does not interrupt one that is still loading: the parent's forwarded SIGTERM stops it. A worker whose parent
is gone (killed) stops as on SIGTERM.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from nmt import LOG_DATE_FORMAT, LOG_FORMAT, NmtError
from nmt.server.service import ServedModel, ServerSettings, load_model

log = logging.getLogger(__name__)

SPAWN = multiprocessing.get_context("spawn")
STOP_MARGIN = 10.0  # seconds a stopping worker gets beyond the graceful timeout before it is killed


@dataclass(frozen=True)
class ServeSetup:
    """What a server loads and how it serves; picklable, so that every worker process loads the same."""

    specs: tuple[tuple[str, Path], ...]  # (name, run directory) per model, the default first
    checkpoint: str
    quantize: str | None
    precision: str
    device: str
    decode: dict[str, Any]  # the decoding flags (None: the run's setting)
    settings: ServerSettings
    graceful_timeout: float
    threads: int = 0  # torch threads of each worker process (0: torch's default, all cores), CTranslate2's too
    engine: str = "nmt"  # or "ctranslate2": every model through its run's export

    def load(self) -> list[ServedModel]:
        """Load the models (in this process)."""
        return [load_model(name, run_dir, checkpoint=self.checkpoint, quantize=self.quantize,
                           precision=self.precision, device=self.device, engine=self.engine, threads=self.threads,
                           **self.decode)
                for name, run_dir in self.specs]


class _WorkerServer(uvicorn.Server):
    """uvicorn's server that tells the parent once it serves: ("ready", pid)."""

    def __init__(self, config: uvicorn.Config, conn: Connection) -> None:
        super().__init__(config)
        self.conn = conn

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.conn.send(("ready", os.getpid()))


def _stop_with_parent(parent: int) -> None:
    """SIGTERM to this process once its parent is gone."""
    while os.getppid() == parent:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(setup: ServeSetup, index: int, sock: socket.socket, conn: Connection) -> None:
    """A worker process: load the models and serve ``sock`` until SIGTERM; a model that cannot be loaded is sent
    to the parent as ("error", message) rather than logged."""
    import torch

    from nmt.server.app import create_app, uvicorn_config

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT.replace("%(name)s", f"worker {index} %(name)s"),
                        datefmt=LOG_DATE_FORMAT, stream=sys.stderr)
    threading.Thread(target=_stop_with_parent, args=(os.getppid(),), daemon=True).start()
    if setup.threads:
        torch.set_num_threads(setup.threads)
    log.info("%d torch threads, shared by all models", torch.get_num_threads())
    try:
        models = setup.load()
    except NmtError as e:
        conn.send(("error", str(e)))
        sys.exit(1)
    app = create_app(models, setup.settings, worker=index)
    _WorkerServer(uvicorn_config(app, setup.graceful_timeout), conn).run(sockets=[sock])


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    ready: bool = False

    @property
    def name(self) -> str:
        return f"worker {self.index} (pid {self.process.pid})"


def _exit_status(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Supervisor:
    """Starts ``count`` workers on the bound ``sock`` and keeps them running until SIGTERM or SIGINT."""

    def __init__(self, setup: ServeSetup, sock: socket.socket, count: int, address: str) -> None:
        self.setup, self.sock, self.count, self.address = setup, sock, count, address
        self.workers: dict[int, _Worker] = {}
        self.stop_signal: int | None = None

    def run(self) -> None:
        """Serve until SIGTERM (then return) or SIGINT (then raise KeyboardInterrupt), once the workers have
        finished their requests; a worker that fails to start raises NmtError (its message)."""
        handlers = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(1, self.count + 1):
                self._start(index)
            self._await_startup()
            if self.stop_signal is None:
                log.info("%d workers serve http://%s (pids %s); SIGTERM or Ctrl-C stops them", self.count,
                         self.address, ", ".join(str(w.process.pid) for w in self.workers.values()))
                self._supervise()
        finally:
            self._stop()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        log.info("all workers stopped")
        if self.stop_signal == signal.SIGINT:
            raise KeyboardInterrupt

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.stop_signal = sig
        self._terminate()

    def _terminate(self) -> None:
        """SIGTERM to every worker still running."""
        for w in list(self.workers.values()):
            w.process.terminate()

    def _start(self, index: int) -> None:
        receiver, sender = SPAWN.Pipe(duplex=False)
        process = SPAWN.Process(target=_worker_main, args=(self.setup, index, self.sock, sender),
                                name=f"nmt-serve-worker-{index}")
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited: the worker ignores Ctrl-C
        try:
            process.start()
        finally:
            signal.signal(signal.SIGINT, interrupt)
        sender.close()
        self.workers[index] = _Worker(index, process, receiver)

    def _poll(self, w: _Worker) -> str | None:
        """Read a worker's messages; why it failed to start, if it did."""
        try:
            while w.conn.poll():
                kind, value = w.conn.recv()
                if kind == "error":
                    return str(value)
                w.ready = True
                log.info("%s serves", w.name)
        except (EOFError, OSError):  # it exited: its end of the pipe is closed
            pass
        if not w.ready and w.process.exitcode is not None:
            return f"{w.name} exited before it served ({_exit_status(w.process.exitcode)}); its log above says why"
        return None

    def _wait(self, timeout: float) -> None:
        """Until a worker sends a message or exits, or ``timeout`` seconds pass."""
        wait([w.conn for w in self.workers.values() if not w.ready]
             + [w.process.sentinel for w in self.workers.values()], timeout)

    def _await_startup(self) -> None:
        while self.stop_signal is None and not all(w.ready for w in self.workers.values()):
            self._wait(0.5)
            for w in self.workers.values():
                if (failure := self._poll(w)) is not None:
                    raise NmtError(failure)

    def _supervise(self) -> None:
        """Replace a worker that dies; one that fails to start again is left out (the server ends when none is
        left)."""
        while self.stop_signal is None:
            self._wait(1.0)
            for index, w in list(self.workers.items()):
                failure = self._poll(w)
                if self.stop_signal is not None:
                    return
                if failure is not None:
                    del self.workers[index]
                    log.error("%s: not restarted; %d workers serve", failure, len(self.workers))
                elif w.process.exitcode is not None:
                    log.error("%s died (%s); starting a new one", w.name, _exit_status(w.process.exitcode))
                    self._start(index)
            if not self.workers:
                raise NmtError("no worker is left to serve")

    def _stop(self) -> None:
        """SIGTERM to every worker still running, and wait for them (killing those past the graceful timeout)."""
        if self.stop_signal is not None:
            log.info("%s: stopping the workers once their requests in flight are answered",
                     signal.Signals(self.stop_signal).name)
        self._terminate()
        deadline = time.monotonic() + self.setup.graceful_timeout + STOP_MARGIN
        for w in self.workers.values():
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.exitcode is None:
                log.error("%s did not stop in time: killed", w.name)
                w.process.kill()
                w.process.join()
            elif w.ready and w.process.exitcode not in (0, -signal.SIGTERM):
                log.error("%s ended with %s", w.name, _exit_status(w.process.exitcode))
            w.conn.close()


def serve_workers(setup: ServeSetup, sock: socket.socket, count: int, address: str) -> None:
    """Serve on ``count`` worker processes sharing the bound ``sock`` (see the module's description)."""
    Supervisor(setup, sock, count, address).run()
