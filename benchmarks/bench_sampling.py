#!/usr/bin/env python
"""Time and memory of the spatial samplers (a script, not a test).

For every resolution, mode and sample type this runs a fresh worker process that builds a random uint8 video in
the decoder's memory layout (``[T, H, W, C]`` permuted to ``[C, T, H, W]``), calls ``get_single_sample`` a few
times and reports the best wall time and the peak resident memory above the input video. Test mode samples
128 frames (4 clips of 32), train mode 32.

    python benchmarks/bench_sampling.py                           # ours only
    python benchmarks/bench_sampling.py --original /path/to/SAMA  # side by side with the original code
    python benchmarks/bench_sampling.py --res 1080p --modes train --types sama --threads 2 --uhd
    python benchmarks/bench_sampling.py --backend torch           # our pure-PyTorch engine instead of the C kernel

``--original`` imports ``VQA/fastvqa/datasets/fusion_datasets.py`` from that checkout at run time.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESOLUTIONS = {"540p": (540, 960), "720p": (720, 1280), "1080p": (1080, 1920), "2160p": (2160, 3840)}
MODES = {"test": (128, False), "train": (32, True)}
DEFAULT_TYPES = ("fragments", "sama", "sama-c", "sama-mix", "sama-spm", "sama-swm")
GRID = dict(fragments_h=7, fragments_w=7, fsize_h=32, fsize_w=32, aligned=32)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


def worker(args) -> None:
    """Runs in its own process: one implementation, one case; prints a JSON line."""
    import torch  # before decord, which the original module imports

    torch.set_num_threads(args.threads)
    if args.impl == "original":
        sys.path.insert(0, os.path.join(args.original, "VQA"))
        import warnings
        warnings.filterwarnings("ignore")
        from fastvqa.datasets.fusion_datasets import get_single_sample
    else:
        for sub in ("", "VQA", "IQA"):
            sys.path.insert(0, os.path.join(REPO, sub))
        from samavqa.sampling import get_single_sample
    h, w = RESOLUTIONS[args.res]
    frames, train = MODES[args.mode]
    torch.manual_seed(0)
    video = torch.randint(0, 256, (frames, h, w, 3), dtype=torch.uint8).permute(3, 0, 1, 2)
    if args.device != "cpu":
        video = video.to(args.device)
    base = _peak_rss_mb()
    times = []
    for _ in range(args.repeats):
        if args.device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = get_single_sample(video, args.stype, train, **GRID)
        if args.device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        del out
    print(json.dumps({"time_s": min(times), "peak_extra_mb": _peak_rss_mb() - base}))


def run_case(impl: str, res: str, mode: str, stype: str, opts) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", impl, "--res", res, "--modes", mode,
           "--types", stype, "--repeats", str(opts.repeats), "--threads", str(opts.threads), "--device", opts.device]
    if opts.original:
        cmd += ["--original", opts.original]
    # the engine is chosen before samacore is imported; the original ignores the variable
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, SAMA_RESAMPLE_BACKEND=opts.backend))
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"error": (r.stderr or r.stdout).strip().splitlines()[-1:] or ["failed"]}
    return json.loads(lines[-1])


def _engine(opts) -> str:
    """Which CPU engine our worker processes will use (asked in a child, with the same environment)."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); from samacore.resample import backend; print(backend())"
    r = subprocess.run([sys.executable, "-c", code, REPO], capture_output=True, text=True,
                       env=dict(os.environ, SAMA_RESAMPLE_BACKEND=opts.backend))
    return r.stdout.strip() or (r.stderr.strip().splitlines() or ["unknown"])[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--original", help="path of an original SAMA checkout to time side by side")
    ap.add_argument("--res", default="540p,720p,1080p", help="comma list of " + ", ".join(RESOLUTIONS))
    ap.add_argument("--uhd", action="store_true", help="also 2160p (the original needs ~15 GB there)")
    ap.add_argument("--modes", default="test,train", help="comma list of test (128 frames), train (32 frames)")
    ap.add_argument("--types", default=",".join(DEFAULT_TYPES), help="comma list of sample types")
    ap.add_argument("--repeats", type=int, default=3, help="calls per case; the best time is kept")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (ours only; the original is CPU-timed)")
    ap.add_argument("--backend", default="auto", choices=("auto", "native", "torch"),
                    help="our CPU engine: the C kernel (native), PyTorch ops (torch), or whichever is built (auto)")
    ap.add_argument("--worker", choices=("ours", "original"), help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.worker:
        opts.impl, opts.stype = opts.worker, opts.types
        opts.mode = opts.modes
        return worker(opts)

    resolutions = opts.res.split(",") + (["2160p"] if opts.uhd and "2160p" not in opts.res else [])
    head = f"{'res':6s} {'mode':5s} {'type':9s} {'ours s':>8s} {'ours MB':>8s}"
    if opts.original:
        head += f" {'orig s':>8s} {'orig MB':>8s} {'speedup':>8s} {'mem':>6s}"
    print(f"torch threads: {opts.threads}, device: {opts.device}, best of {opts.repeats}, our engine: {_engine(opts)}")
    print(head)
    print("-" * len(head))
    for res in resolutions:
        for mode in opts.modes.split(","):
            for stype in opts.types.split(","):
                ours = run_case("ours", res, mode, stype, opts)
                row = f"{res:6s} {mode:5s} {stype:9s} "
                if "error" in ours:
                    print(row + f"ours failed: {ours['error']}")
                    continue
                row += f"{ours['time_s']:8.3f} {ours['peak_extra_mb']:8.0f}"
                if opts.original:
                    orig = run_case("original", res, mode, stype, opts)
                    if "error" in orig:
                        row += f" original failed: {orig['error']}"
                    else:
                        mem = orig["peak_extra_mb"] / max(ours["peak_extra_mb"], 1.0)
                        row += (f" {orig['time_s']:8.3f} {orig['peak_extra_mb']:8.0f}"
                                f" {orig['time_s'] / ours['time_s']:7.1f}x {mem:5.1f}x")
                print(row, flush=True)


if __name__ == "__main__":
    main()
