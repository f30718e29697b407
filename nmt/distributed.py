"""Multi-process training on torch.distributed: started by ``torchrun``, one process per rank.

``torchrun --nproc_per_node=N -m nmt train ...`` sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT;
each process calls :func:`setup`, wraps its model in DistributedDataParallel and trains on its share of every
batch. gloo on CPUs; nccl on GPUs, where each rank first binds to its own GPU (``torch.cuda.set_device``) and every
collective below puts its tensors on that GPU, as nccl requires. Under torchrun the group starts even with one
process (so that ``--nproc_per_node=1`` runs the same collectives); without torchrun (WORLD_SIZE unset) everything
here is a no-op. torchrun's variables are read here and nowhere else.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

_device = torch.device("cpu")  # where the collectives' tensors live: the rank's GPU under nccl, else the CPU


def backend(device: torch.device) -> str:
    """nccl for GPUs, gloo for CPUs."""
    return "nccl" if device.type == "cuda" else "gloo"


def launched() -> bool:
    """Whether torchrun started this process (its WORLD_SIZE is set)."""
    return "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    """Whether this process is rank 0 (torchrun's RANK), or runs alone: the one that writes files and prints."""
    return os.environ.get("RANK", "0") == "0"


def local_world_size(world: int) -> int:
    """The processes on this machine (torchrun's LOCAL_WORLD_SIZE), ``world`` without torchrun."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world))


def setup(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes; returns (rank, world size), (0, 1) for a single process."""
    global _device
    if "WORLD_SIZE" not in os.environ:
        return 0, 1
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before the group starts: nccl binds each rank to the current device
    if not dist.is_initialized():
        dist.init_process_group(backend(device))
    _device = device if backend(device) == "nccl" else torch.device("cpu")
    return dist.get_rank(), dist.get_world_size()


def describe() -> str:
    """For the log: ``", 2 processes (nccl)"`` under torchrun, else nothing."""
    if not dist.is_initialized():
        return ""
    world = dist.get_world_size()
    return f", {world} process{'es' if world > 1 else ''} ({dist.get_backend()})"


def shutdown(synchronize: bool = False) -> None:
    """Leave the process group. ``synchronize`` (on a normal end, when every rank gets here) first waits for all
    ranks, so that none closes its connections while another still uses them (gloo can abort the process then)."""
    if dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable values: validation results, paths)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_device)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not dist.is_initialized():
        return [obj]
    objs: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(objs, obj)
    return objs


def _all_reduce(values: list[float], dtype: torch.dtype, op: Any) -> list[Any]:
    t = torch.tensor(values, dtype=dtype, device=_device)
    dist.all_reduce(t, op=op)
    return t.cpu().tolist()


def all_max(*values: int) -> list[int]:
    """Element-wise maxima over ranks: flags and signal numbers (so that all ranks stop at the same update)."""
    if not dist.is_initialized():
        return list(values)
    return _all_reduce(list(values), torch.int64, dist.ReduceOp.MAX)


def all_sum(*values: float) -> list[float]:
    """Element-wise sums over ranks (loss and token counts for the log)."""
    if not dist.is_initialized():
        return list(values)
    return _all_reduce(list(values), torch.float64, dist.ReduceOp.SUM)
