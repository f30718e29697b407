"""`nmt info`: versions, the CPU, what `precision: auto` and `--quantize int8` choose, where files live; as text and
as JSON, without measuring anything."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nmt
from nmt.hardware import DEFAULT_SHAPES, Machine, cached_bf16_speedup, machine
from nmt.info import auto_precision

KEYS = {"nmt", "python", "torch", "packages", "extras", "cpu", "gpus", "device", "precision", "int8", "paths"}


def info(*args: str, cache: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmt", "info", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NMT_CACHE": str(cache), **env})


def test_info_names_the_versions_the_cpu_and_the_chosen_precision(tmp_path: Path) -> None:
    result = info(cache=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    lines = {key: value.strip() for key, value in lines.items()}
    assert lines["nmt"].startswith(f"{nmt.__version__} (nmt-attention) at {Path(nmt.__file__).parent}")
    assert lines["torch"].startswith(torch.__version__)
    for name in ("python", "sentencepiece", "sacrebleu", "datasets", "hydra-core", "pydantic", "serve extra",
                 "tensorboard extra", "ctranslate2 extra", "CPU flags", "GPUs", "--quantize int8", "token cache",
                 "hardware.json", "Multi30k data"):
        assert lines[name], name
    assert lines["CPU"].startswith(machine().cpu) and "cores usable" in lines["CPU"]
    for use in ("training", "decoding"):
        assert lines[f"{use} precision (auto)"].split(":")[0] in ("fp32", "bf16", "per model")
    assert lines["token cache"].startswith(str(tmp_path))
    assert not (tmp_path / "hardware.json").exists()  # nothing measured


def test_info_json_parses_and_has_every_key(tmp_path: Path) -> None:
    result = info("--json", cache=tmp_path, NMT_MULTI30K=str(tmp_path / "m30k"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == KEYS
    assert report["nmt"]["version"] == nmt.__version__
    assert report["torch"]["version"] == torch.__version__
    assert report["torch"]["build"].split()[0] in ("CPU", "CUDA", "ROCm")
    assert set(report["packages"]) >= {"sentencepiece", "sacrebleu", "datasets", "hydra-core", "pydantic"}
    assert set(report["extras"]) == {"serve", "tensorboard", "ctranslate2"}
    assert report["cpu"]["model"] == machine().cpu and report["cpu"]["cores"] >= 1
    assert len(report["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    for use in ("training", "decoding"):
        assert report["precision"][use]["choice"] in ("fp32", "bf16", None) and report["precision"][use]["reason"]
    assert report["paths"]["hardware_json"] == {"path": str(tmp_path / "hardware.json"), "exists": False}
    assert report["paths"]["multi30k"] == {"path": str(tmp_path / "m30k"), "exists": False}


def test_auto_precision_reports_a_cached_measurement_and_never_measures(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("NMT_CACHE", str(tmp_path))
    cpu = torch.device("cpu")
    avx512 = Machine("Test CPU with bf16", "x86_64", "Linux", frozenset({"avx2", "avx512f", "avx512_bf16"}), 4)
    assert auto_precision(cpu, 4, True, avx512)["choice"] is None
    assert not (tmp_path / "hardware.json").exists()
    cached_bf16_speedup(avx512, 4, DEFAULT_SHAPES, True, measure=lambda *_: 2.0)
    training = auto_precision(cpu, 4, True, avx512)
    assert training["choice"] == "bf16" and "2.00x fp32 (cached)" in training["reason"]
    assert auto_precision(cpu, 4, False, avx512)["choice"] is None  # decoding is measured apart
    older = Machine("Test CPU without bf16", "x86_64", "Linux", frozenset({"avx2", "avx512f"}), 4)
    assert auto_precision(cpu, 4, True, older)["choice"] == "fp32"
    arm = Machine("Test ARM CPU", "aarch64", "Linux", frozenset({"asimd"}), 4)
    assert auto_precision(cpu, 4, False, arm)["choice"] == "fp32"
