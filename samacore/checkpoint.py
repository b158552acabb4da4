"""Checkpoint I/O: safe loading (``weights_only=True``), atomic saving and checked state-dict loading."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, List, Mapping

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


def load_checkpoint(path: str, map_location: Any = "cpu") -> Any:
    """Load a checkpoint with ``weights_only=True`` so an untrusted file cannot run code."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt / unsafe files
        raise CheckpointError(
            f"cannot load checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
            "(it must be a PyTorch file holding only tensors and plain containers)"
        ) from None


def save_checkpoint(obj: Any, path: str) -> None:
    """Save atomically: write a temporary file beside ``path`` and rename it, so a kill never leaves half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@dataclass
class LoadReport:
    """What a checked load did: keys the model lacked in the file, keys the file had beyond the model."""

    what: str
    loaded: int = 0
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        def short(keys: List[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

        parts = [f"{self.what}: loaded {self.loaded} tensors"]
        if self.missing:
            parts.append(f"missing (left as initialised): {short(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected (ignored): {short(self.unexpected)}")
        parts += self.notes
        return "; ".join(parts)


def load_state_dict_checked(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    allow_partial: bool = False,
    what: str = "model",
    ignore_missing: tuple = (),
) -> LoadReport:
    """Load ``state_dict`` into ``module`` and report what did not match.

    A learnable tensor of the model that the file lacks is an error unless ``allow_partial`` (or it matches one
    of the ``ignore_missing`` suffixes, for tensors a format is known to lack). A tensor whose shape differs is
    always an error. Missing non-learnable buffers (e.g. index tables the model rebuilds) are reported only.
    """
    own = module.state_dict()
    learnable = {name for name, _ in module.named_parameters()}
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if mismatched:
        raise CheckpointError(f"{what}: tensors with the wrong shape: " + "; ".join(mismatched[:8]))
    fatal = [k for k in missing if k in learnable and not k.endswith(tuple(ignore_missing))]
    if fatal and not allow_partial:
        shown = ", ".join(fatal[:8]) + (f", ... ({len(fatal)} in all)" if len(fatal) > 8 else "")
        raise CheckpointError(
            f"{what}: the checkpoint lacks {len(fatal)} learnable tensors: {shown}. "
            "Set allow_partial (option `allow_partial_load: true`) to keep their initial values."
        )
    module.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)
    return LoadReport(what=what, loaded=len(own) - len(missing), missing=missing, unexpected=unexpected)
