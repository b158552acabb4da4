"""The SAMA image-quality model: a Swin-V2 encoder and a per-token MLP regression head.

The encoder is timm's Swin Transformer V2. With Microsoft's checkpoint remapped by timm's filter (see
``checkpoints.py``) it computes the same function as Microsoft's reference code, which the original SAMA IQA
model embeds. The quality score of an image is the mean of the per-token scores of the head.
"""
from __future__ import annotations

from typing import Any, Sequence, Tuple, Union

import timm
import torch
from torch import nn

DEFAULT_BACKBONE = "swinv2_tiny_window8_256"
# Names the original option files used for the same encoder.
BACKBONE_ALIASES = {"swin_image_v2": DEFAULT_BACKBONE, "swinv2_tiny": DEFAULT_BACKBONE}


class IQAHead(nn.Module):
    """Per-token regression MLP: dropout, Linear(C -> hidden), GELU, dropout, Linear(hidden -> 1).

    Input ``[..., C]`` features, output ``[..., 1]`` scores. The same dropout module is applied twice, as in
    the original head.
    """

    def __init__(self, in_channels: int = 768, hidden_channels: int = 64, dropout_ratio: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.fc1 = nn.Linear(in_channels, hidden_channels)
        self.fc2 = nn.Linear(hidden_channels, 1)
        self.gelu = nn.GELU()

    def token_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token quality scores on the token grid: ``[B, 3, H, W]`` -> ``[B, H/32, W/32]`` (``[B, 8, 8]``).

        Their mean over the grid is :meth:`forward`'s score (up to float rounding).
        """
        feats = self.backbone.forward_features(x)  # [B, H', W', C]
        return self.vqa_head(feats)[..., 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.gelu(self.fc1(self.dropout(x)))))


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class IQAModel(nn.Module):
    """Swin-V2 backbone + :class:`IQAHead`; ``forward`` maps ``[B, 3, H, W]`` images to ``[B]`` scores.

    Args:
        backbone: a timm Swin-V2 model name (default ``swinv2_tiny_window8_256``, the paper's encoder).
        img_size: input size ``(H, W)``; the paper uses 256x256 (8x8 fragments of 32x32 pixels).
        drop_path_rate: stochastic depth of the encoder (0.2 as the original IQA encoder).
        hidden_channels, dropout_ratio: head sizes (64 and 0.5 as the original).
        **backbone_kwargs: forwarded to ``timm.create_model`` (e.g. ``embed_dim``, ``depths``, ``num_heads``,
            ``window_size`` for a small test model). No pretrained weights are fetched: load a checkpoint with
            :func:`samaiqa.checkpoints.load_into_model` instead.

    Attributes ``backbone`` and ``vqa_head`` carry the original module names, so the optimiser's backbone
    learning-rate multiplier applies by name.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        img_size: Union[int, Sequence[int]] = 256,
        drop_path_rate: float = 0.2,
        hidden_channels: int = 64,
        dropout_ratio: float = 0.5,
        **backbone_kwargs: Any,
    ) -> None:
        super().__init__()
        name = BACKBONE_ALIASES.get(backbone, backbone)
        if not name.startswith("swinv2"):
            raise ValueError(f"IQAModel needs a timm Swin-V2 backbone (e.g. {DEFAULT_BACKBONE!r}), got {backbone!r}")
        self.img_size = _pair(img_size)
        # Constructor arguments, stored in checkpoints so a saved model can be rebuilt.
        self.config = dict(
            backbone=name,
            img_size=list(self.img_size),
            drop_path_rate=drop_path_rate,
            hidden_channels=hidden_channels,
            dropout_ratio=dropout_ratio,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in backbone_kwargs.items()},
        )
        self.backbone = timm.create_model(
            name,
            pretrained=False,
            num_classes=0,  # no ImageNet classifier: the head below replaces it
            img_size=self.img_size,
            drop_path_rate=drop_path_rate,
            **backbone_kwargs,
        )
        self.vqa_head = IQAHead(self.backbone.num_features, hidden_channels, dropout_ratio)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder tokens after the final LayerNorm: ``[B, 3, H, W]`` -> ``[B, H/32 * W/32, C]`` (``[B, 64, 768]``)."""
        feats = self.backbone.forward_features(x)  # [B, H', W', C] (timm's NHWC layout)
        return feats.flatten(1, 2)

    def token_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token quality scores on the token grid: ``[B, 3, H, W]`` -> ``[B, H/32, W/32]`` (``[B, 8, 8]``).

        Their mean over the grid is :meth:`forward`'s score (up to float rounding).
        """
        feats = self.backbone.forward_features(x)  # [B, H', W', C]
        return self.vqa_head(feats)[..., 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised images -> ``[B]`` quality scores (mean of the per-token head outputs)."""
        return self.vqa_head(self.tokens(x)).flatten(1).mean(1)
