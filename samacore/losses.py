"""Losses of FAST-VQA / SAMA. Both expect predictions and labels of shape [B, 1]."""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
