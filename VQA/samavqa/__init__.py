"""SAMA for video quality assessment: sampling, datasets, models and the train / finetune / test commands.

Scoring from Python (see :func:`samavqa.score.load_scorer`)::

    import samavqa
    scorer = samavqa.load_scorer()            # the released weights, else the newest checkpoint trained here
    scorer("a.mp4")                           # raw score; scorer("a.mp4", calibrated=True) on the MOS scale
    scorer(["a.mp4", "b.mkv"])                # a list of scores
    scorer(samavqa.read_frames("a.mp4"))      # a decoded video, uint8 [T, H, W, 3] (or [3, T, H, W])
"""
from .temporal import FragmentSampleFrames, SampleFrames
from .sampling import SAMPLE_TYPES, canonical_sample_type, get_single_sample
from .models import DiViDeAddEvaluator, VQAHead, load_vqa_weights
from .datasets import FineTuneDataset, FusionDataset, decode_frames, list_videos
from .labels import read_label_file
from .decoders import read_frames
from .score import VideoScorer, load_scorer

__all__ = [
    "FragmentSampleFrames",
    "SampleFrames",
    "SAMPLE_TYPES",
    "canonical_sample_type",
    "get_single_sample",
    "DiViDeAddEvaluator",
    "VQAHead",
    "load_vqa_weights",
    "FusionDataset",
    "FineTuneDataset",
    "decode_frames",
    "list_videos",
    "read_label_file",
    "read_frames",
    "load_scorer",
    "VideoScorer",
]
