"""Score videos with a trained SAMA model: ``python VQA/vqa.py -v VIDEO [-v VIDEO ...] | --dir DIR | --list FILE``.

One video prints its score; several (or ``--output``) give a CSV ``name,score,calibrated,error,note``, one row per
video in the order given (``--dir``: the folder's video files, sorted, names relative to the folder; with
``--recursive`` its subfolders' too; ``--list FILE``: one path per line, relative to FILE's folder or absolute,
``#`` comment lines). ``--per-clip`` adds a ``clip_scores`` column: each clip's raw score (the mean of its score
map), space-separated in temporal order; ``score`` is their mean. Python: :func:`load_scorer`.

**note** says what was done to an odd but usable video: one shorter than a clip is scored with its last frame
repeated, and the note (also printed as a warning) says how many of the sampled frames are such copies (with
FAST-VQA's sampling, ``frame_overflow: wrap`` / ``t_frag``: how many repeat overlapping temporal fragments or wrap
around to its first frames). A still
image given with ``-v`` is a usage error (exit 2). One file gets a progress bar over the frames being decoded.
Decoding: ``--decoder auto|decord|pyav`` (:mod:`samavqa.decoders`); FFmpeg's and decord's own log lines are
hidden unless ``--verbose``.

**score** is the raw model output, exactly what ``demo_test.py`` writes as ``pred``: test-mode sampling with the
options' test ``sample_types`` (the paper's: 4 temporal segments of 32 frames, every 2nd frame, each frame a 7x7
grid of 32x32 fragments, centred offsets), the clips scored separately and the score maps averaged over clips and
positions.

**calibrated** maps the raw score to the MOS scale of the checkpoint's training set with the checkpoint's
``label_stats`` -- the rule of :mod:`samacore.calibration`, shared with the image tree::

    calibrated = label_mean + label_std * (score - pred_mean) / pred_std

Checkpoints without the score statistics (``pred_mean`` / ``pred_std``; e.g. the released SAMA weights) get an
empty ``calibrated`` column and a note on stderr saying what is missing.

Checkpoint (``--ckpt``; without it, the first of):

1. ``pretrained_weights/SAMA-baseline_val-ltest_s_dev_v0.0.pth`` (also looked for in ``VQA/pretrained_weights``):
   the SAMA authors' released LSVQ model, under the name their test options use;
2. the newest ``*_s_dev_v0.0.pth`` (best-epoch EMA model), else ``*_Epoch_*.pth``, that our trainer wrote under
   ``runs/`` or ``pretrained_weights/`` (e.g. ``make demo`` / the examplar training);
3. otherwise the program stops and says what to download or run.

These are looked up in the working directory and in the repository root.

``-m NAME`` picks a released model by name (:mod:`samavqa.presets`: ``SAMA`` and FAST-VQA's ``FAST-VQA``,
``FAST-VQA-M``, ``FasterVQA``, ``FasterVQA-MS``, ``FasterVQA-MT``): its option file in ``VQA/options/`` and its
weight file in ``pretrained_weights/``, each unless ``--options`` / ``--ckpt`` is given; a missing weight file is
one line saying where to download it. ``--list-models`` lists them and whether their weights are there.

Model and sampling: ``--options`` FILE (its ``model`` block, ``stype``, and the ``sample_types`` of its first
``val*`` data set); else the options the checkpoint carries (``obj["sama"]["options"]``); else the
``options.yml`` of the run that wrote the checkpoint (``runs/{name}/``, found by the checkpoint's file name); else
``VQA/options/fast-SAMA-test.yml``. ``--stype`` overrides the sample type (the checkpoint's calibration then no
longer applies: ``calibrated`` is left empty and a note says why); one the options' sampling does not fit, or, for
an ONNX graph, whose clips follow each video's shape (``arp_resize``, ``arp_fragments``, ``original``, ``resize``
with ``arp: true``), is one line before any output, naming what fits (a Video Swin takes such clips up to its base
input size; a larger clip is one line naming it). Weights that do not fit
the model are one line naming the file, the options and what to pass.

FAST-VQA's released models (``-m FAST-VQA`` ...) also give FAST-VQA's [0, 1] score, ``fastvqa_score =
sigmoid((score - mean) / std)`` with the constants of their ``vqa.py`` (:mod:`samavqa.presets`).

Videos are decoded and sampled clip by clip (memory: one clip's frames); where the rows go, ``--resume``,
``--overwrite``, torchrun and clean stops: :mod:`samacore.scoring`.

Test-mode scores are deterministic: no randomness, and every video's clips are scored by one model call of their
own, so on CPU a video's score is bit-identical across runs, ``--batch-size`` and ``--num-workers`` (tested).
On GPUs, cuDNN may pick other kernels on other runs; ``--bf16`` (autocast) trades the last digits for speed.

A bad video (missing, empty, truncated, undecodable) gets an empty score and its reason in ``error``; the
others are still scored. The exit status is 1 only if every video failed (2 for usage / checkpoint / options).
"""
from __future__ import annotations

import argparse
import copy
import glob
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from samacore import engine, scoring
from samacore.checkpoint import CheckpointError, build_with_weights, load_checkpoint
from samacore.options import OptionError, non_negative_int
from samacore.scoring import NoCheckpointError, ScoreRow
from samacore.utils import pick_device

from .datasets import VIDEO_EXTENSIONS, VideoReadError, _VideoQualityDataset
from .decoders import (decoder_choices, open_video, pick_frames, resolve_decoder, set_verbose, still_image_reason,
                       take_rows)
from .models.checkpoints import BACKBONE_ONLY, detect_format_of, load_vqa_weights
from .presets import (PRESETS, WEIGHT_FOLDERS, list_presets, missing_checkpoint, preset_for_weights, preset_of,
                      resolve_preset)
from .recipe import build_model, make_predict_fn
from .sampling import (SAMPLE_TYPES, canonical_sample_type, check_sample_options, own_sample_options,
                       unknown_sample_options)
from .schema import check_vqa_options, fitting_types_phrase, load_vqa_options, refuse_video_shaped_for
from .temporal import build_frame_sampler

VQA_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(VQA_DIR)
RELEASED = PRESETS.get("SAMA")  # the default model: the SAMA authors' LSVQ release (samavqa.presets)
DEFAULT_OPTIONS = RELEASED.options_path
RELEASED_WEIGHTS = os.path.join("pretrained_weights", RELEASED.weights)
OWN_CHECKPOINT_GLOBS = ("*_s_dev_v0.0.pth", "*_Epoch_*.pth")  # in order of preference
DEFAULT_CHECKPOINT = scoring.CheckpointSearch(
    what="VQA",
    released=tuple(os.path.join(folder, RELEASED.weights) for folder in WEIGHT_FOLDERS),
    released_why="the released SAMA LSVQ model",
    patterns=OWN_CHECKPOINT_GLOBS,
    trainer="samavqa training",
    looked_for=f"{RELEASED_WEIGHTS} (the released SAMA model) and for runs/**/{OWN_CHECKPOINT_GLOBS[0]}, "
               f"pretrained_weights/**/{OWN_CHECKPOINT_GLOBS[0]} (or {OWN_CHECKPOINT_GLOBS[1]}, written by our trainer)",
    what_to_do=f"Either {RELEASED.download_hint()}, or train a model on the bundled examplar videos (`make demo`), "
               "or pass --ckpt FILE (-m / --list-models: the other released models).",
)

__all__ = [
    "NoCheckpointError",
    "RELEASED_WEIGHTS",
    "ScoreRow",
    "VideoScorer",
    "find_default_checkpoint",
    "list_video_files",
    "load_scorer",
    "main",
    "scoring_options",
    "short_video_note",
    "video_frames",
    "write_csv",
]


# ----------------------------------------------------------------------------------------------- checkpoint
def default_search_roots() -> List[str]:
    """Folders searched for ``pretrained_weights/`` and ``runs/``: the working directory, then the repo root."""
    return scoring.search_roots(REPO_ROOT)


def find_default_checkpoint(roots: Optional[Sequence[str]] = None) -> Tuple[str, str]:
    """``(path, why)`` of the checkpoint to use without ``--ckpt``; :class:`NoCheckpointError` if there is none."""
    return DEFAULT_CHECKPOINT.find(list(roots) if roots is not None else default_search_roots())


# ----------------------------------------------------------------------------------------------- options
def _run_options_for(ckpt: str, roots: Sequence[str]) -> Optional[str]:
    """The ``runs/{name}/options.yml`` of the run whose name starts the checkpoint's file name, if any."""
    base = os.path.basename(ckpt)
    dirs = [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(ckpt))), "runs"),
            os.path.dirname(os.path.dirname(os.path.abspath(ckpt)))] + [os.path.join(r, "runs") for r in roots]
    best: Optional[Tuple[int, str]] = None
    for d in dirs:
        for path in glob.glob(os.path.join(d, "*", "options.yml")):
            name = os.path.basename(os.path.dirname(path))
            if base.startswith(name + "_") and (best is None or len(name) > best[0]):
                best = (len(name), path)
    return best[1] if best else None


def scoring_options(opt: Mapping[str, Any]) -> Tuple[Dict[str, Dict[str, Any]], Optional[int]]:
    """``(sample_types, num_threads)`` of the first ``val*`` data set of an option mapping (test sampling).

    Finetune-style files (``data.test``) work too; otherwise the first data set with ``sample_types``.
    """
    where, block = _scoring_block(opt)
    st = block["sample_types"]
    if not isinstance(st, Mapping) or not st:
        raise OptionError(f"{where}.sample_types must map branch names to sampling options")
    key, threads = (f"{where}.num_threads", block["num_threads"]) if "num_threads" in block else \
        ("data.num_threads", (opt.get("data") or {}).get("num_threads"))
    if threads is not None:  # (an ONNX graph's metadata or a caller's mapping is not checked by the schema)
        non_negative_int(threads, key)
    return {k: dict(v or {}) for k, v in st.items()}, (threads or None)


def _scoring_block(opt: Mapping[str, Any]) -> Tuple[str, Mapping[str, Any]]:
    """``(where, block)``: the data set block whose test sampling scoring uses (see :func:`scoring_options`)."""
    data = opt.get("data") or {}
    if not isinstance(data, Mapping):
        raise OptionError("options.data must be a mapping")
    blocks: List[Tuple[str, Mapping[str, Any]]] = []
    if isinstance(data.get("test"), Mapping) and "sample_types" in data["test"]:
        blocks.append(("data.test", data["test"]))
    for key, spec in data.items():
        args = (spec or {}).get("args") if isinstance(spec, Mapping) else None
        if isinstance(args, Mapping) and "sample_types" in args:
            blocks.append((f"data.{key}.args", args))
    blocks.sort(key=lambda kv: 0 if kv[0].startswith("data.val") or kv[0] == "data.test" else 1)
    if not blocks:
        raise OptionError("the options have no data set with sample_types (e.g. data.val-*.args.sample_types)")
    return blocks[0]


# ----------------------------------------------------------------------------------------------- scoring
def short_video_note(frame_inds: Mapping[str, np.ndarray], sample_types: Mapping[str, Mapping[str, Any]],
                     num_frames: Optional[int] = None) -> str:
    """What was done to a short video's frame indices (test sampling, ``num_frames`` frames); "" when nothing was.

    SAMA's layout (``clip_len`` frames per clip, indices past the end clamped): said when the video is shorter than
    one clip spans (``(clip_len - 1) * frame_interval + 1`` frames), or when the copies of its last frame are a
    quarter or more of the sampled frames (a video long enough for one clip but not for ``num_clips`` segments: the
    later clips run past its end). A few copies at the end of the last clip go unremarked. FAST-VQA's layouts
    (``frame_overflow: wrap``, ``t_frag``; :func:`_fragments_note`) say what happened to the indices instead:
    overlapping temporal fragments, indices that wrap around to the start. ``num_frames`` (None: found from the
    indices) is needed there, as wrapped indices do not show the frame count.
    """
    for branch, inds in frame_inds.items():
        inds = np.asarray(inds).reshape(-1)
        opts = sample_types[branch]
        if opts.get("frame_overflow", "clamp") != "clamp" or "t_frag" in opts:
            note = _fragments_note(inds, opts, num_frames)
            if note:
                return note
            continue
        clip_len, interval = int(opts["clip_len"]), int(opts["frame_interval"])
        copies = sum(len(c) - len(np.unique(c)) for c in inds.reshape(-1, clip_len))
        n = int(inds.max()) + 1  # the last frame is sampled whenever there are copies
        if copies and n < (clip_len - 1) * interval + 1:  # the frames one clip spans
            return (f"only {n} frame{'s' if n != 1 else ''}, fewer than one clip spans ({clip_len} frames, every "
                    f"{interval}): {copies} of the {inds.size} sampled frames are copies of its last frame, so the "
                    "score is not that of a real clip")
        if copies >= inds.size / 4:
            return (f"only {n} frames for {inds.size // clip_len} clips of {clip_len} frames (every {interval}): "
                    f"{copies} of the {inds.size} sampled frames are copies of its last frame")
    return ""


def _fragments_note(inds: np.ndarray, opts: Mapping[str, Any], num_frames: Optional[int]) -> str:
    """:func:`short_video_note` of one branch sampled with ``frame_overflow: wrap`` and / or ``t_frag``.

    The indices before the overflow rule are the sampler's own (test mode) for ``num_frames``. A video shorter
    than the sampler's segments need (``fragments_t * fsize_t * frame_interval`` frames; FasterVQA: 8 x 4 x 2 = 64)
    gets runs that overlap (with ``t_frag``: frames sampled twice in one clip) or go past its end (wrapped around to
    the start, or clamped to the last frame). Said as for SAMA: always below one clip's span (with ``t_frag`` a
    clip spans the whole video), else from a quarter of such frames on.
    """
    sampler = build_frame_sampler(opts)
    need = sampler.fragments_t * sampler.fsize_t * sampler.frame_interval  # no overlap, nothing past the end

    def raw(n: int) -> np.ndarray:  # the test sampler's indices for n frames, before the overflow rule
        return np.concatenate([sampler.get_frame_indices(n) for _ in range(sampler.num_clips)])

    counts = [num_frames] if num_frames is not None else \
        [n for n in range(int(inds.max()) + 1, need) if np.array_equal(sampler(n), inds)]
    if not counts or counts[0] >= need:  # long enough (or, counted from the indices, not the test sampler's)
        return ""
    # several counts can give the same indices (those of the smallest describe them all): say the range
    n, clip_len, interval = int(counts[0]), int(opts["clip_len"]), sampler.frame_interval
    unwrapped = raw(n)
    repeats = past = copies = 0
    for clip in unwrapped.reshape(-1, clip_len):
        inside = clip[clip < n]
        repeats += len(inside) - len(np.unique(inside))  # overlapping temporal fragments
        over = int((clip >= n).sum())
        past += over
        copies += over - (0 if not over or n - 1 in inside else 1)  # (clamp) the last frame, shown again
    wrapped = np.unique(unwrapped[unwrapped >= n] % n)
    total = inds.size

    def some(k: int) -> str:  # "k of the 32 sampled frames", or "k other(s)" after the first part
        return f"{k} other{'s' if k != 1 else ''}" if parts else f"{k} of the {total} sampled frames"

    parts: List[str] = []
    if repeats:
        parts.append(f"its temporal fragments overlap, so {some(repeats)} repeat{'s' if repeats == 1 else ''} ones "
                     "sampled before")
    if past and sampler.overflow == "wrap":
        targets = ", ".join(map(str, wrapped[:4])) + (", ..." if len(wrapped) > 4 else "")
        parts.append(f"{some(past)} run{'s' if past == 1 else ''} past its end and wrap{'s' if past == 1 else ''} "
                     f"around to frame{'s' if len(wrapped) > 1 else ''} {targets}")
    elif copies:
        parts.append(f"{some(copies)} {'is a copy' if copies == 1 else 'are copies'} of its last frame")
    odd = repeats + (past if sampler.overflow == "wrap" else copies)
    if not odd:
        return ""
    frames = f"only {n} frame{'s' if n != 1 else ''}" if len(counts) == 1 else f"only {n} to {counts[-1]} frames"
    if "t_frag" in opts:  # one clip spans the whole video: shorter than its span is always said
        head = (f"{frames}, fewer than one clip spans ({sampler.fragments_t} temporal fragments of {sampler.fsize_t} "
                f"frames, every {interval}: {need} frames)")
    elif n < (clip_len - 1) * interval + 1:
        head = f"{frames}, fewer than one clip spans ({clip_len} frames, every {interval})"
    elif odd >= total / 4:
        head = f"{frames} for {total // clip_len} clips of {clip_len} frames (every {interval})"
    else:  # a few at the end of the last clip, as for SAMA
        return ""
    return f"{head}: {', and '.join(parts)}"


class _ScoreDataset(_VideoQualityDataset):
    """Test-mode items of arbitrary video paths; missing files are per-item errors, not a construction error.

    Decoded clip by clip: the frames of one clip are decoded and sampled before the next clip's are read, so
    memory holds one clip's full-resolution frames, whatever the video's length and the number of clips, unless
    the frames of all clips fit :data:`READ_AHEAD_BYTES`: then they are read in one call (:class:`_ClipReads`).
    Test sampling treats clips independently, so the item is bit-identical to sampling all clips at once. Items
    carry ``index``, ``note`` (:func:`short_video_note`) and ``decoded`` (frames decoded); ``frame_progress``: a
    bar over the frames being decoded (for one long file).
    """

    def __init__(self, paths: Sequence[str], sample_types: Mapping[str, Any], stype: str, num_threads: int = 1,
                 decoder: str = "auto", frame_progress: bool = False):
        super().__init__()
        self._setup({"sample_types": dict(sample_types), "num_threads": num_threads, "decoder": decoder}, stype,
                    False, "scoring")
        self.video_infos = [dict(filename=str(p), fileid=str(p), label=math.nan) for p in paths]
        self.frame_progress = frame_progress

    def __getitem__(self, index: int) -> Dict[str, Any]:
        info = self.video_infos[index]
        if not self.frame_progress:
            return self.clip_by_clip(info, None, index)
        from tqdm.auto import tqdm

        with tqdm(desc=f"decoding {os.path.basename(info['filename'])}", unit="frame", leave=False,
                  dynamic_ncols=True) as bar:

            def frames_done(done: int, total: int) -> None:
                if bar.total != total:
                    bar.total = total
                    bar.refresh()
                bar.update(done - bar.n)

            return self.clip_by_clip(info, frames_done, index)

    def clips(self, frame_inds: Mapping[str, np.ndarray]) -> List[Dict[str, np.ndarray]]:
        """Every branch's frame indices cut into its clips (one piece when the branches' clips do not line up,
        or a clip is no whole number of the grid's temporal ``aligned`` frames)."""
        counts = {int(self.sample_types[b]["num_clips"]) for b in frame_inds}
        lens = {b: len(inds) // int(self.sample_types[b]["num_clips"]) for b, inds in frame_inds.items()}
        whole = len(counts) != 1 or any(lens[b] % int(self.sample_types[b].get("aligned", 32)) for b in lens
                                        if len(frame_inds[b]) > 1)
        n = 1 if whole else counts.pop()
        return [{b: np.asarray(inds).reshape(n, -1)[c] for b, inds in frame_inds.items()} for c in range(n)]

    def clip_by_clip(self, info: Mapping[str, Any], progress: Optional[Any], index: int) -> Dict[str, Any]:
        """The item of ``info``'s video, decoded and sampled one clip at a time (all clips' frames read together
        when they fit :data:`READ_AHEAD_BYTES`: overlapping clips then decode each frame once)."""
        with open_video(info["filename"], self.decoder, self.num_threads) as video:
            num_frames = video.num_frames
            frame_inds = {b: np.asarray(s(video.num_frames, False), dtype=np.int32) for b, s in self.samplers.items()}
            clips = self.clips(frame_inds)
            needed = [np.unique(np.concatenate(list(c.values()))) for c in clips]
            reads = _ClipReads(video, needed, progress)
            parts = []
            for k, clip in enumerate(clips):
                videos, inds = pick_frames(video.num_frames, {b: (lambda *_, i=i: i) for b, i in clip.items()},
                                           False, lambda indices, k=k: reads.frames(k, indices))
                parts.append(self.make_item(videos, inds, info))
        item = dict(parts[0], frame_inds=frame_inds, decoded=reads.decoded)
        for branch in frame_inds:
            item[branch] = torch.cat([part[branch] for part in parts], dim=1)  # [C, T, H, W] along T
        return self.with_note(item, index, num_frames)

    def with_note(self, item: Dict[str, Any], index: int, num_frames: Optional[int] = None) -> Dict[str, Any]:
        """``item`` with its ``index`` and ``note`` (:func:`short_video_note`; ``num_frames``: the video's)."""
        item.update(index=index, note=short_video_note(item["frame_inds"], self.sample_types, num_frames))
        return item


#: the most decoded full-resolution frames (bytes) held at once to read the clips of one video in one call
READ_AHEAD_BYTES = 512 * 2**20


class _ClipReads:
    """The frames of each clip of one open video (``needed[k]``: clip ``k``'s sorted unique frame indices).

    When the frames of all clips fit :data:`READ_AHEAD_BYTES` (frame size as the decoder reports it), they are
    read in one call at the first request: the test sampler's clips overlap and wrap around the video's end, so
    one pass through the file decodes each frame once (the first clip read alone, then the rest, decoded the
    overlap twice: 0.43-0.50 s against 0.29-0.31 s for bigbuckbunny's 128 frames). Otherwise, or when the size is
    unknown, clip by clip, so memory holds one clip's frames whatever the video. ``decoded``: frames decoded so
    far; ``progress(done, total)`` as in :meth:`samavqa.decoders._Reader.read`.
    """

    def __init__(self, video: Any, needed: Sequence[np.ndarray], progress: Optional[Any]) -> None:
        self.video, self.progress = video, progress
        self.union = np.unique(np.concatenate(needed)) if len(needed) > 1 else np.zeros(0, np.int64)
        frame_bytes = video.frame_bytes() if len(self.union) else None
        self.together = frame_bytes is not None and frame_bytes * len(self.union) <= READ_AHEAD_BYTES
        self.total = len(self.union) if self.together else sum(len(n) for n in needed)  # frames to decode
        self.decoded = 0
        self.frames_of_all: Optional[torch.Tensor] = None  # frames self.union, when read together

    def frames(self, k: int, indices: Sequence[int]) -> torch.Tensor:
        """Clip ``k``'s frames ``indices`` -> uint8 ``[U, H, W, 3]``."""
        if not self.together:
            return self._read(list(indices))
        if self.frames_of_all is None:
            self.frames_of_all = self._read(self.union.tolist())
        return take_rows(self.frames_of_all, np.searchsorted(self.union, np.asarray(indices)))

    def _read(self, indices: List[int]) -> torch.Tensor:
        before = self.decoded
        report = None if self.progress is None else (lambda done, _: self.progress(before + done, self.total))
        frames = self.video.read(indices, report)
        self.decoded += len(indices)
        return frames


def video_frames(x: Any, layout: Optional[str] = None) -> torch.Tensor:
    """A decoded video as uint8 ``[T, H, W, 3]``: ``x`` is uint8 ``[T, H, W, 3]`` (``layout="THWC"``, as
    :func:`samavqa.decoders.read_frames`, decord or ``torchvision.io.read_video`` give it) or ``[3, T, H, W]``
    (``"CTHW"``); a tensor or a NumPy array. Without ``layout``: THWC when the last dimension is 3, else CTHW."""
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.tensor(np.asarray(x))
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"a video tensor must hold finite values (uint8 0-255 RGB), got "
                         f"{int((~torch.isfinite(t)).sum())} NaN / inf of {t.numel()}")
    if t.dtype != torch.uint8 or t.dim() != 4:
        raise ValueError(f"a video tensor must be uint8 [T, H, W, 3] or [3, T, H, W] (0-255 RGB), got {t.dtype} "
                         f"{list(t.shape)}")
    layout = layout or ("THWC" if t.shape[-1] == 3 else "CTHW")
    channels = {"THWC": t.shape[-1], "CTHW": t.shape[0]}.get(layout)
    if channels != 3:
        raise ValueError(f"a video tensor must be uint8 [T, H, W, 3] (layout THWC) or [3, T, H, W] (layout CTHW), "
                         f"got {list(t.shape)} with layout {layout}")
    t = t if layout == "THWC" else t.permute(1, 2, 3, 0)
    if min(t.shape[:3]) < 1:
        raise ValueError(f"an empty video tensor: {list(t.shape)}")
    return t.cpu().contiguous()


@dataclass
class VideoScorer(scoring.Scorer):
    """A loaded model with its test sampling (:func:`load_scorer`; the shared part: :class:`samacore.scoring.Scorer`).

    ``scorer(x)`` scores ``x``: a video file (-> float), a list of files (-> list of floats) or a decoded video
    tensor, uint8 ``[T, H, W, 3]`` or ``[3, T, H, W]`` (-> float; see :func:`video_frames`) -- a file's frames
    (``samavqa.decoders.read_frames(path)``) score exactly as the file. ``scorer(x, calibrated=True)``: on the
    training set's MOS scale. :meth:`score_paths` gives CSV rows instead (bad files as rows with an error);
    ``per_clip=True`` adds each clip's score.
    """

    sample_types: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    num_threads: int = 1
    decoder: str = "auto"
    read_error: ClassVar[type] = VideoReadError
    batch_kwargs: ClassVar[Tuple[str, ...]] = ("per_clip",)

    def dataset(self, paths: Sequence[str], progress: bool = False) -> _ScoreDataset:
        """Test-mode items of video files (``progress``: a bar over the frames being decoded)."""
        return _ScoreDataset(paths, self.sample_types, self.stype, self.num_threads, self.decoder, progress)

    def score_batch(self, batch: Mapping[str, Any], per_clip: bool = False) -> List[scoring.Scored]:
        """Raw scores of a collated batch of items, one model call per video (batch-size independent);
        ``per_clip``: ``(score, [score of each clip])`` pairs, both from the same model call."""
        predict = make_predict_fn(list(self.model.branches))
        out: List[scoring.Scored] = []
        for i in range(len(batch["name"])):
            one = {k: (v[i:i + 1] if isinstance(v, torch.Tensor) else v) for k, v in batch.items() if k != "num_clips"}
            one["num_clips"] = {k: v[i:i + 1] for k, v in batch["num_clips"].items()}
            one["name"] = [batch["name"][i]]
            kept = _KeepScoreMap(self.model)
            with engine.autocast(self.device, "bf16" if self.bf16 else None):
                _, preds, _ = predict(kept, one, self.device)
            score = float(preds.float().reshape(-1)[0])
            if per_clip:  # the map is [clips, 1, D, H, W]: each clip's mean, as the score is the mean of all
                out.append((score, kept.scores.float().reshape(kept.scores.shape[0], -1).mean(1).tolist()))
            else:
                out.append(score)
        return out

    def score_tensor(self, x: Any, layout: Optional[str] = None) -> Tuple[List[Tuple[float, str, str]], bool]:
        """``([(raw score, note, "tensor")], False)`` of a decoded video (see :func:`video_frames`)."""
        frames = video_frames(x, layout)
        ds = self.dataset(["tensor"])
        videos, frame_inds = pick_frames(frames.shape[0], ds.samplers, False, lambda idx: take_rows(frames, idx))
        item = ds.with_note(ds.make_item(videos, frame_inds, ds.video_infos[0]), 0, frames.shape[0])
        self.model.eval()
        with torch.inference_mode():
            score = self.score_batch(torch.utils.data.default_collate([item]))[0]
        assert isinstance(score, float)
        return [(score, item["note"], "tensor")], False


class _KeepScoreMap:
    """The model, keeping the score map of its last call (per-clip scores come from the call that made the score)."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.scores = model, None

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.scores = self.model(*args, **kwargs)
        return self.scores


def load_scorer(
    ckpt: Optional[str] = None,
    options: Union[None, str, Mapping[str, Any]] = None,
    stype: Optional[str] = None,
    device: Optional[str] = None,
    bf16: bool = False,
    search_roots: Optional[Sequence[str]] = None,
    trust_checkpoint: bool = False,
    decoder: Optional[str] = None,
    model: Optional[str] = None,
    sets: Sequence[str] = (),
    onnx: Optional[str] = None,
) -> VideoScorer:
    """The documented Python API (also ``samavqa.load_scorer``): a :class:`VideoScorer` that scores video files,
    lists of files and decoded video tensors. Resolves the checkpoint and options (see the module docstring)
    and loads the model in eval mode::

        import samavqa
        scorer = samavqa.load_scorer("pretrained_weights/SAMA-baseline_val-ltest_s_dev_v0.0.pth")
        scorer = samavqa.load_scorer(model="FasterVQA")   # a released model by name (samavqa.presets)
        scorer("a.mp4")                                   # -> raw score (float)
        scorer(["a.mp4", "b.mkv"], calibrated=True)       # -> [calibrated scores]
        scorer(samavqa.read_frames("a.mp4"))              # uint8 [T, H, W, 3] -> the score of the file

    ``ckpt``: a checkpoint file (default: the released weights, else the newest one our trainer wrote);
    ``options`` an option file or an already loaded mapping (same schema); ``stype`` overrides the sample type;
    ``device`` ``cpu`` / ``cuda[:N]`` (default: CUDA when available); ``bf16`` autocast; ``trust_checkpoint``:
    full unpickle of the checkpoint (``--trust-checkpoint``; :func:`samacore.checkpoint.load_checkpoint`);
    ``decoder`` ``auto``, ``decord`` or ``pyav`` (default: the options' data set ``decoder``, else ``auto``);
    ``model`` a released model by name (:data:`samavqa.presets.PRESETS`: its option file and weight file, each
    unless ``options`` / ``ckpt`` is given); ``sets``: ``KEY.PATH=VALUE`` changes of the options (``--set``);
    ``onnx``: an exported graph (``sama-export-vqa``) scored with ONNX Runtime, with the sampling and calibration
    it was exported with (no checkpoint read).
    """
    if decoder is not None:
        resolve_decoder(decoder, "--decoder")  # before any work
    notes: List[str] = []
    if onnx is not None:
        scoring.refuse_beside_onnx(ckpt, options, sets, bf16, trust_checkpoint, device, model)
        return _onnx_scorer(onnx, stype, decoder, notes)
    roots = list(search_roots) if search_roots is not None else default_search_roots()
    if model is not None:
        named, ckpt, options = resolve_preset(model, ckpt, options, roots)
        notes.append(f"model {named.name}: {named.description}")
    given = _given_options(ckpt, options)  # a given option file is checked as a whole before the checkpoint is read
    path = scoring.checkpoint_path(ckpt, lambda: find_default_checkpoint(roots), notes)
    obj, fmt, info = _read_checkpoint(path, trust_checkpoint)
    opt, source = scoring.with_sets(*_options_for(given, obj, path, roots), sets, check_vqa_options)
    sampling = _Sampling.of(opt, stype, decoder, source)
    notes.append(sampling.describe())
    dev = pick_device(device)
    net = _load_model(opt, obj, sampling.sample_types, dev, path, source, notes)
    cal, cal_note = scoring.calibration_for(info, "samavqa training", "videos")
    if sampling.overridden:
        cal, cal_note = None, sampling.overridden
    preset = PRESETS.get(model) if model is not None else preset_of(path, source)
    unit = scoring.UnitScale(*preset.unit_mean_std) if preset is not None and preset.unit_mean_std else None
    provenance = dict(scoring.checkpoint_identity(path), options=source, stype=sampling.stype,
                      sampling=sampling.sample_types, model=preset.name if preset else None,
                      architecture=opt.get("model"))
    return VideoScorer(net, sampling.stype, dev, path, fmt, cal, cal_note, bf16, notes, provenance, unit,
                       sample_types=sampling.sample_types, num_threads=sampling.threads, decoder=sampling.decoder)


def _onnx_scorer(path: str, stype: Optional[str], decoder: Optional[str], notes: List[str]) -> VideoScorer:
    """A scorer of an exported graph on ONNX Runtime (CPU): its metadata gives the sampling and calibration."""
    runner, meta = scoring.onnx_model(path, "vqa")
    opt = {"stype": meta["stype"], "data": {"val": {"args": {"sample_types": meta["sampling"]}}}}
    sampling = _Sampling.of(opt, stype, decoder, f"the ONNX graph {path}", onnx=True)
    notes += [f"ONNX Runtime: {path} (exported from {meta.get('checkpoint')})", sampling.describe()]
    cal, cal_note = scoring.onnx_calibration(meta)
    if sampling.overridden:
        cal, cal_note = None, sampling.overridden
    preset = preset_for_weights(str(meta.get("checkpoint", "")))
    unit = scoring.UnitScale(*preset.unit_mean_std) if preset is not None and preset.unit_mean_std else None
    provenance = dict(scoring.checkpoint_identity(path), stype=sampling.stype, sampling=sampling.sample_types,
                      model=preset.name if preset else None)
    return VideoScorer(runner, sampling.stype, "cpu", path, "onnx", cal, cal_note, False, notes, provenance, unit,
                       sample_types=sampling.sample_types, num_threads=sampling.threads, decoder=sampling.decoder)


def _given_options(ckpt: Optional[str], options: Union[None, str, Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """The checked options given by the caller (None: none given); a missing checkpoint is said first."""
    if ckpt is not None:
        scoring.refuse_folder(ckpt)
        if not os.path.isfile(os.path.expanduser(ckpt)):
            raise missing_checkpoint(ckpt)  # (for a released model's file: where to download it)
    if isinstance(options, Mapping):
        return check_vqa_options(copy.deepcopy(dict(options)))
    return load_vqa_options(options) if options else None


def _read_checkpoint(path: str, trust: bool) -> Tuple[Any, str, Dict[str, Any]]:
    """``(object, format, info)``: the checkpoint, its format, and its other keys (``label_stats``, ...)."""
    obj = load_checkpoint(path, as_weights=True, trust=trust)
    fmt = detect_format_of(obj, path)
    if fmt in BACKBONE_ONLY:
        raise CheckpointError(f"{path} holds backbone weights only ({BACKBONE_ONLY[fmt]}) without a trained quality "
                              "head, so it cannot score videos: pass a trained SAMA / FAST-VQA model")
    info = {k: v for k, v in obj.items() if k != "state_dict"} if isinstance(obj, Mapping) and fmt == "vqa_release" else {}
    return obj, fmt, info


def _options_for(given: Optional[Dict[str, Any]], obj: Any, path: str,
                 roots: Sequence[str]) -> Tuple[Dict[str, Any], str]:
    """``(options, where they come from)``: the given ones; else those the checkpoint carries; else the
    ``options.yml`` of the run that wrote it (by file name); else :data:`DEFAULT_OPTIONS`."""
    if given is not None:
        return given, given.get("_options_path", "the given options")
    embedded = scoring.embedded_options(obj)
    if embedded is not None:
        return check_vqa_options(embedded), f"the options stored in {path}"
    opt = load_vqa_options(_run_options_for(path, roots) or DEFAULT_OPTIONS)
    return opt, opt.get("_options_path", DEFAULT_OPTIONS)


@dataclass
class _Sampling:
    """The test sampling scoring uses: sample type, ``sample_types`` per branch, threads, decoder, and (when
    ``--stype`` replaced the options' sample type) the note saying so."""

    stype: str
    sample_types: Dict[str, Dict[str, Any]]
    threads: int
    decoder: str
    source: str
    overridden: str = ""

    @classmethod
    def of(cls, opt: Mapping[str, Any], stype: Optional[str], decoder: Optional[str], source: str,
           onnx: bool = False) -> "_Sampling":
        """``onnx``: for an exported graph (``opt`` holds its sampling only; its clip shape is fixed)."""
        sample_types, threads = scoring_options(opt)
        decoder = resolve_decoder(decoder or _scoring_block(opt)[1].get("decoder") or "auto", "--decoder")
        try:
            trained = canonical_sample_type(opt.get("stype") or "sama")
            st = canonical_sample_type(stype) if stype else trained
        except ValueError as e:
            raise OptionError(f"--stype: {e}") from None
        # refused here, before any output: the data set would refuse the options only when the first video is read
        _check_sampling_fits(st, sample_types, f"--stype {stype}" if stype else f"stype {st} (from {source})",
                             source, onnx, trained)
        overridden = "" if st == trained else (
            f"sample type overridden: --stype {st} in place of {trained} (from {source}); the checkpoint's "
            f"calibration was made with {trained} and no longer applies, so calibrated is left empty")
        return cls(st, sample_types, int(threads or 1), decoder, source, overridden)

    def describe(self) -> str:
        desc = ", ".join(f"{k}: {v.get('num_clips')} clips x {v.get('clip_len')} frames (interval "
                         f"{v.get('frame_interval')}), {v.get('fragments_h', 7)}x{v.get('fragments_w', 7)} grid of "
                         f"{v.get('fsize_h', 32)}x{v.get('fsize_w', 32)}" for k, v in self.sample_types.items())
        return f"sampling: {self.stype}; {desc} (from {self.source}); decoder: {self.decoder}"


def _check_sampling_fits(stype: str, sample_types: Mapping[str, Mapping[str, Any]], flag: str, source: str,
                         onnx: bool, trained: str) -> None:
    """One :class:`OptionError` naming ``flag`` (what the user gave) and what fits instead, when ``stype`` cannot
    score with these options: clips whose shape follows each video for an ``onnx`` graph (its clip shape is fixed;
    made for ``trained``), or branch options that are not ``stype``'s (e.g. a grid's ``fragments_h`` for ``--stype
    resize``). (A PyTorch Video Swin takes such clips up to its base input size: larger ones are refused by the
    model itself, :meth:`samavqa.models.swin3d.SwinTransformer3D.window_for`.)"""
    graph = f"score with the graph's own sample type, {trained} (no --stype)"
    if onnx:
        refuse_video_shaped_for(stype, sample_types, flag, "an ONNX graph takes one fixed clip shape", instead=graph)
    for branch, opts in sample_types.items():
        foreign = unknown_sample_options(stype, opts)
        if foreign:
            instead = graph if onnx else (f"{fitting_types_phrase(sample_types, False)}, "
                                          f"or give options written for {stype} (--options)")
            raise OptionError(f"{flag}: the sampling options of branch {branch} in {source} set {', '.join(foreign)}, "
                              f"which {stype} does not take (its own: {', '.join(own_sample_options(stype))}); "
                              f"{instead}")
        try:
            check_sample_options(stype, opts, f"branch {branch}")
        except ValueError as e:
            raise OptionError(f"{flag}: {e}") from None


def _load_model(opt: Mapping[str, Any], obj: Any, sample_types: Mapping[str, Any], device: str, path: str,
                source: str, notes: List[str]) -> nn.Module:
    """The model of ``opt`` with the checkpoint's weights, in eval mode; weights that do not fit the model are
    one error naming the file, the options and what to pass."""
    def build() -> nn.Module:
        net = build_model(opt)
        missing = [k for k in sample_types if k.split("_")[0] not in net.branches]
        if missing:
            raise OptionError(f"sample_types {', '.join(missing)} have no model branch; the model has "
                              f"{', '.join(net.branches)}")
        return net

    def load(net: nn.Module) -> List[str]:
        return scoring.load_fitting(lambda: load_vqa_weights(net, obj), path, source,
                                    "--options FILE (the options it was trained with) or -m NAME (a released model)")

    # every learnable tensor comes from the file (a checkpoint lacking one is refused), so no random init
    net, load_notes = build_with_weights(build, load, device)
    notes += load_notes
    return net.eval()


# ----------------------------------------------------------------------------------------------- CLI
def list_video_files(folder: str, recursive: bool = False) -> List[Tuple[str, str]]:
    """``(name relative to folder, path)`` of the video files in ``folder`` (by extension), sorted."""
    return scoring.list_media(folder, VIDEO_EXTENSIONS, "video", recursive)


write_csv = scoring.write_score_csv


class _ListModels(argparse.Action):
    """``--list-models``: print the released models (:func:`samavqa.presets.list_presets`) and exit, as ``--help``."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        list_presets(default_search_roots(), sys.stdout)
        parser.exit(0)


DESCRIPTION = ("Score videos with a SAMA VQA model (raw score and, when the checkpoint allows, the score calibrated "
               "to its training set's MOS scale).")
OPTIONS_HELP = ("VQA option file for model / test sampling / stype (default: the checkpoint's run options, else "
                "VQA/options/fast-SAMA-test.yml)")


def build_parser() -> argparse.ArgumentParser:
    stype = dict(help=f"sample type: {', '.join(SAMPLE_TYPES)} (default: from the options)")
    p = scoring.scoring_parser("video", "-v", DESCRIPTION, RELEASED_WEIGHTS, OPTIONS_HELP, stype, batch_size=1,
                               batch_help="videos per loader batch (scores do not depend on it)")
    p.add_argument("-m", "--model", choices=PRESETS.names(), metavar="NAME",
                   help=f"a released model by name: {', '.join(PRESETS)}; it chooses the option file and the weight "
                        "file in pretrained_weights/ (--options / --ckpt override them; --list-models shows them "
                        "and whether the weights are there)")
    p.add_argument("--list-models", action=_ListModels,
                   help="list the released models (-m), their files and where to download missing weights, and exit")
    p.add_argument("--decoder", choices=decoder_choices(), help="video decoder (default: the options' data set "
                                                              "decoder, else auto: decord where installed, else PyAV)")
    p.add_argument("--per-clip", action="store_true",
                   help=f"also give each clip's raw score: a CSV column {scoring.CLIP_COLUMN} (space-separated, in "
                        "temporal order; the score is their mean), or after the score for one video")
    return p


COMMANDS = ("vqa.py", "sama-vqa")  # this script and its console command


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``VQA/vqa.py``; returns the exit status (the command's own process ends at once with it:
    :func:`samacore.scoring.run_scoring`)."""
    args = build_parser().parse_args(argv)
    set_verbose(args.verbose)
    return scoring.run_scoring(args, load_scorer, VIDEO_EXTENSIONS, "video",
                               {"decoder": args.decoder, "model": args.model},
                               check_given=scoring.refuse_other_media("-v", still_image_reason), argv=argv,
                               commands=COMMANDS)
