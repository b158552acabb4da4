"""Video backbones by name: a registry of builders and the small interface the evaluator and the loader use.

A backbone is any ``nn.Module`` with

* ``forward_features(x)``: normalised clips ``[B, C, T, H, W]`` -> feature map ``[B, num_features, T', H', W']``
  (the regression head scores every position of it);
* ``num_features``: the channels of that map;
* optionally ``checkpoint_filter(state, init_fragment_bias_from_relative=False) -> (state, notes)``, beside the
  model (timm's ``checkpoint_filter_fn`` convention): turns a backbone-only state dict (a Kinetics-400 release
  or a bare backbone file) into the model's own keys. Without it such files load as they are.

A builder is a callable ``(checkpoint: bool = False, **overrides) -> backbone`` (``checkpoint``: recompute
blocks in the backward pass where the model supports it). A new backbone is one file that defines the model
and registers its builder::

    @register_backbone("my_video_net")
    def my_video_net(checkpoint: bool = False, **overrides) -> nn.Module:
        return MyVideoNet(**overrides)

after which ``model.args.backbone_size: my_video_net`` (or ``backbone.<key>.type``) builds it; option files
load such a file with ``plugins: [path/to/my_video_net.py]``.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Protocol, runtime_checkable

from torch import Tensor, nn

from samacore.registry import Registry

__all__ = ["BACKBONES", "Backbone", "backbone_names", "build_backbone", "is_backbone", "register_backbone"]

Builder = Callable[..., nn.Module]

#: backbone name -> builder
BACKBONES: Registry[Builder] = Registry("backbone")


@runtime_checkable
class Backbone(Protocol):
    """What the evaluator and the checkpoint loader rely on (see the module docstring)."""

    num_features: int

    def forward_features(self, x: Tensor, **kwargs: Any) -> Tensor: ...


def is_backbone(module: nn.Module) -> bool:
    return isinstance(module, Backbone)


def register_backbone(name: str, builder: Optional[Builder] = None, replace: bool = False):
    """Make ``builder`` buildable by ``name`` (e.g. from the YAML ``backbone_size``); a decorator without
    ``builder``."""
    return BACKBONES.register(name, builder, replace=replace)


def backbone_names() -> List[str]:
    return sorted(BACKBONES)


def build_backbone(name: str, checkpoint: bool = False, **overrides: Any) -> nn.Module:
    """Build a registered backbone (``ValueError`` listing the registered names for an unknown one)."""
    model = BACKBONES.get(name)(checkpoint=checkpoint, **overrides)
    if not is_backbone(model):
        raise TypeError(f"backbone {name!r} built a {type(model).__name__}, which lacks forward_features / "
                        "num_features (see samavqa.models.backbones)")
    return model
