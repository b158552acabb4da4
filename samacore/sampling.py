"""The spatial sampling pipeline shared by the video (samavqa) and image (samaiqa) trees.

Pipeline: scale pyramid -> per-scale fragment grid -> optional mask.

* A :class:`FragmentGrid` of ``fragments_h x fragments_w`` cells, each giving one ``fsize_h x fsize_w`` fragment,
  tiles an output of ``fragments_h*fsize_h x fragments_w*fsize_w`` pixels (the VQA options' names; the image
  options of the original call the cell counts ``fwin_h`` / ``fwin_w``, accepted as aliases). On an ``h x w`` (possibly rescaled) frame the cell length
  is ``L = h // fragments_h`` and cell ``i`` starts at ``min(L*i, h - fsize_h)``; the fragment is read at
  ``start + offset`` (same for width).
* Offsets are either absolute (FAST-VQA ``fragments``: an int per cell) or relative (SAMA: ``r`` in [0, 1) per
  cell, applied at every scale as ``int(r * (L - fsize))``, truncating toward zero, in float32).
* SAMA rescales frames with bilinear interpolation (``align_corners=False``, no antialiasing). No rescaled frame
  is ever materialised: the grid says where each output pixel lies in its rescaled frame, and
  :mod:`samacore.resample` reads just those pixels' bilinear taps from the source video.
* Every sample-type name of both trees is one entry of :data:`SAMPLE_TYPES` (:class:`SampleType`), with its
  recipe for videos and for images. The SAMA variants (``sama``, ``sama-c``, ``sama-mix``, ``sama-spm``,
  ``sama-swm``, and ``sama`` / ``sama-spm`` for images) are a :class:`SamaVariant` -- a factor schedule plus an
  optional mask -- run by the one function :func:`sama_sample`; the trees' lists of names, option checks, command
  line help and the visualisers all read this registry, so a new variant is one entry.
  A mask only decides, pixel by pixel, which of two grids (full resolution or scaled) a pixel reads; each pixel
  is computed once, from its own source.

Video tensors are ``[C, T, H, W]`` (any real dtype, any device); outputs are float32 on the input's device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from samacore.options import suggest
from samacore.registry import Registry
from samacore.resample import Part, TapSource, plan_taps, resample

__all__ = [
    "DEFAULT_SAMPLE_TYPE", "FragmentGrid", "GRID_ALIASES", "GRID_KEYS", "MASKS", "Mask", "SAMPLE_TYPES",
    "SCALE_SCHEDULES", "SamaVariant", "SampleType", "cell_starts", "make_mask", "patch_mask", "relative_offsets",
    "resolve_sample_type", "sama_sample", "sama_variant", "sample_fragments", "sample_type_names", "scale_schedule",
    "scaled_size", "upsampled_size", "window_mask",
]


#: the grid's option keys (both trees); the original image options' names for the first two are aliases
GRID_KEYS = ("fragments_h", "fragments_w", "fsize_h", "fsize_w")
GRID_ALIASES = {"fwin_h": "fragments_h", "fwin_w": "fragments_w"}


@dataclass(frozen=True)
class FragmentGrid:
    """``fragments_h x fragments_w`` cells, each contributing one ``fsize_h x fsize_w`` fragment to the output."""

    fragments_h: int
    fragments_w: int
    fsize_h: int
    fsize_w: int

    def __post_init__(self):
        for name in GRID_KEYS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"FragmentGrid.{name} must be a positive integer, got {v!r}")

    @property
    def out_h(self) -> int:
        return self.fragments_h * self.fsize_h

    @property
    def out_w(self) -> int:
        return self.fragments_w * self.fsize_w

    def ratio(self, h: int, w: int) -> float:
        """How many times larger than the output an ``h x w`` frame is (the smaller of the two sides)."""
        return min(h / self.out_h, w / self.out_w)


# ----------------------------------------------------------------------------------------------- grid geometry
def cell_starts(sizes: torch.Tensor, cells: int, fsize: int) -> torch.Tensor:
    """Cell start of every cell for every frame size: ``min(L*i, size - fsize)``, ``L = size // cells``.

    sizes: int64 ``[N]`` -> int64 ``[N, cells]``.
    """
    length = sizes // cells
    i = torch.arange(cells, device=sizes.device)
    return torch.minimum(length[:, None] * i, (sizes - fsize)[:, None])


def relative_offsets(r: torch.Tensor, sizes: torch.Tensor, cells: int, fsize: int) -> torch.Tensor:
    """SAMA's scale-independent offsets: ``int(r * (L - fsize))`` with ``L = size // cells``.

    r: float32 ``[N, Gh, Gw]`` (in [0, 1)); sizes: int64 ``[N]``. The product is taken in float32 and truncated
    toward zero, exactly as the reference does, so that random draws land on the same pixels.
    """
    room = (sizes // cells - fsize).to(torch.float32)
    return (r.to(torch.float32) * room[:, None, None]).to(torch.int32).to(torch.int64)


def _fragment_positions(sizes: torch.Tensor, offsets: torch.Tensor, cells: int, fsize: int, axis: int) -> torch.Tensor:
    """Pixel coordinates (in the rescaled frame) read by every cell.

    sizes ``[N]``, offsets ``[N, Gh, Gw]`` -> ``[N, Gh, Gw, fsize]``. ``axis`` 0: rows (cells along dim 1 of
    ``offsets``), 1: columns (cells along dim 2).
    """
    starts = cell_starts(sizes, cells, fsize)  # [N, cells]
    starts = starts[:, :, None] if axis == 0 else starts[:, None, :]
    k = torch.arange(fsize, device=sizes.device)
    return (starts + offsets)[..., None] + k


# ------------------------------------------------------------------------------------------- scale schedules
#: scale schedules by name: ``schedule(ratio, n) -> n`` scale factors for the temporal patches (2 frames each) of
#: one clip, from full resolution (1) down to "just fits the output" (``1/ratio``). A new schedule is one entry.
SCALE_SCHEDULES: Registry[Callable[[float, int], List[float]]] = Registry("scale schedule")


@SCALE_SCHEDULES.register("ramp")
def _ramp(ratio: float, n: int) -> List[float]:
    """``linspace(1, 1/ratio, n)``: SAMA's pyramid along time."""
    return [float(f) for f in np.linspace(1, 1 / ratio, n)]


@SCALE_SCHEDULES.register("alternate")
def _alternate(ratio: float, n: int) -> List[float]:
    """``1, 1/ratio, 1, ...`` (sama-c)."""
    return [(1.0, 1 / ratio)[k % 2] for k in range(n)]


@SCALE_SCHEDULES.register("double_ramp")
def _double_ramp(ratio: float, n: int) -> List[float]:
    """Two ramps of ``n/2`` factors, the first getting the odd one (sama-mix)."""
    first = (n + 1) // 2
    return _ramp(ratio, first) + _ramp(ratio, n - first)


@SCALE_SCHEDULES.register("coarsest")
def _coarsest(ratio: float, n: int) -> List[float]:
    """``1/ratio`` everywhere (the image tree's single scaled view)."""
    return [1 / ratio] * n


def scale_schedule(kind: str, ratio: float, n: int) -> List[float]:
    """``n`` scale factors of the registered schedule ``kind`` (:data:`SCALE_SCHEDULES`) for a frame ``ratio`` times
    larger than the output."""
    return SCALE_SCHEDULES.get(kind)(ratio, n)


def upsampled_size(h: int, w: int, grid: FragmentGrid) -> Tuple[int, int]:
    """Frames smaller than the output are enlarged to ``(round(h/ratio), round(w/ratio))``; others are kept."""
    ratio = grid.ratio(h, w)
    if ratio < 1:
        return round(h / ratio), round(w / ratio)
    return h, w


def scaled_size(h: int, w: int, factor: float) -> Tuple[int, int]:
    """Frame size at a scale factor: ``(round(h*f), round(w*f))`` (Python rounding, half to even)."""
    return round(h * float(factor)), round(w * float(factor))


def sample_fragments(
    video: torch.Tensor,
    grid: FragmentGrid,
    sizes_h: torch.Tensor,
    sizes_w: torch.Tensor,
    off_h: torch.Tensor,
    off_w: torch.Tensor,
    frame_idx: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Grid-sample every frame of ``video`` ``[C, T, H, W]``, frame ``t`` virtually rescaled to
    ``sizes_h[t] x sizes_w[t]`` and read at integer cell offsets ``off_h/off_w`` ``[T, Gh, Gw]`` (``frame_idx``:
    the source frame of each output frame, default ``0..T-1``).

    Returns float32 ``[C, T, Gh*fh, Gw*fw]``. Raises if a fragment would leave its frame.
    """
    n = sizes_h.numel()
    if n == 0:
        return torch.empty((video.shape[0], 0, grid.out_h, grid.out_w), device=video.device)
    if frame_idx is None:
        frame_idx = torch.arange(n)
    first, geometry = _distinct_frames(sizes_h, sizes_w, off_h, off_w)
    rows, cols = _grid_positions(grid, sizes_h[first], sizes_w[first], off_h[first], off_w[first])
    plan = plan_taps(video, [TapSource(sizes_h[first], sizes_w[first], rows, cols)])
    return resample(video, plan, geometry, frame_idx.tolist())


def _distinct_frames(*per_frame: torch.Tensor) -> Tuple[torch.Tensor, List[int]]:
    """Frames with equal geometry (sizes and offsets) read the same pixels: returns one representative frame
    per distinct geometry (int64 ``[U]``) and the geometry index of every frame."""
    key = torch.cat([k.reshape(k.shape[0], -1).to(torch.int64) for k in per_frame], 1)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    n = key.shape[0]
    first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.int64, device=key.device)
    first.scatter_reduce_(0, inverse, torch.arange(n, device=key.device), "amin")
    return first, inverse.tolist()


def _grid_positions(grid: FragmentGrid, sizes_h, sizes_w, off_h, off_w) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[N, Gh, Gw, fh]`` and columns ``[N, Gh, Gw, fw]`` read by every cell (checked to lie inside)."""
    n = sizes_h.numel()
    rows = _fragment_positions(sizes_h, off_h, grid.fragments_h, grid.fsize_h, axis=0)
    cols = _fragment_positions(sizes_w, off_w, grid.fragments_w, grid.fsize_w, axis=1)
    rows = rows.expand(n, grid.fragments_h, grid.fragments_w, grid.fsize_h)
    cols = cols.expand(n, grid.fragments_h, grid.fragments_w, grid.fsize_w)
    _check_inside(rows, sizes_h, "height", grid.fsize_h)
    _check_inside(cols, sizes_w, "width", grid.fsize_w)
    return rows, cols


def _check_inside(pos: torch.Tensor, sizes: torch.Tensor, what: str, fsize: int) -> None:
    # negative indices would silently wrap around: fail loudly instead (tiny tensors, one sync)
    bad = (pos[..., 0] < 0) | (pos[..., -1] >= sizes.view(-1, 1, 1))
    if bool(bad.any()):
        smallest = int(sizes.min())
        raise ValueError(
            f"fragments of {fsize} pixels do not fit along the {what} of a {smallest}-pixel frame; "
            "the frame must be at least as large as the output"
        )


# ------------------------------------------------------------------------------------------------------ masks
def patch_mask(out_h: int, out_w: int, block: int = 8, device=None) -> torch.Tensor:
    """Bool ``[out_h, out_w]``: True (full resolution) in the top-left and bottom-right quarter of every
    ``block x block`` pixel block; pixels beyond the last whole block are False (scaled)."""
    half = block // 2
    y = torch.arange(out_h, device=device)
    x = torch.arange(out_w, device=device)
    top, left = (y % block) < half, (x % block) < half
    mask = top[:, None] == left[None, :]
    mask &= (y < out_h // block * block)[:, None] & (x < out_w // block * block)[None, :]
    return mask


def window_mask(grid: FragmentGrid, device=None) -> torch.Tensor:
    """Bool ``[out_h, out_w]``: True (full resolution) on the fragments of cells with ``(i + j)`` even."""
    i = torch.arange(grid.out_h, device=device) // grid.fsize_h
    j = torch.arange(grid.out_w, device=device) // grid.fsize_w
    return (i[:, None] + j[None, :]) % 2 == 0


Tiles = Callable[[int, int], Callable[[torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class Mask:
    """How a masked SAMA variant mixes its two views: ``build(grid, device)`` gives the bool ``[out_h, out_w]``
    mask (True: full resolution); ``tiles(grid)``, where the mask is a checkerboard of tiles nested in the cells,
    gives ``tiles(di, dj)``: the view of a ``[..., Gh, fh, Gw, fw]`` tensor holding the tiles of parity ``(di, dj)``
    (None: the mask is applied pixel by pixel)."""

    build: Callable[[FragmentGrid, Any], torch.Tensor]
    tiles: Callable[[FragmentGrid], Optional[Tiles]] = lambda grid: None


def _window_tiles(grid: FragmentGrid) -> Tiles:
    return lambda di, dj: (lambda x: x[..., di::2, :, dj::2, :])  # the tiles are the cells


def _patch_tiles(grid: FragmentGrid) -> Optional[Tiles]:
    if grid.fsize_h % 8 or grid.fsize_w % 8:
        return None
    # 4x4 quarters of the 8x8 blocks; their rows and columns split off the cell's
    return lambda di, dj: (lambda x: (x.unflatten(-1, (grid.fsize_w // 8, 2, 4)).select(-2, dj)
                                      .unflatten(-4, (grid.fsize_h // 8, 2, 4)).select(-5, di)))


#: masks by name (``SamaVariant.mask``); a new mask is one entry
MASKS: Registry[Mask] = Registry("mask")
MASKS.register("patch", Mask(lambda grid, device: patch_mask(grid.out_h, grid.out_w, device=device), _patch_tiles))
MASKS.register("window", Mask(window_mask, _window_tiles))


def make_mask(kind: str, grid: FragmentGrid, device=None) -> torch.Tensor:
    """The bool ``[out_h, out_w]`` mask of the registered mask ``kind`` (True: full resolution)."""
    return MASKS.get(kind).build(grid, device)


# ----------------------------------------------------------------------------------------------- SAMA variants
@dataclass(frozen=True)
class SamaVariant:
    """A SAMA sampling variant: which scale factor each temporal patch gets, and how full-resolution fragments
    are mixed in (``None``: not at all; ``"patch"`` / ``"window"``: see :func:`make_mask`)."""

    schedule: str
    mask: Optional[str] = None

    def __post_init__(self):
        SCALE_SCHEDULES.get(self.schedule)  # ValueError naming the registered ones
        if self.mask is not None:
            MASKS.get(self.mask)


# ----------------------------------------------------------------------------------------------- sample types
Recipe = Union[SamaVariant, str]  # a SAMA variant, or the name of a tree's own sampler ("fragments", "resize", ...)
MEDIA = ("video", "image")


@dataclass(frozen=True)
class SampleType:
    """A sample-type name as option files and command lines spell it, and what it does for each medium.

    ``video`` / ``image``: a :class:`SamaVariant` (run by :func:`sama_sample`), the name of the tree's own sampler
    (``samavqa.sampling`` / ``samaiqa.sampling``), or None where the type is not offered. ``grid``: the output is a
    grid of fragments (the visualisers draw it cell by cell). ``aliases``: other spellings options may use;
    ``suffixes``: FAST-VQA's options may add ``_anything`` to the name (``fragments_up``).
    """

    name: str
    video: Optional[Recipe] = None
    image: Optional[Recipe] = None
    grid: bool = True
    aliases: Tuple[str, ...] = ()
    suffixes: bool = False

    def recipe(self, medium: str) -> Optional[Recipe]:
        if medium not in MEDIA:
            raise ValueError(f"unknown medium {medium!r}; choose one of: {', '.join(MEDIA)}")
        return getattr(self, medium)


#: every sample type of both trees, in the order messages and help list them
SAMPLE_TYPES: Registry[SampleType] = Registry("sample type")
for _t in (
    SampleType("fragments", video="fragments", suffixes=True),  # FAST-VQA: full-resolution fragments
    SampleType("fragment", image="fragment"),    # the image tree's name for the same
    SampleType("sama", video=SamaVariant("ramp"), image=SamaVariant("coarsest", "window")),
    SampleType("sama-c", video=SamaVariant("alternate")),
    SampleType("sama-mix", video=SamaVariant("double_ramp")),
    SampleType("sama-spm", video=SamaVariant("ramp", "patch"), image=SamaVariant("coarsest", "patch"),
               aliases=("sama+spm",)),
    SampleType("sama-swm", video=SamaVariant("ramp", "window"), aliases=("sama+swm",)),
    SampleType("resize", video="resize", grid=False, suffixes=True),
    SampleType("arp_resize", video="arp_resize", grid=False, suffixes=True),
    SampleType("crop", video="crop", grid=False, suffixes=True),
    SampleType("arp_fragments", video="arp_fragments", grid=False, suffixes=True),
    SampleType("original", video="original", grid=False),
):
    SAMPLE_TYPES.register(_t.name, _t)

#: the sample type of an option file, command or API call that names none (both trees: the project is SAMA)
DEFAULT_SAMPLE_TYPE = "sama"


class _LiveNames(Sequence[str]):
    """The names :data:`SAMPLE_TYPES` offers for a medium, read on every use (a type registered later appears)."""

    def __init__(self, medium: str, sama_only: bool = False) -> None:
        self.medium, self.sama_only = medium, sama_only

    def _names(self) -> Tuple[str, ...]:
        return tuple(name for name, t in SAMPLE_TYPES.items() if (r := t.recipe(self.medium)) is not None
                     and (not self.sama_only or isinstance(r, SamaVariant)))

    def __getitem__(self, i):
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __repr__(self) -> str:
        return repr(self._names())


def sample_type_names(medium: str, sama_only: bool = False) -> Sequence[str]:
    """Live list of the sample-type names offered for ``medium`` ("video" / "image"; ``sama_only``: the SAMA
    variants), for choices, help texts and membership tests."""
    return _LiveNames(medium, sama_only)


def resolve_sample_type(name: Any, medium: str) -> str:
    """The registered sample type ``name`` stands for in ``medium`` ("video" / "image"): itself, an alias
    (``sama+spm``) or a FAST-VQA suffixed name (``fragments_up``); None means :data:`DEFAULT_SAMPLE_TYPE`.

    The one place a sample-type name is checked: a ``ValueError`` lists the valid names (and a near miss).
    """
    name = DEFAULT_SAMPLE_TYPE if name is None else name
    if not isinstance(name, str):
        raise ValueError(f"sample type must be a string, got {type(name).__name__}: {name!r}")
    offered = sample_type_names(medium)
    aliases = {a: t.name for t in (SAMPLE_TYPES.get(n) for n in offered) for a in t.aliases}
    canonical = aliases.get(name, name)
    if canonical in offered:
        return canonical
    for n in offered:
        if SAMPLE_TYPES.get(n).suffixes and name.startswith(n + "_"):
            return n
    also = f" (aliases: {', '.join(aliases)})" if aliases else ""
    raise ValueError(f"unknown sample type {name!r}{suggest(name, offered)}; valid types: "
                     f"{', '.join(offered)}{also}")


def sama_variant(name: str, medium: str = "video") -> Optional[SamaVariant]:
    """The :class:`SamaVariant` of sample type ``name`` for ``medium``; None if it is not a SAMA variant there."""
    recipe = SAMPLE_TYPES.get(name).recipe(medium) if name in SAMPLE_TYPES else None
    return recipe if isinstance(recipe, SamaVariant) else None


def sama_sample(
    video: torch.Tensor,
    grid: FragmentGrid,
    variant: SamaVariant,
    rel_h: torch.Tensor,
    rel_w: torch.Tensor,
    aligned: int,
) -> torch.Tensor:
    """Scaling (and masking) sampler.

    video: ``[C, T, H, W]`` with ``T`` a multiple of ``aligned``; frames are processed in groups ("clips") of
    ``aligned`` frames, and inside a group temporal patch ``k`` (frames ``2k, 2k+1``) is rescaled by factor ``k``
    of the variant's schedule (``ceil(aligned/2)`` factors). Frames smaller than the output are first enlarged
    (:func:`upsampled_size`) and then use factor 1 throughout. rel_h, rel_w: float32 ``[Gh, Gw, T // aligned]``
    relative offsets, shared by all scales of a group. With a mask, the full-resolution view reads each group's
    factor-1 grid at the same relative offsets.

    Returns float32 ``[C, T, Gh*fh, Gw*fw]`` on the input's scale (0-255 stays 0-255).
    """
    _, t, h, w = video.shape
    if t % aligned:
        raise ValueError(f"the number of frames ({t}) must be a multiple of aligned ({aligned})")
    if t == 0:
        return torch.empty((video.shape[0], 0, grid.out_h, grid.out_w), device=video.device)
    dev = video.device
    base_h, base_w = upsampled_size(h, w, grid)
    n_fac = (aligned + 1) // 2
    if (base_h, base_w) != (h, w):
        factors = [1.0] * n_fac
    else:
        factors = scale_schedule(variant.schedule, grid.ratio(h, w), n_fac)
    sizes = torch.tensor([scaled_size(base_h, base_w, f) for f in factors], dtype=torch.int64, device=dev)
    frames = torch.arange(t, device=dev)
    group = frames // aligned
    sizes_h, sizes_w = sizes[(frames % aligned) // 2].unbind(-1)
    r_h = rel_h.to(dev).permute(2, 0, 1)[group]  # [T, Gh, Gw]
    r_w = rel_w.to(dev).permute(2, 0, 1)[group]

    def offsets(s_h, s_w):
        return (relative_offsets(r_h, s_h, grid.fragments_h, grid.fsize_h),
                relative_offsets(r_w, s_w, grid.fragments_w, grid.fsize_w))

    views = [(sizes_h, sizes_w, *offsets(sizes_h, sizes_w))]
    if variant.mask is not None:  # the full-resolution view comes first: the mask is True where it is read
        full_h, full_w = torch.full_like(sizes_h, base_h), torch.full_like(sizes_w, base_w)
        views.insert(0, (full_h, full_w, *offsets(full_h, full_w)))
    first, geometry = _distinct_frames(*(x for view in views for x in view))
    sources = []
    for s_h, s_w, o_h, o_w in views:
        s_h, s_w = s_h[first], s_w[first]
        sources.append(TapSource(s_h, s_w, *_grid_positions(grid, s_h, s_w, o_h[first], o_w[first])))
    if variant.mask is None:
        plan = plan_taps(video, sources)
    elif (parts := _mask_parts(variant.mask, grid)) is not None:
        plan = plan_taps(video, sources, parts)
    else:
        plan = plan_taps(video, sources, choice=make_mask(variant.mask, grid, device=dev))
    return resample(video, plan, geometry, frames.tolist())


def _mask_parts(kind: str, grid: FragmentGrid) -> Optional[List[Part]]:
    """A mask as four single-source parts when it is a checkerboard of tiles nested in the cells (source 0, full
    resolution, on tiles ``(I, J)`` with ``I + J`` even): each pixel is then read once, from its own source, and
    full-resolution tiles are plain copies. None for other grids (the mask is then applied pixel by pixel)."""
    tiles = MASKS.get(kind).tiles(grid)
    if tiles is None:
        return None
    return [Part((di + dj) % 2, tiles(di, dj)) for di in (0, 1) for dj in (0, 1)]
