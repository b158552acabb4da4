"""Thin helpers over torch.distributed so the trainers run the same with or without ``torchrun``."""
from __future__ import annotations

import os
from typing import Any, List, Optional, Tuple

import torch
import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def init_distributed(backend: Optional[str] = None) -> Tuple[int, int, int]:
    """Initialise the process group when launched by ``torchrun`` (WORLD_SIZE > 1); returns (rank, world, local_rank).

    The backend is NCCL on CUDA and gloo otherwise, unless ``backend`` says.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not is_dist():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return rank(), world_size(), local_rank


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_gather_list(items: List[Any]) -> List[Any]:
    """Concatenate a Python list from every rank, in rank order (for exact metrics over the whole set)."""
    if not is_dist():
        return list(items)
    gathered: List[List[Any]] = [None] * world_size()  # type: ignore[list-item]
    dist.all_gather_object(gathered, list(items))
    return [x for part in gathered for x in part]


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()
