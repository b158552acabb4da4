"""Video quality datasets: label files, frame decoding, temporal + spatial sampling, normalisation.

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
import re
import stat
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from samacore import loaders
from samacore.options import REPO_ROOT, OptionError, check_keys, choice, resolve_path
from samacore.registry import Registry
from samacore.runs import bad_item_log  # re-exported: one bad-item log for both trees

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
    "bad_item_log",
    "MEAN",
    "STD",
    "VIDEO_EXTENSIONS",
]

# Kinetics / ImageNet statistics on the 0-255 scale, per RGB channel.
MEAN = torch.tensor([123.675, 116.28, 103.53])
STD = torch.tensor([58.395, 57.12, 57.375])

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".flv", ".wmv", ".mpg", ".mpeg")

# Keys a dataset's option block may hold. `data_backend` other than disk, `augment` and `random_crop` exist in
# the original schema but have no effect there for these datasets; they are accepted for compatibility.
DATASET_KEYS = ("phase", "anno_file", "data_prefix", "sample_types", "data_backend", "augment", "random_crop",
                "num_threads")
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


# ----------------------------------------------------------------------------------------------- decoding
class VideoReadError(RuntimeError):
    """A video that cannot be read; the message names the file and the reason (``.path``, ``.reason``).

    Constructible from the message alone, so it survives being re-raised from a DataLoader worker.
    """

    def __init__(self, message: str, path: Optional[str] = None, reason: Optional[str] = None) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason or message


class VideoNotFoundError(VideoReadError, FileNotFoundError):
    """The video file does not exist."""


def _video_error(path: str, reason: str, cls: type = VideoReadError) -> VideoReadError:
    return cls(f"cannot read video {path}: {reason}", path=path, reason=reason)


# decord reports failures as "[hh:mm:ss] /src/file.cc:NN: Check failed: ..." -- say what they mean instead
_DECORD_PREFIX = re.compile(r"^\s*\[[0-9:]+\]\s*\S+:\d+:\s*")
_DECORD_REASONS = (
    ("Error reading", "not a readable video container (unknown format, or a truncated or corrupt file)"),
    ("cannot find video stream", "the file has no video stream (zero frames, audio only, or not a video)"),
    ("filter_graph", "the video stream cannot be decoded (corrupt or truncated stream, or an unsupported pixel "
                     "format)"),
    ("decoder", "the video stream cannot be decoded (corrupt or truncated stream, or an unsupported codec)"),
)


def _decord_reason(e: BaseException) -> str:
    text = str(e)
    for needle, reason in _DECORD_REASONS:
        if needle in text:
            return reason
    first = _DECORD_PREFIX.sub("", text.strip().splitlines()[0] if text.strip() else "")
    return f"{type(e).__name__}: {first or 'unknown decoder error'}"


def _check_video_file(path: str) -> None:
    """Refuse what decord would choke or block on: missing, a folder, a FIFO / device, an empty file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _video_error(path, "file not found", VideoNotFoundError) from None
    except OSError as e:
        raise _video_error(path, f"cannot access the file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _video_error(path, "it is a folder, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise _video_error(path, "not a regular file (FIFO, socket or device)")
    if st.st_size == 0:
        raise _video_error(path, "empty file (0 bytes)")


def _decode_opencv(path: str, indices: Sequence[int]) -> torch.Tensor:
    """Frames ``indices`` (sorted, unique) read in order with OpenCV -> uint8 ``[U, H, W, 3]`` RGB.

    Fallback for decord 0.6's copy bug on frames whose RGB row is not a multiple of its alignment (e.g. 16 or
    24 pixels wide): decord then fails (batched) or returns mis-shaped arrays (single frames).
    """
    import cv2

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise _video_error(path, "OpenCV cannot open it either (after decord's small-frame copy failure)")
    wanted = set(int(i) for i in indices)
    last = max(wanted)
    frames = []
    try:
        for i in range(last + 1):
            ok, frame = cap.read()
            if not ok:
                raise _video_error(path, f"only {i} frames could be decoded, frame {last} is needed "
                                         "(truncated or corrupt stream)")
            if i in wanted:
                frames.append(torch.from_numpy(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
    finally:
        cap.release()
    return torch.stack(frames)


def _is_copy_bug(e: BaseException) -> bool:
    return "DECORDArrayCopyFromTo" in str(e)


def decode_frames(path: str, samplers: Mapping[str, Any], is_train: bool, num_threads: int = 1):
    """Decode the frames every branch needs with ONE batched decord call (each frame decoded once).

    Returns ``(videos, frame_inds)``: ``videos[branch]`` is uint8 ``[C, T, H, W]``, ``frame_inds[branch]`` int32 ``[T]``.
    A file that cannot be read raises :class:`VideoReadError` naming it and the reason (decord's errors
    translated); a missing file raises :class:`VideoNotFoundError` (also a ``FileNotFoundError``). Videos with
    fewer frames than a clip are fine (the temporal sampler repeats the last frame); frames smaller than the
    sampling grid are enlarged later by the spatial sampler. The reader is opened here, per call, so DataLoader
    workers never share one.
    """
    import decord  # imported late: torch must be imported first (decord + torch import order can hang)

    _check_video_file(path)
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=int(num_threads))
        n = len(reader)
    except Exception as e:
        raise _video_error(path, _decord_reason(e)) from None
    if n < 1:
        raise _video_error(path, "the video has no frames")
    frame_inds = {branch: np.asarray(s(n, is_train), dtype=np.int32) for branch, s in samplers.items()}
    unique, inverse = np.unique(np.concatenate(list(frame_inds.values())), return_inverse=True)
    frames = None
    try:
        frames = torch.from_numpy(reader.get_batch(unique.tolist()).asnumpy())  # [U, H, W, C] uint8
    except Exception as e:
        if not _is_copy_bug(e):
            raise _video_error(path, f"cannot decode frames {int(unique[0])}-{int(unique[-1])} of {n}: "
                                     f"{_decord_reason(e)}") from None
    finally:
        del reader
    if frames is None or frames.dim() != 4 or frames.shape[-1] != 3:
        frames = _decode_opencv(path, unique.tolist())
    if frames.shape[0] != len(unique) or min(frames.shape[1:3]) < 1:
        raise _video_error(path, f"the decoder returned {tuple(frames.shape)} for {len(unique)} frames")
    videos, start = {}, 0
    for branch, inds in frame_inds.items():
        pick = torch.from_numpy(inverse.reshape(-1)[start:start + len(inds)].astype(np.int64))
        videos[branch] = frames[pick].permute(3, 0, 1, 2)  # [C, T, H, W]
        start += len(inds)
    return videos, frame_inds


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
        try:
            canonical_sample_type(stype)
        except ValueError as e:
            raise OptionError(f"stype: {e}") from None
        choice(opt.get("data_backend", "disk"), ["disk"], f"{where}.data_backend")
        for branch, sopt in opt["sample_types"].items():
            bwhere = f"{where}.sample_types.{branch}"
            check_keys(sopt, BRANCH_KEYS, bwhere, required=("clip_len", "num_clips", "frame_interval"))
            try:  # the global stype samples every branch, so its rules apply to the branch options
                check_sample_options(stype, sopt, bwhere)
                build_frame_sampler(sopt, bwhere)  # checks the temporal keys (t_frag must divide clip_len, ...)
            except ValueError as e:
                raise OptionError(str(e)) from None

    def _setup(self, opt: Mapping[str, Any], stype: str, is_train: bool, where: str) -> None:
        self.check_options(opt, stype, where)
        self.opt = opt
        self.stype = stype
        self.is_train = bool(is_train)
        self.phase = "train" if self.is_train else "test"
        self.num_threads = int(opt.get("num_threads", 1))
        self.sample_types: Dict[str, Dict[str, Any]] = {}
        self.samplers: Dict[str, FragmentSampleFrames] = {}
        for branch, sopt in opt["sample_types"].items():
            self.samplers[branch] = build_frame_sampler(sopt, f"{where}.sample_types.{branch}")
            self.sample_types[branch] = dict(sopt)

    def __len__(self) -> int:
        return len(self.video_infos)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        info = self.video_infos[index]
        videos, frame_inds = decode_frames(info["filename"], self.samplers, self.is_train, self.num_threads)
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
    optional ``num_threads`` (decoder threads, default 1). ``stype`` is the spatial sampling method.
    """

    @classmethod
    def check_options(cls, opt: Mapping[str, Any], stype: str, where: str = "dataset") -> None:
        choice(opt.get("phase", "test"), ["train", "test"], f"{where}.phase")
        super().check_options(opt, stype, where)
        if "data_prefix" not in opt or opt["data_prefix"] is None:
            raise OptionError(f"missing required option {where}.data_prefix (the folder holding the videos)")

    def __init__(self, opt: Mapping[str, Any], stype: str = "fragments") -> None:
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
    ``num_threads``); ``is_train`` selects random (train) or centred (test) sampling.
    """

    def __init__(self, video_infos: Sequence[Mapping[str, Any]], opt: Mapping[str, Any], stype: str = "fragments",
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
