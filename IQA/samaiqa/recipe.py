"""The SAMA IQA recipe's own pieces for the shared training loop (:mod:`samacore.trainer`): the model of the
options, the training step (SmoothL1 on the image scores, or the objective the options name) and inference."""
from __future__ import annotations

from typing import Any, Callable, List, Mapping, Tuple

import torch
from torch import nn

from samacore import engine
from samacore.losses import LOSSES
from samacore.options import OptionError
from samacore.precision import full_precision
from samacore.registry import Registry
from samacore.schedules import warmup_constant, warmup_cosine

from .datasets import sampling_args
from .model import DEFAULT_BACKBONE, IQAModel

__all__ = ["LR_SCHEDULES", "build_model", "make_step_fn", "predict_fn", "schedule"]


def build_model(opt: Mapping[str, Any]) -> IQAModel:
    """The IQA model for these options: the optional ``model`` block, input size from the ``data`` grid."""
    m = dict(opt.get("model") or {})
    s = sampling_args(opt["data"])
    img_size = (s["fragments_h"] * s["fsize_h"], s["fragments_w"] * s["fsize_w"])
    try:
        return IQAModel(
            backbone=m.get("backbone", DEFAULT_BACKBONE),
            img_size=img_size,
            drop_path_rate=float(m.get("drop_path_rate", 0.2)),
            hidden_channels=int(m.get("hidden_channels", 64)),
            dropout_ratio=float(m.get("dropout_ratio", 0.5)),
            **dict(m.get("backbone_args") or {}),
        )
    except (TypeError, ValueError, RuntimeError) as e:  # timm's own argument checks
        raise OptionError(f"cannot build the model from options.model {m}: {e}") from None


#: ``lr_schedule``: the learning-rate multiplier per iteration after the warm-up, by name, built from ``(warm-up
#: iterations, all iterations)``. A new schedule is one entry.
LR_SCHEDULES: Registry[Callable[[int, int], Callable[[int], float]]] = Registry("learning-rate schedule")
# the original's: max(1e-2, it / warmup), then 1
LR_SCHEDULES.register("constant", lambda warmup, total: warmup_constant(warmup))
# the VQA recipe's linear warm-up and cosine: a short run ends near lr 0
LR_SCHEDULES.register("cosine", warmup_cosine)


def schedule(opt: Mapping[str, Any]) -> Callable[[List[int]], Callable[[int], float]]:
    """The learning rate per iteration: warm-up over ``warmup_epochs`` (default 5) of the training loader, then
    the ``lr_schedule`` of :data:`LR_SCHEDULES` over all ``num_epochs`` (default ``constant``, as the original)."""
    def per_iteration(lengths: List[int]) -> Callable[[int], float]:
        warmup = max(1, int(float(opt.get("warmup_epochs", 5)) * lengths[0]))
        return LR_SCHEDULES.get(opt.get("lr_schedule", "constant"))(warmup, int(opt.get("num_epochs", 1)) * lengths[0])

    return per_iteration


def make_step_fn(loss: str = "smooth_l1") -> engine.StepFn:
    """The training step with the objective named by the options' ``loss`` (:data:`samacore.losses.LOSSES`;
    default ``smooth_l1``, the original's SmoothL1 on the label scale), computed on the ``[B]`` scores in fp32
    (also under bf16 autocast).

    Under torchrun the loss is taken over the global batch (:func:`samacore.engine.gather_batch`), so the
    gradient is that of a one-process run with the same global batch, also for a short last batch.
    """
    objective = LOSSES.get(loss)

    def step_fn(model: nn.Module, batch: Mapping[str, Any], device: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = batch["image"].to(device, non_blocking=True)
        y = batch["label"].to(device).float()
        scores, y = engine.gather_batch(model(x).view(y.shape).float(), y)
        with full_precision(device):
            loss_value = objective(scores, y)
        return loss_value, scores.detach(), y

    return step_fn


def predict_fn(model: nn.Module, batch: Mapping[str, Any], device: str) -> Tuple[List[str], torch.Tensor, Any]:
    """``(names, [B] scores, labels)`` of a batch of test-mode samples."""
    x = batch["image"].to(device, non_blocking=True)
    return list(batch["name"]), model(x).float(), batch["label"]
