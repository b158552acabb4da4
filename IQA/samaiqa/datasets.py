"""Image loading and the IQA dataset.

Loading follows the original: open with PIL, convert to 8-bit RGB, enlarge images whose short side is below
``max(Sh, Sw)`` (PIL bilinear, sizes truncated to int), ToTensor (+ random flip / rotation for training) +
ImageNet normalisation, then :func:`samaiqa.sampling.sample_image`.

What every kind of file becomes (:func:`load_image`):

* 8-bit RGB: as is. Greyscale (``L``, ``1``): replicated to three channels. Palette (``P``, ``PA``): expanded.
  Alpha (``RGBA``, ``LA``, ``PA``): dropped, colour values kept, no compositing. CMYK / YCbCr / LAB / HSV:
  PIL's ``convert("RGB")`` (CMYK without colour management). All of this is what the original's
  ``convert("RGB")`` does.
* 16-bit greyscale (modes ``I;16*`` and ``I``): scaled to 8 bits (``v / 257``, rounded) -- a fix: the
  original's ``convert("RGB")`` clips every value above 255 to white. 16-bit RGB PNGs are read by PIL as
  8-bit RGB (high byte) already.
* Floating-point images (mode ``F``) have no defined 8-bit range: :class:`ImageReadError`.
* EXIF orientation is **ignored by default** in training and testing, as in the original (which trains and
  tests on the stored pixel grid); ``exif_transpose=True`` (data option ``exif_transpose: true``) rotates / flips
  the image upright with ``PIL.ImageOps.exif_transpose`` first. Keep it off to reproduce published numbers.
  (Scoring, ``IQA/iqa.py``, applies it by default.)
* Given a ``notes`` list, :func:`load_image` appends what it did to an odd but usable file: an animated image
  (first frame only), an alpha channel dropped, 16-bit or CMYK pixels converted, an EXIF orientation applied or
  ignored, an image enlarged 2x or more to fill the sampling grid.
* Missing files, directories, FIFOs / devices (never opened: reading them could block a DataLoader worker),
  empty files, files PIL does not recognise, truncated or corrupt data (decoded fully at load time, so the
  error appears here and not later) and decompression bombs: :class:`ImageReadError` naming the file and
  the reason. Nothing else is raised for a bad file.
"""
from __future__ import annotations

import os
import stat
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms

from samacore.options import OptionError, positive_int
from samacore.registry import Registry
from samacore.sampling import GRID_ALIASES, GRID_KEYS, resolve_sample_type

from .sampling import sample_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SAMPLING = {"fragments_h": 8, "fragments_w": 8, "fsize_h": 32, "fsize_w": 32}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
ENLARGE_NOTE_FACTOR = 2.0  # enlarging a small image this much or more is worth a note


class ImageReadError(RuntimeError):
    """An image file that cannot be opened or decoded; the message names the file and the reason."""


def to_rgb8(img: Image.Image) -> Image.Image:
    """Any PIL image -> 8-bit RGB (16-bit greyscale scaled, not clipped; alpha dropped). Mode ``F``: ValueError."""
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit range -> 8-bit range; mode "I" (32-bit int, how PIL reads some 16-bit files) is taken as 16-bit
        arr = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")  # 2-D uint8 -> mode "L"
    if mode == "F":
        raise ValueError("floating-point pixels (mode F) have no defined 8-bit range")
    if mode == "RGB":
        return img
    return img.convert("RGB")


def _check_file(path: str) -> None:
    """Refuse what is not a non-empty regular file before opening it (a FIFO or device would block a worker)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageReadError(f"image not found: {path}") from None
    except OSError as e:
        raise ImageReadError(f"cannot access image {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(f"cannot read image {path}: it is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(f"cannot read image {path}: not a regular file (FIFO, socket or device)")
    if st.st_size == 0:
        raise ImageReadError(f"cannot read image {path}: empty file (0 bytes)")


def load_image(path: str, min_size: int = 0, exif_transpose: bool = False,
               notes: Optional[List[str]] = None) -> Image.Image:
    """Open ``path`` as 8-bit RGB; if its short side is below ``min_size``, enlarge it (:func:`enlarge`).

    ``exif_transpose``: apply the EXIF orientation first (off by default, as the original). ``notes``: what was
    done to an odd file is appended to it. Any problem with the file raises :class:`ImageReadError` (see the
    module docstring).
    """
    path = str(path)
    _check_file(path)
    try:
        with Image.open(path) as f:
            f.load()  # decode everything now: truncated / corrupt data fails here
            if notes is not None:
                notes += _odd_file_notes(f, exif_transpose)
            img = ImageOps.exif_transpose(f) if exif_transpose else f
            img = to_rgb8(img)  # pixels are in memory after load(): usable once the file is closed
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot read image {path}: not an image file PIL recognises") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"cannot read image {path}: too many pixels ({e})") from None
    except OSError as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason.lower():
            reason = f"truncated or incomplete image data ({reason})"
        raise ImageReadError(f"cannot read image {path}: {reason}") from None
    except Exception as e:  # PIL plugins raise many types (SyntaxError, ValueError, struct.error, ...) on bad data
        raise ImageReadError(f"cannot read image {path}: {type(e).__name__}: {e}") from None
    return enlarge(img, min_size, notes)


def enlarge(img: Image.Image, min_size: int, notes: Optional[List[str]] = None) -> Image.Image:
    """``img`` enlarged (PIL bilinear) to ``int(w * s), int(h * s)``, ``s = min_size / min(w, h)`` (truncated, as
    the original) when its short side is below ``min_size``; else as is. ``notes``: says so when it enlarges
    ``2x`` or more (then the fragments see mostly interpolated pixels; a slight enlargement is routine)."""
    width, height = img.size
    if min(width, height) >= min_size:
        return img
    scale = min_size / min(width, height)
    size = (int(width * scale), int(height * scale))
    if notes is not None and scale >= ENLARGE_NOTE_FACTOR:
        notes.append(f"enlarged {scale:.3g}x from {width}x{height} to {size[0]}x{size[1]} to fill the {min_size}-pixel "
                     "sampling grid: the score judges interpolated pixels more than the image's own detail")
    return img.resize(size, Image.BILINEAR)


def _has_see_through_pixels(f: Image.Image) -> bool:
    """Whether some pixel is not fully opaque (an alpha channel or transparency colour that is 255 everywhere, as
    in many animated WebP frames, changes nothing when dropped)."""
    if not ("A" in f.mode or "a" in f.mode or "transparency" in f.info):
        return False
    return f.convert("RGBA").getchannel("A").getextrema()[0] < 255


def _odd_file_notes(f: Image.Image, exif_transpose: bool) -> List[str]:
    """What :func:`load_image` does to an odd but usable file, in words."""
    notes = []
    frames = getattr(f, "n_frames", 1)
    if frames > 1:
        notes.append(f"animated ({frames} frames): only the first frame is scored")
    if _has_see_through_pixels(f):
        notes.append("alpha channel dropped (colour values kept, not composited on a background)")
    if f.mode in _SIXTEEN_BIT:
        notes.append("16-bit pixels scaled to 8 bits")
    elif f.mode == "CMYK":
        notes.append("CMYK converted to RGB without colour management")
    orientation = f.getexif().get(0x0112, 1)  # EXIF Orientation tag
    if orientation in range(2, 9):
        notes.append(f"EXIF orientation {orientation} applied (turned upright)" if exif_transpose else
                     f"EXIF orientation {orientation} ignored: scored as stored, not upright")
    return notes


#: ``data.train_augment``: the random transforms of training images, applied before sampling, by name. ``flip_rotate``
#: is the original's; ``flip`` drops the rotation, whose black corners never occur at test time and which costs
#: ~20 ms per 512x384 image on a CPU core (a third of a small model's training time). A new augmentation is one entry.
TRAIN_AUGMENTS: Registry[Callable[[], List[Any]]] = Registry("training augmentation")
TRAIN_AUGMENTS.register("flip_rotate", lambda: [transforms.RandomHorizontalFlip(0.5), transforms.RandomRotation(45)])
TRAIN_AUGMENTS.register("flip", lambda: [transforms.RandomHorizontalFlip(0.5)])
TRAIN_AUGMENTS.register("none", lambda: [])


def build_transform(is_train: bool, augment: str = "flip_rotate") -> transforms.Compose:
    """ToTensor (+ the ``augment`` transforms of :data:`TRAIN_AUGMENTS` for training) + ImageNet Normalize."""
    steps = [transforms.ToTensor()]
    if is_train:
        steps += TRAIN_AUGMENTS.get(augment)()
    steps.append(transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return transforms.Compose(steps)


def sampling_args(data_opts: Optional[Mapping[str, Any]] = None) -> Dict[str, int]:
    """The four grid options (``fragments_h/w``, ``fsize_h/w``; the original's ``fwin_h/w`` accepted for the first
    two) from a ``data`` option block, with the paper's defaults (8x8 fragments of 32x32)."""
    data_opts = dict(data_opts or {})
    written = {k: k for k in GRID_KEYS}  # the name the file used, for messages
    for alias, key in GRID_ALIASES.items():
        if alias in data_opts:
            if key in data_opts and data_opts[key] != data_opts[alias]:
                raise OptionError(f"data.{alias} and data.{key} name the same grid option with different values "
                                  f"({data_opts[alias]!r}, {data_opts[key]!r}): keep one")
            data_opts[key], written[key] = data_opts.pop(alias), alias
    out = dict(DEFAULT_SAMPLING)
    for k in GRID_KEYS:
        if k in data_opts:
            out[k] = positive_int(data_opts[k], f"data.{written[k]}")
    return out


class ImageDataset(Dataset):
    """Images with quality labels; item ``i`` is ``{"image": [3, Sh, Sw] float, "label": float, "name": str}``.

    Args:
        paths: image files.
        labels: one score per image (NaN for unlabelled images).
        names: names reported with predictions (default: the paths).
        data_args: grid options ``fragments_h, fragments_w, fsize_h, fsize_w`` (or ``fwin_h, fwin_w``), ``exif_transpose`` (default False, as
            the original; see :func:`load_image`) and ``train_augment`` (:data:`TRAIN_AUGMENTS`, default
            ``flip_rotate``); other keys ignored.
        stype: ``fragment``, ``sama`` or ``sama-spm``.
        is_train: random augmentation and random fragment offsets.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[float],
        names: Optional[Sequence[str]] = None,
        data_args: Optional[Mapping[str, Any]] = None,
        stype: str = "sama",
        is_train: bool = False,
    ) -> None:
        if len(paths) != len(labels) or (names is not None and len(names) != len(paths)):
            raise ValueError(f"ImageDataset: {len(paths)} paths, {len(labels)} labels, {len(names or paths)} names")
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.float32)
        self.names = [str(n) for n in names] if names is not None else list(self.paths)
        self.args = sampling_args(data_args)
        try:
            self.stype = resolve_sample_type(stype, "image")
        except ValueError as e:
            raise ValueError(f"ImageDataset: stype: {e}") from None
        self.is_train = is_train
        self.exif_transpose = bool((data_args or {}).get("exif_transpose", False))
        self.min_size = max(self.args["fragments_h"] * self.args["fsize_h"], self.args["fragments_w"] * self.args["fsize_w"])
        self.transform = build_transform(is_train, str((data_args or {}).get("train_augment", "flip_rotate")))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        img = self.transform(load_image(self.paths[index], self.min_size, self.exif_transpose))
        data = sample_image(img, self.stype, self.is_train, **self.args)
        return {"image": data, "label": float(self.labels[index]), "name": self.names[index]}


__all__ = ["TRAIN_AUGMENTS", "ImageDataset", "ImageReadError", "build_transform", "enlarge", "load_image", "sampling_args", "to_rgb8"]
