"""Data-parallel training under ``torchrun``: which process this is, and the few collectives the loop needs.

With ``WORLD_SIZE`` > 1 the process group is NCCL on GPUs or gloo on CPUs; each process reads its own
shard of the patches and only rank 0 (:attr:`Dist.main`) writes files. Without ``torchrun`` everything
here is a no-op on a single process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from nimbus.errors import TrainingError

__all__ = ["Dist", "all_sum", "broadcast", "setup_distributed"]


@dataclass
class Dist:
    """This process's place in a (possibly single-process) run.

    Attributes:
        rank: global rank.
        world: number of processes.
        local_rank: rank on this machine (its GPU index).
        device: the device this process trains on.
        initialised_here: whether :func:`setup_distributed` created the process group (and must
            destroy it).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (the process that writes files and prints)."""
        return self.rank == 0


def setup_distributed(device: str | None) -> Dist:
    """Join the ``torchrun`` process group when there is one, and pick this process's device.

    Args:
        device: the device asked for (None: this rank's GPU when there is one, else the CPU).

    Raises:
        TrainingError: a CUDA device was asked for and there is no GPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if device is not None and str(device).startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {device!r} asked for but no CUDA GPU is available")
    if world <= 1:
        dev = torch.device(device) if device else torch.device("cuda" if want_cuda else "cpu")
        return Dist(device=dev)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local_rank}") if want_cuda else torch.device("cpu")
    here = False
    if not dist.is_initialized():
        if want_cuda:
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
        here = True
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, device=dev, initialised_here=here)


def broadcast(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` on every process (any picklable object)."""
    if d.world <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: Sequence[float], d: Dist) -> list[float]:
    """The element-wise sum of ``values`` over all processes."""
    if d.world <= 1:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.cpu().tolist()
