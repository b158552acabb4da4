"""VQA models: backbones by name (the Video Swin with gated relative position biases is registered), the
regression head, the evaluator and weight loading."""
from .backbones import BACKBONES, Backbone, backbone_names, build_backbone, register_backbone
from .swin3d import SwinConfig, SwinTransformer3D
from .head import VQAHead
from .evaluator import DiViDeAddEvaluator
from .checkpoints import detect_format, load_vqa_weights

__all__ = [
    "BACKBONES",
    "Backbone",
    "SwinConfig",
    "SwinTransformer3D",
    "backbone_names",
    "build_backbone",
    "register_backbone",
    "VQAHead",
    "DiViDeAddEvaluator",
    "detect_format",
    "load_vqa_weights",
]
