"""``python VQA/export_onnx.py --ckpt CKPT [--options OPT | -m NAME] --output model.onnx`` (``sama-export-vqa``).

Exports the model :func:`samavqa.score.load_scorer` builds for the checkpoint (the same option and checkpoint
resolution as ``VQA/vqa.py``) as the per-clip graph described in :mod:`samacore.onnx_export`: one input per
branch, ``[clips, 3, T, H, W]``, the score map out; the scorer keeps splitting videos into clips and averaging the
map. The clip shape comes from the options' test ``sample_types`` (``clip_len`` frames of ``fragments_h*fsize_h x
fragments_w*fsize_w``, or ``size_h x size_w`` for ``resize`` / ``crop`` branches).
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from samacore import onnx_export
from samacore.runs import USER_ERRORS

from .models import DiViDeAddEvaluator
from .presets import PRESETS
from .schema import refuse_video_shaped_for

__all__ = ["ClipScoreMap", "clip_shape", "exportable", "main"]


class ClipScoreMap(nn.Module):
    """``forward(*clips)`` in the order of ``keys`` -> the evaluator's inference score map ``[clips, 1, D, H', W']``
    (a positional-argument face of :class:`DiViDeAddEvaluator` for tracing)."""

    def __init__(self, evaluator: DiViDeAddEvaluator, keys: Sequence[str]) -> None:
        super().__init__()
        self.evaluator, self.keys = evaluator, list(keys)

    def forward(self, *clips: Tensor) -> Tensor:
        return self.evaluator(dict(zip(self.keys, clips)), inference=True)


def clip_shape(key: str, opts: Mapping[str, Any]) -> List[int]:
    """``[num_clips, 3, T, H, W]`` of the test clips of branch ``key`` with sampling options ``opts`` (fixed-shape
    sampling: :func:`exportable` refuses clips shaped like each video first)."""
    if key.split("_")[0] in ("resize", "crop"):
        h, w = int(opts.get("size_h", 224)), int(opts.get("size_w", 224))
    else:
        h = int(opts.get("fragments_h", 7)) * int(opts.get("fsize_h", 32))
        w = int(opts.get("fragments_w", 7)) * int(opts.get("fsize_w", 32))
    return [int(opts.get("num_clips", 1)), 3, int(opts.get("clip_len", 32)), h, w]


def exportable(args: argparse.Namespace) -> Tuple[nn.Module, Dict[str, Tensor], str, Dict[str, Any]]:
    """The scorer's model for ``args`` (``--ckpt``, ``--options``, ``-m``, ``--stype``) wrapped for tracing, an
    example input per branch, the output name and the metadata."""
    from .score import load_scorer  # the scorer's resolution of checkpoint, options and sampling

    scorer = load_scorer(args.ckpt, args.options, stype=args.stype, device="cpu",
                         trust_checkpoint=args.trust_checkpoint, model=getattr(args, "model", None))
    # a graph has one clip shape: sampling whose clips follow each video (arp_resize, arp_fragments, original, resize
    # with arp: true) is refused, though a PyTorch Video Swin scores such clips up to its base input size
    refuse_video_shaped_for(scorer.stype, scorer.sample_types,
                            f"--stype {args.stype}" if args.stype else f"stype {scorer.stype}",
                            "an ONNX graph takes one fixed clip shape")
    keys = list(scorer.sample_types)
    inputs = {k: torch.randn(clip_shape(k, scorer.sample_types[k])) for k in keys}
    meta = onnx_export.scorer_metadata("vqa", scorer.stype, scorer.sample_types, scorer.calibration,
                                       scorer.checkpoint)
    return ClipScoreMap(scorer.model, keys).eval(), inputs, "score_map", meta


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = onnx_export.export_parser("vqa", "VQA", ckpt_required=False)
    p.add_argument("-m", "--model", choices=PRESETS.names(), metavar="NAME",
                   help=f"a released model by name ({', '.join(PRESETS)}): its option file (and, without --ckpt, "
                        "its weight file)")
    args = p.parse_args(argv)
    if not args.ckpt and not args.model:
        p.error("give --ckpt CKPT, or -m NAME for a released model's weight file")
    return onnx_export.run_export(args, exportable, USER_ERRORS + (ValueError,))
