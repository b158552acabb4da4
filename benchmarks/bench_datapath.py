#!/usr/bin/env python
"""Decode + sample throughput of the VQA data path (a script, not a test).

Writes a few synthetic videos (~150 frames, mp4v) per resolution into a temporary folder, then reads them
through ``samavqa.datasets.FusionDataset`` with a plain ``DataLoader`` (batch size 1) and reports videos/s
overall and per worker, for every resolution x mode x ``num_workers`` x decoder-thread setting. Test mode
samples 4 clips of 32 frames, train mode one clip of 32 (both with frame interval 2, as the option files do).
A separate in-process pass times ``samavqa.datasets.decode_frames`` and ``get_single_sample`` on their own, to
show where an item's time goes (decode vs spatial sampling vs the rest: normalisation, collation, transfer).

    python benchmarks/bench_datapath.py                                   # default run, ~2-3 minutes
    python benchmarks/bench_datapath.py --res 1080p --workers 0,2 --decoder-threads 1,2,4 --items 8
    python benchmarks/bench_datapath.py --stype sama-spm --modes train --keep /tmp/videos

Workers share the machine's cores: on an N-core machine expect at most ~N times the 0-worker rate.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch  # before decord (imported by the dataset module)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for sub in ("", "VQA", "IQA"):
    sys.path.insert(0, os.path.join(REPO, sub))

RESOLUTIONS = {"540p": (540, 960), "720p": (720, 1280), "1080p": (1080, 1920)}
MODES = {"test": 4, "train": 1}  # number of 32-frame clips
GRID = dict(fragments_h=7, fragments_w=7, fsize_h=32, fsize_w=32, aligned=32, clip_len=32, frame_interval=2)


def write_video(path: str, h: int, w: int, frames: int, seed: int) -> None:
    """A moving textured pattern (compresses like natural video, unlike white noise) as mp4v."""
    import cv2

    rng = np.random.default_rng(seed)
    texture = cv2.resize(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8), (w + 64, h + 64),
                         interpolation=cv2.INTER_CUBIC)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v video {path}")
    try:
        for t in range(frames):
            dy, dx = t % 64, (2 * t) % 64
            writer.write(np.ascontiguousarray(texture[dy:dy + h, dx:dx + w]))
    finally:
        writer.release()


def make_dataset(files: list, mode: str, stype: str, threads: int, items: int):
    from samavqa.datasets import FusionDataset

    infos = [{"filename": files[i % len(files)], "label": 1.0} for i in range(items)]
    branch = dict(GRID, num_clips=MODES[mode])
    opt = dict(phase=mode, anno_file=infos, data_prefix=os.path.dirname(files[0]),
               sample_types={"fragments": branch}, num_threads=threads)
    return FusionDataset(opt, stype)


def loader_rate(dataset, workers: int) -> float:
    """Videos/s of a full pass over ``dataset`` (worker start-up included, the first batch excluded)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=workers, shuffle=False)
    it = iter(loader)
    next(it)  # start-up: process spawn, imports, first decode
    t0 = time.perf_counter()
    n = 0
    for _ in it:
        n += 1
    return n / max(time.perf_counter() - t0, 1e-9)


def split_time(dataset, repeats: int) -> tuple:
    """Mean seconds per item of decode, spatial sampling and the whole ``__getitem__`` (in this process)."""
    from samavqa.datasets import decode_frames
    from samavqa.sampling import get_single_sample

    info = dataset.video_infos[0]
    dec = samp = full = 0.0
    dataset[0]  # warm-up
    for _ in range(repeats):
        t0 = time.perf_counter()
        videos, _ = decode_frames(info["filename"], dataset.samplers, dataset.is_train, dataset.num_threads)
        t1 = time.perf_counter()
        for branch, sopt in dataset.sample_types.items():
            get_single_sample(videos[branch], dataset.stype, dataset.is_train, **sopt)
        t2 = time.perf_counter()
        dataset[0]
        t3 = time.perf_counter()
        dec, samp, full = dec + t1 - t0, samp + t2 - t1, full + t3 - t2
    return dec / repeats, samp / repeats, full / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", default="540p,720p,1080p", help="comma list of " + ", ".join(RESOLUTIONS))
    ap.add_argument("--modes", default="test,train", help="comma list of test (4x32 frames), train (32 frames)")
    ap.add_argument("--workers", default="0,1,2", help="comma list of DataLoader num_workers")
    ap.add_argument("--decoder-threads", default="1", help="comma list of decord threads (dataset num_threads)")
    ap.add_argument("--stype", default="sama", help="spatial sample type")
    ap.add_argument("--items", type=int, default=4, help="videos read per loader pass (plus one warm-up)")
    ap.add_argument("--frames", type=int, default=150, help="frames per generated video")
    ap.add_argument("--videos", type=int, default=2, help="distinct videos per resolution")
    ap.add_argument("--torch-threads", type=int, default=1, help="torch threads in the main process")
    ap.add_argument("--keep", help="write the videos here (kept) instead of a temporary folder")
    opts = ap.parse_args()
    torch.set_num_threads(opts.torch_threads)
    resolutions = [r for r in opts.res.split(",") if r]
    for r in resolutions:
        if r not in RESOLUTIONS:
            ap.error(f"unknown resolution {r!r}; choose from {', '.join(RESOLUTIONS)}")
    workers = [int(x) for x in opts.workers.split(",")]
    threads = [int(x) for x in opts.decoder_threads.split(",")]

    tmp = None
    folder = opts.keep
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="sama_datapath_")
        folder = tmp.name
    os.makedirs(folder, exist_ok=True)
    t0 = time.perf_counter()
    files = {}
    for r in resolutions:
        h, w = RESOLUTIONS[r]
        files[r] = []
        for k in range(opts.videos):
            path = os.path.join(folder, f"synthetic_{r}_{k}.mp4")
            if not os.path.exists(path):
                write_video(path, h, w, opts.frames, seed=k)
            files[r].append(path)
    print(f"videos: {opts.videos} x {opts.frames} frames per resolution in {folder} "
          f"({time.perf_counter() - t0:.1f} s to write); stype {opts.stype}; {os.cpu_count()} CPUs; "
          f"main-process torch threads {opts.torch_threads}")

    head = (f"{'res':6s} {'mode':5s} {'dthr':>4s} {'decode s':>9s} {'sample s':>9s} {'item s':>8s} "
            f"{'decode%':>7s} {'sample%':>7s}" + "".join(f" {f'w={n} v/s':>10s} {'per wkr':>8s}" for n in workers))
    print(head)
    print("-" * len(head))
    try:
        for r in resolutions:
            for mode in opts.modes.split(","):
                for thr in threads:
                    ds = make_dataset(files[r], mode, opts.stype, thr, opts.items + 1)
                    dec, samp, full = split_time(ds, repeats=2)
                    row = (f"{r:6s} {mode:5s} {thr:4d} {dec:9.3f} {samp:9.3f} {full:8.3f} "
                           f"{100 * dec / full:6.0f}% {100 * samp / full:6.0f}%")
                    for n in workers:
                        rate = loader_rate(ds, n)
                        row += f" {rate:10.2f} {rate / max(n, 1):8.2f}"
                    print(row, flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
