"""Bilinear reads of chosen output pixels straight from a decoded video: the engine under :mod:`samacore.sampling`.

The samplers describe *where* every output pixel reads (a rescaled frame size and a position in it, possibly a
different source per pixel when a mask mixes scales); this module turns that into *taps* and executes them.

* A :class:`TapPlan` holds, for each distinct frame geometry, the source taps of the output. Bilinear resizing
  (``align_corners=False``, no antialias) reads a 2x2 block: the horizontal pixel pairs ``(x0, x0+1)`` of source
  rows ``y0`` and ``y1``, blended with weights ``wy`` then ``wx``; these are separable, so taps are kept per
  output row and per output column (a few KB per geometry). Output pixels are split into :class:`Part` s that
  each read one source (SAMA's masks are checkerboards of such parts), so a pixel is computed once; a part is a
  list of *runs* (adjacent pixels of one output row in one tile) naming their row and columns of taps. Frames
  sharing a geometry (both frames of a temporal patch; in test mode every clip) share its taps, so index
  arithmetic is paid once per geometry, not per frame.
* :func:`resample` runs a plan frame by frame. The PyTorch engine expands the taps per pixel (once per plan)
  and runs each step as one plain op over a whole part: an ``index_select`` of pixel pairs from the frame's own memory (no float copy of the frame), a widening copy, a
  vertical ``lerp`` in the decoder's channels-last layout, a transposing copy into channel planes and a
  horizontal ``lerp`` written straight into the output. On CPU, frames are spread over the intra-op threads
  (ops inside a frame run single-threaded: many mid-sized ops gain little from splitting, and each worker pulls
  whole frames); CUDA tensors run the same ops on the device.
* On CPU the same plan runs, by default, on a small C kernel (``samacore._cresample``, built by ``pip install``
  where a C compiler exists) that reads the compact taps directly and fuses the gather and both blends into one
  pass per run of output pixels: the PyTorch ops above spend most of their time on one ``memcpy`` per gathered
  pixel pair. :func:`backend` says
  which engine runs, ``SAMA_RESAMPLE_BACKEND`` (``auto``, ``native``, ``torch``) or :func:`set_backend` chooses.

The arithmetic is PyTorch's bilinear kernel up to float rounding: tap positions and weights are computed in
float32 the same way (:func:`bilinear_taps`), copies are exact, and blends differ only in rounding order (both
engines use ``torch.lerp``'s formula; they agree to a few float32 ulps).
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import itertools
import math
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from .options import OptionError


def _load_kernel():
    """The optional C kernel (see setup.py), or None: not built, or built from another version of its source
    (an edited ``_cresample.c`` whose build was not redone; said once, loudly)."""
    try:
        from samacore import _cresample
    except ImportError:
        return None
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_cresample.c")
    if os.path.exists(source):  # source trees and editable installs; wheels ship only the build
        with open(source, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != getattr(_cresample, "SOURCE_SHA256", None):
            warnings.warn(f"{_cresample.__file__} was built from another version of {source}; rebuild it with "
                          "`pip install -e .` (running PyTorch ops until then)", RuntimeWarning, stacklevel=2)
            return None
    return _cresample


_cresample = _load_kernel()

__all__ = ["bilinear_taps", "TapSource", "Part", "whole", "TapPlan", "PartPlan", "plan_taps", "resample", "new_output",
           "backend", "set_backend", "BACKENDS"]

BACKENDS = ("auto", "native", "torch")
# source dtypes the C kernel reads (others run as PyTorch ops), with its codes for them
_NATIVE_DTYPES = {torch.uint8: 0, torch.float32: 1}

# Outputs at least this large (bytes) are backed by transparent huge pages where the OS allows it.
_HUGE_PAGE_MIN = 16 << 20


# ------------------------------------------------------------------------------------------------ taps
def bilinear_taps(in_size: torch.Tensor, out_size: torch.Tensor, pos: torch.Tensor):
    """Source taps of bilinear resizing (``align_corners=False``, no antialias) for chosen output positions.

    in_size, out_size: int64 ``[N]`` (per frame); pos: int64 ``[N, ...]`` output coordinates.
    Returns ``(idx, weight)``: int64 and float32 ``[N, ..., 2]`` -- the two source coordinates and their weights,
    computed in float32 the way PyTorch's CPU/CUDA kernels do (source = scale*(dst+0.5)-0.5, clamped at 0).
    An output size equal to the input size gives ``idx[..., 0] == pos`` and weight ``(1, 0)``: an exact copy.
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


@dataclass(frozen=True)
class TapSource:
    """One view the output pixels can read from: every (unique) frame rescaled to ``sizes_h x sizes_w`` ``[U]``
    and read at ``rows`` ``[U, A, B, p]`` x ``cols`` ``[U, A, B, q]`` -- the coordinates, in the rescaled frame,
    of the ``p x q`` pixels of each of ``A x B`` output cells (cell ``(i, j)`` fills output rows ``i*p...`` and
    columns ``j*q...``)."""

    sizes_h: torch.Tensor
    sizes_w: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor


Selector = Callable[[torch.Tensor], torch.Tensor]


def whole(x: torch.Tensor) -> torch.Tensor:
    """The selector of every output pixel."""
    return x


@dataclass(frozen=True)
class Part:
    """Output pixels read from one source: ``select`` maps any tensor whose last four dims are the pixel layout
    ``[A, p, B, q]`` (cell rows, rows in a cell, cell columns, columns in a cell) to a *view* of these pixels,
    whose last dim runs along an output row. ``source`` indexes the sources of :func:`plan_taps`."""

    source: int
    select: Selector = whole


@dataclass
class PartPlan:
    """The pixels of one :class:`Part` as *runs*: ``run`` adjacent pixels of one output row (the last dim of the
    part's ``shape``) reading one output row of taps and ``run`` consecutive column taps of the :class:`TapPlan`.

    ``row``, ``col`` and ``dest`` ``[M // run]`` (int64, the same for every geometry): run ``r`` reads row taps
    ``row[r]`` and column taps ``col[r] ... col[r] + run - 1``, and starts at flat index ``dest[r]`` of an output
    frame plane. ``kind[u]``: ``"copy"`` where geometry ``u`` reads every pixel of the part exactly (factor 1: no
    weights) or ``"blend"``.
    """

    select: Selector
    shape: tuple
    row: torch.Tensor
    col: torch.Tensor
    dest: torch.Tensor
    kind: list
    pixel_taps: Optional["_PixelTaps"] = None  # the PyTorch engine's per-pixel form, built on first use

    @property
    def pixels(self) -> int:
        return math.prod(self.shape)

    @property
    def run(self) -> int:
        return self.shape[-1]


@dataclass
class TapPlan:
    """How every output pixel of ``U`` frame geometries is read: one :class:`PartPlan` per part of the output
    (together they cover each pixel once), and the taps they read.

    Taps are separable, so they are kept per output row and per output column of each source (``S`` sources,
    output layout ``[A, p, B, q]``): ``top``, ``bottom`` int64 and ``wy`` float32 ``[U, S*A*p*B]`` -- the source
    rows ``y0``, ``y1`` and the weight of ``y1``; ``left``, ``pair`` int64 and ``wx`` float32 ``[U, S*A*B*q]`` --
    the source column ``x0``, the left pixel of the pair read (``x0``, or ``x0 - 1`` at the right edge) and the
    weight of its right pixel. Rows and columns are counted in rows of the frame tables of :func:`resample`
    (pixel ``(y, x)`` is ``y * row_h + x * row_w``; ``strides = (row_h, row_w)``).
    """

    out_h: int
    out_w: int
    layout: tuple  # (A, p, B, q)
    strides: tuple
    frame_size: tuple  # (H, W) of the video it was made for
    parts: list
    top: torch.Tensor
    bottom: torch.Tensor
    wy: torch.Tensor
    left: torch.Tensor
    pair: torch.Tensor
    wx: torch.Tensor


def _axis_taps(src: int, source: TapSource, axis: int):
    """Taps of one source along one axis: int64 ``i0`` and ``i1`` and the float32 weight of ``i1``, per output
    row ``[U, A, p, B]`` (axis 0) or per output column ``[U, A, B, q]`` (axis 1)."""
    if axis == 0:
        idx, wgt = bilinear_taps(torch.full_like(source.sizes_h, src), source.sizes_h, source.rows.transpose(2, 3))
    else:
        idx, wgt = bilinear_taps(torch.full_like(source.sizes_w, src), source.sizes_w, source.cols)
    return idx[..., 0], idx[..., 1], wgt[..., 1]


def plan_taps(video: torch.Tensor, sources: Sequence[TapSource], parts: Sequence[Part] = (Part(0),),
              choice: Optional[torch.Tensor] = None) -> TapPlan:
    """How every output pixel of every geometry reads frames of ``video`` ``[C, T, H, W]``.

    parts: which source each set of output pixels reads (default: all pixels read ``sources[0]``). Alternatively
    ``choice``, a bool ``[out_h, out_w]`` mask for two sources (True: ``sources[0]``) that no set of parts
    describes: then every run of pixels picks its own source. Only per-row and per-column taps are computed
    here; nothing is done per pixel.
    """
    _, _, h, w = video.shape
    u, a, b, p = sources[0].rows.shape
    q = sources[0].cols.shape[-1]
    row_h, row_w = _row_steps(_readable(video))
    taps: Dict[str, list] = {key: [] for key in ("top", "bottom", "wy", "left", "pair", "wx", "copy")}
    for source in sources:
        y0, y1, wy = _axis_taps(h, source, 0)
        x0, _, wx = _axis_taps(w, source, 1)
        # the pair (x0, x0+1) must stay inside the row: at the right edge read (x0-1, x0), all weight on x0
        # (a one-pixel-wide source is read as a two-pixel one, see _readable)
        edge = (x0 == w - 1) & (w > 1)
        taps["copy"].append((wy == 0).flatten(1).all(1) & (wx == 0).flatten(1).all(1))
        # an unweighted second row is not read at all: pointing it at the first keeps the reads in cache lines
        # already loaded
        taps["top"].append(y0 * row_h)
        taps["bottom"].append(torch.where(wy == 0, y0, y1) * row_h)
        taps["wy"].append(wy)
        taps["left"].append(x0 * row_w)
        taps["pair"].append((x0 - edge.to(torch.int64)) * row_w)
        taps["wx"].append(torch.where(edge, torch.ones_like(wx), wx))
    tables = {key: torch.cat([t.reshape(u, -1) for t in ts], 1).contiguous() for key, ts in taps.items() if key != "copy"}
    plan = TapPlan(a * p, b * q, (a, p, b, q), (row_h, row_w), (h, w), [], **tables)

    # which row and column taps every output pixel reads, and where it lies in the frame plane
    # (every table on the video's device: a CUDA video's plan is checked against it like a CPU one's)
    rows, cols, dev = a * p * b, a * b * q, video.device
    row_of = torch.arange(rows, device=dev).view(a, p, b, 1).expand(a, p, b, q)
    col_of = torch.arange(cols, device=dev).view(a, 1, b, q).expand(a, p, b, q)
    dest_of = torch.arange(a * p * b * q, device=dev).view(a, p, b, q)
    if choice is not None:  # one part, a source per run of pixels
        run = _run_length(choice, q)
        second = (~choice.to(dev)).view(a, p, b, q).to(torch.int64)  # 1 where sources[1] is read
        kind = [("copy" if c else "blend") for c in (taps["copy"][0] & taps["copy"][1]).tolist()]
        plan.parts.append(_part_plan(whole, (a, p, b, q // run, run), row_of + second * rows, col_of + second * cols,
                                     dest_of, kind))
        return plan
    for part in parts:
        shape = tuple(part.select(dest_of).shape)
        if math.prod(shape) == 0:  # (a 1-cell grid has empty parts)
            continue
        kind = [("copy" if c else "blend") for c in taps["copy"][part.source].tolist()]
        plan.parts.append(_part_plan(part.select, shape, part.select(row_of) + part.source * rows,
                                     part.select(col_of) + part.source * cols, part.select(dest_of), kind))
    return plan


def _part_plan(select: Selector, shape: tuple, row_of: torch.Tensor, col_of: torch.Tensor, dest_of: torch.Tensor,
               kind: list) -> PartPlan:
    """The runs of a part from its pixels' row-tap, column-tap and output indices (views in the part's shape)."""
    run = shape[-1]
    first = lambda of: of.reshape(-1, run)[:, 0].contiguous()
    return PartPlan(select, shape, first(row_of), first(col_of), first(dest_of), kind)


@dataclass
class _PixelTaps:
    """A :class:`PartPlan` for the PyTorch engine: taps per pixel, for the geometries of each kind.

    ``slot[u]`` is geometry ``u``'s row in the arrays of its kind. Copies read ``pixel[slot]`` ``[M]``, or, when
    every run reads adjacent source pixels (``segments``: full-resolution fragments), one segment per run from
    ``pixel[slot]`` ``[M // run]`` (one row copy instead of ``run`` pixel copies). Blends read the pair
    ``(x0, x0+1)`` on rows ``y0`` and ``y1`` (``pairs[slot]`` ``[2, M]``), blended with ``wy[slot]`` ``[M // run]``
    and then ``wx[slot]`` ``[M]``.
    """

    slot: list
    pixel: Optional[torch.Tensor] = None
    segments: bool = False
    pairs: Optional[torch.Tensor] = None
    wy: Optional[torch.Tensor] = None
    wx: Optional[torch.Tensor] = None


def _pixel_taps(plan: TapPlan, part: PartPlan) -> _PixelTaps:
    """The per-pixel form of ``part`` (built once per plan and part)."""
    if part.pixel_taps is not None:
        return part.pixel_taps
    dev = plan.top.device
    run = part.run
    taps = _PixelTaps([part.kind[:i].count(kind) for i, kind in enumerate(part.kind)])
    row, col = part.row.to(dev), part.col[:, None].to(dev) + torch.arange(run, device=dev)  # [R], [R, run]
    ids = {kind: torch.tensor([i for i, k in enumerate(part.kind) if k == kind], dtype=torch.int64, device=dev)
           for kind in ("copy", "blend")}
    if len(ids["copy"]):
        n = len(ids["copy"])
        pixel = plan.top[ids["copy"]][:, row, None] + plan.left[ids["copy"]][:, col]  # [n, R, run]
        steps = torch.arange(run, device=dev) * plan.strides[1]
        taps.segments = run > 1 and bool((pixel == pixel[..., :1] + steps).all())
        taps.pixel = pixel[..., 0].contiguous() if taps.segments else pixel.reshape(n, -1)
    if len(ids["blend"]):
        n = len(ids["blend"])
        pair = plan.pair[ids["blend"]][:, col]
        taps.pairs = torch.stack([plan.top[ids["blend"]][:, row, None] + pair,
                                  plan.bottom[ids["blend"]][:, row, None] + pair], 1).view(n, 2, -1)
        taps.wy = plan.wy[ids["blend"]][:, row]
        taps.wx = plan.wx[ids["blend"]][:, col].reshape(n, -1)
    part.pixel_taps = taps
    return taps


def _run_length(choice: torch.Tensor, q: int) -> int:
    """Longest run length dividing every cell width and every change of source along the output rows."""
    changes = (choice[:, 1:] != choice[:, :-1]).any(0).nonzero().flatten() + 1
    return math.gcd(q, *changes.tolist())


# --------------------------------------------------------------------------------------------- tables
def _readable(video: torch.Tensor) -> torch.Tensor:
    """``video`` as the tables read it: a one-pixel-wide source has no horizontal pairs, so its column is
    duplicated (a stride-0 view: same values, same taps)."""
    return video.expand(-1, -1, -1, 2) if video.shape[-1] == 1 else video


def _row_steps(video: torch.Tensor) -> Tuple[int, int]:
    """Row-index steps ``(row_h, row_w)`` of pixel ``(y, x)`` in the frame tables of :class:`_FrameTables`."""
    _, sh, sw = _FrameTables.steps(video)
    return sh, sw


class _FrameTables:
    """No-copy views of one frame from which ``index_select`` reads single pixels or horizontal pixel pairs.

    Channels-last memory (what decoders give: ``[T, H, W, C]`` permuted to ``[C, T, H, W]``) is read with all
    channels at once (rows of ``[2, C]``); planar memory one channel plane at a time (rows of ``[2, 1]``). Rows
    are contiguous in both cases, PyTorch's fast ``index_select`` path; other layouts work too, just slower.
    """

    def __init__(self, video: torch.Tensor):
        c, t, h, w = video.shape
        self.video = video
        self.interleaved = c == 1 or video.stride(0) == 1
        self.unit, self.row_h, self.row_w = self.steps(video)
        self.groups = [(0, c)] if self.interleaved else [(k, k + 1) for k in range(c)]

    @staticmethod
    def steps(video: torch.Tensor) -> Tuple[int, int, int]:
        c, _, _, _ = video.shape
        sc, _, sh, sw = video.stride()
        interleaved = c == 1 or sc == 1
        unit = max(1, math.gcd(sh, sw, sc if interleaved and c > 1 else 0))
        return unit, sh // unit, sw // unit

    def table(self, frame: int, group: Tuple[int, int], width: int = 0) -> torch.Tensor:
        """``[rows, width, C']`` view of channels ``group`` of ``frame``: rows of ``width`` horizontally adjacent
        pixels (pairs: 2, segments: a run), or single pixels ``[rows, C']`` for ``width`` 0."""
        v = self.video
        _, _, h, w = v.shape
        sc, st, sh, sw = v.stride()
        start = v.storage_offset() + frame * st + group[0] * sc
        last = (h - 1) * sh + (w - max(width, 1)) * sw
        rows = last // self.unit + 1
        inner = ((width, sw),) if width else ()
        inner += ((group[1] - group[0], sc),)
        return v.as_strided((rows,) + tuple(n for n, _ in inner), (self.unit,) + tuple(s for _, s in inner), start)


class _Scratch:
    """Reusable flat buffers, one per name (fresh multi-megabyte buffers cost more in page faults than the
    arithmetic done in them)."""

    def __init__(self, device):
        self.device = device
        self.buffers: Dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        size = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.numel() < size:
            # a normal tensor, usable in and out of inference mode (buffers outlive the call that made them)
            with torch.inference_mode(False):
                buf = self.buffers[name] = torch.empty(size, dtype=dtype, device=self.device)
        return buf[:size].view(*shape)


# ------------------------------------------------------------------------------------------- execution
def new_output(shape: Sequence[int], device) -> torch.Tensor:
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
            _MADVISE(start, stop - start, 14)  # MADV_HUGEPAGE; advisory: failure changes nothing but speed
    return out


def resample(video: torch.Tensor, plan: TapPlan, frame_plan: Sequence[int], frame_idx: Sequence[int],
             out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Run ``plan`` on frames of ``video`` ``[C, T, H, W]`` (any real dtype): output frame ``n`` reads source
    frame ``frame_idx[n]`` with geometry ``frame_plan[n]``. Returns float32 ``[C, N, out_h, out_w]`` (or fills
    ``out``, a tensor of that shape whose frames are contiguous ``out_h x out_w`` planes)."""
    c, n, size = video.shape[0], len(frame_idx), tuple(video.shape)
    video = _readable(video)
    _check_call(video, size, plan, frame_plan, frame_idx)
    shape = (c, n, plan.out_h, plan.out_w)
    if out is None:
        out = new_output(shape, video.device)
    elif tuple(out.shape) != shape or out.dtype != torch.float32 or out.device != video.device:
        raise ValueError(f"out must be a float32 {shape} tensor on {video.device}, got {out.dtype} "
                         f"{tuple(out.shape)} on {out.device}")
    tables = _FrameTables(video)
    jobs = list(zip(range(n), frame_plan, frame_idx))
    if _native_fits(video, out):
        run = _run_frames_native
    else:
        run = _run_frames
        for part in plan.parts:  # expanded once, before any worker needs it
            _pixel_taps(plan, part)
    workers = torch.get_num_threads() if video.device.type == "cpu" else 1
    if workers <= 1 or n <= 1:
        run(tables, plan, jobs, out)
        return out
    # Each worker pulls the next frame until none is left: balanced on a busy machine, and one hand-off per
    # worker rather than per frame (per-frame futures cost a third of the gain). The caller is a worker too.
    frames = itertools.count()
    inference = torch.is_inference_mode_enabled()  # thread-local: helpers must write `out` in the caller's mode

    def work(_=None) -> None:
        with torch.inference_mode(inference):
            for k in iter(lambda: next(frames), None):
                if k >= len(jobs):
                    return
                run(tables, plan, [jobs[k]], out)

    with _single_threaded_ops():
        helpers = [_thread_pool(workers - 1).submit(work) for _ in range(workers - 1)]
        work()
        for helper in helpers:
            helper.result()
    return out


def _check_call(video: torch.Tensor, size: Tuple[int, ...], plan: TapPlan, frame_plan: Sequence[int],
                frame_idx: Sequence[int]) -> None:
    """The C kernel trusts the plan's indices and pointers: anything that would read outside the video (of shape
    ``size`` ``[C, T, H, W]`` as given; ``video`` as read), or read a table on another device (a CUDA pointer in the
    CPU kernel is a crash), is refused here."""
    _, t, h, w = size
    if plan.frame_size != (h, w) or plan.strides != _row_steps(video):
        raise ValueError(f"the tap plan was made for {plan.frame_size[0]}x{plan.frame_size[1]} frames with row "
                         f"steps {plan.strides}, not for this {h}x{w} video with {_row_steps(video)}")
    elsewhere = sorted({str(d) for d in plan_devices(plan)} - {str(video.device)})
    if elsewhere:
        raise ValueError(f"the tap plan's tables are on {', '.join(elsewhere)}, the video on {video.device}: make the "
                         f"plan (plan_taps) from a video on the device it will resample")
    n = len(frame_idx)
    if len(frame_plan) != n:
        raise ValueError(f"frame_plan has {len(frame_plan)} entries for {n} frames")
    geometries = plan.top.shape[0]
    if n and not (0 <= min(frame_idx) and max(frame_idx) < t and 0 <= min(frame_plan) and max(frame_plan) < geometries):
        raise ValueError(f"frame indices must lie in [0, {t}) and geometries in [0, {geometries}); got frames "
                         f"{min(frame_idx)}..{max(frame_idx)}, geometries {min(frame_plan)}..{max(frame_plan)}")


def plan_devices(plan: TapPlan) -> set:
    """The devices of every tensor of ``plan`` (its tap tables and its parts' run tables)."""
    tables = [plan.top, plan.bottom, plan.wy, plan.left, plan.pair, plan.wx]
    tables += [t for part in plan.parts for t in (part.row, part.col, part.dest)]
    return {t.device for t in tables}


def _run_frames(tables: _FrameTables, plan: TapPlan, jobs, out: torch.Tensor) -> None:
    """Whole parts of frames per op: measured faster than cache-sized pieces, whose per-op overhead costs more."""
    scratch = _thread_scratch(out.device)
    c = out.shape[0]
    for n, u, t in jobs:
        cells = out[:, n].view(c, *plan.layout)
        for part in plan.parts:
            taps = _pixel_taps(plan, part)
            slot = taps.slot[u]
            dest = part.select(cells).view(c, *part.shape)
            for lo, hi in tables.groups:
                if part.kind[u] == "copy":
                    table = tables.table(t, (lo, hi), part.run if taps.segments else 0)
                    _copy_pixels(table, taps.pixel[slot], dest[lo:hi], scratch)
                else:
                    _blend_pairs(tables.table(t, (lo, hi), 2), part, taps, slot, dest[lo:hi], scratch)


def _native_fits(video: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether the C kernel runs this call: built and chosen, a CPU source of a dtype it reads, and an output
    whose frames are contiguous float32 planes (the kernel writes runs at plane offsets)."""
    if backend() != "native" or video.device.type != "cpu" or video.dtype not in _NATIVE_DTYPES:
        return False
    return out.device.type == "cpu" and out.dtype == torch.float32 and out.stride(-1) == 1 \
        and out.stride(-2) == out.shape[-1]


def _run_frames_native(tables: _FrameTables, plan: TapPlan, jobs, out: torch.Tensor) -> None:
    """:func:`_run_frames` on the C kernel: one call per part and channel group of a frame (it releases the GIL,
    so the pool's threads run frames in parallel)."""
    video = tables.video
    sc, st, _, sw = video.stride()
    code, size = _NATIVE_DTYPES[video.dtype], video.element_size()
    plane = out.stride(0)
    tap_rows = [plan.top, plan.bottom, plan.wy, plan.left, plan.pair, plan.wx]
    for n, u, t in jobs:
        frame = out[:, n].data_ptr()
        top, bottom, wy, left, pair, wx = (tab[u].data_ptr() for tab in tap_rows)
        for part in plan.parts:
            runs = (part.row.numel(), part.run, part.row.data_ptr(), part.col.data_ptr(), part.dest.data_ptr())
            copy = part.kind[u] == "copy"
            for lo, hi in tables.groups:
                args = (video.data_ptr() + (t * st + lo * sc) * size, code, tables.unit, sc, sw, hi - lo, *runs,
                        top, bottom, wy, left if copy else pair, wx, frame + lo * plane * 4, plane)
                (_cresample.copy if copy else _cresample.blend)(*args)


def _copy_pixels(table: torch.Tensor, index: torch.Tensor, dest: torch.Tensor, scratch: _Scratch) -> None:
    """``dest`` ``[C, ...]`` (any strides) = the table rows ``index`` (pixels or segments of pixels), in one
    gather and one transposing widening copy."""
    got = torch.index_select(table, 0, index, out=scratch.get("pixels", (index.numel(),) + table.shape[1:], table.dtype))
    planes = got.view(-1, table.shape[-1]).t()
    if _short_runs(dest):
        planes = scratch.get("result", planes.shape, torch.float32).copy_(planes)
        _copy_wide(dest, planes.view(dest.shape))
    else:
        dest.copy_(planes.view(dest.shape))


def _blend_pairs(table: torch.Tensor, part: PartPlan, taps: _PixelTaps, slot: int, dest: torch.Tensor,
                 scratch: _Scratch) -> None:
    """``dest`` ``[C, *part.shape]`` (any strides) = bilinear values of the part's pixels, geometry ``slot``."""
    c, m = table.shape[-1], part.pixels
    width = 2 * c  # values of one pixel pair
    got = torch.index_select(table, 0, taps.pairs[slot].view(-1),  # pairs on rows y0, then on rows y1
                             out=scratch.get("pairs", (2 * m, 2, c), table.dtype))
    values = scratch.get("values", (2, m, width), torch.float32)
    values.copy_(got.view(2, m, width))  # contiguous widening: cheap, unlike a transposing one on all 4 taps
    # vertical blend in the decoder's interleaved layout, one weight per run of output pixels
    runs = m // part.run
    vertical = scratch.get("vertical", (m, width), torch.float32)
    torch.lerp(values[0].view(runs, -1), values[1].view(runs, -1), taps.wy[slot, :, None], out=vertical.view(runs, -1))
    # channel planes of the left and right pixel of each pair, then the horizontal blend into the output
    planes = scratch.get("planes", (2, c, m), torch.float32)
    planes.copy_(vertical.view(m, 2, c).permute(1, 2, 0))
    if _short_runs(dest):
        result = scratch.get("result", (c, m), torch.float32)
        torch.lerp(planes[0], planes[1], taps.wx[slot], out=result)
        _copy_wide(dest, result.view(dest.shape))
    else:
        torch.lerp(planes[0].view(dest.shape), planes[1].view(dest.shape), taps.wx[slot].view(dest.shape[1:]), out=dest)


def _short_runs(dest: torch.Tensor) -> bool:
    """Elementwise kernels writing short runs (e.g. the 4-pixel tiles of the patch mask) are several times
    slower than on contiguous memory: such results are computed contiguously and moved by :func:`_copy_wide`."""
    return dest.device.type == "cpu" and dest.shape[-1] < 16 and not dest.is_contiguous()


def _copy_wide(dest: torch.Tensor, src: torch.Tensor) -> None:
    """``dest.copy_(src)`` for float32 tensors with a contiguous last dim, moving 16 or 8 bytes per element (as
    complex128 / float64 bit patterns: values untouched) when the layout allows it."""
    n = dest.shape[-1]
    for wide, ratio in ((torch.complex128, 4), (torch.float64, 2)):
        if n % ratio == 0 and dest.stride(-1) == 1 and src.is_contiguous() and dest.storage_offset() % ratio == 0 \
                and all(st % ratio == 0 for st in dest.stride()[:-1]):
            dest.view(wide).copy_(src.view(wide))
            return
    dest.copy_(src)


# --------------------------------------------------------------------------------------------- backend
_CHOSEN = os.environ.get("SAMA_RESAMPLE_BACKEND", "auto")


def set_backend(name: str) -> None:
    """Choose the CPU engine: ``"auto"`` (the C kernel when built, else PyTorch ops), ``"native"`` (the C kernel;
    an error when it is not built) or ``"torch"``. The default comes from ``SAMA_RESAMPLE_BACKEND``."""
    global _CHOSEN
    _check_backend(name, "set_backend")
    _CHOSEN = name


def backend() -> str:
    """The CPU engine :func:`resample` uses now: ``"native"`` or ``"torch"`` (CUDA tensors always run as
    PyTorch ops)."""
    _check_backend(_CHOSEN, "SAMA_RESAMPLE_BACKEND")
    if _CHOSEN == "torch" or (_CHOSEN == "auto" and _cresample is None):
        return "torch"
    return "native"


def _check_backend(name: str, where: str) -> None:
    """A choice the user makes (the environment variable, ``set_backend``): an :class:`OptionError` when bad."""
    if name not in BACKENDS:
        raise OptionError(f"{where}: unknown resampling backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    if name == "native" and _cresample is None:
        raise OptionError(f"{where}: the C kernel samacore._cresample is not built (it is compiled by "
                          "`pip install -e .` where a C compiler exists); use 'auto' or 'torch' without it")


# ------------------------------------------------------------------------------------------- threading
_LOCAL = threading.local()
_POOL: Optional[ThreadPoolExecutor] = None
_POOL_KEY: tuple = ()


def _thread_scratch(device) -> _Scratch:
    scratches = getattr(_LOCAL, "scratch", None)
    if scratches is None:
        scratches = _LOCAL.scratch = {}
    key = str(device)
    if key not in scratches:
        scratches[key] = _Scratch(device)
    return scratches[key]


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads, rebuilt after a fork (threads do not survive one)."""
    global _POOL, _POOL_KEY
    key = (os.getpid(), workers)
    if _POOL is None or _POOL_KEY != key:
        _POOL = ThreadPoolExecutor(workers, thread_name_prefix="sama-resample")
        _POOL_KEY = key
    return _POOL


@contextlib.contextmanager
def _single_threaded_ops():
    """Run each op on one intra-op thread while frames are spread over the pool's threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
