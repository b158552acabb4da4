"""``python IQA/export_onnx.py --ckpt CKPT [--options OPT] --output model.onnx`` (``sama-export-iqa``).

Exports the model :func:`samaiqa.score.load_scorer` builds for the checkpoint (the same option and checkpoint
resolution as ``IQA/iqa.py``): input ``image`` ``[B, 3, H, W]`` (dynamic batch; ``H x W`` the sampling grid,
``fwin_h*fsize_h x fwin_w*fsize_w``), output ``score`` ``[B]`` (see :mod:`samacore.onnx_export`).
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from samacore import onnx_export
from samacore.runs import USER_ERRORS

__all__ = ["exportable", "main"]


def exportable(args: argparse.Namespace) -> Tuple[nn.Module, Dict[str, Tensor], str, Dict[str, Any]]:
    """The scorer's model for ``args`` (``--ckpt``, ``--options``, ``--stype``), a 2-image example input, the output
    name and the metadata."""
    from .score import load_scorer  # the scorer's resolution of checkpoint, options and sampling

    scorer = load_scorer(args.ckpt, args.options, stype=args.stype, device="cpu",
                         trust_checkpoint=args.trust_checkpoint)
    h, w = scorer.model.img_size
    meta = onnx_export.scorer_metadata("iqa", scorer.stype, scorer.data_args, scorer.calibration, scorer.checkpoint)
    return scorer.model.eval(), {"image": torch.randn(2, 3, h, w)}, "score", meta


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = onnx_export.export_parser("iqa", "IQA").parse_args(argv)
    return onnx_export.run_export(args, exportable, USER_ERRORS + (ValueError,))
