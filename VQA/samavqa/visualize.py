"""Pictures of what the spatial samplers feed the model: ``python VQA/visualize_sampling.py -v VIDEO --out F.png``.

The figure (PIL only, so pixels are exact) shows, for one clip of one video:

* the source frame with each grid cell's footprint (where its fragment was read) for the clip's first frame pair
  (red) and its last pair (cyan) -- with SAMA they differ, since each pair is read at another scale;
* the mask (spm / swm): white where fragments come from the full-resolution frame, grey where from the scaled one;
* the first frame of every frame pair of the clip as the model sees it (de-normalised, at its native size, not
  resized), labelled with the pair's scale factor relative to the source frame;
* optionally (``--quality-map``) the head's per-position scores (``[1, 1, D', H', W']`` map, upsampled to the
  input) laid over the same frames.

Footprints and scale factors are not recomputed from the sampler's formulas: the sampler is run a second time on
a *coordinate video* whose three channels hold each pixel's row, column and frame number
(:func:`samacore.visual.coordinate_grid`). Every sampler here is a (bilinear) interpolation, which reproduces
linear functions exactly, so each output pixel of that run holds the source position it was read from --
whatever the sample type, scale schedule or mask.

A video shorter than the clips need is drawn with a warning, the note ``vqa.py`` gives for it
(:func:`samavqa.score.short_video_note`); an unusable ``--out`` ends the command before any decoding.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from samacore import visual

from .datasets import MEAN, STD, decode_frames, normalise
from .sampling import SAMPLE_TYPES, canonical_sample_type, get_single_sample, is_grid_type
from .temporal import build_frame_sampler

__all__ = ["SamplingView", "denormalise", "sample_sources", "sampling_view", "render", "score_map", "main"]

PAD = 8
LABEL_H = 14


def denormalise(x: torch.Tensor) -> np.ndarray:
    """Normalised ``[C, T, H, W]`` -> uint8 ``[T, H, W, C]`` on the 0-255 scale (rounded, clipped)."""
    return visual.denormalise(x, MEAN, STD)


def sample_sources(shape: Tuple[int, int, int], stype: str, is_train: bool = False, seed: Optional[int] = None,
                   **opts) -> torch.Tensor:
    """Where every sampled pixel comes from: float32 ``[3, T, Sh, Sw]`` of (source row, column, frame).

    ``shape`` = ``(T, H, W)`` of the decoded video; ``seed`` (train mode) must be the one used for the real sample.
    """
    if seed is not None:
        torch.manual_seed(seed)
    t, h, w = shape
    return get_single_sample(visual.coordinate_grid(h, w, t), stype, is_train, **opts)


def _grid_of(stype: str, opts: Mapping[str, Any], out_hw: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """``(fragments_h, fragments_w, fsize_h, fsize_w)``; non-grid sample types are one cell covering the output."""
    if is_grid_type(stype):
        return (int(opts.get("fragments_h", 7)), int(opts.get("fragments_w", 7)), int(opts.get("fsize_h", 32)),
                int(opts.get("fsize_w", 32)))
    return 1, 1, out_hw[0], out_hw[1]


def _mask_of(stype: str, grid: Tuple[int, int, int, int]) -> Optional[np.ndarray]:
    from samacore.sampling import FragmentGrid, make_mask, sama_variant

    variant = sama_variant(canonical_sample_type(stype))
    if variant is None or variant.mask is None:
        return None
    return make_mask(variant.mask, FragmentGrid(*grid)).numpy()


@dataclass
class SamplingView:
    """Everything the figure shows for one clip (``T_c`` frames of the sample, ``pairs`` = ``T_c / 2``)."""

    name: str
    stype: str
    clip: int
    sample: np.ndarray              # uint8 [T_c, Sh, Sw, 3], de-normalised model input of the clip
    source_frames: Dict[int, np.ndarray]  # decoded frame number -> uint8 [H, W, 3]
    sources: np.ndarray             # float32 [3, T_c, Sh, Sw] source (row, col, sample-frame) of every pixel
    frame_inds: np.ndarray          # int [T_c] decoded frame number of each sampled frame
    grid: Tuple[int, int, int, int]  # fragments_h, fragments_w, fsize_h, fsize_w
    mask: Optional[np.ndarray]      # bool [Sh, Sw] or None
    factors: List[float]            # per frame: scale factor relative to the source frame
    normalised: torch.Tensor        # float [1, C, T_c, Sh, Sw] model input of the clip
    scores: Optional[np.ndarray] = None  # float [T_c, Sh, Sw] upsampled score map, when computed
    score_range: Tuple[float, float] = (0.0, 0.0)
    notes: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)  # what was done to an odd video (as vqa.py says it)


def _factors(src: np.ndarray, mask: Optional[np.ndarray], fsize_w: int) -> List[float]:
    """Per frame, 1 / (source step between neighbouring columns of one fragment), on scaled (unmasked) pixels."""
    keep = None if mask is None else ~mask
    return [1.0 / visual.median_step(src[1, t], fsize_w, axis=1, keep=keep) for t in range(src.shape[1])]


def sampling_view(path: str, sample_types: Mapping[str, Mapping[str, Any]], stype: str, clip: int = 0,
                  branch: Optional[str] = None, is_train: bool = False, seed: Optional[int] = None) -> SamplingView:
    """Decode ``path`` as the datasets do (test mode unless ``is_train``) and collect one clip's sampling.

    ``sample_types``: the options' branch -> sampling options block; ``branch``: which one (default: the first).
    """
    branch = branch or next(iter(sample_types))
    if branch not in sample_types:
        raise ValueError(f"branch {branch!r} not in sample_types ({', '.join(sample_types)})")
    opts = dict(sample_types[branch])
    sampler = build_frame_sampler(opts, f"sample_types.{branch}")
    if seed is not None:
        np.random.seed(seed)
    videos, inds = decode_frames(path, {branch: sampler}, is_train)
    video, inds = videos[branch], inds[branch]
    if seed is not None:
        torch.manual_seed(seed)
    sampled = get_single_sample(video, stype, is_train, **opts)  # [C, T, Sh, Sw] 0-255
    src = sample_sources(tuple(video.shape[1:]), stype, is_train, seed, **opts).numpy()
    clip_len = int(opts["clip_len"])
    n_clips = sampled.shape[1] // clip_len
    if not 0 <= clip < n_clips:
        raise ValueError(f"--clip {clip} out of range: the sample has {n_clips} clip(s) of {clip_len} frames")
    sl = slice(clip * clip_len, (clip + 1) * clip_len)
    norm = normalise(sampled[:, sl])
    grid = _grid_of(stype, opts, tuple(sampled.shape[-2:]))
    mask = _mask_of(stype, grid)
    src_clip = src[:, sl]
    frame_inds = np.asarray(inds)[sl]
    sources = {int(f): video[:, i].permute(1, 2, 0).numpy() for i, f in enumerate(np.asarray(inds)) if
               sl.start <= i < sl.stop}
    view = SamplingView(os.path.basename(path), canonical_sample_type(stype), clip, denormalise(norm), sources,
                        src_clip, frame_inds, grid, mask, _factors(src_clip, mask, grid[3]), norm[None])
    from .score import short_video_note  # late: samavqa.score loads the models

    note = short_video_note({branch: np.asarray(inds)}, {branch: opts})
    view.warnings += [note] if note else []
    return view


@torch.no_grad()
def score_map(model: torch.nn.Module, view: SamplingView, branch: str, device: str = "cpu") -> SamplingView:
    """Run the model on the view's clip and store its score map upsampled to the input (``view.scores``)."""
    x = view.normalised.to(device)
    smap = model({branch: x}, inference=True, reduce_scores=True)  # [1, 1, D', H', W']
    t, h, w = x.shape[2:]
    up = F.interpolate(smap.float(), size=(t, h, w), mode="nearest")[0, 0].cpu().numpy()
    view.scores = up
    view.score_range = (float(smap.min()), float(smap.max()))
    view.notes.append(f"score map {tuple(smap.shape)} -> {(t, h, w)}; clip score {float(smap.mean()):.4f}")
    return view


def _display_size(w: int, h: int, source_width: int) -> Tuple[int, int]:
    """(W, H) the source frame is shown at: about ``source_width`` wide, enlarged at most 4x."""
    scale = min(1.0, source_width / w) if w > source_width else min(4.0, source_width / w)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _source_panel(draw: ImageDraw.ImageDraw, canvas: Image.Image, view: SamplingView, at: Tuple[int, int],
                  disp: Tuple[int, int], pair_frames: List[int]) -> None:
    """The first source frame (shown at ``disp``) with the cells' footprints of the first (red) and last (cyan)
    frame pair."""
    x0, y0 = at
    first = int(view.frame_inds[0])
    src_img = view.source_frames[first]
    h, w = src_img.shape[:2]
    draw.text((x0, y0), f"source frame {first} ({w}x{h})", fill=(0, 0, 0))
    top = y0 + LABEL_H
    canvas.paste(Image.fromarray(src_img).resize(disp, Image.NEAREST), (x0, top))
    sx, sy = disp[0] / w, disp[1] / h
    for t, color in ((0, (255, 0, 0)), (pair_frames[-1], (0, 230, 230))):
        step = 1.0 / view.factors[t] if np.isfinite(view.factors[t]) else 1.0
        boxes = visual.cell_footprints(view.sources[0, t], view.sources[1, t], view.grid, (step, step))
        for bx0, by0, bx1, by1 in boxes.reshape(-1, 4):
            draw.rectangle([x0 + bx0 * sx, top + by0 * sy, x0 + bx1 * sx - 1, top + by1 * sy - 1], outline=color)


def _tile_xy(k: int, per_row: int, tile: Tuple[int, int], top: int) -> Tuple[int, int]:
    return PAD + (k % per_row) * tile[0], top + (k // per_row) * tile[1]


def _quality_maps(draw: ImageDraw.ImageDraw, canvas: Image.Image, view: SamplingView, pair_frames: List[int],
                  per_row: int, tile: Tuple[int, int], top: int) -> List[Tuple[int, int, int]]:
    """The score map of every frame pair in heat colours, blended over the sampled frame; returns the tiles."""
    lo, hi = view.score_range
    draw.text((PAD, top), f"per-position scores (blue {lo:.3f} .. red {hi:.3f})", fill=(0, 0, 0))
    span = hi - lo if hi > lo else 1.0
    tiles = []
    for k, t in enumerate(pair_frames):
        x, y = _tile_xy(k, per_row, tile, top + LABEL_H)
        heat = visual.heat_colours((view.scores[t] - lo) / span).astype(np.float32)
        blend = (0.45 * view.sample[t].astype(np.float32) + 0.55 * heat).round().astype(np.uint8)
        canvas.paste(Image.fromarray(blend), (x, y + LABEL_H))
        tiles.append((x, y + LABEL_H, t))
    return tiles


def render(view: SamplingView, out: Optional[str] = None, per_row: int = 8, source_width: int = 480):
    """Draw the figure; returns ``(PIL image, layout)`` where ``layout["frames"]`` lists ``(x, y, t)`` of each
    sampled-frame tile (pixel-exact copies of ``view.sample[t]``), ``layout["maps"]`` the score-map tiles, and
    ``layout["source"]`` / ``layout["mask"]`` the other panels' boxes. Saves a PNG when ``out`` is given."""
    tc, sh, sw, _ = view.sample.shape
    pair_frames = list(range(0, tc, 2)) if tc > 1 else [0]
    rows = (len(pair_frames) + per_row - 1) // per_row
    tile = (sw + PAD, sh + LABEL_H + PAD)
    h, w = view.source_frames[int(view.frame_inds[0])].shape[:2]
    disp_w, disp_h = _display_size(w, h, source_width)
    top_h = LABEL_H + max(disp_h, sh) + PAD
    width = max(PAD + disp_w + PAD + sw + PAD, PAD + min(per_row, len(pair_frames)) * tile[0]) + PAD
    height = PAD + LABEL_H + top_h + rows * tile[1] + (rows * tile[1] + LABEL_H if view.scores is not None else 0) + PAD
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    layout: Dict[str, Any] = {"frames": [], "maps": []}
    draw.text((PAD, PAD), f"{view.name}  stype {view.stype}  clip {view.clip}  grid {view.grid[0]}x{view.grid[1]} "
                          f"of {view.grid[2]}x{view.grid[3]}  (red: footprints of frame pair 0, cyan: last pair)",
              fill=(0, 0, 0))
    y0 = PAD + LABEL_H
    _source_panel(draw, canvas, view, (PAD, y0), (disp_w, disp_h), pair_frames)
    layout["source"] = (PAD, y0 + LABEL_H, disp_w, disp_h)
    mx = PAD + disp_w + PAD
    draw.text((mx, y0), "mask (white: full res.)" if view.mask is not None else "no mask", fill=(0, 0, 0))
    if view.mask is not None:
        canvas.paste(Image.fromarray(np.where(view.mask, 255, 110).astype(np.uint8)).convert("RGB"), (mx, y0 + LABEL_H))
        layout["mask"] = (mx, y0 + LABEL_H, sw, sh)
    y1 = y0 + top_h
    for k, t in enumerate(pair_frames):  # the first frame of every pair, as the model sees it
        x, y = _tile_xy(k, per_row, tile, y1)
        draw.text((x, y), f"pair {t // 2}: x{view.factors[t]:.3g}", fill=(0, 0, 0))
        canvas.paste(Image.fromarray(view.sample[t]), (x, y + LABEL_H))
        layout["frames"].append((x, y + LABEL_H, t))
    if view.scores is not None:
        layout["maps"] = _quality_maps(draw, canvas, view, pair_frames, per_row, tile, y1 + rows * tile[1])
    if out:
        visual.save_figure(canvas, out)
    return canvas, layout


def paper_sample_types() -> Dict[str, Dict[str, Any]]:
    """The test ``sample_types`` of ``VQA/options/fast-SAMA-test.yml`` (the paper's 7x7x32, 4 clips)."""
    from .score import DEFAULT_OPTIONS, scoring_options
    from samacore.options import load_options

    return scoring_options(load_options(DEFAULT_OPTIONS))[0]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Draw what a SAMA sampler feeds the model for one clip of a video.")
    p.add_argument("-v", "--video", required=True)
    p.add_argument("--stype", default=None, help=f"sample type: {', '.join(SAMPLE_TYPES)} (default: from the options, "
                                                 "else sama)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--options", help="option file whose test sample_types are used (default: the paper's 7x7x32, "
                                     "4 clips of 32 frames; with --quality-map: as vqa.py)")
    p.add_argument("--clip", type=int, default=0, help="which temporal clip (default 0)")
    p.add_argument("--branch", help="sample_types entry to show (default: the first)")
    p.add_argument("--train", action="store_true", help="training-mode (random) sampling instead of test mode")
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws with --train")
    p.add_argument("--quality-map", action="store_true", help="overlay the model's per-position scores")
    p.add_argument("--ckpt", help="checkpoint for --quality-map (default: as vqa.py)")
    p.add_argument("--device", help="cpu, cuda or cuda:N")
    return p


def _setup(args: argparse.Namespace) -> Tuple[Optional[torch.nn.Module], Mapping[str, Any], str, str]:
    """(model or None, sample_types, stype, device) from the command line: the scorer's with ``--quality-map``,
    else the option file's test sampling (default: the paper's)."""
    import sys

    if args.quality_map:
        from .score import load_scorer

        scorer = load_scorer(args.ckpt, args.options, args.stype, args.device)
        for note in scorer.notes:
            print(f"note: {note}", file=sys.stderr)
        return scorer.model, scorer.sample_types, scorer.stype, scorer.device
    if args.options:
        from .schema import load_vqa_options
        from .score import scoring_options

        opt = load_vqa_options(args.options)
        return None, scoring_options(opt)[0], args.stype or opt.get("stype", "sama"), "cpu"
    return None, paper_sample_types(), args.stype or "sama", "cpu"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``VQA/visualize_sampling.py``; returns the exit status."""
    import sys

    from samacore.checkpoint import CheckpointError
    from samacore.options import OptionError

    from .datasets import VideoReadError

    args = build_parser().parse_args(argv)
    try:
        visual.check_figure_path(args.out)
        model, sample_types, stype, device = _setup(args)
        seed = args.seed if args.train else None
        view = sampling_view(args.video, sample_types, stype, args.clip, args.branch, args.train, seed)
        for warning in view.warnings:
            print(f"warning: {view.name}: {warning}", file=sys.stderr)
        if model is not None:
            score_map(model, view, args.branch or next(iter(sample_types)), device)
        render(view, args.out)
    except (OptionError, CheckpointError, FileNotFoundError, VideoReadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    factors = ", ".join(f"{f:.3g}" for f in view.factors[::2])
    print(f"wrote {args.out}: {view.name}, {view.stype}, clip {view.clip}, pair scale factors {factors}"
          + (f"; {view.notes[-1]}" if view.notes else ""))
    return 0
