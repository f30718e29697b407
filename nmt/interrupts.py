"""SIGINT (Ctrl-C) and SIGTERM during training: a first signal asks for a stop at the next safe point, a second
aborts at once; either ends the run with the conventional exit status."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from nmt import NmtError

log = logging.getLogger(__name__)


class Interrupted(NmtError):
    """Training stopped by SIGINT or SIGTERM; ``status`` is the conventional exit status (130, 143)."""

    def __init__(self, signum: int, abort: bool = False, message: str = "") -> None:
        self.signum, self.abort = signum, abort
        self.name = signal.Signals(signum).name
        self.status = 128 + signum
        super().__init__(message or f"{'aborted by a second' if abort else 'interrupted by'} {self.name}")


class Interrupts:
    """SIGINT (Ctrl-C) and SIGTERM during a run. The first asks for a stop at the next safe point: after the
    current update, or after the running validation; before training starts and during the final test decode it
    stops at once (``at_once``). The second aborts at once."""

    def __init__(self) -> None:
        self.received = 0  # the signal number of the first one, 0 for none
        self.at_once = True
        self.phase = "update"
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.received:
            raise Interrupted(signum, abort=True)
        self.received = signum
        if self.at_once:
            raise Interrupted(signum)
        log.warning("%s: stopping after the current %s, then saving last.pt (once more to abort at once)",
                    signal.Signals(signum).name, self.phase)
