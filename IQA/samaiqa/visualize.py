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

The boxes and scale factors are not re-derived from the sampler's formulas: :func:`samaiqa.sample_image` is run
on a *coordinate image* whose channels hold each pixel's row and column (:func:`samacore.visual.coordinate_grid`;
bilinear sampling reproduces linear functions exactly), so every output pixel holds the source position it was
read from. The thin boxes come from the same SAMA pipeline run with one scale alone and no mask; which boxes are
thick is read off the real sample. An unusable ``--out`` ends the command before the image is read.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from samacore import visual
from samacore.checkpoint import CheckpointError
from samacore.options import OptionError
from samacore.sampling import GRID_KEYS, FragmentGrid, SamaVariant, make_mask, resolve_sample_type, sama_sample, sama_variant

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


#: the SAMA pipeline with one scale alone and no mask: with one temporal patch (``aligned=1``) a ramp's only
#: factor is 1, full resolution
FULL_RESOLUTION = SamaVariant("ramp")
USED_SHARE = 0.25  # a cell's fragment of a scale "reaches the sample" when this share of its pixels is read from it


def _one_scale(coords: torch.Tensor, grid: FragmentGrid, variant: SamaVariant) -> np.ndarray:
    """(row, column) source positions ``[2, Sh, Sw]`` the test-mode SAMA pipeline reads with ``variant``."""
    half = torch.full((grid.fragments_h, grid.fragments_w, 1), 0.5)
    return sama_sample(coords[:, None], grid, variant, half, half, aligned=1)[:, 0].numpy()


def _scale_view(label: str, pos: np.ndarray, read: np.ndarray, grid: FragmentGrid,
                source: Tuple[int, int]) -> ScaleView:
    """One scale's fragment boxes from its positions ``pos`` ``[2, Sh, Sw]`` in a ``source``-sized image; ``read``:
    bool ``[Sh, Sw]``, where the real sample was read from this scale. The factor is set by the caller."""
    step = (visual.median_step(pos[0], grid.fsize_h, axis=0), visual.median_step(pos[1], grid.fsize_w, axis=1))
    boxes = visual.cell_footprints(pos[0], pos[1], (grid.fragments_h, grid.fragments_w, grid.fsize_h, grid.fsize_w), step)
    share = read.reshape(grid.fragments_h, grid.fsize_h, grid.fragments_w, grid.fsize_w).mean((1, 3))
    size = (round(source[0] / step[0]), round(source[1] / step[1]))
    return ScaleView(label, 1.0, size, boxes, share >= USED_SHARE)


def fragment_layout(height: int, width: int, stype: str, grid: FragmentGrid) -> List[ScaleView]:
    """The test-mode fragment boxes of each scale for an image of ``height x width`` (as fed to the sampler)."""
    stype = resolve_sample_type(stype, "image")
    coords = visual.coordinate_grid(height, width)
    real = sample_image(coords, stype, False, grid.fragments_h, grid.fragments_w, grid.fsize_h, grid.fsize_w).numpy()
    variant = sama_variant(stype, "image")
    if variant is None:  # "fragment": one scale, all of it in the sample
        return [_scale_view("x1", real, np.ones(real.shape[1:], dtype=bool), grid, (height, width))]
    full_pos, scaled_pos = _one_scale(coords, grid, FULL_RESOLUTION), _one_scale(coords, grid, SamaVariant(variant.schedule))
    in_full, in_scaled = (real == full_pos).all(0), (real == scaled_pos).all(0)
    mask = sample_mask(stype, grid)  # decides only where both scales read the same position
    full = _scale_view("x1", full_pos, in_full & (mask | ~in_scaled), grid, (height, width))
    scaled = _scale_view("", scaled_pos, in_scaled & (~mask | ~in_full), grid, (height, width))
    # measured on the side along which the scaled view just fits the output (the other side's size is rounded)
    axis = 0 if scaled.size[0] == grid.out_h else 1
    scaled.factor = scaled.size[axis] / full.size[axis]
    scaled.label = f"x1/{1 / scaled.factor:.3g}" if scaled.size != full.size else "x1 (scaled view)"
    return [full, scaled]


def denormalise(sample: torch.Tensor) -> np.ndarray:
    """Normalised ``[3, H, W]`` -> uint8 ``[H, W, 3]``: ``round(clip((x * std + mean) * 255, 0, 255))``."""
    return visual.denormalise(sample, IMAGENET_MEAN, IMAGENET_STD, 255.0)


def sample_mask(stype: str, grid: FragmentGrid) -> np.ndarray:
    """Bool ``[Sh, Sw]``: True where the sample comes from full resolution."""
    variant = sama_variant(stype, "image")
    if variant is None or variant.mask is None:  # all full resolution (fragment) / all scaled
        return np.full((grid.out_h, grid.out_w), variant is None)
    return make_mask(variant.mask, grid).numpy()


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


Picture = Tuple[str, str, Image.Image]  # (panel key, title, picture)


def _source_pictures(img: Image.Image, views: List[ScaleView], height: int) -> List[Picture]:
    """The loaded image at ``height`` pixels, once per scale, with that scale's fragment boxes drawn on it."""
    src_w = max(1, round(img.width * height / img.height))
    scale_x, scale_y = src_w / img.width, height / img.height
    pictures = []
    for view in views:
        canvas = img.resize((src_w, height), Image.BILINEAR)
        draw = ImageDraw.Draw(canvas)
        colour = FULL_COLOUR if view.label == "x1" else SCALED_COLOUR
        for (x0, y0, x1, y1), used in zip(view.boxes.reshape(-1, 4), view.used.reshape(-1)):
            box = (x0 * scale_x, y0 * scale_y, x1 * scale_x - 1, y1 * scale_y - 1)
            draw.rectangle(box, outline=colour if used else tuple(c // 2 for c in colour), width=2 if used else 1)
        pictures.append((f"source_{view.label}", f"source {view.label} ({img.width}x{img.height})", canvas))
    return pictures


def _compose(pictures: List[Picture], height: int) -> Tuple[Image.Image, Dict[str, Tuple[int, int, int, int]]]:
    """The pictures side by side under their titles; returns the figure and each panel's box."""
    font = ImageFont.load_default()
    width = MARGIN + sum(p.width + MARGIN for _, _, p in pictures)
    fig = Image.new("RGB", (width, MARGIN + TITLE_H + height + MARGIN), (255, 255, 255))
    draw = ImageDraw.Draw(fig)
    panels: Dict[str, Tuple[int, int, int, int]] = {}
    x = MARGIN
    for key, title, pic in pictures:
        draw.text((x, MARGIN), title, fill=(0, 0, 0), font=font)
        top = MARGIN + TITLE_H
        fig.paste(pic, (x, top))
        panels[key] = (x, top, x + pic.width, top + pic.height)
        x += pic.width + MARGIN
    return fig, panels


def make_figure(
    path: str,
    stype: str = "sama",
    data_args: Optional[Dict[str, Any]] = None,
    model: Optional[torch.nn.Module] = None,
    device: str = "cpu",
) -> SamplingFigure:
    """Draw the sampling figure of image ``path``; with ``model`` add the per-token quality map."""
    args = sampling_args(data_args)
    grid = FragmentGrid(*(args[k] for k in GRID_KEYS))
    stype = resolve_sample_type(stype, "image")
    img = load_image(path, max(grid.out_h, grid.out_w), bool((data_args or {}).get("exif_transpose", False)))
    x = build_transform(False)(img)
    sample = sample_image(x, stype, False, **args)
    views = fragment_layout(x.shape[1], x.shape[2], stype, grid)
    mask = sample_mask(stype, grid)

    zoom = max(1, MIN_PANEL // max(grid.out_h, grid.out_w))
    ph = grid.out_h * zoom
    pictures = _source_pictures(img, views, ph)
    big = np.repeat(np.repeat(denormalise(sample), zoom, 0), zoom, 1)
    pictures.append(("sample", f"sampled input {grid.out_h}x{grid.out_w}", Image.fromarray(big)))
    m = np.repeat(np.repeat(np.where(mask, 255, 90).astype(np.uint8), zoom, 0), zoom, 1)
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
    fig, panels = _compose(pictures, ph)
    return SamplingFigure(fig, panels, sample, mask, views, zoom, token_scores, score, notes)


def _quality_overlay(base: np.ndarray, scores: np.ndarray) -> Image.Image:
    """Per-token scores as a colour overlay (45%) on the (enlarged) sampled input, scores written per cell."""
    h, w = base.shape[:2]
    gh, gw = scores.shape
    lo, hi = float(scores.min()), float(scores.max())
    norm = (scores - lo) / (hi - lo) if hi > lo else np.full_like(scores, 0.5)
    colours = visual.heat_colours(norm)
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
        visual.check_figure_path(args.out)
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
    visual.save_figure(fig.image, args.out)
    print(f"figure written to {args.out} ({fig.image.width}x{fig.image.height})")
    return 0


__all__ = ["SamplingFigure", "ScaleView", "denormalise", "fragment_layout", "main", "make_figure", "sample_mask"]
