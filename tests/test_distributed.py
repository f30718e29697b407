"""Multi-process training with DistributedDataParallel on gloo: ranks stay identical and match one process; the
collectives work across ranks, and on the nccl path each rank binds its GPU before the group starts and every
collective puts its tensors on that GPU (checked with fake CUDA tensors, so that it runs on any machine)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from nmt import checkpoint, distributed
from nmt.optim import train_update
from tests.conftest import SMALL_DATES
from tests.helpers import TOY_TRAIN, toy_data, toy_model

BATCHES = [[list(range(0, 11))], [list(range(11, 24))], [list(range(3, 20))]]  # one batch per update


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    rank, world = distributed.setup(torch.device("cpu"))
    train_set, trg_lengths = toy_data()
    model = toy_model()
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    worst = 0.0
    for group in BATCHES:
        train_update(ddp, optimizer, train_set, group, trg_lengths, TOY_TRAIN, rank, world)
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        copies = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(copies, flat)
        worst = max(worst, max((c - flat).abs().max().item() for c in copies))
    if rank == 0:
        torch.save({"model": model.state_dict(), "worst": worst}, out)
    del ddp
    distributed.shutdown(synchronize=True)


def test_two_gloo_ranks_stay_identical_and_match_one_process(tmp_path: Path) -> None:
    """Each rank trains on its half of every batch; after every update the ranks hold the same parameters, and
    those of one process on the whole batches (up to float summation order in the all-reduce: 1e-5)."""
    out = tmp_path / "ranks.pt"
    mp.spawn(_rank, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    result = torch.load(out, weights_only=True)
    assert result["worst"] == 0.0
    train_set, trg_lengths = toy_data()
    single = toy_model()
    optimizer = torch.optim.SGD(single.parameters(), lr=1.0)
    for group in BATCHES:
        train_update(single, optimizer, train_set, group, trg_lengths, TOY_TRAIN)
    for name, value in single.state_dict().items():
        torch.testing.assert_close(result["model"][name], value, rtol=1e-5, atol=1e-5, msg=name)
    assert not torch.equal(single.state_dict()["output.weight"], toy_model().state_dict()["output.weight"])


def test_torchrun_trains_with_two_processes_and_rank_0_writes(tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port()),
           "-m", "nmt", "train", *SMALL_DATES, "data.sizes.train=1000", "train.max_steps=8", "train.threads=1",
           "train.device=cpu", "train.validate_every=4", "train.plot_attention=0", "model.emb_size=16",
           "model.hidden_size=16", "model.decoder_hidden_size=16", "model.attention_size=16",
           f"hydra.run.dir={run_dir}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("run directory:") == 1 and done.stdout.count("test (") == 1
    assert "2 processes" in done.stderr
    last = checkpoint.load(run_dir / "last.pt")
    assert last["progress"]["step"] == 8 and last["progress"]["finished"]
    assert len(last["rng"]) == 2  # both ranks' random states, for an exact resume
    assert [p.name for p in sorted((run_dir / "checkpoints").glob("*.pt"))] == ["step-4.pt", "step-8.pt"]


def _collectives(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    distributed.setup(torch.device("cpu"))
    results = {"max": distributed.all_max(rank, 7 * rank), "sum": distributed.all_sum(1.5, float(rank)),
               "broadcast": distributed.broadcast({"from": rank}), "gather": distributed.gather(f"rank {rank}")}
    distributed.barrier()
    torch.save(results, f"{out}.{rank}")
    distributed.shutdown(synchronize=True)


def test_collectives_across_two_gloo_ranks(tmp_path: Path) -> None:
    """The same functions the nccl path uses, for real across two processes."""
    out = str(tmp_path / "collectives")
    mp.spawn(_collectives, args=(2, _free_port(), out), nprocs=2, join=True)
    for rank in (0, 1):
        r = torch.load(f"{out}.{rank}", weights_only=True)
        assert r == {"max": [1, 7], "sum": [3.0, 1.0], "broadcast": {"from": 0}, "gather": ["rank 0", "rank 1"]}


class Stop(Exception):
    """Ends a faked collective once its tensor has been seen."""


def test_nccl_binds_the_device_first_and_collectives_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    calls: list[tuple] = []
    initialized = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", torch.device(device))))
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(initialized))

    def init_process_group(backend: str, **kwargs: object) -> None:
        calls.append(("init", backend))
        initialized.append(True)

    def all_reduce(tensor: torch.Tensor, op: object = None) -> None:
        calls.append(("all_reduce", tensor.device))
        raise Stop

    def broadcast_object_list(objects: list, src: int = 0, group: object = None, device: object = None) -> None:
        calls.append(("broadcast", torch.device(device)))

    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    monkeypatch.setattr(dist, "broadcast_object_list", broadcast_object_list)
    monkeypatch.setattr(distributed, "_device", torch.device("cpu"))
    gpu = torch.device("cuda", 1 if torch.cuda.device_count() != 1 else 0)  # fake, or the one real GPU
    assert distributed.setup(gpu) == (1, 2)
    assert calls == [("set_device", gpu), ("init", "nccl")]  # the device is set before the group starts
    with FakeTensorMode(allow_non_fake_inputs=True):  # CUDA tensors without a GPU
        for collective in (lambda: distributed.all_max(1, 0), lambda: distributed.all_sum(2.0, 3.0)):
            with pytest.raises(Stop):
                collective()
    distributed.broadcast("x")
    assert calls[2:] == [("all_reduce", gpu), ("all_reduce", gpu), ("broadcast", gpu)]
    assert distributed.backend(torch.device("cpu")) == "gloo"


def test_a_torchrun_group_of_one_process_starts_and_its_collectives_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torchrun --nproc_per_node=1`` starts a real group (gloo here, nccl on a GPU), so that one process runs the
    collectives of many; without torchrun's WORLD_SIZE nothing starts."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.setup(torch.device("cpu")) == (0, 1) and not dist.is_initialized()
    assert distributed.describe() == ""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    try:
        assert distributed.setup(torch.device("cpu")) == (0, 1) and dist.is_initialized()
        assert distributed.describe() == ", 1 process (gloo)"
        assert distributed.all_sum(1.5, 2.0) == [1.5, 2.0] and distributed.gather("x") == ["x"]
    finally:
        distributed.shutdown(synchronize=True)
    assert not dist.is_initialized()
