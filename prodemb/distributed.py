"""Several processes (torchrun): rank and world from the environment, the process group, the weight-identity
check, and the two collectives the training job needs (a mean over ranks, rank 0's value everywhere).
One process needs none of it: every function is a no-op there."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

from prodemb.device import pick_device


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device_name: str = "auto") -> tuple[int, int, torch.device, bool]:
    """(rank, world size, this rank's device, whether this call created the process group).

    With WORLD_SIZE > 1: the GPU of LOCAL_RANK becomes the current device and the default process group
    is initialized (NCCL on CUDA, gloo on the CPU) unless it already is. One process: nothing to set up.
    """
    rank, world = _dist_info()
    device = pick_device(device_name)
    if world == 1:
        return rank, world, device, False
    import torch.distributed as dist

    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return rank, world, device, False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device, True


def _state_checksum(model: torch.nn.Module) -> int:
    """64 bits of a sha256 over every parameter and buffer (online and target networks, BN statistics)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return int.from_bytes(h.digest()[:8], "little", signed=True)


def check_in_sync(model: torch.nn.Module, step: int, device: torch.device) -> None:
    """All-gather the ranks' weight checksums; every rank raises if any two differ (so none hangs)."""
    import torch.distributed as dist

    mine = torch.tensor([_state_checksum(model)], dtype=torch.int64, device=device)
    found = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(found, mine)
    values = [int(t.item()) for t in found]
    if len(set(values)) > 1:
        raise RuntimeError(f"ranks out of sync after step {step}: weight checksums {values}")


def global_mean(values: list[torch.Tensor], world: int) -> list[float]:
    """The scalars as floats; with several ranks their mean over ranks (equal per-rank batches: the
    global batch's value)."""
    if world == 1:
        return [v.item() for v in values]
    import torch.distributed as dist

    t = torch.stack([v.detach().float() for v in values])
    dist.all_reduce(t)
    return (t / world).tolist()


def broadcast(value: Any, world: int) -> Any:
    """Rank 0's ``value`` on every rank."""
    if world == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
