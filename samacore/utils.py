"""Small helpers: seeding and device choice."""
from __future__ import annotations

import random
from typing import Optional

import numpy as np
import torch

from .distributed import plan_this_process


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def pick_device(requested: Optional[str] = None) -> str:
    """``requested`` (``cpu``/``cuda``/``cuda:N``) or, when None, this process's GPU when CUDA is available, else the
    CPU (:func:`samacore.distributed.plan_device`); an impossible request is a one-line ``OptionError``. A GPU is
    made the current device, so pinned memory and kernels land on it rather than on GPU 0."""
    device = plan_this_process(requested)[0]
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    return device
