"""SAMA for video quality assessment: sampling, datasets, models and the train / finetune / test commands."""
from .temporal import FragmentSampleFrames, SampleFrames
from .sampling import SAMPLE_TYPES, canonical_sample_type, get_single_sample, get_spatial_samples
from .models import DiViDeAddEvaluator, VQAHead, load_vqa_weights
from .datasets import FineTuneDataset, FusionDataset, decode_frames, list_videos
from .labels import read_label_file

__all__ = [
    "FragmentSampleFrames",
    "SampleFrames",
    "SAMPLE_TYPES",
    "canonical_sample_type",
    "get_single_sample",
    "get_spatial_samples",
    "DiViDeAddEvaluator",
    "VQAHead",
    "load_vqa_weights",
    "FusionDataset",
    "FineTuneDataset",
    "decode_frames",
    "list_videos",
    "read_label_file",
]
