"""Load VQA weights from the checkpoint formats in use, recognised by content.

Formats (``detect_format``):

* ``"mmaction_k400"`` -- Video Swin Kinetics-400 weights from mmaction: ``{"state_dict": {"backbone.*", "cls_head.*"}}``.
  ``backbone.X`` initialises ``X`` of every backbone of the model, through the backbone's ``checkpoint_filter``
  (Video Swin: the fragment bias tables are set to zero, SAMA's recipe, or with
  ``init_fragment_bias_from_relative`` to a copy of the relative tables, FAST-VQA's); classification heads are
  not loaded.
* ``"vqa_release"`` -- SAMA / FAST-VQA released models and the checkpoints this project writes:
  ``{"state_dict": {"fragments_backbone.*", "vqa_head.*", ...}, ...}``.
* ``"bare_evaluator"`` -- the same keys without the ``state_dict`` wrapper.
* ``"bare_backbone"`` -- a backbone's own keys (``patch_embed.*``, ``layers.*``, ``norm.*``), loaded into every backbone.

A file of the IQA tree (an image Swin: 2D patch embedding, or ``format: samaiqa/*``) is refused saying so, and
only a video (3D) patch embedding makes a file backbone-only, so image weights are never taken for K400 ones.

Every stored ``relative_position_index`` must equal the model's (a different index means a different window
layout, and the weights would be silently wrong).  Missing learnable tensors are an error unless ``allow_partial``.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from samacore.checkpoint import (CheckpointError, LoadReport, load_checkpoint, load_state_dict_checked,
                                 patch_embedding_rank, strip_wrapper_prefixes)

from .backbones import is_backbone

__all__ = ["BACKBONE_ONLY", "detect_format", "detect_format_of", "load_vqa_weights", "scoring_meta", "unwrap_state_dict",
           "FORMATS"]

FORMATS = ("mmaction_k400", "vqa_release", "bare_evaluator", "bare_backbone")
BACKBONE_ONLY = {"mmaction_k400": "a Video Swin Kinetics-400 backbone (mmaction layout)",
                 "bare_backbone": "a bare Video Swin backbone"}

_BACKBONE_KEY = re.compile(r"^([A-Za-z0-9-]+)_backbone\.")
_HEAD_KEY = re.compile(r"^([A-Za-z0-9-]+)_head\.")
_BACKBONE_ROOTS = ("patch_embed.", "layers.", "norm.")

def unwrap_state_dict(obj: Any) -> Tuple[Dict[str, Tensor], bool]:
    """``(state_dict, wrapped)``: the tensors of a loaded checkpoint and whether they sat under ``"state_dict"``."""
    wrapped = isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping)
    state = obj["state_dict"] if wrapped else obj
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"checkpoint holds no state dict (got {type(state).__name__})")
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError("checkpoint's state dict holds no tensors; top-level keys: " + ", ".join(map(str, list(state)[:8])))
    return strip_wrapper_prefixes(tensors), wrapped


def _image_model_kind(obj: Any, state: Mapping[str, Tensor]) -> Optional[str]:
    """What an IQA-tree checkpoint (an image Swin) is, in a few words; None for anything else."""
    if isinstance(obj, Mapping):
        fmt = obj.get("format")
        if isinstance(fmt, str) and fmt.startswith("samaiqa/"):
            return f"the IQA trainer's format {fmt}"
    if patch_embedding_rank(state) == 4:  # a 2D patch embedding: an image Swin
        if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
            return "an image Swin backbone in Microsoft's {'model': ...} layout, e.g. Swin-V2 ImageNet"
        if any(k.startswith("vqa_head.fc1.") for k in state):
            return "SAMA IQA: image Swin-V2 under 'backbone.*' with the 'vqa_head.fc1/fc2' head"
        return "an image Swin model"
    return None


def detect_format(obj: Any) -> str:
    """Name the format of a loaded checkpoint (see the module docstring).

    CheckpointError (to be prefixed with the file name) for an IQA checkpoint, saying so, and for an unknown
    layout. A file counts as backbone-only (``mmaction_k400`` / ``bare_backbone``) only when its patch
    embedding is a video (3D) one, so an image model is never mistaken for K400 weights.
    """
    microsoft = isinstance(obj, Mapping) and "state_dict" not in obj and isinstance(obj.get("model"), Mapping)
    state, wrapped = unwrap_state_dict(obj["model"] if microsoft else obj)  # Microsoft's releases: {"model": ...}
    kind = _image_model_kind(obj, state)
    if kind:
        raise CheckpointError(f"it is an IQA checkpoint ({kind}), not a VQA model: use it with the IQA tree "
                              "(IQA/iqa.py, IQA/demo_test_iqa.py)")
    keys = list(state)
    if any(k.startswith("backbone.") for k in keys):
        return "mmaction_k400"
    if any(_BACKBONE_KEY.match(k) or _HEAD_KEY.match(k) for k in keys):
        return "vqa_release" if wrapped else "bare_evaluator"
    if any(k.startswith(_BACKBONE_ROOTS) for k in keys):
        return "bare_backbone"
    raise CheckpointError(
        "unrecognised VQA checkpoint layout (expected mmaction 'backbone.*', '<type>_backbone.*'/'vqa_head.*', "
        "or a bare backbone 'patch_embed.*'); first keys: " + ", ".join(keys[:6])
    )


def detect_format_of(obj: Any, source: str) -> str:
    """:func:`detect_format` with ``source`` (the file) named in its error."""
    try:
        return detect_format(obj)
    except CheckpointError as e:
        raise CheckpointError(f"{source}: {e}") from None


def _backbones(model: nn.Module) -> Dict[str, nn.Module]:
    """``{prefix: backbone}``; prefix ``""`` when ``model`` is itself a backbone, else the evaluator's branches."""
    if is_backbone(model):
        return {"": model}
    found = {f"{key}_backbone.": model.get_submodule(f"{key}_backbone") for key in getattr(model, "branches", ())}
    if not found:
        raise CheckpointError(f"{type(model).__name__} has no backbone to load weights into")
    return found


def _check_index_buffers(model: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    own = model.state_dict()
    for key, value in state.items():
        # a shape mismatch is reported with all other shape mismatches by load_state_dict_checked
        if key.endswith("relative_position_index") and key in own and value.shape == own[key].shape:
            if not torch.equal(value.to(own[key].device, own[key].dtype), own[key]):
                raise CheckpointError(
                    f"{what}: {key} differs from the model's relative position index: the checkpoint was made "
                    "for another window layout"
                )


def _merge(reports: List[LoadReport], what: str) -> LoadReport:
    out = LoadReport(what=what)
    for r in reports:
        out.loaded += r.loaded
        out.missing += r.missing
        out.unexpected += r.unexpected
        out.notes += r.notes
    return out


def _load_backbone_keys(model: nn.Module, src: Dict[str, Tensor], allow_partial: bool, init_fragment: bool,
                        backbone_only: bool, what: str) -> LoadReport:
    """Load one backbone's key set (no prefix) into every backbone of ``model``; ``backbone_only``: the keys come
    from a backbone-only file (K400, bare backbone) and go through the backbone's ``checkpoint_filter``."""
    reports = []
    for prefix, bb in _backbones(model).items():
        name = f"{what} -> {prefix[:-1] or 'backbone'}"
        state = dict(src)
        own = bb.state_dict()
        notes = []
        if backbone_only and hasattr(bb, "checkpoint_filter"):  # the model's own conversion (see backbones.py)
            state, notes = bb.checkpoint_filter(state, init_fragment)
        if allow_partial:
            bad = [k for k in state if k in own and state[k].shape != own[k].shape]
            for k in bad:
                del state[k]
            if bad:
                notes.append("skipped (shape differs): " + ", ".join(bad[:8]) + (f", ... ({len(bad)})" if len(bad) > 8 else ""))
        _check_index_buffers(bb, state, name)
        report = load_state_dict_checked(bb, state, allow_partial=allow_partial, what=name)
        report.missing = [prefix + k for k in report.missing]
        report.unexpected = [prefix + k for k in report.unexpected]
        report.notes += notes
        reports.append(report)
    return _merge(reports, what)


def scoring_meta(opt: Mapping[str, Any], val_key: Optional[str] = None) -> Dict[str, Any]:
    """What a scorer needs to sample as a checkpoint was validated: ``stype`` and the test ``sample_types`` of
    validation set ``val_key`` (the first ``val*`` set when None or unknown; finetuning: ``data.test``)."""
    data = opt["data"]
    if "anno_file" in data:  # finetuning: one labelled set, tested with data.test's sampling
        sample_types = (data.get("test") or {}).get("sample_types", {})
    else:
        keys = [k for k in data if str(k).startswith("val")]
        key = val_key if val_key in keys else (keys[0] if keys else None)
        sample_types = ((data[key].get("args") or {}).get("sample_types", {})) if key else {}
    return {"stype": opt["stype"], "sample_types": dict(sample_types)}


def load_vqa_weights(
    model: nn.Module,
    path_or_state: Union[str, Mapping[str, Any]],
    allow_partial: bool = False,
    init_fragment_bias_from_relative: bool = False,
    trust: bool = False,
    source: Optional[str] = None,
) -> LoadReport:
    """Load weights of any supported format into a :class:`DiViDeAddEvaluator` or a bare backbone.

    Args:
        model: the evaluator (weights go to its ``<key>_backbone`` / head modules) or a bare backbone.
        path_or_state: a checkpoint file (read with ``weights_only=True``) or an already loaded object.
        allow_partial: keep initial values for learnable tensors the file lacks (and, for backbone-only formats,
            skip tensors whose shape differs) instead of raising.
        init_fragment_bias_from_relative: K400 / bare-backbone formats only: FAST-VQA's recipe of copying each
            relative bias table into the fragment table (default: zeros, SAMA's recipe).
        trust: full unpickle of a file the user trusts (:func:`samacore.checkpoint.load_checkpoint`).
        source: the file an already loaded object came from (named in errors).

    Returns:
        LoadReport with the missing / unexpected keys (and notes on what was derived).
    """
    what = path_or_state if isinstance(path_or_state, str) else (source or "state dict")
    obj = load_checkpoint(path_or_state, as_weights=True, trust=trust) if isinstance(path_or_state, str) else path_or_state
    fmt = detect_format_of(obj, what)
    state, _ = unwrap_state_dict(obj)
    what = f"{what} [{fmt}]"

    if fmt in ("mmaction_k400", "bare_backbone"):
        if fmt == "mmaction_k400":
            ignored = sorted(k for k in state if not k.startswith("backbone."))
            src = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        else:
            ignored, src = [], state
        report = _load_backbone_keys(model, src, allow_partial, init_fragment_bias_from_relative,
                                     backbone_only=True, what=what)
        if ignored:
            report.notes.append(f"not loaded (classification head etc.): {', '.join(ignored[:6])}"
                                + (f", ... ({len(ignored)})" if len(ignored) > 6 else ""))
        if not is_backbone(model):
            report.notes.append("regression heads keep their initial values")
        return report

    # evaluator layouts (vqa_release / bare_evaluator)
    if is_backbone(model):
        prefixes = sorted({m.group(0) for k in state if (m := _BACKBONE_KEY.match(k))})
        if len(prefixes) != 1:
            raise CheckpointError(f"{what}: cannot pick one backbone for a bare backbone model; the file has "
                                  f"{', '.join(p[:-1] for p in prefixes) or 'none'}")
        src = {k[len(prefixes[0]):]: v for k, v in state.items() if k.startswith(prefixes[0])}
        report = _load_backbone_keys(model, src, allow_partial, False, backbone_only=False, what=what)
        report.notes.append(f"took {prefixes[0][:-1]} from the file")
        return report
    _check_index_buffers(model, state, what)
    return load_state_dict_checked(model, state, allow_partial=allow_partial, what=what)
