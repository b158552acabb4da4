"""The SAMA image-quality model: a timm encoder and a per-token MLP regression head.

The paper's encoder is timm's Swin Transformer V2. With Microsoft's checkpoint remapped by timm's filter (see
``checkpoints.py``) it computes the same function as Microsoft's reference code, which the original SAMA IQA
model embeds. The quality score of an image is the mean of the per-token scores of the head.

Any timm model (a built-in one, or one a plugin file adds with timm's ``@register_model``) can be the encoder
if it has timm's backbone interface: ``forward_features`` giving a feature map (``NHWC`` as Swin, ``NCHW`` as
CNNs) or tokens on a square grid (ViTs, after their prefix tokens), ``num_features`` channels, and, for loading
its ImageNet weights, a ``checkpoint_filter_fn`` beside it in its module.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Dict, Sequence, Tuple, Union

import timm
import torch
from timm.models import register_model
from torch import nn

DEFAULT_BACKBONE = "swinv2_tiny_window8_256"
#: the encoder of the CPU demo (IQA/options/examplar-sama-iqa.yml), registered with timm below
DEMO_BACKBONE = "swinv2_shallow_window4_128"
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.gelu(self.fc1(self.dropout(x)))))


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def create_backbone(name: str, img_size: Tuple[int, int], drop_path_rate: float, **kwargs: Any) -> nn.Module:
    """timm model ``name`` without classifier and without downloaded weights, checked against the interface.

    ``img_size`` goes to models that take it (transformers size their position tables by it); convolutional
    models take any size and do not accept the argument.
    """
    common = dict(pretrained=False, num_classes=0, drop_path_rate=drop_path_rate, **kwargs)
    try:
        model = timm.create_model(name, img_size=img_size, **common)
    except TypeError as e:
        if "img_size" not in str(e):
            raise
        model = timm.create_model(name, **common)
    missing = [a for a in ("forward_features", "num_features") if not hasattr(model, a)]
    if missing:
        raise ValueError(f"timm model {name!r} lacks {', '.join(missing)}: it cannot be the IQA encoder")
    return model


def feature_grid(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``backbone.forward_features(x)`` as a token grid ``[B, H', W', C]`` (timm's ``NHWC``, ``NCHW`` or tokens)."""
    feats = backbone.forward_features(x)
    if feats.dim() == 4:
        return feats if getattr(backbone, "output_fmt", "NCHW") == "NHWC" else feats.permute(0, 2, 3, 1)
    if feats.dim() == 3:  # [B, prefix + N, C]: drop the class / register tokens, lay the rest on a square grid
        tokens = feats[:, int(getattr(backbone, "num_prefix_tokens", 0)):]
        side = int(round(tokens.shape[1] ** 0.5))
        if side * side == tokens.shape[1]:
            return tokens.reshape(tokens.shape[0], side, side, tokens.shape[2])
    raise ValueError(f"{type(backbone).__name__}.forward_features gave {tuple(feats.shape)}: expected a feature map "
                     "[B, H, W, C] / [B, C, H, W] or tokens on a square grid")


def checkpoint_filter(backbone: nn.Module) -> Callable[[Dict[str, torch.Tensor], nn.Module], Dict[str, torch.Tensor]]:
    """The ``checkpoint_filter_fn`` timm keeps beside the encoder's model (original layout -> timm's); identity if
    its module has none."""
    return getattr(sys.modules[type(backbone).__module__], "checkpoint_filter_fn", lambda state, model: dict(state))


class IQAModel(nn.Module):
    """timm encoder + :class:`IQAHead`; ``forward`` maps ``[B, 3, H, W]`` images to ``[B]`` scores.

    Args:
        backbone: a timm model name (default ``swinv2_tiny_window8_256``, the paper's encoder; see the module
            docstring for what else fits).
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
        if not timm.is_model(name):
            raise ValueError(f"unknown timm model {backbone!r} (e.g. {DEFAULT_BACKBONE!r}; timm.list_models() "
                             "lists them)")
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
        # no ImageNet classifier (num_classes=0): the head below replaces it
        self.backbone = create_backbone(name, self.img_size, drop_path_rate, **backbone_kwargs)
        self.vqa_head = IQAHead(self.backbone.num_features, hidden_channels, dropout_ratio)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder tokens after the final LayerNorm: ``[B, 3, H, W]`` -> ``[B, H/32 * W/32, C]`` (``[B, 64, 768]``)."""
        return feature_grid(self.backbone, x).flatten(1, 2)

    def token_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token quality scores on the token grid: ``[B, 3, H, W]`` -> ``[B, H/32, W/32]`` (``[B, 8, 8]``).

        Their mean over the grid is :meth:`forward`'s score (up to float rounding).
        """
        return self.vqa_head(feature_grid(self.backbone, x))[..., 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised images -> ``[B]`` quality scores (mean of the per-token head outputs)."""
        return self.vqa_head(self.tokens(x)).flatten(1).mean(1)


@register_model
def swinv2_shallow_window4_128(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """The CPU demo's encoder, named for what it is: timm's Swin-V2 with two stages of depth 1 (embed 48, 2 / 4
    heads) and window 4 on 128x128 inputs (4x4 fragments of 32). Trained from scratch on the examplar photos, it
    held out better than one stage at window 8, at a third of the step time (see the option file)."""
    args = dict(img_size=128, window_size=4, embed_dim=48, depths=(1, 1), num_heads=(2, 4))
    return timm.create_model(DEFAULT_BACKBONE, pretrained=pretrained, **{**args, **kwargs})
