"""Optimiser construction shared by the trainers: AdamW with a smaller learning rate for backbones."""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from .ema import unwrap


def build_param_groups(model: nn.Module, lr: float, backbone_lr_mult: float) -> List[dict]:
    """One group per direct child: children whose name contains ``backbone`` get ``lr * backbone_lr_mult``."""
    groups = []
    for name, child in unwrap(model).named_children():
        params = [p for p in child.parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": lr * backbone_lr_mult if "backbone" in name else lr, "name": name})
    return groups


def build_optimizer(model: nn.Module, lr: float, backbone_lr_mult: float = 0.1, wd: float = 0.05) -> torch.optim.AdamW:
    return torch.optim.AdamW(build_param_groups(model, lr, backbone_lr_mult), lr=lr, weight_decay=wd)
