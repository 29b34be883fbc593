"""DistributedDataParallel under torchrun: which process this is, and the few collectives training needs.
Without torchrun (WORLD_SIZE unset or 1) every helper is a no-op."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1


def init_distributed(device_name: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as td

    dist = Dist(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    if not td.is_initialized():
        td.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(dist.local_rank)
    return dist


def all_reduce_sum(values: list[float], dist: Dist) -> list[float]:
    if not dist.on:
        return values
    import torch.distributed as td

    tensor = torch.tensor(values, dtype=torch.float64)
    td.all_reduce(tensor)
    return tensor.tolist()


def broadcast(obj, dist: Dist):
    """rank 0's `obj` on every rank (any picklable object)."""
    if not dist.on:
        return obj
    import torch.distributed as td

    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def barrier(dist: Dist) -> None:
    if dist.on:
        import torch.distributed as td

        td.barrier()


def shut_down(dist: Dist) -> None:
    if dist.on:
        import torch.distributed as td

        td.destroy_process_group()
