"""Video decoding: frames of a file by index, as uint8 tensors, with errors that name the file and the reason.

:func:`decode_frames` decodes every frame the temporal samplers of all branches need in one batched call.
Unreadable files raise :class:`VideoReadError` (a missing file :class:`VideoNotFoundError`), with decord's
messages translated into what they mean.
"""
from __future__ import annotations

import os
import re
import stat
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

__all__ = ["VideoReadError", "VideoNotFoundError", "decode_frames"]


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
