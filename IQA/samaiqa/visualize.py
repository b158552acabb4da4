"""Figures of the IQA sampling: ``python IQA/visualize_sampling.py -i IMAGE --stype sama --out FILE.png``.

The figure (drawn with PIL only) has one row of panels, each with a title:

* ``source xF``: the loaded image (after the small-image enlargement of :func:`samaiqa.datasets.load_image`)
  with the fragment grid of one scale drawn on it: for every cell, the box of source pixels its fragment
  covers at that scale. Thick boxes are fragments that reach the sample; thin ones are read but masked out
  (window mask). ``fragment`` has one scale (x1); ``sama`` / ``sama-spm`` two: full resolution (x1) and the
  image shrunk to just fit the output (x1/ratio). Boxes of the scaled view are mapped back to source pixels.
* ``sampled input``: the test-mode sample ``[3, Sh, Sw]`` de-normalised to 8-bit RGB (``x * std + mean``,
  times 255, rounded, clipped), enlarged by an integer factor with nearest neighbour when the output is
  smaller than 256 pixels (so every sample pixel is a solid block).
* ``mask``: which output pixels come from the full-resolution view (white) and which from the scaled view
  (grey); all white for ``fragment``.
* ``quality map`` (``--quality-map``, needs a checkpoint): the head's per-token scores (the 8x8 token grid for
  a 256x256 input) as a colour overlay on the sampled input, with each token's score written in its cell;
  their mean is the model's score.

Only test-mode sampling (centred offsets) is drawn: it is deterministic, and it is what scoring uses.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from samacore.checkpoint import CheckpointError
from samacore.options import OptionError, choice
from samacore.sampling import (
    FragmentGrid, cell_starts, make_mask, relative_offsets, sama_variant, scale_schedule, scaled_size, upsampled_size,
)

from .datasets import IMAGENET_MEAN, IMAGENET_STD, ImageReadError, build_transform, load_image, sampling_args
from .sampling import IQA_SAMPLE_TYPES, sample_image

TITLE_H = 18
MARGIN = 8
MIN_PANEL = 256
FULL_COLOUR = (255, 70, 70)
SCALED_COLOUR = (60, 170, 255)


@dataclass
class ScaleView:
    """Where the fragments of one scale come from, in the loaded image's pixel coordinates.

    ``boxes``: float ``[Gh, Gw, 4]`` as ``(x0, y0, x1, y1)`` (pixel edges; ``x1``/``y1`` exclusive);
    ``used``: bool ``[Gh, Gw]``, whether that cell's fragment of this scale reaches the sample (fully or,
    with the patch mask, partly).
    """

    label: str
    factor: float
    size: Tuple[int, int]
    boxes: np.ndarray
    used: np.ndarray


def _boxes(size: Tuple[int, int], src: Tuple[int, int], grid: FragmentGrid, off_h: torch.Tensor,
           off_w: torch.Tensor) -> np.ndarray:
    """Boxes of the fragments read from a view of ``size`` pixels, scaled back to a ``src``-sized image."""
    h, w = size
    sh = torch.tensor([h], dtype=torch.int64)
    sw = torch.tensor([w], dtype=torch.int64)
    y0 = (cell_starts(sh, grid.fragments_h, grid.fsize_h)[0][:, None] + off_h).numpy().astype(np.float64)
    x0 = (cell_starts(sw, grid.fragments_w, grid.fsize_w)[0][None, :] + off_w).numpy().astype(np.float64)
    y0, x0 = np.broadcast_arrays(y0, x0)
    fy, fx = src[0] / h, src[1] / w
    return np.stack([x0 * fx, y0 * fy, (x0 + grid.fsize_w) * fx, (y0 + grid.fsize_h) * fy], -1)


def fragment_layout(height: int, width: int, stype: str, grid: FragmentGrid) -> List[ScaleView]:
    """The test-mode fragment boxes of each scale for an image of ``height x width`` (as fed to the sampler)."""
    choice(stype, IQA_SAMPLE_TYPES, "stype")
    cells = (grid.fragments_h, grid.fragments_w)
    ratio = grid.ratio(height, width)
    if sama_variant(stype, "image") is None:  # "fragment"
        # the sampler enlarges by 1/ratio (F.interpolate, sizes floored) when the image is smaller than the output
        base = (height, width) if ratio >= 1 else (int(height / ratio), int(width / ratio))
        len_h, len_w = base[0] // grid.fragments_h, base[1] // grid.fragments_w
        off_h = torch.full(cells, int((len_h - grid.fsize_h) / 2))
        off_w = torch.full(cells, int((len_w - grid.fsize_w) / 2))
        boxes = _boxes(base, (height, width), grid, off_h, off_w)
        return [ScaleView("x1", 1.0, base, boxes, np.ones(cells, dtype=bool))]
    variant = sama_variant(stype, "image")
    base = upsampled_size(height, width, grid)
    factor = 1.0 if base != (height, width) else scale_schedule(variant.schedule, grid.ratio(*base), 1)[0]
    views = []
    half = torch.full((1, *cells), 0.5)
    parity = np.add.outer(np.arange(grid.fragments_h), np.arange(grid.fragments_w)) % 2 == 0
    everywhere = np.ones(cells, dtype=bool)
    scaled_label = f"x1/{1 / factor:.3g}" if factor != 1 else "x1 (scaled view)"
    # window mask: cells with (i + j) even come from full resolution, the others from the scaled view; patch mask:
    # every cell reads both; no mask: only the scaled view
    full_used = {"window": parity, "patch": everywhere}.get(variant.mask, ~everywhere)
    for label, f, used in (("x1", 1.0, full_used), (scaled_label, factor, ~parity if variant.mask == "window" else everywhere)):
        size = base if f == 1.0 else scaled_size(*base, f)
        t = lambda n: torch.tensor([n], dtype=torch.int64)
        off_h = relative_offsets(half, t(size[0]), grid.fragments_h, grid.fsize_h)[0]
        off_w = relative_offsets(half, t(size[1]), grid.fragments_w, grid.fsize_w)[0]
        views.append(ScaleView(label, f, size, _boxes(size, (height, width), grid, off_h, off_w), used))
    return views


def denormalise(sample: torch.Tensor) -> np.ndarray:
    """Normalised ``[3, H, W]`` -> uint8 ``[H, W, 3]``: ``round(clip((x * std + mean) * 255, 0, 255))``."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    x = (sample.detach().float().cpu() * std + mean) * 255.0
    return x.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def sample_mask(stype: str, grid: FragmentGrid) -> np.ndarray:
    """Bool ``[Sh, Sw]``: True where the sample comes from full resolution."""
    variant = sama_variant(stype, "image")
    if variant is None or variant.mask is None:  # all full resolution (fragment) / all scaled
        return np.full((grid.out_h, grid.out_w), variant is None)
    return make_mask(variant.mask, grid).numpy()


def _colour_ramp(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 on a blue - green - yellow - red ramp."""
    stops = np.array([[40, 60, 200], [40, 200, 120], [250, 220, 40], [220, 40, 40]], dtype=np.float64)
    pos = np.clip(v, 0, 1) * (len(stops) - 1)
    i = np.minimum(pos.astype(int), len(stops) - 2)
    t = (pos - i)[..., None]
    return (stops[i] * (1 - t) + stops[i + 1] * t).round().astype(np.uint8)


@dataclass
class SamplingFigure:
    """The drawn figure and what went into it; ``panels[name] = (x0, y0, x1, y1)`` of each panel's picture."""

    image: Image.Image
    panels: Dict[str, Tuple[int, int, int, int]]
    sample: torch.Tensor
    mask: np.ndarray
    views: List[ScaleView]
    zoom: int
    token_scores: Optional[np.ndarray] = None
    score: Optional[float] = None
    notes: List[str] = field(default_factory=list)


def make_figure(
    path: str,
    stype: str = "sama",
    data_args: Optional[Dict[str, Any]] = None,
    model: Optional[torch.nn.Module] = None,
    device: str = "cpu",
) -> SamplingFigure:
    """Draw the sampling figure of image ``path``; with ``model`` add the per-token quality map."""
    args = sampling_args(data_args)
    grid = FragmentGrid(args["fragments_h"], args["fragments_w"], args["fsize_h"], args["fsize_w"])
    choice(stype, IQA_SAMPLE_TYPES, "stype")
    min_size = max(grid.out_h, grid.out_w)
    img = load_image(path, min_size, bool((data_args or {}).get("exif_transpose", False)))
    x = build_transform(False)(img)
    sample = sample_image(x, stype, False, **args)
    views = fragment_layout(x.shape[1], x.shape[2], stype, grid)
    mask = sample_mask(stype, grid)

    zoom = max(1, MIN_PANEL // max(grid.out_h, grid.out_w))
    ph = grid.out_h * zoom
    pictures: List[Tuple[str, str, Image.Image]] = []
    src_w = max(1, round(img.width * ph / img.height))
    scale_x, scale_y = src_w / img.width, ph / img.height
    for view in views:
        canvas = img.resize((src_w, ph), Image.BILINEAR)
        draw = ImageDraw.Draw(canvas)
        colour = FULL_COLOUR if view.label == "x1" else SCALED_COLOUR
        for (x0, y0, x1, y1), used in zip(view.boxes.reshape(-1, 4), view.used.reshape(-1)):
            box = (x0 * scale_x, y0 * scale_y, x1 * scale_x - 1, y1 * scale_y - 1)
            draw.rectangle(box, outline=colour if used else tuple(c // 2 for c in colour), width=2 if used else 1)
        pictures.append((f"source_{view.label}", f"source {view.label} ({img.width}x{img.height})", canvas))
    sampled = denormalise(sample)
    big = np.repeat(np.repeat(sampled, zoom, 0), zoom, 1)
    pictures.append(("sample", f"sampled input {grid.out_h}x{grid.out_w}", Image.fromarray(big)))
    m = np.where(mask, 255, 90).astype(np.uint8)
    m = np.repeat(np.repeat(m, zoom, 0), zoom, 1)
    mask_title = "mask: none (all x1)" if sama_variant(stype, "image") is None else "mask: white x1, grey scaled"
    pictures.append(("mask", mask_title, Image.fromarray(m).convert("RGB")))

    token_scores = score = None
    notes: List[str] = []
    if model is not None:
        model.eval()
        with torch.inference_mode():
            inp = sample[None].to(device)
            token_scores = model.token_scores(inp)[0].float().cpu().numpy()
            score = float(model(inp)[0])
        pictures.append(("quality_map", f"quality map (score {score:.4f})", _quality_overlay(big, token_scores)))
        notes.append(f"token scores {token_scores.shape[0]}x{token_scores.shape[1]}: min {token_scores.min():.4f} "
                     f"max {token_scores.max():.4f} mean {token_scores.mean():.4f}; model score {score:.4f}")

    font = ImageFont.load_default()
    width = MARGIN + sum(p.width + MARGIN for _, _, p in pictures)
    height = MARGIN + TITLE_H + ph + MARGIN
    fig = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(fig)
    panels: Dict[str, Tuple[int, int, int, int]] = {}
    x = MARGIN
    for key, title, pic in pictures:
        draw.text((x, MARGIN), title, fill=(0, 0, 0), font=font)
        top = MARGIN + TITLE_H
        fig.paste(pic, (x, top))
        panels[key] = (x, top, x + pic.width, top + pic.height)
        x += pic.width + MARGIN
    return SamplingFigure(fig, panels, sample, mask, views, zoom, token_scores, score, notes)


def _quality_overlay(base: np.ndarray, scores: np.ndarray) -> Image.Image:
    """Per-token scores as a colour overlay (45%) on the (enlarged) sampled input, scores written per cell."""
    h, w = base.shape[:2]
    gh, gw = scores.shape
    lo, hi = float(scores.min()), float(scores.max())
    norm = (scores - lo) / (hi - lo) if hi > lo else np.full_like(scores, 0.5)
    colours = _colour_ramp(norm)
    rows = (np.arange(h) * gh) // h
    cols = (np.arange(w) * gw) // w
    layer = colours[rows[:, None], cols[None, :]].astype(np.float64)
    out = Image.fromarray((0.55 * base + 0.45 * layer).round().astype(np.uint8))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    ch, cw = h / gh, w / gw
    for i in range(gh):
        for j in range(gw):
            draw.rectangle((j * cw, i * ch, (j + 1) * cw - 1, (i + 1) * ch - 1), outline=(255, 255, 255), width=1)
            if cw >= 28 and ch >= 14:
                draw.text((j * cw + 2, i * ch + 2), f"{scores[i, j]:.2f}", fill=(255, 255, 255), font=font,
                          stroke_width=1, stroke_fill=(0, 0, 0))
    return out


# ----------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Draw how SAMA samples an image (fragment grid, sampled input, mask, "
                                            "optionally the per-token quality map).")
    p.add_argument("-i", "--image", required=True, help="image file")
    p.add_argument("--stype", choices=tuple(IQA_SAMPLE_TYPES), help="sample type (default: from the options, else sama)")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--options", help="IQA option file for the grid (default: the checkpoint's, else "
                                     "IQA/options/fast-sama-iqa.yml)")
    p.add_argument("--quality-map", action="store_true", help="add the per-token quality map (needs a checkpoint)")
    p.add_argument("--ckpt", help="checkpoint for --quality-map (default: as IQA/iqa.py chooses)")
    p.add_argument("--device", help="cpu, cuda or cuda:N")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .score import DEFAULT_OPTIONS, load_scorer, read_scoring_options

    args = build_parser().parse_args(argv)
    try:
        if args.quality_map:
            scorer = load_scorer(args.ckpt, args.options, args.stype, args.device)
            for note in scorer.notes:
                print(f"note: {note}", file=sys.stderr)
            fig = make_figure(args.image, scorer.stype, scorer.data_args, scorer.model, scorer.device)
        else:
            if args.ckpt:
                print("note: --ckpt is only used with --quality-map", file=sys.stderr)
            opt = read_scoring_options(args.options or DEFAULT_OPTIONS)
            stype = args.stype or opt.get("stype") or "sama"
            fig = make_figure(args.image, stype, opt["data"])
    except (OptionError, CheckpointError, ImageReadError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in fig.notes:
        print(f"note: {note}", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.image.save(args.out)
    print(f"figure written to {args.out} ({fig.image.width}x{fig.image.height})")
    return 0


__all__ = ["SamplingFigure", "ScaleView", "denormalise", "fragment_layout", "main", "make_figure", "sample_mask"]
