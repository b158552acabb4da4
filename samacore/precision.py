"""Determinism and mixed precision of the training and scoring loops.

``deterministic: true`` (:func:`set_deterministic`) makes the kernels deterministic; with the per-item seeding of
:mod:`samacore.loaders` the data randomness is then a function of (seed, epoch, item) alone. ``amp: bf16``
(:func:`amp_mode`, :func:`autocast`) runs the forward passes under bfloat16 autocast; losses are computed in fp32
inside :func:`full_precision`.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Optional

import torch

from .options import OptionError

__all__ = ["AMP_MODES", "amp_mode", "autocast", "full_precision", "set_deterministic"]

AMP_MODES = ("none", "bf16")


def set_deterministic(enabled: bool = True) -> None:
    """Deterministic kernels (``torch.use_deterministic_algorithms(True, warn_only=True)``) and no cuDNN autotuning.

    Call before the first CUDA operation (cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when it starts).
    """
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def amp_mode(value: Any) -> Optional[str]:
    """Normalise the ``amp`` option: ``None``/``false``/``"none"``/``"fp32"`` -> None, ``"bf16"``/``"bfloat16"`` -> "bf16"."""
    if value is None or value is False or str(value).lower() in ("none", "fp32", "false", "off", "no"):
        return None
    if str(value).lower() in ("bf16", "bfloat16"):
        return "bf16"
    raise OptionError(f"amp: unknown mixed-precision mode {value!r}; allowed: {', '.join(AMP_MODES)}")


def autocast(device: str, amp: Optional[str] = None):
    """``torch.autocast`` in bfloat16 on ``device``'s type when ``amp == "bf16"``; a no-op context otherwise.

    Matmuls and convolutions then run in bf16 (CPU and CUDA); losses should be computed in fp32 inside
    :func:`full_precision`.
    """
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def full_precision(device: str):
    """Leave autocast (e.g. to compute a loss in fp32 from bf16 predictions cast with ``.float()``)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)
