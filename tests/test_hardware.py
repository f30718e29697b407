"""The machine and the choices made from it: precision auto (injected CPUs and measurements, so that every branch
runs on any machine), the measurement cache, devices, threads and int8."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from nmt import NmtError, hardware
from nmt.hardware import Machine, resolve_precision

CPU = torch.device("cpu")
COMMON = {"fpu", "sse2", "avx", "avx2", "fma"}
CASCADE_LAKE = Machine("Intel(R) Xeon(R) Gold 6248 (Cascade Lake)", "x86_64", "Linux",
                       frozenset(COMMON | {"avx512f", "avx512bw", "avx512_vnni"}), 2)
SAPPHIRE_RAPIDS = Machine("Intel(R) Xeon(R) Platinum 8480+ (Sapphire Rapids)", "x86_64", "Linux",
                          frozenset(COMMON | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}), 2)
ZEN4 = Machine("AMD EPYC 9R14 (Zen 4)", "x86_64", "Linux", frozenset(COMMON | {"avx512f", "avx512_bf16"}), 2)
GRAVITON = Machine("Neoverse-V1", "aarch64", "Linux", frozenset({"fp", "asimd", "bf16", "sve"}), 2)
UNKNOWN = Machine("unknown", "unknown", "Windows", frozenset(), 2)


def never(threads: int, shapes: tuple, backward: bool) -> float:
    raise AssertionError("no measurement expected here")


def measured(speedup: float, calls: list | None = None) -> hardware.Measure:
    """A measurement that finds ``speedup`` and records what it was asked to time."""
    def measure(threads: int, shapes: tuple, backward: bool) -> float:
        if calls is not None:
            calls.append((threads, shapes, backward))
        return speedup
    return measure


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMT_CACHE", str(tmp_path))


@pytest.mark.parametrize("machine", [CASCADE_LAKE, GRAVITON, UNKNOWN], ids=["cascade-lake", "arm", "unknown"])
def test_auto_is_fp32_without_bf16_units_and_measures_nothing(machine: Machine) -> None:
    precision = resolve_precision("auto", CPU, machine, threads=2, measure=never)
    assert precision.name == "fp32"
    assert machine.cpu in precision.reason or machine.arch in precision.reason


def test_auto_measures_where_the_flags_alone_do_not_tell() -> None:
    """AVX512-BF16 or AMX: a Zen 4 runs bf16 at 2.7x fp32, an Intel VM that hides AMX at 0.56x (both measured
    on the machines of this project); the measurement decides, and is cached per CPU, flags, torch and threads."""
    calls: list = []
    fast = resolve_precision("auto", CPU, ZEN4, threads=2, measure=measured(2.7, calls))
    assert fast.name == "bf16" and "measured 2.70x fp32" in fast.reason and "AVX512-BF16" in fast.reason
    again = resolve_precision("auto", CPU, ZEN4, threads=2, measure=never)
    assert again.name == "bf16" and "(cached)" in again.reason
    assert resolve_precision("auto", CPU, ZEN4, threads=1, measure=measured(2.7, calls)).name == "bf16"
    assert [threads for threads, _, _ in calls] == [2, 1]  # another thread count is another measurement
    vm = Machine("Intel(R) Xeon(R) Processor", "x86_64", "Linux", frozenset(COMMON | {"avx512f", "avx512_bf16"}), 2)
    slow = resolve_precision("auto", CPU, vm, threads=2, measure=measured(0.56))
    assert slow.name == "fp32" and "measured 0.56x fp32" in slow.reason
    amx = resolve_precision("auto", CPU, SAPPHIRE_RAPIDS, threads=2, measure=measured(2.0))
    assert amx.name == "bf16" and "has AMX and AVX512-BF16" in amx.reason


def test_auto_measures_the_model_s_own_products_for_training_and_for_decoding() -> None:
    """On a CPU with AMX, a model of the recipe's width gains from bf16 while a toy one loses (casting the weights
    at every call costs more than the tiles save): the model's largest weight shapes are what is timed, forward
    and backward for training, forward only for decoding, each cached under its own key."""
    wide = nn.Sequential(nn.Embedding(8000, 256), nn.Linear(512, 8000), nn.GRU(768, 512), nn.Linear(512, 256))
    toy = nn.Sequential(nn.Embedding(300, 64), nn.Linear(128, 300), nn.GRU(64, 64))
    assert hardware.product_shapes(wide) == ((256, 512, 8000), (256, 256, 8000), (256, 768, 1536))
    assert hardware.product_shapes(toy) == ((256, 128, 300), (256, 64, 300), (256, 64, 192))
    calls: list = []

    def amx(threads: int, shapes: tuple, backward: bool) -> float:
        calls.append((shapes, backward))
        return 2.0 if shapes[0][2] >= 8000 else 0.8

    trained = resolve_precision("auto", CPU, SAPPHIRE_RAPIDS, threads=2, model=wide, measure=amx)
    assert trained.name == "bf16" and "largest 512x8000, training" in trained.reason
    assert resolve_precision("auto", CPU, SAPPHIRE_RAPIDS, threads=2, model=toy, measure=amx).name == "fp32"
    decoded = resolve_precision("auto", CPU, SAPPHIRE_RAPIDS, threads=2, model=wide, backward=False, measure=amx)
    assert decoded.name == "bf16" and "decoding" in decoded.reason and "(cached)" not in decoded.reason
    assert calls == [(hardware.product_shapes(wide), True), (hardware.product_shapes(toy), True),
                     (hardware.product_shapes(wide), False)]
    assert "(cached)" in resolve_precision("auto", CPU, SAPPHIRE_RAPIDS, threads=2, model=toy, measure=never).reason


def test_explicit_precisions_are_kept_and_emulated_bf16_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_precision("fp32", CPU, SAPPHIRE_RAPIDS, measure=never).name == "fp32"
    assert resolve_precision("bf16", CPU, CASCADE_LAKE, measure=never).name == "bf16"
    assert "fp32 would be faster here" in caplog.text
    with pytest.raises(NmtError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", CPU, ZEN4)


def test_gpus_with_native_bf16_only(monkeypatch: pytest.MonkeyPatch) -> None:
    h100 = Machine("x", "x86_64", "Linux", frozenset(), 16, (("NVIDIA H100", (9, 0)), ("Tesla V100", (7, 0))))
    assert resolve_precision("auto", torch.device("cuda", 0), h100, measure=never).name == "bf16"
    old = resolve_precision("auto", torch.device("cuda", 1), h100, measure=never)
    assert old.name == "fp32" and "Tesla V100 (compute capability 7.0) has no native bf16" in old.reason


def test_this_machine_is_described_and_never_crashes() -> None:
    m = hardware.machine()
    line = m.describe()
    assert m.cpu in line and f"torch {torch.__version__}" in line and "cores usable" in line
    assert resolve_precision("auto", CPU).name in ("fp32", "bf16")


def test_the_measurement_is_fp32_time_over_bf16_time_and_leaves_the_random_state_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The speed-up is the fp32 time of the products over their bf16 time: here products made to take 4 ms in fp32
    and 2 ms under bf16 autocast measure 2x, forward only or with backward. Training measures after seeding, just
    before the model's first update: the global random state must be what it would be without the measurement (or
    a cached and a measured run would start differently)."""
    linear = hardware.F.linear

    def timed(x: torch.Tensor, w: torch.Tensor, *rest: object) -> torch.Tensor:
        time.sleep(0.002 if torch.is_autocast_enabled("cpu") else 0.004)
        return linear(x, w, *rest)

    monkeypatch.setattr(hardware.F, "linear", timed)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    for backward in (True, False):
        speedup = hardware.measure_bf16_speedup(1, ((4, 8, 8),), backward, seconds=0.05)
        assert 1.8 < speedup < 2.2, speedup
    assert torch.equal(torch.rand(3), expected)


def test_auto_gives_each_torchrun_process_its_own_gpu_and_refuses_more_processes_than_gpus(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert hardware.resolve_device("auto") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(NmtError, match=r"process 2 of torchrun on this machine, which has 2 GPU\(s\): start at most 2"):
        hardware.resolve_device("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hardware.resolve_device("auto") == CPU


def test_devices_are_checked() -> None:
    assert hardware.resolve_device("cpu") == CPU
    assert hardware.resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else CPU)
    with pytest.raises(NmtError, match="unsupported device 'meta'"):
        hardware.resolve_device("meta")
    with pytest.raises(NmtError, match="unknown device 'tpu'"):
        hardware.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(NmtError, match="this machine has no CUDA GPU"):
            hardware.resolve_device("cuda:0")


def test_int8_says_where_it_helps() -> None:
    assert "VNNI" in hardware.int8_engine(CPU, CASCADE_LAKE)
    assert "no VNNI" in hardware.int8_engine(CPU, Machine("old", "x86_64", "Linux", frozenset(COMMON), 2))
    with pytest.raises(NmtError, match="CPU only"):
        hardware.int8_engine(torch.device("cuda", 0), CASCADE_LAKE)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_usable_cores_follow_the_cpu_affinity() -> None:
    code = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " \
           "from nmt.hardware import usable_cores; print(usable_cores())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"
