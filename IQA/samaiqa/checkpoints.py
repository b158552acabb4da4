"""Loading IQA checkpoints of three formats, told apart by content (never by file name).

* ``microsoft``: Microsoft's Swin-V2 ImageNet release, ``{"model": {...}}`` -> initialises the backbone only
  (the ImageNet classifier is dropped, the quality head keeps its initial values).
* ``sama-iqa``: the original SAMA IQA training output, ``{"state_dict": {"backbone.*", "vqa_head.fc1/fc2.*"}}``
  with Microsoft's key layout under ``backbone.`` (patch merging at the *end* of a stage, ``head.*`` classifier).
* ``samaiqa``: what this package saves, ``{"format": "samaiqa/1", "state_dict": IQAModel state, ...}``.

A file of the VQA tree (a video Swin: 3D patch embedding, or ``<branch>_backbone.*`` keys) is refused saying so.

Microsoft's layout is mapped to timm's with the checkpoint filter timm keeps beside the encoder
(:func:`samaiqa.model.checkpoint_filter`; for Swin-V2 it moves the patch merging layers). Microsoft files also
store index / coordinate tables and shifted-window masks as buffers; our backbone builds the same tables itself,
so each stored table is compared with the rebuilt one (a difference means the file was made for another window
configuration and is an error) and then dropped.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from samacore.checkpoint import (CheckpointError, LoadReport, load_checkpoint, load_state_dict_checked,
                                 patch_embedding_rank, save_checkpoint, strip_wrapper_prefixes)

from .datasets import sampling_args
from .model import checkpoint_filter

OWN_FORMAT = "samaiqa/1"
FORMATS = ("microsoft", "sama-iqa", "samaiqa")
# Buffers Microsoft's implementation saves and timm rebuilds from the window configuration.
_DERIVED_BUFFERS = ("relative_position_index", "relative_coords_table", "attn_mask")
# A Microsoft-layout backbone has a patch-merging layer in stage 0; timm's layout starts stage 1 with it.
_MS_LAYOUT_MARKER = "layers.0.downsample.reduction.weight"

StateDict = Dict[str, torch.Tensor]


def _strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _video_model_kind(sd: Mapping[str, Any]) -> Optional[str]:
    """What a VQA-tree checkpoint (a video Swin) is, in a few words; None for anything else."""
    # fragments_backbone.*, vqa_head.* (not mmaction's classifier cls_head.*, beside its backbone.*)
    if any(re.match(r"[A-Za-z0-9-]+_(backbone|head)\.", str(k)) and not str(k).startswith("cls_head.") for k in sd):
        if not any(str(k).startswith("vqa_head.fc1.") for k in sd):  # (the IQA head is vqa_head.fc1/fc2)
            return "a SAMA / FAST-VQA video model: '<branch>_backbone.*' with a 'vqa_head'"
    if patch_embedding_rank(sd) == 5:  # a 3D patch embedding: a video Swin
        if any(str(k).startswith("backbone.") for k in sd):
            return "a Video Swin Kinetics-400 backbone (mmaction layout)"
        return "a Video Swin model"
    return None


def detect_format(ckpt: Any) -> Tuple[str, StateDict]:
    """Return ``(format, state_dict)`` for a loaded checkpoint object; raise :class:`CheckpointError` if unknown
    (saying so when it is a VQA checkpoint)."""
    if isinstance(ckpt, Mapping) and ckpt.get("format") == OWN_FORMAT and _is_tensor_dict(ckpt.get("state_dict")):
        return "samaiqa", strip_wrapper_prefixes(ckpt["state_dict"])
    if isinstance(ckpt, Mapping) and _is_tensor_dict(ckpt.get("model")):
        sd = strip_wrapper_prefixes(ckpt["model"])
        if any(k.startswith("patch_embed.") for k in sd):
            return "microsoft", sd
    if isinstance(ckpt, Mapping) and _is_tensor_dict(ckpt.get("state_dict")):
        sd = strip_wrapper_prefixes(ckpt["state_dict"])
    elif _is_tensor_dict(ckpt):
        sd = strip_wrapper_prefixes(ckpt)
    else:
        keys = list(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(
            f"not an IQA checkpoint: expected {{'model': ...}} (Microsoft Swin-V2) or {{'state_dict': ...}} "
            f"(SAMA IQA / samaiqa); found {keys}"
        )
    kind = _video_model_kind(sd)
    if kind:
        raise CheckpointError(f"it is a VQA checkpoint ({kind}), not an IQA model: use it with the VQA tree "
                              "(VQA/vqa.py, VQA/demo_test.py)")
    if any(k.startswith("backbone.") for k in sd):
        if ("backbone." + _MS_LAYOUT_MARKER) in sd or "backbone.head.weight" in sd:
            return "sama-iqa", sd
        return "samaiqa", sd
    if any(k.startswith("patch_embed.") for k in sd):
        return "microsoft", sd  # a bare backbone state dict in Microsoft / timm layout
    raise CheckpointError(
        "not an IQA checkpoint: its keys look like neither an IQA model ('backbone.*', 'vqa_head.*') nor a "
        f"Swin-V2 backbone ('patch_embed.*', 'layers.*'); first keys: {list(sd)[:6]}"
    )


def _check_derived_buffers(sd: Mapping[str, torch.Tensor], backbone: nn.Module, where: str) -> List[str]:
    """Compare the stored index / coordinate / mask tables with the ones ``backbone`` built; return notes.

    The stored tables decide the original model's output (it loads them), so a table that differs from ours is
    an error rather than something to overwrite silently.
    """
    own = dict(backbone.named_buffers())
    checked, absent = 0, []
    for key, value in sd.items():
        if not any(b in key for b in _DERIVED_BUFFERS):
            continue
        mine = own.get(key)
        if mine is None:
            absent.append(key)  # e.g. a mask for a shift our (clamped) window does not use
            continue
        same = tuple(mine.shape) == tuple(value.shape) and (
            torch.equal(mine.cpu(), value.cpu())
            if not mine.is_floating_point()
            else torch.allclose(mine.cpu().float(), value.cpu().float(), atol=1e-6, rtol=0)
        )
        if not same:
            raise CheckpointError(
                f"{where}: stored buffer {key} {tuple(value.shape)} differs from the table the model builds "
                f"{tuple(mine.shape)}; the checkpoint was made for another window size / input size / "
                "pretrained window size: build IQAModel with the matching backbone options"
            )
        checked += 1
    notes = []
    if checked:
        notes.append(f"{checked} stored index/coordinate/mask buffers equal the rebuilt ones (not loaded)")
    if absent:
        raise CheckpointError(
            f"{where}: stored buffers with no counterpart in the model: {', '.join(absent[:6])}; "
            "the checkpoint was made for another window / input configuration"
        )
    return notes


def _microsoft_backbone_to_timm(sd: Mapping[str, torch.Tensor], backbone: nn.Module, where: str) -> Tuple[StateDict, List[str]]:
    """Map a Microsoft-layout Swin-V2 state dict onto timm's names; drop the ImageNet classifier."""
    notes = _check_derived_buffers(sd, backbone, where)
    mapped = checkpoint_filter(backbone)(dict(sd), backbone)  # Swin-V2: moves patch merging, drops derived buffers
    own_keys = set(backbone.state_dict())
    classifier = [k for k in mapped if k.startswith("head.") and k not in own_keys]
    for k in classifier:
        del mapped[k]
    if classifier:
        notes.append(f"dropped the ImageNet classifier ({', '.join(sorted(classifier))}): unused by the IQA model")
    return mapped, notes


def state_dict_for_model(ckpt: Any, model: nn.Module) -> Tuple[str, StateDict, List[str]]:
    """Convert a loaded checkpoint to ``model``'s key layout: ``(format, state_dict, notes)``.

    For the ``microsoft`` format the state dict holds backbone keys only (without ``backbone.``).
    """
    fmt, sd = detect_format(ckpt)
    backbone = model.backbone
    if fmt == "microsoft":
        mapped, notes = _microsoft_backbone_to_timm(sd, backbone, "Microsoft Swin-V2 checkpoint")
        return fmt, mapped, notes
    if fmt == "sama-iqa":
        mapped, notes = _microsoft_backbone_to_timm(_strip_prefix(sd, "backbone."), backbone, "SAMA IQA checkpoint")
        out = {"backbone." + k: v for k, v in mapped.items()}
        out.update({k: v for k, v in sd.items() if not k.startswith("backbone.")})
        return fmt, out, notes
    notes = []
    return fmt, sd, notes


def load_into_model(
    model: nn.Module, source: Any, allow_partial: bool = False, map_location: Any = "cpu", trust: bool = False
) -> LoadReport:
    """Load a checkpoint (a path or an already loaded object) of any supported format into an ``IQAModel``.

    Every learnable tensor must come from the file (except the quality head for ImageNet backbone files),
    unless ``allow_partial``. ``trust``: full unpickle of a file the user trusts
    (:func:`samacore.checkpoint.load_checkpoint`). Returns the :class:`~samacore.checkpoint.LoadReport`, whose
    notes say which format was found and what was deliberately not loaded.
    """
    name = source if isinstance(source, str) else "checkpoint object"
    ckpt = load_checkpoint(source, map_location=map_location, as_weights=True, trust=trust) if isinstance(source, str) else source
    try:
        fmt, sd, notes = state_dict_for_model(ckpt, model)
    except CheckpointError as e:
        raise CheckpointError(f"{name}: {e}") from None
    if fmt == "microsoft":
        report = load_state_dict_checked(model.backbone, sd, allow_partial, what=f"backbone from {name} (Microsoft Swin-V2)")
        notes.append("quality head not in an ImageNet checkpoint: it keeps its initial values")
    else:
        report = load_state_dict_checked(model, sd, allow_partial, what=f"IQA model from {name} ({fmt})")
    report.notes = notes + report.notes
    return report


def model_config(model: nn.Module) -> Dict[str, Any]:
    """The constructor arguments that rebuild ``model`` (stored in our checkpoints for reference)."""
    return dict(getattr(model, "config", {}))


def save_model_checkpoint(path: str, model: nn.Module, **extra: Any) -> None:
    """Save ``model`` in our format; ``extra`` (plain Python values: metrics, label_stats, split, options...)
    is stored beside the weights and stays readable with ``weights_only=True``."""
    from samacore.ema import unwrap

    obj = {"format": OWN_FORMAT, "state_dict": unwrap(model).state_dict(), "model_config": model_config(unwrap(model))}
    obj.update(extra)
    save_checkpoint(obj, path)


def scoring_meta(opt: Mapping[str, Any]) -> Dict[str, Any]:
    """What a scorer needs to sample as a checkpoint's training did (``"sama"."scoring"`` of
    :func:`samacore.checkpoint.checkpoint_meta`): ``stype`` and ``data``, the grid and ``exif_transpose``."""
    data = opt.get("data") or {}
    return {"stype": opt["stype"],
            "data": dict(sampling_args(data), exif_transpose=bool(data.get("exif_transpose", False)))}


def read_checkpoint_info(path: str) -> Dict[str, Any]:
    """Everything but the weights of one of our checkpoints (label_stats, metrics, split, ...)."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, Mapping):
        return {}
    return {k: v for k, v in ckpt.items() if k not in ("state_dict", "model")}


__all__ = [
    "CheckpointError",
    "FORMATS",
    "OWN_FORMAT",
    "detect_format",
    "load_into_model",
    "read_checkpoint_info",
    "save_model_checkpoint",
    "scoring_meta",
    "state_dict_for_model",
]
