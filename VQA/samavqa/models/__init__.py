"""VQA models: Video Swin backbone with gated relative position biases, regression head, evaluator, weight loading."""
from .swin3d import (
    SwinConfig,
    SwinTransformer3D,
    backbone_config,
    backbone_names,
    build_backbone,
    register_backbone,
)
from .head import VQAHead
from .evaluator import DiViDeAddEvaluator
from .checkpoints import detect_format, load_vqa_weights

__all__ = [
    "SwinConfig",
    "SwinTransformer3D",
    "backbone_config",
    "backbone_names",
    "build_backbone",
    "register_backbone",
    "VQAHead",
    "DiViDeAddEvaluator",
    "detect_format",
    "load_vqa_weights",
]
