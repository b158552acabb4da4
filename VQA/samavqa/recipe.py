"""The SAMA VQA recipe's own pieces for the shared training loop (:mod:`samacore.trainer`): the model of the
options, the training step and inference.

Training step (SAMA / FAST-VQA): the score map summed over branches, ``y = map.mean((-2, -1)).sum(-1)`` (spatial
mean, temporal sum), loss ``plcc_loss + 0.3 * rank_loss`` (:func:`samacore.losses.vqa_loss`) in fp32 over the
global batch. Inference: the test clips of a video are split apart, scored one by one in the same call, and the
video's score is the mean of its score maps over clips and positions.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from samacore import engine
from samacore.engine import PredictFn, StepFn
from samacore.losses import vqa_loss
from samacore.options import OptionError
from samacore.precision import full_precision
from samacore.schedules import warmup_cosine

from .models import DiViDeAddEvaluator

__all__ = ["build_model", "make_predict_fn", "make_step_fn", "schedule", "split_clips"]


def build_model(opt: Mapping[str, Any], device: Optional[str] = None) -> DiViDeAddEvaluator:
    """The evaluator of ``model.args`` (checked by :mod:`samavqa.schema` when the options were loaded), on
    ``device`` (None: where torch builds it, e.g. the meta device of :func:`samacore.checkpoint.build_with_weights`).
    Values the schema does not check (inside ``vqa_head``, say) that the layers refuse are an :class:`OptionError`."""
    args = dict(opt["model"].get("args") or {})
    try:
        net = DiViDeAddEvaluator(**args)
    except (TypeError, ValueError, RuntimeError) as e:  # the layers' own checks (a dropout of 1.5, a size of -1)
        raise OptionError(f"cannot build the model from options.model.args {args}: {e}") from None
    return net if device is None else net.to(device)


def schedule(opt: Mapping[str, Any]) -> Callable[[List[int]], Callable[[int], float]]:
    """The learning rate per iteration: linear warm-up over ``warmup_epochs``, then cosine over all
    ``(num_epochs + l_num_epochs)`` epochs. As in the original, the warm-up counts every training loader and the
    cosine horizon uses the last loader's length."""
    def per_iteration(lengths: List[int]) -> Callable[[int], float]:
        warmup = sum(int(float(opt.get("warmup_epochs", 0)) * n) for n in lengths)
        return warmup_cosine(warmup, int((int(opt["num_epochs"]) + int(opt.get("l_num_epochs", 0))) * lengths[-1]))

    return per_iteration


def _clips(batch: Mapping[str, Any], branches: Sequence[str], device: str) -> Dict[str, torch.Tensor]:
    """The ``[B, C, T, H, W]`` clips of a batch that feed one of ``branches`` (keys ``<branch>[_suffix]``)."""
    return {k: batch[k].to(device, non_blocking=True) for k in batch
            if isinstance(batch[k], torch.Tensor) and k.split("_")[0] in branches and batch[k].dim() == 5}


def make_step_fn(branches: Sequence[str]) -> StepFn:
    """Training step: ``y = map.mean((-2, -1)).sum(-1)`` (spatial mean, temporal sum), loss PLCC + 0.3 rank."""

    def step(model: nn.Module, batch: Mapping[str, Any], device: str):
        video = _clips(batch, branches, device)
        y = batch["gt_label"].float().to(device).unsqueeze(-1)  # [B, 1]
        maps = model(video, inference=False, reduce_scores=False)  # list of [B, 1, D, H, W]
        y_pred = maps[0]
        for m in maps[1:]:
            y_pred = y_pred + m
        y_pred = y_pred.mean((-2, -1)).sum(-1).float()  # [B, 1]
        y_pred, y = engine.gather_batch(y_pred, y)  # torchrun: the loss sees the global batch
        with full_precision(device):  # the loss in fp32, also under bf16 autocast
            loss = vqa_loss(y_pred, y)
        return loss, y_pred.detach(), y

    return step


def split_clips(video: torch.Tensor, num_clips: int) -> torch.Tensor:
    """``[B, C, T, H, W]`` holding ``num_clips`` clips along T -> ``[B*num_clips, C, T/num_clips, H, W]``
    (video-major)."""
    b, c, t, h, w = video.shape
    if t % num_clips:
        raise ValueError(f"{t} frames cannot be split into {num_clips} clips")
    return video.reshape(b, c, num_clips, t // num_clips, h, w).permute(0, 2, 1, 3, 4, 5).reshape(
        b * num_clips, c, t // num_clips, h, w)


def make_predict_fn(branches: Sequence[str]) -> PredictFn:
    """Inference: split test clips, score them, average every video's score map over clips and positions."""

    def predict(model: nn.Module, batch: Mapping[str, Any], device: str):
        video = _clips(batch, branches, device)
        b = batch["gt_label"].shape[0]
        for k in video:
            video[k] = split_clips(video[k], int(batch["num_clips"][k][0]))
        scores = model(video, inference=True)  # [B*clips, 1, D, H, W]
        preds = scores.float().reshape(b, -1).mean(1)
        return list(batch["name"]), preds, batch["gt_label"]

    return predict
