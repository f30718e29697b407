"""nmt without its optional extras (`serve`: fastapi, uvicorn, python-multipart; `tensorboard`; `ctranslate2`): every
command but `nmt serve` works, and `nmt serve` says in one line what to install."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from nmt.rundir import RunDir

EXTRA_MODULES = ("fastapi", "starlette", "uvicorn", "python_multipart", "multipart", "tensorboard",
                 "torch.utils.tensorboard", "ctranslate2")
# Python with the extras' modules made unimportable, then the `nmt` command with the arguments that follow
WITHOUT_EXTRAS = f"import sys\nfor name in {EXTRA_MODULES!r}:\n    sys.modules[name] = None\n"
NMT = WITHOUT_EXTRAS + "from nmt.cli import main\nmain()\n"


def without_extras(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NMT, *args], input=stdin, capture_output=True, text=True,
                          timeout=300)


def test_serve_without_its_packages_is_one_line_naming_what_to_install(tmp_path: Path) -> None:
    result = without_extras("serve", "-m", str(tmp_path / "no-run"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "nmt serve: error: the server's packages are not installed (fastapi, uvicorn, python-multipart): "
        "pip install 'nmt-attention[serve]'"]
    assert result.stdout == ""


def test_every_other_command_works_without_the_extras(dates_run: tuple[Path, dict]) -> None:
    imported = subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS + "import nmt, nmt.cli, nmt.translate, nmt.train, "
                               "nmt.server.service, nmt.server.schemas, nmt.info, nmt.export, nmt.ct2"],
                              capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    for command in ("translate", "train", "serve", "info"):
        helped = without_extras(command, "--help")
        assert helped.returncode == 0 and "example" in helped.stdout.lower(), helped.stderr
    translated = without_extras("translate", "-m", str(dates_run[0]), stdin="1 April 2020\n")
    assert translated.returncode == 0 and translated.stdout == "2020-04-01\n", translated.stderr
    info = without_extras("info", "--json")
    assert info.returncode == 0, info.stderr
    extras = json.loads(info.stdout)["extras"]
    assert not any(extras[name]["installed"] for name in ("serve", "tensorboard", "ctranslate2"))


def test_training_logs_metrics_without_tensorboard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    for name in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)
    metrics = RunDir(tmp_path).metrics_log()
    with caplog.at_level(logging.INFO, logger="nmt.rundir"):
        metrics.write(split="train", step=1, loss=2.5)
        metrics.write(split="dev", step=1, loss=2.0)
    assert [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [2.5, 2.0]
    assert not (tmp_path / "tensorboard").exists()
    assert [r.getMessage() for r in caplog.records] == [
        "no TensorBoard logs (metrics.jsonl only): tensorboard is not installed "
        "(pip install 'nmt-attention[tensorboard]')"]
