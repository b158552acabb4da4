"""Video quality datasets: label files, frame decoding (:mod:`samavqa.decoders`), temporal + spatial sampling,
normalisation.

An item is a dict::

    {<branch>: float [C, T, Sh, Sw] (normalised),  e.g. "fragments"
     "num_clips": {<branch>: int},                 test-time clips packed along T
     "frame_inds": {<branch>: int32 [T]},          decoded frame indices
     "gt_label": float,                            NaN for label-free folders
     "name": str}                                  file id as written in the label file

Each option branch (the keys of ``sample_types``, e.g. ``fragments``) names the model branch fed by it, while
``stype`` (top-level option) is the spatial sampling method applied to every branch -- as in SAMA, where a
``fragments`` branch is sampled with ``sama``.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from samacore import loaders
from samacore.options import REPO_ROOT, OptionError, check_keys, choice, non_negative_int, resolve_path
from samacore.registry import Registry
from samacore.sampling import DEFAULT_SAMPLE_TYPE

from .decoders import (VideoNotFoundError, VideoReadError, decode_frames,  # noqa: F401  (re-exported)
                       resolve_decoder)
from .labels import read_label_file
from .sampling import canonical_sample_type, check_sample_options, get_single_sample
from .temporal import FragmentSampleFrames, build_frame_sampler

__all__ = [
    "DATASETS",
    "FusionDataset",
    "FineTuneDataset",
    "register_dataset",
    "list_videos",
    "decode_frames",
    "check_files",
    "VideoReadError",
    "VideoNotFoundError",
    "skipping_loader",
    "MEAN",
    "STD",
    "VIDEO_EXTENSIONS",
]

# Kinetics / ImageNet statistics on the 0-255 scale, per RGB channel.
MEAN = torch.tensor([123.675, 116.28, 103.53])
STD = torch.tensor([58.395, 57.12, 57.375])

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".flv", ".wmv", ".mpg", ".mpeg")

# Keys a dataset's option block may hold. `augment` and `random_crop` exist in the original schema but have no
# effect there for these datasets: accepted for compatibility (the schema names them once in the log).
IGNORED_DATASET_KEYS = ("augment", "random_crop")
DATASET_KEYS = ("phase", "anno_file", "data_prefix", "sample_types", "data_backend", "num_threads",
                "decoder") + IGNORED_DATASET_KEYS
# Keys of one branch under `sample_types`: temporal (clip_len, frame_interval, num_clips, t_frag, frame_overflow:
# temporal.build_frame_sampler) + spatial sampling options. (The sampler checks each sample type's own keys more
# strictly; this union catches typos before decoding starts.)
BRANCH_KEYS = ("clip_len", "frame_interval", "num_clips", "t_frag", "frame_overflow", "fragments_h", "fragments_w",
               "fsize_h", "fsize_w", "aligned", "nfrags", "random", "random_upsample", "fallback_type", "size_h",
               "size_w", "arp", "random_crop", "short_edge", "short_fragments", "fsize", "train")


# ----------------------------------------------------------------------------------------------- video lists
def list_videos(data_prefix: str) -> List[Dict[str, Any]]:
    """Every video file directly in ``data_prefix`` (sorted by name), unlabelled (label NaN)."""
    if not os.path.isdir(data_prefix):
        raise FileNotFoundError(f"video folder not found: {data_prefix}")
    names = sorted(n for n in os.listdir(data_prefix) if n.lower().endswith(VIDEO_EXTENSIONS))
    if not names:
        raise FileNotFoundError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in {data_prefix}")
    return [dict(filename=os.path.join(data_prefix, n), fileid=n, label=math.nan) for n in names]


def _normalise_infos(video_infos: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Accept the original's ``{"filename", "label"[, "fileid"]}`` dicts; fill ``fileid`` with the basename."""
    out = []
    for i, info in enumerate(video_infos):
        if "filename" not in info:
            raise ValueError(f"video_infos[{i}] needs a 'filename' key, got {sorted(info)}")
        label = info.get("label", math.nan)
        item = dict(filename=str(info["filename"]), fileid=str(info.get("fileid", os.path.basename(info["filename"]))),
                    label=math.nan if label is None else float(label))
        if "source" in info:
            item["source"] = str(info["source"])
        out.append(item)
    return out


def check_files(infos: Sequence[Mapping[str, Any]], where: str) -> None:
    """FileNotFoundError naming the first missing videos, where they are listed, and how many, before any decoding."""
    missing = [i["filename"] + (f" (listed at {i['source']})" if i.get("source") else "")
               for i in infos if not os.path.isfile(i["filename"])]
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} missing in all)" if len(missing) > 5 else "")
        raise FileNotFoundError(f"{where}: video file(s) not found: {shown}")


def normalise(video: torch.Tensor) -> torch.Tensor:
    """``(video - MEAN) / STD`` per channel of a ``[C, T, H, W]`` video on the 0-255 scale -> float."""
    return (video.float() - MEAN.view(-1, 1, 1, 1)) / STD.view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------------------------- datasets
class _VideoQualityDataset(torch.utils.data.Dataset):
    """Shared item logic of :class:`FusionDataset` and :class:`FineTuneDataset`.

    What the trainers use of a data set: ``len``, items (see the module docstring), ``video_infos`` (``filename``,
    ``fileid``, ``label`` per video), ``labels`` and ``sample_types``.
    """

    #: keys its option block may hold
    OPTION_KEYS: Sequence[str] = DATASET_KEYS

    @classmethod
    def check_options(cls, opt: Mapping[str, Any], stype: str, where: str) -> None:
        """Check an option block (keys, ``data_backend``, every ``sample_types`` branch against the sample type
        ``stype``) before any file is read: :class:`OptionError` naming ``where.key`` and what is allowed. The
        options schema calls it for every data set when the option file is loaded, the constructor again."""
        check_keys(opt, cls.OPTION_KEYS, where)
        if "sample_types" not in opt or not isinstance(opt["sample_types"], Mapping) or not opt["sample_types"]:
            raise OptionError(f"{where}.sample_types must map branch names (e.g. fragments) to sampling options")
        choice(opt.get("data_backend", "disk"), ["disk"], f"{where}.data_backend")
        resolve_decoder(opt.get("decoder", "auto"), f"{where}.decoder")
        if "num_threads" in opt:  # decoder threads; 0: the decoder's own choice
            non_negative_int(opt["num_threads"], f"{where}.num_threads")
        for branch, sopt in opt["sample_types"].items():
            bwhere = f"{where}.sample_types.{branch}"
            check_keys(sopt, BRANCH_KEYS, bwhere, required=("clip_len", "num_clips", "frame_interval"))
            try:  # the global stype samples every branch, so its rules apply to the branch options
                check_sample_options(stype, sopt, bwhere)
                build_frame_sampler(sopt, bwhere)  # checks the temporal keys (t_frag must divide clip_len, ...)
            except ValueError as e:
                raise OptionError(str(e)) from None

    def _setup(self, opt: Mapping[str, Any], stype: str, is_train: bool, where: str) -> None:
        try:  # the constructors are public: a name from the caller is resolved here once (aliases too)
            stype = canonical_sample_type(stype)
        except ValueError as e:
            raise OptionError(f"stype: {e}") from None
        self.check_options(opt, stype, where)
        self.opt = opt
        self.stype = stype
        self.is_train = bool(is_train)
        self.phase = "train" if self.is_train else "test"
        self.num_threads = int(opt.get("num_threads", 1))
        self.decoder = resolve_decoder(opt.get("decoder", "auto"), f"{where}.decoder")
        self.sample_types: Dict[str, Dict[str, Any]] = {}
        self.samplers: Dict[str, FragmentSampleFrames] = {}
        for branch, sopt in opt["sample_types"].items():
            self.samplers[branch] = build_frame_sampler(sopt, f"{where}.sample_types.{branch}")
            self.sample_types[branch] = dict(sopt)

    def __len__(self) -> int:
        return len(self.video_infos)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        info = self.video_infos[index]
        videos, frame_inds = self.decode(info["filename"])
        return self.make_item(videos, frame_inds, info)

    def decode(self, path: str, progress: Optional[Callable[[int, int], None]] = None):
        """:func:`~samavqa.decoders.decode_frames` with this data set's samplers, threads and decoder."""
        return decode_frames(path, self.samplers, self.is_train, self.num_threads, self.decoder, progress)

    def make_item(self, videos: Mapping[str, torch.Tensor], frame_inds: Mapping[str, np.ndarray],
                  info: Mapping[str, Any]) -> Dict[str, Any]:
        """The item of decoded frames (``videos[branch]``: uint8 ``[C, T, H, W]``): sampled and normalised."""
        item: Dict[str, Any] = {}
        for branch, sopt in self.sample_types.items():
            sampled = get_single_sample(videos[branch], self.stype, self.is_train, **sopt)
            item[branch] = normalise(sampled)
        item["num_clips"] = {branch: int(sopt["num_clips"]) for branch, sopt in self.sample_types.items()}
        item["frame_inds"] = frame_inds
        item["gt_label"] = float(info["label"])
        item["name"] = info["fileid"]
        return item

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([i["label"] for i in self.video_infos], dtype=np.float64)


#: data set types the options' ``data.<key>.type`` names; a class registered here is built as
#: ``cls(args, stype=...)`` from its ``args`` block (see :class:`FusionDataset`)
DATASETS: Registry[type] = Registry("dataset type")


def register_dataset(cls: type) -> type:
    """Class decorator: make ``cls`` available as ``type: <its class name>`` in the options."""
    return DATASETS.register(cls.__name__, cls)


@register_dataset
class FusionDataset(_VideoQualityDataset):
    """Videos listed by a label file (``anno_file``, ``fileid,_,_,label`` lines) under ``data_prefix``.

    ``opt``: ``phase`` (train/test), ``anno_file`` (path; a list of ``{"filename", "label"}`` dicts; or null /
    absent to score every video directly in ``data_prefix``, unlabelled), ``data_prefix``, ``sample_types``,
    optional ``num_threads`` (decoder threads, default 1) and ``decoder`` (``auto``, ``decord``, ``pyav``: see
    :mod:`samavqa.decoders`). ``stype`` is the spatial sampling method.
    """

    @classmethod
    def check_options(cls, opt: Mapping[str, Any], stype: str, where: str = "dataset") -> None:
        choice(opt.get("phase", "test"), ["train", "test"], f"{where}.phase")
        super().check_options(opt, stype, where)
        if "data_prefix" not in opt or opt["data_prefix"] is None:
            raise OptionError(f"missing required option {where}.data_prefix (the folder holding the videos)")
        if opt.get("phase") == "train" and opt.get("anno_file") is None:  # NaN labels: every step would be skipped
            raise OptionError(f"{where}.anno_file: a training set needs its labels (a label file, or a list of "
                              f"{{filename, label}}); without one it lists data_prefix's videos unlabelled, which only "
                              f"a test set can be")

    def __init__(self, opt: Mapping[str, Any], stype: str = DEFAULT_SAMPLE_TYPE) -> None:
        super().__init__()
        self._setup(opt, stype, opt.get("phase", "test") == "train", "dataset")
        self.data_prefix = resolve_path(opt["data_prefix"], [REPO_ROOT])
        ann = opt.get("anno_file")
        if isinstance(ann, (list, tuple)):
            self.ann_file = None
            self.video_infos = _normalise_infos(ann)
        elif ann is None:
            self.ann_file = None
            self.video_infos = list_videos(self.data_prefix)
        else:
            self.ann_file = resolve_path(ann, [REPO_ROOT])
            self.video_infos = read_label_file(self.ann_file, self.data_prefix)
        check_files(self.video_infos, f"dataset ({self.ann_file or self.data_prefix})")


class FineTuneDataset(_VideoQualityDataset):
    """A given list of videos (``[{"filename", "label"[, "fileid"]}]``, e.g. one split of a label file).

    ``opt`` is the ``train:`` or ``test:`` block of a finetune option file (``sample_types``, optional
    ``num_threads``, ``decoder``); ``is_train`` selects random (train) or centred (test) sampling.
    """

    def __init__(self, video_infos: Sequence[Mapping[str, Any]], opt: Mapping[str, Any], stype: str = DEFAULT_SAMPLE_TYPE,
                 is_train: bool = True) -> None:
        super().__init__()
        self._setup(opt, stype, is_train, "data." + ("train" if is_train else "test"))
        self.video_infos = _normalise_infos(list(video_infos))
        check_files(self.video_infos, "finetune dataset")


# ----------------------------------------------------------------------------------------------- bad items
def skipping_loader(dataset: "_VideoQualityDataset", opt: Mapping[str, Any], train: bool, log: Any, where: str,
                    seed: int = 0):
    """A loader over ``dataset`` (:func:`samacore.loaders.skipping_loader`) that drops unreadable videos.

    A video raising :class:`VideoReadError` costs that one item: it is logged once with its reason, written to
    the log's skip list, not read again in later epochs, and the run stops with
    :class:`samacore.robust.TooManyBadItems` once more than ``max_bad_fraction`` of the set is bad.
    """
    return loaders.skipping_loader(dataset, opt, train, log, where, errors=(VideoReadError,),
                                   name_fn=lambda i: dataset.video_infos[i]["filename"], seed=seed)
