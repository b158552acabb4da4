"""Video decoding: frames of a file by index, as uint8 tensors, with errors that name the file and the reason.

:func:`decode_frames` decodes every frame the temporal samplers of all branches need in one batched call.
Unreadable files raise :class:`VideoReadError` (a missing file :class:`VideoNotFoundError`), with the decoding
library's messages translated into what they mean. Still images (JPEG, PNG, GIF, ...) are refused by their
content before any decoder sees them.

Decoders are entries of :data:`DECODERS` (name -> :class:`Decoder`); the option ``decoder`` (dataset args,
``--decoder`` of ``VQA/vqa.py``) picks one: ``auto`` (default) takes the first registered one that is installed.

* ``decord`` (first choice): its wheels exist for Linux x86_64 and Windows x86_64 only.
* ``pyav``: PyAV (FFmpeg), installed everywhere. It gives decord's frames: frame ``i`` is the ``i``-th frame
  in presentation order (frames counted as decord counts them: one per packet of the video stream, so
  containers without a frame count, e.g. WebM, work), the rotation metadata is applied, and the colour
  conversion is the same swscale YUV -> RGB24 conversion decord's filter graph runs (the frame's colour matrix
  and range tags; BT.601 limited range when untagged; bilinear flags). Measured against decord 0.6: equal
  pixels on 8-bit video (4:2:0, 4:2:2, 4:4:4, full or limited range, BT.601 / BT.709 / BT.2020 tags, H.264,
  MPEG-4, VP9, MJPEG); on 10-bit video the two FFmpeg versions (decord's 4.1, PyAV's 8) convert differently
  (see the README's figures). Frames are reached by seeking to the keyframe before each wanted run of frames
  when that skips decoding, identified by their timestamps; streams without usable timestamps are decoded
  from the start.

Library chatter (FFmpeg / decord log lines) is kept off the terminal unless :func:`set_verbose` is on (the
scoring scripts' ``--verbose``): native stderr is redirected to ``/dev/null`` around each library call.
"""
from __future__ import annotations

import bisect
import contextlib
import importlib.util
import os
import re
import stat
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Protocol, Sequence, Tuple

import numpy as np
import torch

from samacore.options import OptionError
from samacore.registry import Registry

__all__ = ["VideoReadError", "VideoNotFoundError", "decode_frames", "read_frames", "open_video", "pick_frames",
           "take_rows", "still_image_reason", "DECODERS", "decoder_choices", "Decoder", "register_decoder",
           "resolve_decoder", "set_verbose", "verbose"]


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
    ("Failed to measure duration", "not a video with a known length (not a video file, or broken metadata)"),
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


# ----------------------------------------------------------------------------------------------- file checks
# Still-image formats by their first bytes (FFmpeg, and so PyAV, would read them as one-frame "videos").
_IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
)
_IMAGE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")  # ISO-BMFF image files


def _image_kind(head: bytes) -> Optional[str]:
    """What still-image format ``head`` (a file's first bytes) starts, if any."""
    for magic, kind in _IMAGE_SIGNATURES:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
        return "an HEIF / AVIF image"
    return None


def _check_video_file(path: str) -> None:
    """Refuse what a decoder would choke or block on: missing, a folder, a FIFO / device, an empty file, an image."""
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
    try:
        reason = still_image_reason(path)
    except OSError as e:
        raise _video_error(path, f"cannot open the file ({e.strerror or e})") from None
    if reason:
        raise _video_error(path, reason)


def still_image_reason(path: str) -> Optional[str]:
    """Why ``path`` is no video if its content is a still image (JPEG, PNG, GIF, WebP, ...); None otherwise."""
    with open(path, "rb") as f:
        kind = _image_kind(f.read(16))
    return (f"it is {kind}, not a video (a video file is needed: .mp4, .mkv, .webm, .avi, .mov or any format "
            "FFmpeg reads; images are scored with IQA/iqa.py)") if kind else None


# ----------------------------------------------------------------------------------------------- library output
_VERBOSE_ENV = "SAMA_DECODER_LOGS"  # an environment variable, so DataLoader workers (fork or spawn) see it too


def set_verbose(on: bool) -> None:
    """Show (True) or hide (False, the default) the decoding libraries' own log lines, in this process and in
    the processes it starts. Shown, PyAV's FFmpeg prints warnings and errors to stderr."""
    import av.logging

    if on:
        av.logging.restore_default_callback()
        av.logging.set_libav_level(av.logging.WARNING)
    elif verbose():
        av.logging.set_level(None)  # PyAV's own default: FFmpeg's messages dropped
    os.environ[_VERBOSE_ENV] = "1" if on else "0"


def verbose() -> bool:
    """Whether the decoding libraries may print (see :func:`set_verbose`)."""
    return os.environ.get(_VERBOSE_ENV) == "1"


@contextlib.contextmanager
def _library_output_hidden() -> Iterator[None]:
    """Send native stderr (fd 2: FFmpeg's and decord's C++ log lines) to /dev/null for the block, unless verbose.

    The libraries write from C, bypassing ``sys.stderr``; redirecting the descriptor is the one switch that
    silences them all (decord's own LOG lines have no level setting).
    """
    if verbose():
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to hide
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# ----------------------------------------------------------------------------------------------- registry
class OpenVideo(Protocol):
    """A video opened by a decoder."""

    num_frames: int

    def frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` (sorted, unique, each < num_frames) -> uint8 ``[U, H, W, 3]`` RGB."""

    def frame_pixels(self) -> int:
        """``H * W`` of the frames :meth:`frames` gives (optional: lets a reader size its buffers up front)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Decoder:
    """One decoding library: how to open a video, what its errors mean, whether it is installed."""

    name: str
    open: Callable[[str, int], OpenVideo]    # (path, threads) -> open video; library errors propagate
    reason: Callable[[BaseException], str]   # a library error -> what it means, for VideoReadError
    available: Callable[[], bool]
    missing: str                             # why it may be missing, for the message


#: name -> decoder, in order of preference for ``decoder: auto``; a new decoder is one :func:`register_decoder` call
DECODERS: Registry[Decoder] = Registry("decoder")


def register_decoder(decoder: Decoder) -> Decoder:
    return DECODERS.register(decoder.name, decoder)


def decoder_choices() -> Tuple[str, ...]:
    """The values the ``decoder`` option and ``--decoder`` accept: ``auto`` and every registered decoder."""
    return ("auto",) + DECODERS.names()


def _installed(module: str) -> Callable[[], bool]:
    return lambda: importlib.util.find_spec(module) is not None


def resolve_decoder(name: Optional[str] = "auto", where: str = "decoder") -> str:
    """The registered decoder ``name`` stands for (``auto`` / None: the first installed one).

    :class:`~samacore.options.OptionError` for an unknown name or a decoder that is not installed here.
    """
    name = "auto" if name is None else name
    if name == "auto":
        for d in DECODERS.values():
            if d.available():
                return d.name
        raise OptionError(f"{where}: no video decoder is installed (install one of: {', '.join(DECODERS)})")
    if name not in DECODERS:
        raise OptionError(f"{where} must be one of {', '.join(decoder_choices())}, got {name!r}")
    if not DECODERS[name].available():
        others = [d.name for d in DECODERS.values() if d.available()]
        raise OptionError(f"{where}: {name} is not installed ({DECODERS[name].missing}); use "
                          f"{' or '.join(['auto'] + others)}")
    return name


# ----------------------------------------------------------------------------------------------- decord
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


class _DecordVideo:
    """decord's VideoReader: one batched ``get_batch`` (seeking and decoding in C++)."""

    def __init__(self, path: str, num_threads: int) -> None:
        import decord  # imported late: torch must be imported first (decord + torch import order can hang)

        self.path = path
        self.reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=int(num_threads))
        self.num_frames = len(self.reader)

    def frames(self, indices: Sequence[int]) -> torch.Tensor:
        frames = None
        try:
            frames = _as_tensor(self.reader.get_batch(list(indices)))  # [U, H, W, C] uint8
        except Exception as e:
            if not _is_copy_bug(e):
                raise
        if frames is None or frames.dim() != 4 or frames.shape[-1] != 3:
            frames = _decode_opencv(self.path, indices)
        return frames

    def frame_pixels(self) -> int:
        # decord has no call for the size: decode the stream's first frame (milliseconds; the next get_batch seeks)
        h, w = self.reader.next().shape[:2]
        return int(h) * int(w)

    def close(self) -> None:
        self.reader = None


def _as_tensor(batch: Any) -> torch.Tensor:
    """decord's frames as a tensor whatever bridge is set: ``decord.bridge.set_bridge("torch")`` (FAST-VQA and
    DOVER call it at import) makes ``get_batch`` return a torch tensor in place of decord's NDArray. The bridge is
    global state of other people's code, so it is read as it comes, never changed. decord's own NDArray (the native
    bridge) is taken over through DLPack, not copied (``asnumpy`` copied every decoded frame once more: 0.25 s for
    the 132 frames of a 720p video)."""
    if isinstance(batch, torch.Tensor):
        return batch
    if hasattr(batch, "to_dlpack"):  # decord's own NDArray: the tensor keeps it alive and frees it
        return torch.from_dlpack(batch.to_dlpack())
    if hasattr(batch, "asnumpy"):
        return torch.from_numpy(batch.asnumpy())
    return torch.from_numpy(np.asarray(batch))  # the TensorFlow / MXNet / TVM bridges


register_decoder(Decoder("decord", _DecordVideo, _decord_reason, _installed("decord"),
                         "decord 0.6 has wheels for Linux x86_64 and Windows x86_64 only"))


# ----------------------------------------------------------------------------------------------- PyAV
def _pyav_reason(e: BaseException) -> str:
    import av

    if isinstance(e, av.error.InvalidDataError):
        return "not a readable video container (unknown format, or a truncated or corrupt file)"
    if isinstance(e, av.error.DecoderNotFoundError):
        return "the video stream cannot be decoded (no decoder for its codec)"
    if isinstance(e, av.error.FFmpegError):
        return f"the video stream cannot be decoded (corrupt or truncated stream: {e.strerror or e})"
    return f"{type(e).__name__}: {e}"


class _PyAVVideo:
    """PyAV (FFmpeg) with decord's frame numbering, rotation and colour conversion (see the module docstring).

    Opening reads every packet of the video stream (no decoding), as decord does: the packet count is the
    frame count, and the sorted packet timestamps number the frames and locate the keyframes.
    """

    def __init__(self, path: str, num_threads: int) -> None:
        import av

        self.path = path
        self.threads = int(num_threads)
        self.container = av.open(path)
        self.stream = self.container.streams.best("video")
        if self.stream is None:
            raise _video_error(path, "the file has no video stream (zero frames, audio only, or not a video)")
        self.size = (self.stream.codec_context.width, self.stream.codec_context.height)
        pts: List[Optional[int]] = []
        keys: List[bool] = []
        for packet in self.container.demux(self.stream):
            if packet.size == 0 and packet.dts is None:
                continue  # PyAV's end-of-stream flush packet, not a frame
            pts.append(packet.pts)
            keys.append(bool(packet.is_keyframe))
        self.num_frames = len(pts)
        # Frame i is the packet with the i-th smallest timestamp (decord's numbering). Without distinct
        # timestamps frames are numbered in the order the decoder returns them, decoding from the start.
        self.pts: Optional[List[int]] = None
        self.keyframes: List[int] = []
        if pts and None not in pts and len(set(pts)) == len(pts):
            self.pts = sorted(pts)  # type: ignore[arg-type]
            index = {p: i for i, p in enumerate(self.pts)}
            self.keyframes = sorted(index[p] for p, k in zip(pts, keys) if k)
        self._decoding: Optional[Iterator[Tuple[int, Any]]] = None  # frames from the decoder's current position
        self._pos = -1  # number of the last frame it gave

    def frame_pixels(self) -> int:
        return self.size[0] * self.size[1]  # the stream's size; a rotation turns frames, it keeps their pixels

    def close(self) -> None:
        """Close the file and drop the decoding state now: the generator and this object reference each other,
        and a cycle left to the garbage collector could be freed in a forked DataLoader worker instead."""
        if self._decoding is not None:
            self._decoding.close()
            self._decoding = None
        self.container.close()

    # -- decoding
    def _restart(self) -> None:
        import av

        self.container.close()
        self.container = av.open(self.path)
        self.stream = self.container.streams.best("video")
        if self.threads != 1:
            self.stream.thread_type = "AUTO"
        self.stream.codec_context.thread_count = self.threads  # 0: FFmpeg's choice

    def _decode_from(self, key: int) -> Iterator[Tuple[int, Any]]:
        """``(index, frame)`` from keyframe number ``key`` on (``key`` 0 and untimed streams: from the start).

        After a seek only frames at or after the keyframe count (earlier ones may lack their references); a
        seek that lands anywhere but on a keyframe at or before the wanted one raises :class:`_SeekMiss`, a frame
        without a known timestamp :class:`_Untimed`.
        """
        self._restart()
        start_pts = None
        if self.pts is not None and key > 0:
            start_pts = self.pts[key]
            self.container.seek(start_pts, stream=self.stream, backward=True, any_frame=False)
        first = True
        count = 0
        for packet in self.container.demux(self.stream):
            if first and start_pts is not None and packet.size:
                if not packet.is_keyframe or packet.pts is None or packet.pts > start_pts:
                    raise _SeekMiss
                first = False
            for frame in packet.decode():
                if self.pts is None:
                    yield count, frame
                    count += 1
                    continue
                i = -1 if frame.pts is None else bisect.bisect_left(self.pts, frame.pts)
                if i < 0 or i == len(self.pts) or self.pts[i] != frame.pts:
                    raise _Untimed
                if start_pts is None or frame.pts >= start_pts:
                    yield i, frame

    def _rgb(self, frame: Any) -> np.ndarray:
        """``[H, W, 3]`` uint8 as decord gives it: at the stream's size (decord scales frames of a size change to
        it), swscale's default conversion for the frame's colour tags, rotated as the display matrix says."""
        # threads=1: no swscale slice threads, which a forked DataLoader worker freeing an inherited frame would wait
        # for forever (and decoding runs one video per worker anyway)
        arr = frame.to_ndarray(format="rgb24", width=self.size[0], height=self.size[1], threads=1)
        turns = int(round(float(getattr(frame, "rotation", 0) or 0) / 90.0)) % 4  # counter-clockwise quarter turns
        return np.ascontiguousarray(np.rot90(arr, turns)) if turns else arr

    def frames(self, indices: Sequence[int]) -> torch.Tensor:
        wanted = sorted(int(i) for i in indices)
        try:
            got = self._collect(wanted)
        except _SeekMiss:  # the container's seeking cannot be trusted: decode from the start
            self.keyframes, self._decoding = [], None
            return self.frames(wanted)
        except _Untimed:  # nor the timestamps: number the frames in the order the decoder gives them
            self.pts, self.keyframes, self._decoding = None, [], None
            return self.frames(wanted)
        missing = [i for i in wanted if i not in got]
        if missing:
            raise _video_error(self.path, f"frame {missing[0]} of {self.num_frames} could not be decoded "
                                          f"({len(got)} of the {len(wanted)} frames asked for were; truncated or "
                                          "corrupt stream)")
        return torch.from_numpy(np.stack([got[i] for i in wanted]))

    def _collect(self, wanted: List[int]) -> Dict[int, np.ndarray]:
        """Decode the ``wanted`` frames in order, going on from where the last call stopped; seek to the keyframe
        before a wanted frame when that skips frames the decoder would otherwise decode."""
        got: Dict[int, np.ndarray] = {}
        todo = set(wanted)
        seek = self.pts is not None and bool(self.keyframes)
        for t in wanted:
            if t in got:
                continue
            key = self.keyframes[bisect.bisect_right(self.keyframes, t) - 1] if seek and self.keyframes[0] <= t else 0
            if self._decoding is None or self._pos >= t or (seek and key > self._pos + 1):
                self._decoding, self._pos = self._decode_from(key), -1
            for i, frame in self._decoding:
                self._pos = i
                if i in todo:
                    got[i] = self._rgb(frame)
                if i >= t:
                    break
        return got


class _SeekMiss(Exception):
    """A seek did not land on the keyframe asked for (caught: decoding restarts from the start, without seeks)."""


class _Untimed(Exception):
    """A decoded frame has no timestamp among the packets' (caught: frames are numbered in decoding order)."""


register_decoder(Decoder("pyav", _PyAVVideo, _pyav_reason, _installed("av"), "pip install av"))


# ----------------------------------------------------------------------------------------------- decoding
class _Reader:
    """An open video (:func:`open_video`): ``read`` gives frames, with the library's errors translated."""

    def __init__(self, path: str, spec: Decoder, video: OpenVideo) -> None:
        self.path, self.spec, self.video = path, spec, video
        self.num_frames = int(video.num_frames)

    def frame_bytes(self) -> Optional[int]:
        """Bytes of one decoded frame (uint8 RGB), or None where the decoder cannot tell before decoding (the
        frames are then read and reported as usual: a broken file fails on :meth:`read`, with its reason)."""
        pixels = getattr(self.video, "frame_pixels", None)
        try:
            n = int(pixels()) if pixels is not None else 0
        except Exception:
            return None
        return 3 * n if n > 0 else None

    def read(self, indices: Sequence[int], progress: Optional[Callable[[int, int], None]] = None) -> torch.Tensor:
        """Frames ``indices`` (sorted, unique) -> uint8 ``[U, H, W, 3]``; ``progress(done, total)``: reads them in
        up to 16 runs, reporting after each (one call otherwise)."""
        indices = [int(i) for i in indices]
        try:
            if progress is None:
                frames = self.video.frames(indices)
            else:
                parts = []
                progress(0, len(indices))
                for part in np.array_split(np.asarray(indices), min(16, len(indices))):
                    parts.append(self.video.frames(part.tolist()))
                    progress(sum(len(p) for p in parts), len(indices))
                frames = torch.cat(parts)
        except VideoReadError:
            raise
        except Exception as e:
            raise _video_error(self.path, f"cannot decode frames {indices[0]}-{indices[-1]} of {self.num_frames}: "
                                          f"{self.spec.reason(e)}") from None
        if frames.dim() != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3 or min(frames.shape[1:3]) < 1:
            raise _video_error(self.path, f"the decoder returned {tuple(frames.shape)} for {len(indices)} frames")
        return frames


@contextlib.contextmanager
def open_video(path: str, decoder: Optional[str] = "auto", num_threads: int = 1) -> Iterator[_Reader]:
    """``with open_video(path) as v:`` ``v.num_frames``, ``v.read(indices)``; closed after the block.

    The file is checked first (missing, folder, FIFO, empty, a still image: :class:`VideoReadError`), and the
    library's log lines are hidden for the whole block unless :func:`set_verbose` is on.
    """
    spec = DECODERS[resolve_decoder(decoder)]
    _check_video_file(path)
    with _library_output_hidden():
        try:
            video = spec.open(path, int(num_threads))
        except VideoReadError:
            raise
        except Exception as e:
            raise _video_error(path, spec.reason(e)) from None
        try:
            reader = _Reader(path, spec, video)
            if reader.num_frames < 1:
                raise _video_error(path, "the video has no frames")
            yield reader
        finally:
            video.close()


def take_rows(frames: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """``frames[rows]`` along the first axis: a view when ``rows`` rise by one step (consecutive frames, or every
    ``frame_interval``-th), so full frames are not copied; otherwise a copy by ``index_select`` (one memcpy per
    frame: 5x faster than ``frames[index]``, whose element-wise gather took 48 ms for 32 720p frames)."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    step = int(rows[1] - rows[0]) if len(rows) > 1 else 1
    if len(rows) and step > 0 and np.array_equal(rows, rows[0] + step * np.arange(len(rows))):
        return frames[int(rows[0]):int(rows[-1]) + 1:step]
    return torch.index_select(frames, 0, torch.from_numpy(rows))


def pick_frames(num_frames: int, samplers: Mapping[str, Any], is_train: bool,
                read: Callable[[List[int]], torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, np.ndarray]]:
    """Every branch's frames of a ``num_frames`` video: ``read(sorted unique indices) -> uint8 [U, H, W, 3]`` is
    called once for all branches together; returns ``(videos, frame_inds)`` as :func:`decode_frames` does."""
    frame_inds = {branch: np.asarray(s(num_frames, is_train), dtype=np.int32) for branch, s in samplers.items()}
    unique, inverse = np.unique(np.concatenate(list(frame_inds.values())), return_inverse=True)
    frames = read(unique.tolist())
    videos, start = {}, 0
    for branch, inds in frame_inds.items():
        rows = inverse.reshape(-1)[start:start + len(inds)]
        videos[branch] = take_rows(frames, rows).permute(3, 0, 1, 2)  # [C, T, H, W]
        start += len(inds)
    return videos, frame_inds


def decode_frames(path: str, samplers: Mapping[str, Any], is_train: bool, num_threads: int = 1,
                  decoder: Optional[str] = "auto", progress: Optional[Callable[[int, int], None]] = None):
    """Decode the frames every branch needs with ONE batched call (each frame decoded once).

    Returns ``(videos, frame_inds)``: ``videos[branch]`` is uint8 ``[C, T, H, W]``, ``frame_inds[branch]`` int32 ``[T]``.
    ``decoder``: a :data:`DECODERS` name or ``auto``. ``progress(frames decoded, frames needed)``: called as
    decoding goes (the frames are then read in up to 16 runs instead of one call). A file that cannot be read
    raises :class:`VideoReadError` naming it and the reason (the library's errors translated); a missing file
    raises :class:`VideoNotFoundError` (also a ``FileNotFoundError``). Videos with fewer frames than a clip are
    fine (the temporal sampler repeats the last frame); frames smaller than the sampling grid are enlarged later
    by the spatial sampler. The video is opened here, per call, so DataLoader workers never share a reader.
    """
    with open_video(path, decoder, num_threads) as video:
        return pick_frames(video.num_frames, samplers, is_train, lambda indices: video.read(indices, progress))


def read_frames(path: str, indices: Optional[Sequence[int]] = None, decoder: Optional[str] = "auto",
                num_threads: int = 1) -> torch.Tensor:
    """Frames ``indices`` (default: all) of a video file, in the order given -> uint8 ``[T, H, W, 3]`` RGB.

    The frames the data sets and the scorer decode (same decoder, numbering and colour conversion), e.g. to
    score an in-memory video with :meth:`samavqa.score.VideoScorer.__call__`.
    """
    with open_video(path, decoder, num_threads) as video:
        wanted = np.arange(video.num_frames) if indices is None else np.asarray(list(indices), dtype=np.int64)
        if wanted.size == 0 or wanted.min() < 0 or wanted.max() >= video.num_frames:
            raise ValueError(f"{path}: frame indices must lie in 0-{video.num_frames - 1}, got {wanted.tolist()[:8]}")
        unique, inverse = np.unique(wanted, return_inverse=True)
        return take_rows(video.read(unique.tolist()), inverse)
