"""``nmt info``: what nmt runs with on this machine, for bug reports and for checking an install: versions, the
optional extras, the CPU and GPUs, what ``precision: auto`` and ``--quantize int8`` choose here, and where nmt keeps
its files."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import nmt
from nmt import DISTRIBUTION, EXTRAS, NmtError, cache_folder, install_hint, missing
from nmt.download import MULTI30K
from nmt.hardware import (
    BF16_MARGIN,
    Machine,
    cache_file,
    cpu_summary,
    int8_engine,
    machine,
    resolve_device,
    resolve_precision,
    usable_cores,
)

PACKAGES = ("torch", "sentencepiece", "sacrebleu", "datasets", "hydra-core", "omegaconf", "pydantic")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _torch_build() -> str:
    if torch.version.cuda:
        return f"CUDA {torch.version.cuda}"
    if getattr(torch.version, "hip", None):
        return f"ROCm {torch.version.hip}"
    return "CPU"


class _NotMeasured(Exception):
    """``precision: auto`` needs a measurement, which ``nmt info`` leaves to the first run."""


def _not_measured(threads: int, shapes: tuple, backward: bool) -> float:
    raise _NotMeasured


def auto_precision(device: torch.device, threads: int, backward: bool,
                   m: Machine | None = None) -> dict[str, str | None]:
    """What ``precision: auto`` chooses on ``device`` of machine ``m`` (this one by default) for training
    (``backward``) or decoding, from what is known without measuring: the hardware, or a measurement cached in
    hardware.json at the default recipe's sizes; ``choice`` None where the first run measures it."""
    try:
        chosen = resolve_precision("auto", device, m, threads, backward=backward, measure=_not_measured)
    except _NotMeasured:
        return {"choice": None,
                "reason": f"this CPU has bf16 instructions: bf16 for a model whose products measure at least "
                          f"{BF16_MARGIN}x fp32 speed (on the model's first use, then cached in hardware.json)"}
    return {"choice": chosen.name, "reason": chosen.reason}


def _int8() -> dict[str, str | None]:
    try:
        note = int8_engine(torch.device("cpu"))
    except NmtError as e:
        return {"engine": None, "note": str(e)}
    return {"engine": torch.backends.quantized.engine, "note": note}


def _paths() -> dict[str, dict[str, Any]]:
    """The token cache (nmt's cache folder, where the data configs put it: ``$NMT_CACHE``), the hardware
    measurements' file, and the Multi30k folder (``$NMT_MULTI30K``)."""
    paths = {"token_cache": Path(cache_folder()), "hardware_json": cache_file(), "multi30k": MULTI30K.folder()}
    return {key: {"path": str(path.expanduser().resolve()), "exists": path.expanduser().exists()}
            for key, path in paths.items()}


def collect() -> dict[str, Any]:
    """Everything ``nmt info`` reports, as a JSON-ready dict."""
    device = resolve_device("auto")
    m = machine()
    return {
        "nmt": {"version": nmt.__version__, "distribution": DISTRIBUTION, "location": str(Path(nmt.__file__).parent)},
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "torch": {"version": torch.__version__, "build": _torch_build()},
        "packages": {dist: _version(dist) for dist in PACKAGES},
        "extras": {extra: {"installed": not missing(extra), "packages": {dist: _version(dist) for dist in dists}}
                   for extra, dists in EXTRAS.items()},
        "cpu": cpu_summary(m),
        "gpus": [{"name": name, "compute_capability": f"{major}.{minor}"} for name, (major, minor) in m.gpus],
        "device": str(device),
        "precision": {"training": auto_precision(device, usable_cores(), True, m),
                      "decoding": auto_precision(device, torch.get_num_threads(), False, m)},
        "int8": _int8(),
        "paths": _paths(),
    }


def format_report(info: dict[str, Any]) -> str:
    """``collect()``'s answer as lines of text."""
    cpu, paths = info["cpu"], info["paths"]

    def extra(name: str) -> str:
        packages = info["extras"][name]["packages"]
        versions = ", ".join(f"{dist} {version or 'missing'}" for dist, version in packages.items())
        state = "installed" if info["extras"][name]["installed"] else f"not installed ({install_hint(name)})"
        return f"{state}: {versions}"

    def precision(use: str) -> str:
        p = info["precision"][use]
        return f"{p['choice'] or 'per model'}: {p['reason']}"

    def where(key: str, absent: str) -> str:
        return paths[key]["path"] + ("" if paths[key]["exists"] else f" ({absent})")

    gpus = ", ".join(f"{g['name']} (compute {g['compute_capability']})" for g in info["gpus"])
    rows = [
        ("nmt", f"{info['nmt']['version']} ({info['nmt']['distribution']}) at {info['nmt']['location']}"),
        ("python", f"{info['python']['version']} ({info['python']['executable']})"),
        ("torch", f"{info['torch']['version']} ({info['torch']['build']} build)"),
        *((dist, version or "missing") for dist, version in info["packages"].items() if dist != "torch"),
        ("serve extra", extra("serve")),
        ("tensorboard extra", extra("tensorboard")),
        ("ctranslate2 extra", extra("ctranslate2")),
        ("CPU", f"{cpu['model']} ({cpu['arch']}, {cpu['system']}), {cpu['cores']} cores usable, "
                f"{cpu['torch_threads']} torch threads"),
        ("CPU flags", " ".join(cpu["flags"]) or "none of note"),
        ("GPUs", f"{len(info['gpus'])}: {gpus}" if gpus else "none"),
        ("device (auto)", info["device"]),
        ("training precision (auto)", precision("training")),
        ("decoding precision (auto)", precision("decoding")),
        ("--quantize int8", info["int8"]["note"] if info["int8"]["engine"] else f"unavailable: {info['int8']['note']}"),
        ("token cache", where("token_cache", "not created yet")),
        ("hardware.json", where("hardware_json", "not written yet")),
        ("Multi30k data", where("multi30k", "missing: `nmt data multi30k` downloads it")),
    ]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key + ':':<{width + 1}} {value}" for key, value in rows)
