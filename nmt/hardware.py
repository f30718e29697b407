"""The machine nmt runs on, and the choices that depend on it: the device, the precision of matrix products
(``precision: auto``), the CPU threads, and what int8 quantization can offer.

``auto`` precision is bf16 only where this hardware runs *this model's* matrix products faster in bf16 than in
fp32:

- a CUDA GPU with native bf16: compute capability 8.0 or newer (Ampere, Hopper, ...);
- a CPU with AMX (``amx_bf16``: Xeon Sapphire Rapids and later) or AVX512-BF16, *if a short measurement at the
  model's own sizes says so*: the flags alone do not. A Zen 4 runs bf16 products at 2.7x fp32; an Intel Xeon VM that
  shows AVX512-BF16 but hides AMX at 0.6x; a Xeon with AMX runs a 512-wide recurrent model's products at about 2x
  fp32 under autocast, but a 64-wide one's at half of fp32 speed (casting the weights costs more than the tiles
  save). The measurement times the model's largest weight shapes as autocast runs them (forward and backward for
  training, forward for decoding), takes about half a second, and is cached in ``$NMT_CACHE/hardware.json``
  (default ``~/.cache/nmt``), keyed by CPU model, flags, torch version, thread count and those shapes.

Everything else gets fp32: x86 CPUs without bf16 instructions (Cascade Lake emulates bf16 at a quarter of fp32
speed, although torch's own "mkldnn bf16 supported" check says yes), ARM, and any CPU whose flags cannot be read
(macOS, Windows).

bf16 products on a CPU run through oneDNN, which compiles a kernel for each product shape it meets and keeps up to
1,024 of them, each holding megabytes: a product whose row count is new at every batch (the output projection of a
batch's target tokens) costs a compilation per batch and grows the process. The models pad such products' rows to
a few dozen shapes (``nmt.models.cpu_bf16``), and the recurrent encoder, whose packed recurrence multiplies a
different number of rows at every step, runs with CPU autocast off (fp32).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nmt import NmtError, cache_folder

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
FLAGS_THAT_MATTER = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
# the flags `nmt info` lists: those above, fused multiply-add, and ARM's vector units (asimd: NEON on 64-bit ARM)
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "neon",
                  "asimd", "sve")
BF16_MARGIN = 1.2  # bf16 must measure at least this many times the fp32 speed to be chosen


@dataclass(frozen=True)
class Machine:
    """What decides speed: the CPU (model, architecture, instruction-set flags, cores this process may use) and
    the CUDA GPUs (name, compute capability)."""

    cpu: str
    arch: str
    system: str
    flags: frozenset[str] = frozenset()
    cores: int = 1
    gpus: tuple[tuple[str, tuple[int, int]], ...] = ()

    @property
    def x86(self) -> bool:
        return self.arch.lower() in ("x86_64", "amd64", "i686", "i386")

    def describe(self) -> str:
        """One line for logs and benchmark tables."""
        flags = " ".join(f for f in FLAGS_THAT_MATTER if f in self.flags) or "none of note"
        gpus = ", ".join(f"{name} (compute {major}.{minor})" for name, (major, minor) in self.gpus) or "none"
        return (f"CPU {self.cpu} ({self.arch}, {self.system}), {self.cores} cores usable, flags: {flags}; "
                f"GPU: {gpus}; torch {torch.__version__}")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS has one (taskset, cgroups), else all."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _cpuinfo() -> tuple[str, frozenset[str]]:
    """CPU model and flags from /proc/cpuinfo (Linux); elsewhere the platform's name and no flags."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown", frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return model or platform.processor() or "unknown", flags


@functools.cache
def machine() -> Machine:
    """This machine, read once per process."""
    cpu, flags = _cpuinfo()
    gpus = tuple((torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i))
                 for i in range(torch.cuda.device_count())) if torch.cuda.is_available() else ()
    return Machine(cpu, platform.machine() or "unknown", platform.system() or "unknown", flags, usable_cores(), gpus)


def cpu_summary(m: Machine | None = None) -> dict[str, object]:
    """The CPU of machine ``m`` (this one by default) as ``nmt info`` reports it: model, architecture, system, the
    cores this process may use, torch's intra-op threads, and which of ``REPORTED_FLAGS`` it has."""
    m = m or machine()
    return {"model": m.cpu, "arch": m.arch, "system": m.system, "cores": m.cores,
            "torch_threads": torch.get_num_threads(), "flags": [f for f in REPORTED_FLAGS if f in m.flags]}


def resolve_device(name: str) -> torch.device:
    """``auto``: this rank's GPU when there is one (LOCAL_RANK under torchrun), else the CPU; or ``cpu``, ``cuda``,
    ``cuda:N``, checked against what this machine has."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        rank, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if rank >= count:
            raise NmtError(f"train.device=auto: this is process {rank} of torchrun on this machine, which has {count} "
                           f"GPU(s): start at most {count} (--nproc_per_node), or train on the CPU (train.device=cpu)")
        return torch.device("cuda", rank)
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise NmtError(f"unknown device {name!r}: choose auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise NmtError(f"unsupported device {name!r}: choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise NmtError(f"device {name!r}: this machine has no CUDA GPU (torch {torch.__version__}); use cpu")
        if device.index is not None and device.index >= count:
            raise NmtError(f"device {name!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return device


def cache_file() -> Path:
    """Where measurements are kept: ``hardware.json`` in nmt's cache folder (``nmt.cache_folder``)."""
    return Path(cache_folder()).expanduser() / "hardware.json"


Shape = tuple[int, int, int]  # a matrix product: rows x inputs -> outputs
DEFAULT_SHAPES: tuple[Shape, ...] = ((128, 1024, 1536), (512, 512, 4096))  # a recurrent model's at the recipe's sizes
Measure = Callable[[int, tuple[Shape, ...], bool], float]  # (threads, shapes, backward) -> bf16 speed-up
ROWS = 256  # rows of the products measured for a model: a batch of decoder steps, or of beams


def product_shapes(model: nn.Module, rows: int = ROWS, most: int = 3) -> tuple[Shape, ...]:
    """The ``most`` largest matrix products of ``model``: one per distinct weight shape (linear and recurrent
    weights, embeddings standing for the output projection they match), ``rows`` rows each."""
    shapes = {tuple(p.shape) for p in model.parameters() if p.dim() == 2}
    largest = sorted(shapes, key=lambda s: (s[0] * s[1], s), reverse=True)[:most]
    return tuple((rows, inputs, outputs) for outputs, inputs in largest) or DEFAULT_SHAPES


def measure_bf16_speedup(threads: int, shapes: tuple[Shape, ...] = DEFAULT_SHAPES, backward: bool = True,
                         seconds: float = 0.5) -> float:
    """bf16 over fp32 speed of the products ``shapes`` on this CPU, run as training runs them: fp32 weights and
    inputs, bf16 by autocast (the weights cast at every call), forward and, with ``backward``, backward; both
    precisions timed alternately, the best of several rounds each. The global random state is left untouched."""
    generator = torch.Generator().manual_seed(0)
    best = {False: float("inf"), True: float("inf")}
    with _threads(threads):
        pairs = [(torch.randn(m, k, generator=generator), torch.randn(n, k, generator=generator, requires_grad=True))
                 for m, k, n in shapes]

        def run(bf16: bool) -> None:
            for x, w in pairs:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    y = F.linear(x, w)
                if backward:
                    y.float().sum().backward()
                    w.grad = None

        deadline = time.perf_counter() + seconds
        rounds = 0
        with torch.set_grad_enabled(backward):
            while rounds < 3 or (time.perf_counter() < deadline and rounds < 50):
                for bf16 in best:
                    start = time.perf_counter()
                    run(bf16)
                    best[bf16] = min(best[bf16], time.perf_counter() - start)
                rounds += 1
    return best[False] / best[True]


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` intra-op threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cached_bf16_speedup(m: Machine, threads: int, shapes: tuple[Shape, ...] = DEFAULT_SHAPES, backward: bool = True,
                        measure: Measure = measure_bf16_speedup) -> tuple[float, bool]:
    """The bf16 speed-up of this CPU at ``threads`` threads on ``shapes`` (forward and ``backward``), measured once
    and cached; (speed-up, from cache)."""
    flags = hashlib.sha256(" ".join(sorted(m.flags)).encode()).hexdigest()[:16]
    products = " ".join("x".join(map(str, shape)) for shape in shapes)
    key = (f"{m.cpu}|flags {flags}|torch {torch.__version__}|{threads} threads|"
           f"{'forward+backward' if backward else 'forward'} {products}")
    path = cache_file()
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    if isinstance(entries.get(key), (int, float)):
        return float(entries[key]), True
    speedup = measure(threads, shapes, backward)
    entries[key] = round(speedup, 3)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:  # a read-only home: measure again next time
        log.debug("cannot cache the bf16 measurement in %s: %s", path, e)
    return speedup, False


@dataclass(frozen=True)
class Precision:
    """The precision of matrix products, and why it was chosen."""

    name: str
    reason: str = field(compare=False)

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def autocast(self, device: torch.device) -> torch.autocast:
        """The autocast context that runs matrix products in this precision (weights stay fp32)."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)


def resolve_precision(requested: str, device: torch.device, m: Machine | None = None, threads: int | None = None,
                      model: nn.Module | None = None, backward: bool = True,
                      measure: Measure = measure_bf16_speedup) -> Precision:
    """``fp32`` or ``bf16`` as asked (with a warning where bf16 is emulated), or what ``auto`` picks for ``device``
    on machine ``m`` (this one by default; injectable, with ``measure``, for tests): on a CPU, by measuring the
    products of ``model`` (training them with ``backward``, or decoding), or of a recurrent model at the recipe's
    sizes when there is none."""
    if requested not in PRECISIONS:
        raise NmtError(f"unknown precision {requested!r}: choose {', '.join(PRECISIONS)}")
    if requested == "fp32":
        return Precision("fp32", "fp32 as requested")
    native, why = _native_bf16(device, m or machine(), threads or torch.get_num_threads(), model, backward, measure)
    if requested == "bf16":
        if not native:
            log.warning("bf16 as requested, but %s: fp32 would be faster here", why)
        return Precision("bf16", "bf16 as requested")
    return Precision("bf16" if native else "fp32", why)


def _native_bf16(device: torch.device, m: Machine, threads: int, model: nn.Module | None, backward: bool,
                 measure: Measure) -> tuple[bool, str]:
    if device.type == "cuda":
        name, (major, minor) = m.gpus[device.index or 0] if m.gpus else ("this GPU", (0, 0))
        if major >= 8:
            return True, f"{name} (compute capability {major}.{minor}) has native bf16"
        return False, f"{name} (compute capability {major}.{minor}) has no native bf16 (needs 8.0, Ampere)"
    if device.type != "cpu":
        return False, f"no bf16 decision for device type {device.type}"
    if not m.x86:
        return False, f"{m.arch} CPU: bf16 is not known to be faster than fp32 there"
    units = " and ".join(name for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"))
                         if flag in m.flags)
    if not units:
        return False, f"{m.cpu} has no AVX512-BF16 or AMX: bf16 products are emulated"
    shapes = product_shapes(model) if model is not None else DEFAULT_SHAPES  # only where there is something to time
    speedup, cached = cached_bf16_speedup(m, threads, shapes, backward, measure)
    largest = "x".join(map(str, shapes[0][1:]))
    how = (f"its bf16 products at this model's sizes (largest {largest}, {'training' if backward else 'decoding'}) "
           f"measured {speedup:.2f}x fp32{' (cached)' if cached else ''}")
    if speedup >= BF16_MARGIN:
        return True, f"{m.cpu} has {units} and {how}"
    return False, f"{m.cpu} has {units}, but {how}"


def int8_engine(device: torch.device, m: Machine | None = None) -> str:
    """The quantized engine for ``--quantize int8`` (dynamic int8 quantization of linear and recurrent layers), and a
    line on where it helps; a one-line error where it cannot run."""
    if device.type != "cpu":
        raise NmtError(f"--quantize int8 runs on the CPU only (dynamic quantization), not on {device}")
    m = m or machine()
    engines = torch.backends.quantized.supported_engines
    engine = next((e for e in ("x86", "fbgemm", "qnnpack") if e in engines), None)
    if engine is None:
        raise NmtError(f"--quantize int8: this torch build has no quantized engine ({', '.join(engines)})")
    torch.backends.quantized.engine = engine
    if m.x86 and ({"avx512_vnni", "avx_vnni", "amx_int8"} & m.flags):
        return f"int8 ({engine}): this CPU has int8 dot-product instructions (VNNI), where int8 is usually faster"
    if m.x86:
        return f"int8 ({engine}): this CPU has no VNNI; int8 may be little faster than fp32: measure (bench/decode.py)"
    return f"int8 ({engine}): on {m.arch}, measure whether int8 helps (bench/decode.py)"
