"""Spatial sampling of images: ``sample_image(img, stype, is_train, fragments_h, fragments_w, fsize_h, fsize_w)``.

``img`` is an already normalised ``[C, H, W]`` float tensor; the result is
``[C, fragments_h*fsize_h, fragments_w*fsize_w]``. The original's names of the cell counts, ``fwin_h`` / ``fwin_w``,
are accepted as keyword aliases.

* ``fragment``: grid fragments at full resolution; per-cell offsets random (train) or centred (test).
* ``sama``: two scales, full resolution and ``1/ratio`` (the image shrunk to just fit the output), read at the
  same relative offsets and mixed per cell (window mask: cells with ``i + j`` even are full resolution).
* ``sama-spm``: as ``sama`` with the patch mask (top-left and bottom-right 4x4 of every 8x8 block full resolution).

The names are those :data:`samacore.sampling.SAMPLE_TYPES` offers for images; every SAMA variant there (the two
above, or one registered later) is the shared pipeline of :mod:`samacore.sampling` applied to a one-frame video.
Random choices use torch's global generator.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from samacore.sampling import (
    GRID_ALIASES, FragmentGrid, resolve_sample_type, sama_sample, sama_variant, sample_fragments, sample_type_names,
)

__all__ = ["IQA_SAMPLE_TYPES", "sample_image"]

#: the image sample types (live: read from samacore.sampling.SAMPLE_TYPES)
IQA_SAMPLE_TYPES = sample_type_names("image")


def _fragment(img: torch.Tensor, grid: FragmentGrid, is_train: bool) -> torch.Tensor:
    h, w = img.shape[-2:]
    ratio = grid.ratio(h, w)
    if ratio < 1:
        # Enlarge as the reference does (scale factor 1/ratio). Fix: the reference then keeps the old size for
        # the grid and fails; the grid is laid out on the enlarged image here.
        img = F.interpolate(img[None], scale_factor=1 / ratio, mode="bilinear", align_corners=False)[0]
        h, w = img.shape[-2:]
    len_h, len_w = h // grid.fragments_h, w // grid.fragments_w
    shape = (grid.fragments_h, grid.fragments_w)
    if is_train:
        # no draw at all when a cell has no room (keeps the generator in step with the reference)
        off_h = torch.randint(len_h - grid.fsize_h, shape) if len_h > grid.fsize_h else torch.zeros(shape, dtype=torch.int64)
        off_w = torch.randint(len_w - grid.fsize_w, shape) if len_w > grid.fsize_w else torch.zeros(shape, dtype=torch.int64)
    else:  # centred, truncated toward zero
        off_h = torch.full(shape, int((len_h - grid.fsize_h) / 2))
        off_w = torch.full(shape, int((len_w - grid.fsize_w) / 2))
    dev = img.device
    one = lambda v: torch.full((1,), v, dtype=torch.int64, device=dev)
    out = sample_fragments(img[:, None], grid, one(h), one(w), off_h[None].to(dev), off_w[None].to(dev))
    return out[:, 0]


def sample_image(img: torch.Tensor, stype: str, is_train: bool = False, fragments_h: int = 8, fragments_w: int = 8,
                 fsize_h: int = 32, fsize_w: int = 32, **aliases: int) -> torch.Tensor:
    """Sample a normalised image ``[C, H, W]`` into float32 ``[C, fragments_h*fsize_h, fragments_w*fsize_w]``.

    stype: one of :data:`IQA_SAMPLE_TYPES` (or an alias). ``fwin_h`` / ``fwin_w`` (the original's keywords) stand
    for ``fragments_h`` / ``fragments_w``. Images smaller than the output are enlarged first (bilinear).
    """
    stype = resolve_sample_type(stype, "image")
    unknown = [k for k in aliases if k not in GRID_ALIASES]
    if unknown:
        raise TypeError(f"sample_image() got unexpected keyword argument(s) {', '.join(unknown)}")
    fragments_h, fragments_w = aliases.get("fwin_h", fragments_h), aliases.get("fwin_w", fragments_w)
    if not isinstance(img, torch.Tensor) or img.dim() != 3:
        what = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f"image must be a [C, H, W] tensor, got {what}")
    if not img.is_floating_point():
        img = img.to(torch.float32)
    grid = FragmentGrid(fragments_h, fragments_w, fsize_h, fsize_w)
    variant = sama_variant(stype, "image")
    if variant is None:  # "fragment"
        return _fragment(img, grid, bool(is_train))
    shape = (grid.fragments_h, grid.fragments_w, 1)
    if is_train:
        rel_h, rel_w = torch.rand(shape[:2])[..., None], torch.rand(shape[:2])[..., None]
    else:
        rel_h, rel_w = torch.full(shape, 0.5), torch.full(shape, 0.5)
    return sama_sample(img[:, None], grid, variant, rel_h, rel_w, aligned=1)[:, 0]
