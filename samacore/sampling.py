"""The spatial sampling pipeline shared by the video (samavqa) and image (samaiqa) trees.

Pipeline: scale pyramid -> per-scale fragment grid -> optional mask.

* A :class:`FragmentGrid` of ``cells_h x cells_w`` cells, each giving one ``fsize_h x fsize_w`` fragment, tiles an
  output of ``cells_h*fsize_h x cells_w*fsize_w`` pixels. On an ``h x w`` (possibly rescaled) frame the cell length
  is ``L = h // cells_h`` and cell ``i`` starts at ``min(L*i, h - fsize_h)``; the fragment is read at
  ``start + offset`` (same for width).
* Offsets are either absolute (FAST-VQA ``fragments``: an int per cell) or relative (SAMA: ``r`` in [0, 1) per
  cell, applied at every scale as ``int(r * (L - fsize))``, truncating toward zero, in float32).
* SAMA rescales frames with bilinear interpolation (``align_corners=False``, no antialiasing). Only the pixels that
  fragments read are ever computed: each output pixel is a 2x2 tap of the source frame, so we gather the taps of all
  cells of a group of frames at once with advanced indexing and blend them with the interpolation weights.
  That is the same arithmetic as ``F.interpolate`` up to float rounding, without materialising any rescaled frame
  or a float copy of the video.
* Variants (``sama``, ``sama-c``, ``sama-mix``, ``sama-spm``, ``sama-swm`` and the image versions) are entries of
  :data:`SAMA_VARIANTS`: a factor schedule plus an optional mask, run by the one function :func:`sama_sample`.
  Both masks are checkerboards of tiles (whole fragments for ``window``, 4x4 quarters of 8x8 blocks for
  ``patch``), so each tile is read from the one source the mask keeps (full resolution: a pure gather; scaled:
  bilinear) straight into its place in the output; nothing is computed twice and blended.
* Speed notes (CPU): the gathers run on one intra-op thread (many cache-sized ops; threads only add waiting on
  a busy machine), large outputs ask for transparent huge pages (first-touch page faults of an 80 MB test-mode
  output otherwise cost a third of the time), and chunks that would write short strided runs are computed
  contiguously and moved with 16-byte element copies.

Video tensors are ``[C, T, H, W]`` (any real dtype, any device); outputs are float32 on the input's device.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

__all__ = [
    "FragmentGrid", "SamaVariant", "SAMA_VARIANTS", "SCHEDULES", "MASKS",
    "cell_starts", "relative_offsets", "scale_schedule", "upsampled_size", "scaled_size",
    "bilinear_taps", "gather_fragments", "patch_mask", "window_mask", "make_mask",
    "sample_fragments", "sama_sample",
]

# Gathered source values per chunk: small enough to stay in cache, large enough to amortise per-call overhead.
_CHUNK_BUDGET = 1 << 21
# Outputs at least this large (bytes) are backed by transparent huge pages where the OS allows it.
_HUGE_PAGE_MIN = 16 << 20


def _madvise_huge():
    """libc's ``madvise`` (Linux only), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _madvise_huge()
_MADV_HUGEPAGE = 14


def _new_output(shape: Sequence[int], device) -> torch.Tensor:
    """An uninitialised float32 tensor for a sampler's result.

    A test-mode sample is ~80 MB that is written once: on CPU, faulting it in 4 KB pages costs about as much as
    computing it, so large outputs ask the kernel for 2 MB pages (``MADV_HUGEPAGE``; a no-op where transparent
    huge pages are off or unsupported).
    """
    out = torch.empty(tuple(shape), dtype=torch.float32, device=device)
    nbytes = out.numel() * 4
    if _MADVISE is not None and out.device.type == "cpu" and nbytes >= _HUGE_PAGE_MIN:
        page = 1 << 21
        start = (out.data_ptr() + page - 1) & ~(page - 1)
        stop = (out.data_ptr() + nbytes) & ~(page - 1)
        if stop > start:
            _MADVISE(start, stop - start, _MADV_HUGEPAGE)  # advisory: failure changes nothing but speed
    return out


@dataclass(frozen=True)
class FragmentGrid:
    """``cells_h x cells_w`` cells, each contributing one ``fsize_h x fsize_w`` fragment to the output."""

    cells_h: int
    cells_w: int
    fsize_h: int
    fsize_w: int

    def __post_init__(self):
        for name in ("cells_h", "cells_w", "fsize_h", "fsize_w"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"FragmentGrid.{name} must be a positive integer, got {v!r}")

    @property
    def out_h(self) -> int:
        return self.cells_h * self.fsize_h

    @property
    def out_w(self) -> int:
        return self.cells_w * self.fsize_w

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
SCHEDULES = ("ramp", "alternate", "double_ramp", "coarsest")


def scale_schedule(kind: str, ratio: float, n: int) -> list[float]:
    """``n`` scale factors for the temporal patches (2 frames each) of one clip.

    ramp: ``linspace(1, 1/ratio, n)`` (full resolution down to "just fits the output");
    alternate: ``1, 1/ratio, 1, ...``; double_ramp: two ramps of ``n/2`` factors (the first gets the odd one);
    coarsest: ``1/ratio`` everywhere (the image tree's single scaled view).
    """
    low = 1 / ratio
    if kind == "ramp":
        return [float(f) for f in np.linspace(1, low, n)]
    if kind == "alternate":
        return [(1.0, low)[k % 2] for k in range(n)]
    if kind == "double_ramp":
        first = (n + 1) // 2
        return [float(f) for f in np.linspace(1, low, first)] + [float(f) for f in np.linspace(1, low, n - first)]
    if kind == "coarsest":
        return [low] * n
    raise ValueError(f"unknown scale schedule {kind!r}; choose one of: {', '.join(SCHEDULES)}")


def upsampled_size(h: int, w: int, grid: FragmentGrid) -> tuple[int, int]:
    """Frames smaller than the output are enlarged to ``(round(h/ratio), round(w/ratio))``; others are kept."""
    ratio = grid.ratio(h, w)
    if ratio < 1:
        return round(h / ratio), round(w / ratio)
    return h, w


def scaled_size(h: int, w: int, factor: float) -> tuple[int, int]:
    """Frame size at a scale factor: ``(round(h*f), round(w*f))`` (Python rounding, half to even)."""
    return round(h * float(factor)), round(w * float(factor))


# ------------------------------------------------------------------------------------- bilinear tap gathering
def bilinear_taps(in_size: torch.Tensor, out_size: torch.Tensor, pos: torch.Tensor):
    """Source taps of bilinear resizing (``align_corners=False``, no antialias) for chosen output positions.

    in_size, out_size: int64 ``[N]`` (per frame); pos: int64 ``[N, ...]`` output coordinates.
    Returns ``(idx, weight)``: int64 and float32 ``[N, ..., 2]`` -- the two source coordinates and their weights,
    computed in float32 the way PyTorch's CPU/CUDA kernels do (source = scale*(dst+0.5)-0.5, clamped at 0).
    """
    extra = (1,) * (pos.dim() - 1)
    scale = (in_size.to(torch.float32) / out_size.to(torch.float32)).view(-1, *extra)
    # PyTorch's kernels evaluate scale*(dst+0.5)-0.5 as one fused multiply-add in float32; the float64 product
    # and difference are exact here, so a single rounding to float32 reproduces it bit for bit.
    src = (scale.double() * (pos.double() + 0.5) - 0.5).to(torch.float32).clamp_min(0)
    last = (in_size - 1).view(-1, *extra)
    i0 = torch.minimum(src.to(torch.int64), last)
    lam = (src - i0.to(torch.float32)).clamp(0, 1)
    i1 = i0 + (i0 < last).to(torch.int64)
    return torch.stack((i0, i1), -1), torch.stack((1 - lam, lam), -1)


class _PixelTable:
    """A no-copy view of ``video`` ``[C, T, H, W]`` from which :func:`torch.index_select` gathers many pixels
    (or, with ``pair``, horizontally adjacent pixel pairs ``(x, x+1)``) in one call.

    Channels-last memory (what decoders produce: ``[T, H, W, C]`` permuted to ``[C, T, H, W]``): each row holds
    all channels of a pixel (pair). Planar memory (a contiguous ``[C, T, H, W]``): each row holds one channel's
    value (pair) and channels are separate rows. Rows are contiguous in both cases, PyTorch's fast path; other
    layouts work too, just slower. Pixel ``(t, y, x)`` is row ``t*st + y*sh + x*sw`` (+ ``c*sc`` when planar).
    """

    def __init__(self, video: torch.Tensor, pair: bool):
        c, t, h, w = video.shape
        sc, st, sh, sw = video.stride()
        self.c, self.pair = c, pair
        self.interleaved = c == 1 or sc == 1
        steps = (st, sh, sw) if self.interleaved else (sc, st, sh, sw)
        unit = max(1, math.gcd(*steps))
        last = (t - 1) * st + (h - 1) * sh + (w - 1 - int(pair)) * sw
        if not self.interleaved:
            last += (c - 1) * sc
        rows = last // unit + 1
        inner = ((2, sw),) if pair else ()
        if self.interleaved:
            inner += ((c, sc),)
        self.table = video.as_strided((rows,) + tuple(n for n, _ in inner), (unit,) + tuple(s for _, s in inner),
                                      video.storage_offset())
        self.st, self.sh, self.sw = st // unit, sh // unit, sw // unit
        self.sc = sc // unit

    def gather(self, lin: torch.Tensor, scratch: "_Scratch", dest: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Values at rows ``lin`` (any shape, ``M`` entries) as float32 planes: ``[2, C, M]`` for pairs, else
        ``[C, M]`` -- written into ``dest`` when given (for single pixels also ``[C, *lin.shape]`` of any strides)."""
        c, m = self.c, lin.numel()
        width = 2 if self.pair else 1
        lin = lin.reshape(-1)
        if self.interleaved:
            vals = torch.index_select(self.table, 0, lin, out=scratch.get("taps", (m,) + self.table.shape[1:], self.table.dtype))
            src = vals.view(m, width * c).t()  # one transposing, widening copy below
        else:
            idx = scratch.get("idx", (c, m), torch.int64)
            torch.add(lin[None], torch.arange(c, device=lin.device)[:, None] * self.sc, out=idx)
            vals = torch.index_select(self.table, 0, idx.view(-1),
                                      out=scratch.get("taps", (c * m,) + self.table.shape[1:], self.table.dtype))
            src = vals.view(c, m, width).permute(2, 0, 1)
        shape = (2, c, m) if self.pair else (c, m)
        if dest is None:
            dest = scratch.get("planes", shape, torch.float32)
        src = src.reshape(shape)
        if dest.dim() == len(shape):
            dest.copy_(src)
        else:  # [C, *lin.shape], possibly strided: split the pixel axis instead of flattening the destination
            dest.copy_(src.view(dest.shape))
        return dest


class _Scratch:
    """Reusable flat buffers, one per name: chunked loops then touch fresh memory once, not once per chunk
    (page faults of new multi-megabyte buffers otherwise cost more than the arithmetic)."""

    def __init__(self, device):
        self.device = device
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        size = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.numel() < size:
            buf = self.buffers[name] = torch.empty(size, dtype=dtype, device=self.device)
        return buf[:size].view(*shape)


def gather_fragments(
    video: torch.Tensor,
    frame_idx: torch.Tensor,
    sizes_h: torch.Tensor,
    sizes_w: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Read fragment pixels of rescaled frames straight from the source video.

    video: ``[C, T, H, W]`` source; frame_idx: int64 ``[N]`` source frame of each output frame;
    sizes_h/sizes_w: int64 ``[N]`` size of the (virtual) rescaled frame; rows: ``[N, A, B, p]`` and
    cols: ``[N, A, B, q]`` coordinates in that rescaled frame for each of ``A x B`` cells.
    Returns float32 ``[C, N, A*p, B*q]`` (cell ``(i, j)`` at rows ``i*p``, columns ``j*q``), or, when ``out`` is
    given, writes into it: a float32 ``[C, N, A, p, B, q]`` tensor of any strides (e.g. a strided view selecting
    some cells of a larger output) and returns it. Frames whose rescaled size equals the source size are copied
    exactly; the others are bilinearly resampled from their 2x2 taps. Work is done a few frames at a time so
    that intermediate values stay small (cache-sized).
    """
    c, _, h, w = video.shape
    n, a, b, p = rows.shape
    q = cols.shape[-1]
    if out is None:
        result = _new_output((c, n, a * p, b * q), video.device)
        out = result.view(c, n, a, p, b, q)
    else:
        result = out
        if tuple(out.shape) != (c, n, a, p, b, q) or out.dtype != torch.float32:
            raise ValueError(f"out must be float32 {[c, n, a, p, b, q]}, got {out.dtype} {list(out.shape)}")
    if n == 0:
        return result
    with _one_cpu_thread(video.device):
        _gather_into(video, frame_idx, sizes_h, sizes_w, rows, cols, out)
    return result


@contextlib.contextmanager
def _one_cpu_thread(device):
    """Run CPU work on one intra-op thread. The gathers are hundreds of cache-sized ops: splitting each over
    threads gains little, and on a busy machine every op then waits for a descheduled helper thread (measured:
    several times slower with 2 threads than with 1 under load). DataLoader workers are single-threaded anyway."""
    before = torch.get_num_threads()
    if torch.device(device).type != "cpu" or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _gather_into(video, frame_idx, sizes_h, sizes_w, rows, cols, out) -> None:
    """The chunked loop of :func:`gather_fragments` (``out``: ``[C, N, A, p, B, q]``)."""
    c, _, h, w = video.shape
    n, a, b, p = rows.shape
    q = cols.shape[-1]
    if w == 1:  # a one-pixel-wide source has no horizontal pairs: duplicate the column (same values, same taps)
        video = video.expand(-1, -1, -1, 2)
    rows = rows.permute(0, 1, 3, 2)  # [N, a, p, b]: the output's row-major order
    same = ((sizes_h == h) & (sizes_w == w)).tolist()
    scratch = _Scratch(video.device)
    # Elementwise kernels writing short runs (a strided ``out`` with small q) are several times slower than on
    # contiguous memory: compute such chunks contiguously and move them with one wide-element copy.
    direct = q >= 16 or out.is_contiguous()
    start = 0
    while start < n:
        exact = same[start]
        stop = min(n, start + max(1, _CHUNK_BUDGET // (c * a * b * p * q * (1 if exact else 4))))
        stop = next((i for i in range(start + 1, stop) if same[i] != exact), stop)
        k, m = slice(start, stop), stop - start
        t = frame_idx[k].view(m, 1, 1, 1)
        dest = out[:, k] if direct else scratch.get("result", (c, m, a, p, b, q), torch.float32)
        if exact:
            _copy_chunk(video, t, rows[k], cols[k], dest, scratch)
        else:
            _bilinear_chunk(video, t, sizes_h[k], sizes_w[k], rows[k], cols[k], dest, scratch)
        if not direct:
            _copy_wide(out[:, k], dest)
        start = stop


def _copy_wide(dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst.copy_(src)`` for float32 tensors whose last dim is contiguous, moving 16 or 8 bytes per element
    (as complex128 / float64 bit patterns, so values are untouched) when the layout allows it."""
    q = dst.shape[-1]
    for wide, r in ((torch.complex128, 4), (torch.float64, 2)):
        if q % r == 0 and dst.stride(-1) == 1 and src.is_contiguous() and dst.storage_offset() % r == 0 \
                and all(st % r == 0 for st in dst.stride()[:-1]):
            dst.view(wide).copy_(src.view(wide))
            return
    dst.copy_(src)


def _copy_chunk(video, t, rows, cols, out: torch.Tensor, scratch: _Scratch) -> None:
    """Write into ``out`` ``[C, m, a, p, b, q]`` the source pixels at ``rows`` ``[m, a, p, b]`` x ``cols``
    ``[m, a, b, q]`` of frames ``t`` ``[m, 1, 1, 1]``."""
    m, a, p, b = rows.shape
    q = cols.shape[-1]
    table = _PixelTable(video, pair=False)
    lin = scratch.get("lin", (m, a, p, b, q), torch.int64)
    torch.add((t * table.st + rows * table.sh).contiguous()[..., None], (cols * table.sw)[:, :, None], out=lin)
    table.gather(lin, scratch, dest=out)


def _bilinear_chunk(video, t, sizes_h, sizes_w, rows, cols, out: torch.Tensor, scratch: _Scratch) -> None:
    """Write into ``out`` ``[C, m, a, p, b, q]`` the bilinear values at ``rows`` ``[m, a, p, b]`` x ``cols``
    ``[m, a, b, q]`` of frames ``t`` ``[m, 1, 1, 1]`` rescaled to ``sizes_h x sizes_w`` ``[m]``."""
    c, _, h, w = video.shape
    m, a, p, b = rows.shape
    q = cols.shape[-1]
    table = _PixelTable(video, pair=True)
    ri, rw = bilinear_taps(torch.full_like(sizes_h, h), sizes_h, rows)  # [m, a, p, b, 2]
    ci, cw = bilinear_taps(torch.full_like(sizes_w, w), sizes_w, cols)  # [m, a, b, q, 2]
    # Each column tap pair is (x0, x0+1) except at the right edge, where both taps are the last pixel: read the
    # pair one pixel to the left there and put all the weight on its right pixel.
    edge = ci[..., 0] == ci[..., 1]
    x0 = ci[..., 0] - edge.to(torch.int64)
    wx = torch.where(edge, torch.ones_like(cw[..., 1]), cw[..., 1])
    row_part = (t[..., None] * table.st + ri * table.sh).permute(0, 1, 2, 4, 3).contiguous()  # [m, a, p, 2, b]
    lin = scratch.get("lin", (m, a, p, 2, b, q), torch.int64)
    torch.add(row_part[..., None], (x0 * table.sw)[:, :, None, None], out=lin)
    # planar float values of both pixels of every pair: [2, C, m, a, p, 2, b, q]
    planes = table.gather(lin, scratch).view(2, c, m, a, p, 2, b, q)
    # width first, then height, as PyTorch's kernel does; lerp(x0, x1, w) equals (1-w)*x0 + w*x1 up to rounding
    across = scratch.get("across", (c, m, a, p, 2, b, q), torch.float32)
    torch.lerp(planes[0], planes[1], wx.view(1, m, a, 1, 1, b, q), out=across)
    wy = rw[..., 1].view(1, m, a, p, b, 1)
    if q < 16:  # short rows: a per-pixel weight lets the kernel run over whole rows instead of q-pixel pieces
        wy = scratch.get("wy", (1, m, a, p, b, q), torch.float32).copy_(wy.expand(1, m, a, p, b, q))
    torch.lerp(across[:, :, :, :, 0], across[:, :, :, :, 1], wy, out=out)


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
    ``sizes_h[t] x sizes_w[t]`` and read at integer cell offsets ``off_h/off_w`` ``[T, Gh, Gw]``.

    Returns float32 ``[C, T, Gh*fh, Gw*fw]``. Raises if a fragment would leave its frame.
    """
    n = sizes_h.numel()
    if frame_idx is None:
        frame_idx = torch.arange(n, device=video.device)
    rows, cols = _grid_positions(grid, sizes_h, sizes_w, off_h, off_w)
    return gather_fragments(video, frame_idx, sizes_h, sizes_w, rows, cols)


def _grid_positions(grid: FragmentGrid, sizes_h, sizes_w, off_h, off_w) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[N, Gh, Gw, fh]`` and columns ``[N, Gh, Gw, fw]`` read by every cell (checked to lie inside)."""
    n = sizes_h.numel()
    rows = _fragment_positions(sizes_h, off_h, grid.cells_h, grid.fsize_h, axis=0)
    cols = _fragment_positions(sizes_w, off_w, grid.cells_w, grid.fsize_w, axis=1)
    rows = rows.expand(n, grid.cells_h, grid.cells_w, grid.fsize_h)
    cols = cols.expand(n, grid.cells_h, grid.cells_w, grid.fsize_w)
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


MASKS = ("patch", "window")


def make_mask(kind: str, grid: FragmentGrid, device=None) -> torch.Tensor:
    if kind == "patch":
        return patch_mask(grid.out_h, grid.out_w, device=device)
    if kind == "window":
        return window_mask(grid, device=device)
    raise ValueError(f"unknown mask {kind!r}; choose one of: {', '.join(MASKS)}")


# ----------------------------------------------------------------------------------------------- SAMA variants
@dataclass(frozen=True)
class SamaVariant:
    """A SAMA sampling variant: which scale factor each temporal patch gets, and how full-resolution fragments
    are mixed in (``None``: not at all; ``"patch"`` / ``"window"``: see :func:`make_mask`)."""

    schedule: str
    mask: Optional[str] = None

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown scale schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.mask is not None and self.mask not in MASKS:
            raise ValueError(f"unknown mask {self.mask!r}; choose one of: None, {', '.join(MASKS)}")


SAMA_VARIANTS: dict[str, SamaVariant] = {
    # video (one factor per temporal patch of 2 frames)
    "sama": SamaVariant("ramp"),
    "sama-c": SamaVariant("alternate"),
    "sama-mix": SamaVariant("double_ramp"),
    "sama-spm": SamaVariant("ramp", "patch"),
    "sama-swm": SamaVariant("ramp", "window"),
    # image: a single scaled view at 1/ratio, mixed with full resolution
    "image-window": SamaVariant("coarsest", "window"),
    "image-patch": SamaVariant("coarsest", "patch"),
}


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
    c, t, h, w = video.shape
    if t % aligned:
        raise ValueError(f"the number of frames ({t}) must be a multiple of aligned ({aligned})")
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

    def positions(s_h, s_w):
        return _grid_positions(grid, s_h, s_w, relative_offsets(r_h, s_h, grid.cells_h, grid.fsize_h),
                               relative_offsets(r_w, s_w, grid.cells_w, grid.fsize_w))

    rows, cols = positions(sizes_h, sizes_w)
    if variant.mask is None:
        return gather_fragments(video, frames, sizes_h, sizes_w, rows, cols)
    full_h = torch.full_like(sizes_h, base_h)
    full_w = torch.full_like(sizes_w, base_w)
    full_rows, full_cols = positions(full_h, full_w)
    tile = _checkerboard_tile(variant.mask, grid)
    if tile is None:  # irregular mask: compute both views and blend
        scaled = gather_fragments(video, frames, sizes_h, sizes_w, rows, cols)
        full = gather_fragments(video, frames, full_h, full_w, full_rows, full_cols)
        return _apply_mask(variant.mask, grid, full, scaled)
    # Each mask is a checkerboard of tiles (full resolution on tiles with an even row + column index): read
    # every tile from its own source only, straight into its place in the output.
    th, tw = tile
    out = _new_output((c, t, grid.out_h, grid.out_w), dev)
    tiles = out.view(c, t, grid.out_h // th, th, grid.out_w // tw, tw)
    per_h, per_w = grid.fsize_h // th, grid.fsize_w // tw
    srcs = [(s_h, s_w, _tile_positions(r, th, per_w, 0), _tile_positions(q, tw, per_h, 1))
            for s_h, s_w, r, q in ((full_h, full_w, full_rows, full_cols), (sizes_h, sizes_w, rows, cols))]
    for di in (0, 1):
        for dj in (0, 1):
            s_h, s_w, t_rows, t_cols = srcs[(di + dj) % 2]
            gather_fragments(video, frames, s_h, s_w, t_rows[:, di::2, dj::2], t_cols[:, di::2, dj::2],
                             out=tiles[:, :, di::2, :, dj::2, :])
    return out


def _checkerboard_tile(kind: str, grid: FragmentGrid) -> Optional[tuple[int, int]]:
    """Tile size ``(th, tw)`` when mask ``kind`` is True exactly on the tiles ``(I, J)`` with ``I + J`` even of a
    tiling of the output that nests inside the fragments; None when it is not such a checkerboard."""
    if kind == "window":
        return grid.fsize_h, grid.fsize_w
    if kind == "patch" and grid.out_h % 8 == 0 and grid.out_w % 8 == 0 and grid.fsize_h % 4 == 0 \
            and grid.fsize_w % 4 == 0:
        return 4, 4  # quarters of the 8x8 blocks: top-left and bottom-right are the full-resolution ones
    return None


def _tile_positions(pos: torch.Tensor, size: int, across: int, axis: int) -> torch.Tensor:
    """Re-cut per-cell coordinates into tiles of ``size`` pixels along ``axis`` (0: rows, 1: columns).

    pos: ``[N, Gh, Gw, f]``; each cell holds ``f // size`` tiles along ``axis`` and ``across`` along the other
    axis. Returns ``[N, A, B, size]``, the coordinates of tile ``(I, J)`` of the ``A x B`` tiling of the output.
    """
    n, gh, gw, f = pos.shape
    k = f // size
    split = pos.reshape(n, gh, gw, k, size)
    if axis == 0:  # tile row I = (cell row, k); the same coordinates for every tile along the width
        tiles = split.permute(0, 1, 3, 2, 4)[:, :, :, :, None].expand(n, gh, k, gw, across, size)
        return tiles.reshape(n, gh * k, gw * across, size)
    tiles = split[:, :, None].expand(n, gh, across, gw, k, size)
    return tiles.reshape(n, gh * across, gw * k, size)


def _apply_mask(kind: str, grid: FragmentGrid, full: torch.Tensor, scaled: torch.Tensor) -> torch.Tensor:
    """Copy the full-resolution pixels selected by the mask into ``scaled`` (in place, via strided views when the
    mask is a regular block pattern; ``torch.where`` otherwise). Same values as ``where(mask, full, scaled)``."""
    c, t, out_h, out_w = scaled.shape
    if kind == "window":
        sv = scaled.view(c, t, grid.cells_h, grid.fsize_h, grid.cells_w, grid.fsize_w)
        fv = full.view(sv.shape)
        for i0 in (0, 1):  # cells with i + j even: (even, even) and (odd, odd)
            sv[:, :, i0::2, :, i0::2].copy_(fv[:, :, i0::2, :, i0::2])
        return scaled
    if kind == "patch" and out_h % 8 == 0 and out_w % 8 == 0:
        sv = scaled.view(c, t, out_h // 8, 2, 4, out_w // 8, 2, 4)
        fv = full.view(sv.shape)
        for q in (0, 1):  # top-left and bottom-right 4x4 quarter of every 8x8 block
            sv[:, :, :, q, :, :, q].copy_(fv[:, :, :, q, :, :, q])
        return scaled
    return torch.where(make_mask(kind, grid, device=scaled.device), full, scaled)
