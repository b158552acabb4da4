"""Pieces shared by the sampling pictures of both trees (:mod:`samavqa.visualize`, :mod:`samaiqa.visualize`).

* :func:`denormalise` turns a model input back into 8-bit pixels; :func:`heat_colours` colours quality maps.
* The coordinate trick: a sampler run on :func:`coordinate_grid` (channels = each pixel's row, column and, for
  a video, frame) returns in every output pixel the source position it read -- the samplers interpolate
  bilinearly, which reproduces linear functions exactly -- so :func:`cell_footprints` and :func:`median_step`
  read the fragments' boxes and scale factors off the real sampler instead of re-deriving its formulas.
* :func:`check_figure_path` refuses an unusable ``--out`` before any decoding; :func:`save_figure` writes it.
"""
from __future__ import annotations

import os
import tempfile
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .options import OptionError

__all__ = ["HEAT_STOPS", "cell_footprints", "check_figure_path", "coordinate_grid", "denormalise", "heat_colours",
           "median_step", "save_figure"]

#: the quality maps' colours, low to high: blue, green, yellow, red (RGB)
HEAT_STOPS = ((40, 60, 200), (40, 200, 120), (250, 220, 40), (220, 40, 40))


def denormalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float], scale: float = 1.0) -> np.ndarray:
    """Normalised channel-first ``[C, ...]`` -> uint8 channel-last ``[..., C]``.

    ``round(clip((x * std + mean) * scale, 0, 255))``; ``mean`` / ``std``: per channel, in the units the input
    had before normalisation; ``scale`` brings those units to 0-255 (255 for inputs on 0-1).
    """
    x = x.detach().float().cpu()
    shape = (-1,) + (1,) * (x.dim() - 1)
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(shape)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(shape)
    v = (x * std_t + mean_t) * scale
    return v.round().clamp(0, 255).to(torch.uint8).movedim(0, -1).numpy()


def heat_colours(v: np.ndarray, stops: Sequence[Tuple[int, int, int]] = HEAT_STOPS) -> np.ndarray:
    """Values in [0, 1] (clipped) ``[...]`` -> uint8 RGB ``[..., 3]``, piecewise linear through ``stops``."""
    table = np.asarray(stops, dtype=np.float64)
    pos = np.clip(v, 0, 1) * (len(table) - 1)
    i = np.minimum(pos.astype(int), len(table) - 2)
    t = (pos - i)[..., None]
    return (table[i] * (1 - t) + table[i + 1] * t).round().astype(np.uint8)


# ----------------------------------------------------------------------------------------------- coordinates
def coordinate_grid(h: int, w: int, t: Optional[int] = None) -> torch.Tensor:
    """float32 ``[2, H, W]`` (channel 0 = row, 1 = column of every pixel), or with ``t`` ``[3, T, H, W]``
    (channel 2 = frame number)."""
    axes = [torch.arange(n, dtype=torch.float32) for n in ((t, h, w) if t is not None else (h, w))]
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.stack((grids[1], grids[2], grids[0]) if t is not None else grids)


def median_step(pos: np.ndarray, fsize: int, axis: int, keep: Optional[np.ndarray] = None) -> float:
    """Median source step between neighbouring output pixels of one fragment along ``axis`` (0: rows, 1: columns).

    ``pos``: ``[Sh, Sw]`` source positions along that axis (from a coordinate grid); ``keep``: bool ``[Sh, Sw]``,
    the pixels to use (both neighbours must be kept). ``1 / step`` is the scale factor; NaN when nothing is left.
    """
    pos = np.moveaxis(np.asarray(pos, dtype=np.float64), axis, -1)
    step = pos[:, 1:] - pos[:, :-1]
    use = np.broadcast_to((np.arange(pos.shape[-1] - 1) % fsize) != fsize - 1, step.shape).copy()  # same cell
    if keep is not None:
        keep = np.moveaxis(keep, axis, -1)
        use &= keep[:, 1:] & keep[:, :-1]
    s = step[use]
    s = s[s > 1e-6]
    return float(np.median(s)) if s.size else float("nan")


def cell_footprints(rows: np.ndarray, cols: np.ndarray, grid: Tuple[int, int, int, int],
                    step: Tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Source boxes ``[Gh, Gw, 4]`` as ``(x0, y0, x1, y1)`` pixel edges (``x1``, ``y1`` exclusive) read by each cell.

    ``rows`` / ``cols``: ``[Sh, Sw]`` source positions of the output pixels; ``grid`` = (fragments_h, fragments_w,
    fsize_h, fsize_w); ``step`` = (row, column) source step of one output pixel: a pixel read at position ``p``
    covers ``p + 0.5 -+ step / 2`` (at full resolution ``p`` to ``p + 1``).
    """
    gh, gw, fh, fw = grid
    cells = lambda a: np.asarray(a, dtype=np.float64)[:gh * fh, :gw * fw].reshape(gh, fh, gw, fw)
    r, c = cells(rows), cells(cols)
    half_h, half_w = step[0] / 2, step[1] / 2
    return np.stack([c.min((1, 3)) + 0.5 - half_w, r.min((1, 3)) + 0.5 - half_h,
                     c.max((1, 3)) + 0.5 + half_w, r.max((1, 3)) + 0.5 + half_h], -1)


# ----------------------------------------------------------------------------------------------- output file
def check_figure_path(path: str, option: str = "--out") -> None:
    """Raise :class:`OptionError` (one line) unless an image can be written at ``path``: a file name with an
    extension PIL writes, whose nearest existing folder accepts new files. Nothing is created."""
    from PIL import Image

    Image.init()
    if os.path.isdir(path):
        raise OptionError(f"{option} {path} is a folder; give the figure's file name, e.g. "
                          f"{os.path.join(path, 'sampling.png')}")
    ext = os.path.splitext(path)[1].lower()
    if Image.registered_extensions().get(ext) not in Image.SAVE:
        what = f"{ext} is not an image format PIL writes" if ext else "the name has no extension"
        raise OptionError(f"{option} {path}: {what}; end it in .png (or .jpg, .bmp, .tif, ...)")
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise OptionError(f"{option} {path}: {folder} is a file, not a folder")
    try:
        if os.path.exists(path):
            open(path, "ab").close()  # neither truncates nor changes it
        else:
            tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise OptionError(f"{option} {path}: cannot write there ({e.strerror or e}); choose a writable folder")


def save_figure(image, path: str) -> None:
    """Save a PIL image at ``path``, making its folders first."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    image.save(path)
