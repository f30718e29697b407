"""`nmt serve --workers N`: a real server of two worker processes on one port (both answer, with the same
translations; /health and a header name the worker; SIGTERM lets a request in flight finish and leaves no worker
behind), and the option's checks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest

from nmt.cli import main
from nmt.translate import Translator

SERVER = [sys.executable, "-m", "nmt", "serve", "--device", "cpu", "--precision", "fp32", "--threads", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_share_a_port_and_stop_on_sigterm(dates_run: tuple[Path, dict], tmp_path: Path) -> None:
    run = dates_run[0]
    test = (run / "data" / "test.txt").read_text(encoding="utf-8").splitlines()
    lines = test[:16]
    expected = [t.text for t in Translator.from_run(run, precision="fp32", device="cpu").translate(lines)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_file = tmp_path / "server.log"
    with open(log_file, "w", encoding="utf-8") as log:
        server = subprocess.Popen([*SERVER, "-m", f"dates={run}", "--workers", "2", "--port", str(port)],
                                  stdout=log, stderr=log)
    try:
        health: dict[int, dict] = {}
        deadline = time.monotonic() + 120
        while len(health) < 2:  # each connection goes to one worker: ask until both have answered
            assert server.poll() is None, f"nmt serve exited: {log_file.read_text(encoding='utf-8')[-2000:]}"
            assert time.monotonic() < deadline, "two workers were not ready within 120 s"
            with contextlib.suppress(httpx2.HTTPError):
                response = httpx2.get(f"{url}/health", timeout=2)
                body = response.json()
                health[body["pid"]] = body
                assert response.headers["x-nmt-pid"] == str(body["pid"])
            time.sleep(0.05)
        assert sorted(b["worker"] for b in health.values()) == [1, 2]
        assert all(b["status"] == "ready" and b["models"] == ["dates"] for b in health.values())

        async def burst() -> list[httpx2.Response]:
            async with httpx2.AsyncClient(base_url=url, timeout=60) as http:
                return await asyncio.gather(*(http.post("/translate", json={"q": line, "source": "txt",
                                                                            "target": "iso"}) for line in lines))

        answered: set[int] = set()
        for _ in range(10):  # concurrent connections spread over the workers: rarely all to one
            responses = asyncio.run(burst())
            assert [r.json()["translatedText"] for r in responses] == expected
            answered |= {int(r.headers["x-nmt-pid"]) for r in responses}
            if len(answered) == 2:
                break
        assert answered == set(health)

        answer: list[httpx2.Response] = []
        long = {"sentences": test[:24], "beam_size": 16, "min_length": 300, "max_len_b": 320}  # seconds of work
        request = threading.Thread(target=lambda: answer.append(httpx2.post(f"{url}/v1/translate", json=long,
                                                                            timeout=120)))
        request.start()
        time.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        request.join(120)
        assert server.wait(60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert answer[0].status_code == 200 and len(answer[0].json()["translations"]) == 24
    for pid in health:  # the parent waited for its workers
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    server_log = log_file.read_text(encoding="utf-8")
    assert "Traceback" not in server_log and "all workers stopped" in server_log


def test_workers_option_checks_and_one_line_errors(dates_run: tuple[Path, dict], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--workers N" in capsys.readouterr().out
    run = str(dates_run[0])
    for n in ("0", "-2"):
        with pytest.raises(SystemExit) as e:
            main(["serve", "-m", run, "--workers", n])
        assert e.value.code == f"nmt serve: error: --workers {n}: must be positive"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(SystemExit, match=r"^nmt serve: error: cannot listen on 127\.0\.0\.1:\d+: [^\n]+$"):
            main(["serve", "-m", run, "--workers", "2", "--port", str(taken.getsockname()[1])])
    # A checkpoint that every worker fails to load: one error line, and no server.
    broken = tmp_path / "broken"
    shutil.copytree(run, broken, ignore=shutil.ignore_patterns("*.pt", "data"))
    (broken / "best.pt").write_bytes(b"not a checkpoint")
    done = subprocess.run([*SERVER, "-m", str(broken), "--workers", "2", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=180)
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert done.returncode == 1 and len(errors) == 1 and errors[0].startswith("nmt serve: error: "), done.stderr
    assert "best.pt" in errors[0] and "Traceback" not in done.stderr
