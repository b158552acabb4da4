"""The degradations of the examplar items: Gaussian blur, and area down-scaling followed by bilinear up-scaling.

Both low-pass the picture (why only these two: ``samadata.examplar``); the parameter of each level is in
``samadata.contents.VIDEO_LEVELS`` / ``IMAGE_LEVELS``. All operations are OpenCV's on uint8 pixels, run
single-threaded in the builder's workers.
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np

from .contents import IMAGE_LEVELS, VIDEO_LEVELS, Item


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT101)


def _downup(img: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    factor = int(factor)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


#: degradation type -> function(uint8 [H, W, 3], the level's parameter) -> uint8 [H, W, 3]
DEGRADATIONS: Dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "blur": _blur,
    "scale": _downup,
}


def degrade_image(img: np.ndarray, item: Item) -> np.ndarray:
    """Apply the item's degradation to ``[H, W, 3]`` (the reference is returned as it is)."""
    if item.kind == "ref":
        return img
    if item.kind not in DEGRADATIONS:
        raise ValueError(f"unknown image degradation {item.kind!r}; known: {', '.join(IMAGE_LEVELS)}")
    return DEGRADATIONS[item.kind](img, item.param)


def degrade_video(frames: np.ndarray, item: Item) -> np.ndarray:
    """Apply the item's degradation to every frame of ``[T, H, W, 3]``."""
    if item.kind == "ref":
        return frames
    if item.kind not in DEGRADATIONS:
        raise ValueError(f"unknown video degradation {item.kind!r}; known: {', '.join(VIDEO_LEVELS)}")
    return np.stack([DEGRADATIONS[item.kind](f, item.param) for f in frames])
