"""SAMA for image quality assessment: sampling, the IQA model (Swin-V2 or any timm encoder), checkpoints, label
readers, datasets.

    from samaiqa import IQAModel, ImageDataset, sample_image, read_info, load_into_model

Scoring from Python (see :func:`samaiqa.score.load_scorer`)::

    import samaiqa
    scorer = samaiqa.load_scorer("my_checkpoint.pth")
    scorer("photo.jpg")                       # raw score; scorer("photo.jpg", calibrated=True) on the MOS scale
    scorer(["a.png", "b.jpg"])                # a list of scores
    scorer(image_tensor)                      # [3, H, W] float in [0, 1] (or uint8 [H, W, 3]); [B, 3, H, W] -> list
"""
from .checkpoints import load_into_model, save_model_checkpoint
from .datasets import ImageDataset, ImageReadError, load_image
from .labels import (
    LABEL_FORMATS, LabelError, LabelSet, missing_files, read_info, read_pkl,
    read_txt,
)
from .model import IQAHead, IQAModel
from .sampling import IQA_SAMPLE_TYPES, sample_image
from .score import ImageScorer, Scorer, load_scorer

__all__ = [
    "IQAHead",
    "IQAModel",
    "IQA_SAMPLE_TYPES",
    "ImageDataset",
    "ImageReadError",
    "LabelError",
    "LabelSet",
    "load_image",
    "load_into_model",
    "LABEL_FORMATS",
    "missing_files",
    "read_info",
    "read_pkl",
    "read_txt",
    "sample_image",
    "save_model_checkpoint",
    "load_scorer",
    "ImageScorer",
    "Scorer",
]
