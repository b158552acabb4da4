"""Exponential moving average of model parameters, as the original recipe applies it after every step."""
from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """Keeps ``module``, a copy of the model whose *parameters* follow ``d_t * ema + (1 - d_t) * param``.

    ``d_t`` is the constant ``decay`` (the original), or with ``warmup`` ``min(decay, (1 + t) / (10 + t))`` at the
    ``t``-th update (``t`` counted from 0, kept in :attr:`updates`): early updates average over few steps, so a
    short run's EMA is not left holding mostly its initial weights (0.999 over 128 steps keeps 88 % of them).
    The idea is timm's model-EMA warm-up (``timm.utils.ModelEmaV3(use_warmup=True)``, which refers to TensorFlow's
    ``ExponentialMovingAverage``); the ramp ``(1 + t) / (10 + t)`` is TensorFlow's ``num_updates`` formula.

    Buffers are not averaged (the original copies the model once and then only updates parameters).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = False) -> None:
        self.decay = decay
        self.warmup = warmup
        self.updates = 0  # EMA updates so far (saved in the resumable state: a resumed run continues the ramp)
        self.module = copy.deepcopy(unwrap(model))
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def decay_at(self, t: int) -> float:
        """The decay of update ``t`` (0-based)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.decay_at(self.updates)
        src = dict(unwrap(model).named_parameters())
        for name, p in self.module.named_parameters():
            p.mul_(decay).add_(src[name].detach(), alpha=1 - decay)
        self.updates += 1

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
