"""Losses of FAST-VQA / SAMA, and the training objectives by name (:data:`LOSSES`).

``plcc_loss`` / ``rank_loss`` expect predictions and labels of shape ``[B, 1]``; the objectives in :data:`LOSSES`
take ``[B]`` or ``[B, 1]`` (both the same shape).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .registry import Registry


def plcc_loss(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Differentiable PLCC loss: standardise both, then mix an MSE term and a correlation-weighted MSE term."""
    sigma_hat, m_hat = torch.std_mean(y_pred, unbiased=False)
    y_pred = (y_pred - m_hat) / (sigma_hat + 1e-8)
    sigma, m = torch.std_mean(y, unbiased=False)
    y = (y - m) / (sigma + 1e-8)
    loss0 = F.mse_loss(y_pred, y) / 4
    rho = torch.mean(y_pred * y)
    loss1 = F.mse_loss(rho * y_pred, y) / 4
    return ((loss0 + loss1) / 2).float()


def rank_loss(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pairwise hinge ranking loss over the batch, normalised by its own maximum (a batch of one gives 0)."""
    n = y_pred.shape[0]
    if n < 2:
        return y_pred.sum() * 0.0
    ranking = F.relu((y_pred - y_pred.t()) * torch.sign(y.t() - y))
    scale = 1 + torch.max(ranking)
    return (torch.sum(ranking) / n / (n - 1) / scale).float()


def vqa_loss(y_pred: torch.Tensor, y: torch.Tensor, rank_weight: float = 0.3) -> torch.Tensor:
    """The SAMA training objective: ``plcc_loss + 0.3 * rank_loss``."""
    return plcc_loss(y_pred, y) + rank_weight * rank_loss(y_pred, y)


def smooth_l1_loss(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SmoothL1 between scores and labels on the label scale: the original SAMA IQA objective."""
    return F.smooth_l1_loss(y_pred, y)


def _plcc_rank(y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return vqa_loss(y_pred.reshape(-1, 1), y.reshape(-1, 1))


#: training objectives by option name (the IQA options' ``loss:``). ``smooth_l1`` regresses the labels themselves;
#: ``plcc_rank`` (the VQA objective) is scale-free, so a model trained from scratch need not first climb to the
#: label range (scores then come out on the model's own scale: calibrated ones use the checkpoint's label_stats).
LOSSES: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("loss", "losses")
LOSSES.register("smooth_l1", smooth_l1_loss)
LOSSES.register("plcc_rank", _plcc_rank)
