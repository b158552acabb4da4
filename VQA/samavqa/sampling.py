"""Spatial sampling of videos: ``get_single_sample(video, sample_type, is_train, **opts)``.

Every sample type of SAMA / FAST-VQA is here: the names are those :data:`samacore.sampling.SAMPLE_TYPES` offers
for videos (:data:`SAMPLE_TYPES` lists them, live). The grid-based ones (``fragments`` and the SAMA family) run on
the shared pipeline in :mod:`samacore.sampling`; a SAMA variant is a registry entry (a scale schedule plus an
optional mask), not a separate function, so one registered later works here, in the option checks and in the
visualiser without further code.

Inputs are ``[C, T, H, W]`` tensors on the 0-255 scale (uint8 or float, any device); outputs are float32
``[C, T, Sh, Sw]`` on the 0-255 scale. Random choices use torch's global generator (``torch.manual_seed``
reproduces them); test mode is deterministic.
"""
from __future__ import annotations

from typing import Any, Mapping, Tuple

import torch
import torch.nn.functional as F

from samacore.options import check_keys, positive_int
from samacore.sampling import (
    DEFAULT_SAMPLE_TYPE, GRID_KEYS, SAMPLE_TYPES as _REGISTRY, FragmentGrid, resolve_sample_type, sama_sample,
    sama_variant, sample_fragments, sample_type_names, upsampled_size,
)

__all__ = ["SAMPLE_TYPES", "SAMA_TYPES", "check_sample_options", "get_single_sample", "canonical_sample_type",
           "is_grid_type", "own_sample_options", "unknown_sample_options", "video_shaped_reason"]

#: the video sample types and the SAMA variants among them (live views of samacore.sampling.SAMPLE_TYPES)
SAMPLE_TYPES = sample_type_names("video")
SAMA_TYPES = sample_type_names("video", sama_only=True)
# the grid types whose clips must hold whole groups of `aligned` frames, besides the SAMA family
_ALIGNED_TYPES = ("fragments", "crop", "arp_fragments")

# option keys -------------------------------------------------------------------------------------------------
# accepted for compatibility with the reference signature; they do not change the result
IGNORED_SAMPLING_KEYS = ("nfrags", "random", "random_upsample", "fallback_type")
# temporal options that live in the same YAML block and are passed along with it
_TEMPORAL_KEYS = ("clip_len", "frame_interval", "num_clips", "t_frag", "frame_overflow")
_COMMON_KEYS = ("aligned",) + IGNORED_SAMPLING_KEYS + _TEMPORAL_KEYS
_OWN_KEYS = {  # the video tree's own samplers; every SAMA variant takes the grid keys
    "fragments": GRID_KEYS + _COMMON_KEYS,
    "resize": ("size_h", "size_w", "random_crop", "arp") + _COMMON_KEYS,
    "arp_resize": ("short_edge", "train") + _COMMON_KEYS,
    # crop / arp_fragments choose their own grid; grid keys are accepted and overridden, as in FAST-VQA
    "crop": ("size_h", "size_w") + GRID_KEYS + _COMMON_KEYS,
    "arp_fragments": ("short_fragments", "fsize", "train") + GRID_KEYS + _COMMON_KEYS,
}
_ORIGINAL_KEYS = tuple(sorted({k for keys in _OWN_KEYS.values() for k in keys}))

_GRID_DEFAULTS = dict(fragments_h=7, fragments_w=7, fsize_h=32, fsize_w=32)


def _allowed_keys(stype: str) -> tuple:
    """Option keys of a canonical video sample type."""
    if sama_variant(stype) is not None:
        return _OWN_KEYS["fragments"]
    return _ORIGINAL_KEYS if stype == "original" else _OWN_KEYS[stype]


def own_sample_options(sample_type: str) -> tuple:
    """The spatial option keys ``sample_type`` itself takes (not the temporal or ignored ones every type accepts)."""
    return tuple(k for k in _allowed_keys(canonical_sample_type(sample_type)) if k not in _COMMON_KEYS)


def unknown_sample_options(sample_type: str, opts: Mapping[str, Any]) -> list:
    """The keys of ``opts`` that ``sample_type`` does not take (what :func:`check_sample_options` refuses first)."""
    allowed = _allowed_keys(canonical_sample_type(sample_type))
    return [k for k in opts if k not in allowed]


def video_shaped_reason(sample_type: str, opts: Mapping[str, Any]) -> str:
    """Why clips of ``sample_type`` (branch options ``opts``) take their height and width from each video, not
    from the options; "" when the options fix the clip shape. Such clips fit neither a fixed-shape ONNX graph nor
    a Video Swin backbone beyond its base input size (its windows grow with the input, its bias tables do not)."""
    stype = canonical_sample_type(sample_type)
    if stype == "arp_fragments":
        return "its fragment grid follows each video's aspect ratio (short_fragments cells on the short side, more " \
               "on the long one)"
    if stype == "arp_resize":
        return "it scales each video to short_edge on its short side, keeping the aspect ratio"
    if stype == "original":
        return "it passes each video on at its own resolution"
    if stype == "resize" and opts.get("arp"):
        return "with arp: true it keeps each video's aspect ratio"
    return ""


def canonical_sample_type(sample_type: str) -> str:
    """A video sample-type name (an alias, a FAST-VQA suffixed name) as registered:
    :func:`samacore.sampling.resolve_sample_type` for videos."""
    return resolve_sample_type(sample_type, "video")


def is_grid_type(sample_type: str) -> bool:
    """True when the sample type's output is a grid of fragments (``fragments`` and the SAMA family)."""
    return _REGISTRY.get(canonical_sample_type(sample_type)).grid


def _check_video(video: Any) -> torch.Tensor:
    if not isinstance(video, torch.Tensor) or video.dim() != 4:
        what = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video must be a [C, T, H, W] tensor, got {what}")
    if video.is_complex() or video.dtype == torch.bool:
        raise ValueError(f"video must hold real values on the 0-255 scale, got dtype {video.dtype}")
    return video


def _positive_int(opts: Mapping[str, Any], key: str, default: int, where: str) -> int:
    return positive_int(opts.get(key, default), f"{where}.{key}")


def _grid(opts: Mapping[str, Any], where: str) -> FragmentGrid:
    return FragmentGrid(*(_positive_int(opts, k, _GRID_DEFAULTS[k], where) for k in GRID_KEYS))


def _aligned(video: torch.Tensor, opts: Mapping[str, Any], where: str) -> int:
    aligned = _positive_int(opts, "aligned", 32, where)
    t = video.shape[1]
    if t == 1:  # a single image: every frame is its own clip
        return 1
    if t % aligned:
        raise ValueError(f"{where}: the video has {t} frames, which is not a multiple of aligned={aligned}")
    return aligned


# ---------------------------------------------------------------------------------------- grid-based samplers
def _upsample_like_reference(video: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """FAST-VQA's enlargement of small videos: bilinear on the 0-1 scale, cast back to the input dtype
    (uint8 input is truncated, not rounded)."""
    up = F.interpolate(video / 255.0, size=size, mode="bilinear", align_corners=False)
    return (up * 255.0).to(video.dtype)


def _fragments(video: torch.Tensor, is_train: bool, grid: FragmentGrid, aligned: int) -> torch.Tensor:
    """FAST-VQA grid mini-patches with absolute offsets, one draw per cell and per ``aligned``-frame clip."""
    _, t, h, w = video.shape
    base = upsampled_size(h, w, grid)
    if base != (h, w):
        video = _upsample_like_reference(video, base)
        h, w = base
    clips = t // aligned
    len_h, len_w = h // grid.fragments_h, w // grid.fragments_w
    shape = (grid.fragments_h, grid.fragments_w, clips)
    if is_train:
        off_h = torch.randint(max(1, len_h - grid.fsize_h), shape)
        off_w = torch.randint(max(1, len_w - grid.fsize_w), shape)
    else:
        off_h = torch.full(shape, (len_h - grid.fsize_h) // 2)
        off_w = torch.full(shape, (len_w - grid.fsize_w) // 2)
    dev = video.device
    clip_of_frame = torch.arange(t, device=dev) // aligned
    sizes_h = torch.full((t,), h, dtype=torch.int64, device=dev)
    sizes_w = torch.full((t,), w, dtype=torch.int64, device=dev)
    per_frame = lambda off: off.to(dev, torch.int64).permute(2, 0, 1)[clip_of_frame]
    return sample_fragments(video, grid, sizes_h, sizes_w, per_frame(off_h), per_frame(off_w))


def _sama(video: torch.Tensor, sample_type: str, is_train: bool, grid: FragmentGrid, aligned: int) -> torch.Tensor:
    """SAMA family: relative offsets ``r`` per cell and clip (train: uniform [0, 1), test: 0.5)."""
    shape = (grid.fragments_h, grid.fragments_w, video.shape[1] // aligned)
    if is_train:
        rel_h, rel_w = torch.rand(shape), torch.rand(shape)
    else:
        rel_h, rel_w = torch.full(shape, 0.5), torch.full(shape, 0.5)
    return sama_sample(video, grid, sama_variant(sample_type), rel_h, rel_w, aligned)


def _random_square(video: torch.Tensor) -> torch.Tensor:
    """Random square crop along the longer side (FAST-VQA's ``train`` option of the arp types)."""
    h, w = video.shape[-2:]
    short = min(h, w)
    if h > short:
        s = int(torch.randint(h - short, ()))
        return video[..., s:s + short, :]
    if w > short:
        s = int(torch.randint(w - short, ()))
        return video[..., :, s:s + short]
    return video


# ----------------------------------------------------------------------------------------- resize samplers
def _resize(video: torch.Tensor, size_h: int = 224, size_w: int = 224, random_crop: bool = False,
            arp: bool = False, **_) -> torch.Tensor:
    """torchvision Resize of every frame (``RandomResizedCrop(scale=(0.4, 1))`` with ``random_crop``); with
    ``arp`` the longer side is enlarged to keep the aspect ratio. Bilinear with antialiasing (torchvision's
    tensor default since 0.17, which the reference code gets under the same torchvision)."""
    import torchvision.transforms as T

    frames = video.permute(1, 0, 2, 3)  # [T, C, H, W]
    if random_crop:
        tf = T.RandomResizedCrop((size_h, size_w), scale=(0.40, 1.0), antialias=True)
    else:
        aspect = frames.shape[-2] / frames.shape[-1] if arp else 1
        if aspect > 1:
            size_h = int(aspect * size_w)
        elif aspect < 1:
            size_w = int(size_h / aspect)
        tf = T.Resize((size_h, size_w), antialias=True)
    return tf(frames).permute(1, 0, 2, 3).to(torch.float32)


def _arp_resize(video: torch.Tensor, short_edge: int = 224, train: bool = False, **_) -> torch.Tensor:
    """Scale so that the short side becomes ``short_edge`` (bilinear on 0-1, cast back to the input dtype).

    Fixes two crashes of the reference: it passes ``scale_factors=`` to ``F.interpolate`` (a TypeError), and its
    ``train`` crop of landscape videos uses an undefined offset; here the crop offset is drawn along the long side.
    """
    if train:
        video = _random_square(video)
    factor = short_edge / min(video.shape[-2:])
    out = F.interpolate(video / 255.0, scale_factor=factor, mode="bilinear")
    return (out * 255.0).to(video.dtype).to(torch.float32)


def _crop(video: torch.Tensor, size_h: int = 224, size_w: int = 224, aligned: int = 32) -> torch.Tensor:
    """Centre ``size_h x size_w`` crop (a 1x1 fragment grid; FAST-VQA never randomises it)."""
    return _fragments(video, False, FragmentGrid(1, 1, size_h, size_w), aligned)


def _arp_fragments(video: torch.Tensor, short_fragments: int = 7, fsize: int = 32, train: bool = False,
                   aligned: int = 32) -> torch.Tensor:
    """Fragments keeping the aspect ratio: ``short_fragments`` cells along the short side, proportionally more
    (truncated) along the long side; centred offsets, as in FAST-VQA (which does not pass ``is_train`` on)."""
    if train:
        video = _random_square(video)
    h, w = video.shape[-2:]
    if h > w:
        cells = (int(short_fragments * h / w), short_fragments)
    else:
        cells = (short_fragments, int(short_fragments * w / h))
    return _fragments(video, False, FragmentGrid(cells[0], cells[1], fsize, fsize), aligned)


# ----------------------------------------------------------------------------------------------- validation
# The largest sampled side we accept: 16x the paper's 224. Anything bigger is a typo (e.g. fsize 3200), and
# would otherwise surface as a multi-GB allocation failure on the first video.
MAX_OUTPUT_SIDE = 3584


def check_sample_options(sample_type: str, opts: Mapping[str, Any], where: str = "sample_types") -> None:
    """Reject bad sampling options before any video is read (raises :class:`ValueError` naming ``where.key``).

    Checks the keys allowed for ``sample_type``, that sizes and counts are positive integers, that ``aligned``
    divides the clip length (each clip must hold whole groups of ``aligned`` frames), and that the sampled
    output is of a plausible size.
    """
    stype = canonical_sample_type(sample_type)
    check_keys(opts, _allowed_keys(stype), where)
    grid_type = _REGISTRY.get(stype).grid
    for key in ("clip_len", "num_clips", "frame_interval", "aligned") + GRID_KEYS:
        if key in opts:
            _positive_int(opts, key, 1, where)
    if (grid_type or stype in _ALIGNED_TYPES) and "clip_len" in opts:
        aligned = _positive_int(opts, "aligned", 32, where)
        if opts["clip_len"] % aligned:
            raise ValueError(f"{where}: aligned={aligned} must divide clip_len={opts['clip_len']} "
                             f"(allowed: a divisor of {opts['clip_len']}, e.g. {opts['clip_len']})")
    if grid_type:
        grid = _grid(opts, where)
        if max(grid.out_h, grid.out_w) > MAX_OUTPUT_SIDE:
            raise ValueError(f"{where}: fragments_h*fsize_h x fragments_w*fsize_w = {grid.out_h}x{grid.out_w} is larger "
                             f"than {MAX_OUTPUT_SIDE} pixels a side; the paper uses 7*32 = 224")


# ------------------------------------------------------------------------------------------------ entry points
def get_single_sample(video: torch.Tensor, sample_type: str = DEFAULT_SAMPLE_TYPE, is_train: bool = False,
                      **opts) -> torch.Tensor:
    """Spatially sample a video ``[C, T, H, W]`` (0-255) into float32 ``[C, T, Sh, Sw]`` (0-255).

    sample_type: one of :data:`SAMPLE_TYPES` (or an alias of one). opts: the YAML ``sample_types``
    block of that type, e.g. ``fragments_h/fragments_w/fsize_h/fsize_w/aligned`` for grid types (defaults 7, 7,
    32, 32, 32), ``size_h/size_w/random_crop/arp`` for ``resize``. Temporal keys of the same block
    (``clip_len``, ``frame_interval``, ``num_clips``, ``t_frag``, ``frame_overflow``: the frame sampler's, see
    :func:`samavqa.temporal.build_frame_sampler`) are accepted here; unknown keys raise.
    Grid types need ``T`` to be a multiple of ``aligned`` (a single frame is always allowed).
    """
    stype = canonical_sample_type(sample_type)
    where = f"sample_types[{sample_type!r}]"
    check_keys(opts, _allowed_keys(stype), where)
    video = _check_video(video)
    if stype == "original":
        return video.to(torch.float32)
    if stype == "resize":
        return _resize(video, **opts)
    if stype == "arp_resize":
        return _arp_resize(video, **opts)
    aligned = _aligned(video, opts, where)
    if stype == "crop":
        return _crop(video, _positive_int(opts, "size_h", 224, where), _positive_int(opts, "size_w", 224, where), aligned)
    if stype == "arp_fragments":
        return _arp_fragments(video, _positive_int(opts, "short_fragments", 7, where),
                              _positive_int(opts, "fsize", 32, where), bool(opts.get("train", False)), aligned)
    grid = _grid(opts, where)
    if stype == "fragments":
        return _fragments(video, bool(is_train), grid, aligned)
    return _sama(video, stype, bool(is_train), grid, aligned)
