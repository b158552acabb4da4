"""Determinism and mixed precision of the training and scoring loops.

``deterministic: true`` (:func:`set_deterministic`) makes the kernels deterministic; with the per-item seeding of
:mod:`samacore.loaders` the data randomness is then a function of (seed, epoch, item) alone. ``amp: bf16``
(:func:`amp_mode`, :func:`autocast`) runs the forward passes under bfloat16 autocast; losses are computed in fp32
inside :func:`full_precision`.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Optional

import torch

from .options import OptionError

__all__ = ["AMP_MODES", "DETERMINISTIC_CUBLAS", "amp_mode", "autocast", "full_precision", "set_deterministic"]

AMP_MODES = ("none", "bf16")


#: the cuBLAS workspace settings under which its kernels are deterministic (CUDA's documentation)
DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")


def set_deterministic(enabled: bool = True) -> None:
    """``deterministic: true``: the same numbers from the same inputs on every run, on CPU and GPU.

    * ``torch.use_deterministic_algorithms(True)`` (strict: an operation without a deterministic kernel raises
      instead of warning) and no cuDNN autotuning (``cudnn.benchmark`` off, ``cudnn.deterministic`` on);
    * on a CUDA machine: attention through the math kernel of ``scaled_dot_product_attention`` (the flash /
      memory-efficient / cuDNN kernels' backward passes accumulate in a varying order), no TF32 in matmuls or
      cuDNN convolutions, and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` -- which cuBLAS reads when it starts, so this
      must run before any CUDA work (:func:`samacore.runs.apply_command_line` calls it first); a process that
      already started CUDA under another value gets an ``OptionError`` naming what to set.

    Cost (GPU): the math attention kernel keeps the full attention matrix (more memory, slower attention), fp32
    matmuls run without TF32 (several times slower on Ampere and later in fp32; bf16 autocast is unaffected),
    cuBLAS keeps a workspace of a few MB per stream. On the CPU nothing changes but the strictness (this code's
    CPU kernels are deterministic already). Not reversible within a process (``enabled=False`` changes nothing).
    """
    if not enabled:
        return
    _deterministic_cublas()
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    if torch.cuda.is_available():  # CUDA-only switches: a CPU-only machine keeps its kernels and its numbers
        torch.set_float32_matmul_precision("highest")  # no TF32 in cuBLAS matmuls
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.enable_flash_sdp(False)
        torch.backends.cuda.enable_mem_efficient_sdp(False)
        torch.backends.cuda.enable_cudnn_sdp(False)
        torch.backends.cuda.enable_math_sdp(True)


def _deterministic_cublas() -> None:
    """Set ``CUBLAS_WORKSPACE_CONFIG`` for deterministic cuBLAS, or refuse when CUDA started under another value."""
    current = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if current in DETERMINISTIC_CUBLAS:
        return
    if torch.cuda.is_initialized():
        raise OptionError(
            f"deterministic: true needs CUBLAS_WORKSPACE_CONFIG={DETERMINISTIC_CUBLAS[0]} before CUDA starts, but "
            f"this process started CUDA with it {'set to ' + repr(current) if current else 'unset'}; set it in the "
            f"environment before launching (export CUBLAS_WORKSPACE_CONFIG={DETERMINISTIC_CUBLAS[0]})")
    if current:
        warnings.warn(f"deterministic: true: CUBLAS_WORKSPACE_CONFIG={current!r} replaced by "
                      f"{DETERMINISTIC_CUBLAS[0]!r} (deterministic cuBLAS)")
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = DETERMINISTIC_CUBLAS[0]


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
    where = torch.device(device)
    if where.type == "cuda":
        _warn_if_bf16_is_emulated(where.index if where.index is not None else torch.cuda.current_device())
    return torch.autocast(device_type=where.type, dtype=torch.bfloat16)


_BF16_CHECKED: set = set()  # the GPUs whose bfloat16 support was looked at (once per process)


def _warn_if_bf16_is_emulated(index: int) -> None:
    """Once per GPU: below compute capability 8.0 (T4, V100) bfloat16 has no tensor-core kernels; PyTorch emulates
    it, so bf16 runs slower than fp32 there and attention falls back to kernels that keep more memory."""
    if index in _BF16_CHECKED:
        return
    _BF16_CHECKED.add(index)
    capability = torch.cuda.get_device_capability(index)
    if capability < (8, 0):
        warnings.warn(f"bf16 on GPU {index} ({torch.cuda.get_device_name(index)}, compute capability "
                      f"{capability[0]}.{capability[1]} < 8.0) is emulated: slower than fp32 there; leave out "
                      f"--bf16 / amp: bf16 on this GPU")


def full_precision(device: str):
    """Leave autocast (e.g. to compute a loss in fp32 from bf16 predictions cast with ``.float()``)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)
