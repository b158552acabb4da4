"""Small helpers: seeding, device choice, the process's memory allocator and telling out-of-memory errors."""
from __future__ import annotations

import ctypes
import platform
import random
from typing import Optional

import numpy as np
import torch

from .distributed import make_current, plan_this_process


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
    make_current(device)
    return device


#: how the out-of-memory errors that are plain ``RuntimeError`` say so: the CPU allocator's, and CUDA's outside
#: PyTorch's caching allocator (a kernel, cuBLAS or cuDNN asking for memory of their own)
_OUT_OF_MEMORY_SAYS = ("DefaultCPUAllocator: can't allocate memory", "CUDA error: out of memory",
                       "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")


def out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is running out of memory: ``torch.OutOfMemoryError`` (PyTorch's GPU allocator) or a plain
    ``RuntimeError`` whose message says so (:data:`_OUT_OF_MEMORY_SAYS`; also as a DataLoader worker's error)."""
    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and any(says in str(e) for says in _OUT_OF_MEMORY_SAYS))


def out_of_memory_said(e: BaseException, remedy: str) -> str:
    """``out of memory (<e's message on one line>): <remedy>``; a DataLoader worker's error carries the worker's
    traceback, of which only the last line (the error itself) is kept."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    message = lines[-1] if len(lines) > 1 and "Original Traceback" in str(e) else " ".join(lines)
    return f"out of memory ({message}): {remedy}"


_M_MMAP_MAX = -4  # glibc's mallopt parameter: how many allocations may be served by their own mmap


def reuse_freed_memory() -> bool:
    """Serve every allocation from the process heap (glibc only; elsewhere nothing), so that a freed tensor's pages
    serve the next tensor; returns whether the setting was made.

    glibc gives each allocation over 32 MB pages of its own and returns them when freed: a forward pass of a video
    model makes hundreds of such tensors, and each one faults in and zeroes fresh pages (a third of the CPU time of
    one FAST-VQA-B forward). The cost is a higher peak of resident memory (about 15 % there). For the commands'
    processes only: a library should not change the allocator of its caller.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_MAX, 0))
    except (OSError, AttributeError):
        return False
