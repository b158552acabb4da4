"""Quality regression head applied at every position of the backbone feature map."""
from __future__ import annotations

from torch import Tensor, nn

__all__ = ["VQAHead"]


class VQAHead(nn.Module):
    """Per-position MLP (as 1x1x1 convolutions): ``[B, C, D, H, W] -> [B, 1, D, H, W]`` score map.

    dropout -> conv C->hidden (``fc_hid``) -> GELU -> dropout -> conv hidden->1 (``fc_last``).
    The inference score of a clip is the mean of the map (see the evaluator).
    """

    def __init__(self, in_channels: int = 768, hidden_channels: int = 64, dropout_ratio: float = 0.5, **unused):
        super().__init__()
        # extra YAML keys are accepted (and ignored) as the original does
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.dropout = nn.Dropout(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.fc_hid = nn.Conv3d(in_channels, hidden_channels, kernel_size=1)
        self.gelu = nn.GELU()
        self.fc_last = nn.Conv3d(hidden_channels, 1, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_last(self.dropout(self.gelu(self.fc_hid(self.dropout(x)))))
