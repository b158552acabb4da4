"""Temporal frame samplers: which frame indices of a video are decoded.

Both samplers are callables ``sampler(num_frames, train=False) -> np.ndarray[int32]``. Random choices use
NumPy's global generator (as FAST-VQA / SAMA do), so ``np.random.seed`` (or ``samacore.utils.seed_everything``)
makes training draws reproducible. :func:`build_frame_sampler` turns one ``sample_types`` branch of the options
into its sampler (SAMA's layout, or FAST-VQA's ``t_frag`` layout).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from samacore.options import positive_int

__all__ = ["FRAME_OVERFLOW", "FragmentSampleFrames", "SampleFrames", "build_frame_sampler"]

# What a frame index past the last frame becomes: SAMA clamps it to the last frame, FAST-VQA wraps it around
# to the start (modulo the frame count). Both only matter for videos shorter than the sampled span.
FRAME_OVERFLOW = ("clamp", "wrap")


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class FragmentSampleFrames:
    """Temporal fragments: split the video into ``fragments_t`` equal segments and take a run of ``fsize_t`` frames
    (every ``frame_interval``-th) from each.

    For ``N`` frames the segment length is ``L = N // fragments_t`` and segment ``i`` starts at ``L * i``. Inside a
    segment the run starts at a random offset in ``[0, max(1, L - fsize_t * frame_interval))`` (train) or at
    ``max(0, L - fsize_t * frame_interval) // 2`` (test: the middle of the train range; FAST-VQA draws at random
    there too). ``num_clips`` repeats the whole draw (concatenated). Indices past the last frame are clamped to
    ``N - 1`` (``overflow="clamp"``, SAMA) or taken modulo ``N`` (``"wrap"``, FAST-VQA). Output length:
    ``num_clips * fragments_t * fsize_t``.

    The datasets build it with :func:`build_frame_sampler`.
    """

    def __init__(self, fsize_t: int, fragments_t: int, frame_interval: int = 1, num_clips: int = 1,
                 overflow: str = "clamp"):
        self.fsize_t = _positive_int(fsize_t, "fsize_t (clip_len)")
        self.fragments_t = _positive_int(fragments_t, "fragments_t (num_clips)")
        self.frame_interval = _positive_int(frame_interval, "frame_interval")
        self.num_clips = _positive_int(num_clips, "num_clips")
        if overflow not in FRAME_OVERFLOW:
            raise ValueError(f"overflow must be one of {', '.join(FRAME_OVERFLOW)}, got {overflow!r}")
        self.overflow = overflow
        self.size_t = self.fragments_t * self.fsize_t

    def get_frame_indices(self, num_frames: int, train: bool = False) -> np.ndarray:
        """One draw: ``[fragments_t * fsize_t]`` indices (not yet clamped)."""
        seg_len = num_frames // self.fragments_t
        seg_starts = seg_len * np.arange(self.fragments_t, dtype=np.int64)
        span = self.fsize_t * self.frame_interval
        if train:
            shift = np.random.randint(0, max(1, seg_len - span), size=self.fragments_t)
        else:
            shift = np.full(self.fragments_t, max(0, seg_len - span) // 2, dtype=np.int64)
        steps = np.arange(self.fsize_t) * self.frame_interval
        return (seg_starts[:, None] + shift[:, None] + steps[None, :]).reshape(-1)

    def __call__(self, total_frames: int, train: bool = False, start_index: int = 0) -> np.ndarray:
        total_frames = _positive_int(total_frames, "total_frames")
        draws = [self.get_frame_indices(total_frames, train=train) for _ in range(self.num_clips)]
        inds = np.concatenate(draws) + start_index
        if self.overflow == "wrap":  # short videos: start again from the first frame
            return np.mod(inds, total_frames).astype(np.int32)
        return np.minimum(inds, total_frames - 1).astype(np.int32)  # short videos: repeat the last frame

    def __repr__(self) -> str:
        return (f"FragmentSampleFrames(fsize_t={self.fsize_t}, fragments_t={self.fragments_t}, "
                f"frame_interval={self.frame_interval}, num_clips={self.num_clips}, overflow={self.overflow!r})")


def build_frame_sampler(opts: Mapping[str, Any], where: str = "sample_types") -> FragmentSampleFrames:
    """The temporal sampler of one ``sample_types`` branch (``clip_len``, ``frame_interval``, ``num_clips``, and
    optionally ``t_frag`` and ``frame_overflow``); ValueError naming ``where.key`` for a bad value.

    Without ``t_frag`` (SAMA): ``num_clips`` segments of ``clip_len`` frames, one per clip, i.e.
    ``FragmentSampleFrames(clip_len, num_clips, frame_interval)``. With ``t_frag`` (FAST-VQA's FasterVQA
    options): every clip is ``t_frag`` segments of ``clip_len // t_frag`` frames spread over the whole video,
    drawn ``num_clips`` times: ``FragmentSampleFrames(clip_len // t_frag, t_frag, frame_interval, num_clips)``.
    Either way a clip has ``clip_len`` frames. ``frame_overflow``: ``clamp`` (default) or ``wrap``.
    """
    for key in ("clip_len", "num_clips", "frame_interval", "t_frag"):
        positive_int(opts.get(key, 1), f"{where}.{key}")
    overflow = opts.get("frame_overflow", "clamp")
    if overflow not in FRAME_OVERFLOW:
        raise ValueError(f"{where}.frame_overflow = {overflow!r} is not allowed; choose one of: "
                         f"{', '.join(FRAME_OVERFLOW)} (clamp: SAMA, wrap: FAST-VQA)")
    clip_len, num_clips, interval = opts["clip_len"], opts["num_clips"], opts["frame_interval"]
    if "t_frag" not in opts:
        return FragmentSampleFrames(clip_len, num_clips, interval, overflow=overflow)
    t_frag = opts["t_frag"]
    if clip_len % t_frag:
        divisors = [d for d in range(1, clip_len + 1) if clip_len % d == 0]
        raise ValueError(f"{where}.t_frag = {t_frag} must divide clip_len = {clip_len} (each of the t_frag temporal "
                         f"fragments has clip_len // t_frag frames); allowed: {', '.join(map(str, divisors))}")
    return FragmentSampleFrames(clip_len // t_frag, t_frag, interval, num_clips, overflow=overflow)


class SampleFrames:
    """mmaction-style clip sampler: ``num_clips`` clips of ``clip_len`` frames, every ``frame_interval``-th frame.

    Test mode spaces the clips evenly (average interval ``(N - clip_len * frame_interval + 1) / num_clips``) and
    shifts each by half that interval; train mode draws a random offset per clip. Indices wrap modulo ``N``.
    Output length: ``num_clips * clip_len``.
    """

    def __init__(self, clip_len: int, frame_interval: int = 1, num_clips: int = 1):
        self.clip_len = _positive_int(clip_len, "clip_len")
        self.frame_interval = _positive_int(frame_interval, "frame_interval")
        self.num_clips = _positive_int(num_clips, "num_clips")

    def _train_offsets(self, num_frames: int) -> np.ndarray:
        span = self.clip_len * self.frame_interval
        avg_interval = (num_frames - span + 1) // self.num_clips
        if avg_interval > 0:
            base = np.arange(self.num_clips) * avg_interval
            return base + np.random.randint(avg_interval, size=self.num_clips)
        if num_frames > max(self.num_clips, span):
            return np.sort(np.random.randint(num_frames - span + 1, size=self.num_clips))
        if avg_interval == 0:
            step = (num_frames - span + 1.0) / self.num_clips
            return np.around(np.arange(self.num_clips) * step)
        return np.zeros(self.num_clips, dtype=np.int64)

    def _test_offsets(self, num_frames: int) -> np.ndarray:
        span = self.clip_len * self.frame_interval
        avg_interval = (num_frames - span + 1) / float(self.num_clips)
        if num_frames > span - 1:
            base = np.arange(self.num_clips) * avg_interval
            return (base + avg_interval / 2.0).astype(np.int32)
        return np.zeros(self.num_clips, dtype=np.int32)

    def __call__(self, total_frames: int, train: bool = False, start_index: int = 0) -> np.ndarray:
        total_frames = _positive_int(total_frames, "total_frames")
        offsets = self._train_offsets(total_frames) if train else self._test_offsets(total_frames)
        inds = offsets[:, None] + np.arange(self.clip_len)[None, :] * self.frame_interval
        inds = np.mod(inds.reshape(-1), total_frames) + start_index
        return inds.astype(np.int32)

    def __repr__(self) -> str:
        return f"SampleFrames(clip_len={self.clip_len}, frame_interval={self.frame_interval}, num_clips={self.num_clips})"
