"""DiViDe-Add evaluator: one backbone per sample type, a regression head, branch scores added."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from .backbones import BACKBONES, Backbone, build_backbone
from .checkpoints import load_vqa_weights
from .head import VQAHead

__all__ = ["DiViDeAddEvaluator", "BACKBONE_OPTION_KEYS", "branch_backbones"]

#: keys accepted in each ``model.args.backbone.<sample type>`` mapping of the YAML options
BACKBONE_OPTION_KEYS = ("type", "checkpoint", "pretrained")
DEFAULT_BACKBONES = {"fragments": {"type": "swin_tiny_grpb"}, "resize": {"type": "swin_tiny_grpb"}}


def branch_backbones(
    backbone_size: str = "divided",
    backbone_preserve_keys: str = "fragments,resize",
    backbone: Optional[Mapping[str, Mapping[str, Any]]] = None,
    var: bool = False,
) -> Dict[str, Tuple[str, dict]]:
    """``{branch: (registered backbone name, its options)}`` for these evaluator arguments, without building
    anything; a ``ValueError`` naming the ``model.args`` key for what cannot be built (the option schema runs it
    when the file is loaded)."""
    if var:
        raise ValueError("DiViDeAddEvaluator: var=True (action-recognition head) is not supported; use var: false")
    keep = [k.strip() for k in str(backbone_preserve_keys).split(",") if k.strip()]
    backbone = DEFAULT_BACKBONES if backbone is None else backbone
    plan: Dict[str, Tuple[str, dict]] = {}
    for key, hypers in backbone.items():
        if key not in keep:
            continue
        hypers = dict(hypers or {})
        unknown = [k for k in hypers if k not in BACKBONE_OPTION_KEYS]
        if unknown:
            raise ValueError(f"model.args.backbone.{key}: unknown option(s) {', '.join(map(str, unknown))}; "
                             f"allowed: {', '.join(BACKBONE_OPTION_KEYS)}")
        if backbone_size == "divided":
            if not hypers.get("type"):
                raise ValueError(f"model.args.backbone.{key}.type is required when backbone_size is 'divided'")
            name = hypers["type"]
        else:
            name = backbone_size
        BACKBONES.get(name)  # ValueError listing the registered names
        plan[key] = (name, hypers)
    if not plan:
        raise ValueError(f"no backbone built: backbone_preserve_keys {keep} matches none of the configured sample "
                         f"types {list(backbone)}")
    return plan


class DiViDeAddEvaluator(nn.Module):
    """Video quality model with the original constructor signature (YAML ``model.args``).

    Args:
        backbone_size: registered backbone name (:mod:`samavqa.models.backbones`) used for every branch, or
            ``"divided"`` to read each branch's ``type`` from ``backbone``.
        backbone_preserve_keys: comma-separated sample types that get a backbone (others in ``backbone`` are skipped).
        multi, layer: forwarded to the backbone (multi-stage features / an intermediate layer).
        backbone: ``{sample_type: {"type"?, "checkpoint"?, "pretrained"?}}``; ``checkpoint`` turns on gradient
            checkpointing, ``pretrained`` is a weight file loaded into that backbone (see ``checkpoints.py``).
        divide_head: one head per branch (``<key>_head``) instead of the shared ``vqa_head``.
        vqa_head: :class:`VQAHead` arguments (``in_channels`` defaults to the first backbone's ``num_features``).
        var: the original's action-recognition head; not supported here.

    Parameters are named ``<key>_backbone.*`` and ``vqa_head.*`` (or ``<key>_head.*``) like the original.
    """

    def __init__(
        self,
        backbone_size: str = "divided",
        backbone_preserve_keys: str = "fragments,resize",
        multi: bool = False,
        layer: int = -1,
        backbone: Optional[Mapping[str, Mapping[str, Any]]] = None,
        divide_head: bool = False,
        vqa_head: Optional[Mapping[str, Any]] = None,
        var: bool = False,
    ):
        super().__init__()
        plan = branch_backbones(backbone_size, backbone_preserve_keys, backbone, var)
        vqa_head = dict(vqa_head or {})
        self.backbone_preserve_keys = [k.strip() for k in str(backbone_preserve_keys).split(",") if k.strip()]
        self.multi = multi
        self.layer = layer
        self.branches: List[str] = list(plan)
        for key, (name, hypers) in plan.items():
            self.add_module(f"{key}_backbone", build_backbone(name, checkpoint=bool(hypers.get("checkpoint") or False)))
        pretrained = {key: str(hypers["pretrained"]) for key, (_, hypers) in plan.items() if hypers.get("pretrained")}
        vqa_head.setdefault("in_channels", self.get_submodule(f"{self.branches[0]}_backbone").num_features)
        self.divide_head = divide_head
        if divide_head:
            for key in self.branches:
                self.add_module(f"{key}_head", VQAHead(**vqa_head))
        else:
            self.vqa_head = VQAHead(**vqa_head)
        # load per-branch weights last, so nothing built afterwards overwrites them
        for key, path in pretrained.items():
            load_vqa_weights(self.get_submodule(f"{key}_backbone"), path)

    # ------------------------------------------------------------------------------------------------
    def _branch(self, key: str) -> Tuple[Backbone, VQAHead]:
        # clip keys may carry a suffix after "_" (e.g. "fragments_up"); the branch is the part before it
        name = key.split("_")[0]
        if not hasattr(self, f"{name}_backbone"):
            raise KeyError(f"no backbone for clips {key!r}; model branches: {', '.join(self.branches)}")
        head = getattr(self, f"{name}_head") if self.divide_head else self.vqa_head
        return getattr(self, f"{name}_backbone"), head

    def _run(self, vclips: Mapping[str, Tensor], return_pooled_feats: bool, reduce_scores: bool, pooled: bool,
             **kwargs) -> Any:
        scores: List[Tensor] = []
        feats: Dict[str, Tensor] = {}
        if self.multi:  # the Video Swin's multi-stage / intermediate-layer outputs, passed on only when asked for
            kwargs["multi"] = True
        if self.layer != -1:
            kwargs["layer"] = self.layer
        for key, clip in vclips.items():
            bb, head = self._branch(key)
            feat = bb.forward_features(clip, **kwargs)
            scores.append(head(feat))
            if return_pooled_feats:
                feats[key] = feat.mean((-3, -2, -1))
        out: Any = scores
        if reduce_scores:
            out = scores[0]
            for s in scores[1:]:
                out = out + s
            if pooled:
                out = out.mean((1, 2, 3, 4))
        return (out, feats) if return_pooled_feats else out

    def forward(self, vclips: Mapping[str, Tensor], inference: bool = True, return_pooled_feats: bool = False,
                reduce_scores: bool = True, pooled: bool = False, **kwargs) -> Any:
        """Score clips.

        Args:
            vclips: ``{sample_type: [B, C, T, H, W]}`` normalised clips.
            inference: eval mode + no grad (the previous train/eval mode is restored afterwards); otherwise
                train mode with gradients.
            reduce_scores: add the branches' score maps; else return the list of maps (one per branch).
            pooled: with ``reduce_scores``, average the map to one score per clip, ``[B]``.
            return_pooled_feats: also return ``{key: [B, C_feat]}`` spatio-temporally averaged features.

        Returns:
            ``[B, 1, D', H', W']`` score map (the sum over branches), ``[B]`` if ``pooled``, or a list of maps.
        """
        if inference:
            was_training = self.training
            self.eval()
            try:
                with torch.no_grad():
                    return self._run(vclips, return_pooled_feats, reduce_scores, pooled, **kwargs)
            finally:
                self.train(was_training)
        self.train()
        return self._run(vclips, return_pooled_feats, reduce_scores, pooled, **kwargs)
