"""Time the VQA backbone (Video Swin-T + GRPB): forward and forward+backward per clip, and peak memory.

Modes (each measured in a fresh subprocess so peak-memory numbers do not mix):
  sdpa        default model (fused attention with one additive mask, cached window geometry)
  checkpoint  + gradient checkpointing of every block
  bf16        + bfloat16 autocast
  compile     + torch.compile
  original    the original SAMA/FAST-VQA backbone (needs --original; its blocks run without checkpointing)
  original-ckpt  the original with its default gradient checkpointing

Examples:
  python benchmarks/bench_backbone.py                          # CPU or CUDA, 1 clip of 32x224x224
  python benchmarks/bench_backbone.py --modes sdpa,original --original /path/to/SAMA/VQA --no-backward
  python benchmarks/bench_backbone.py --train-step --batch 12 --device cpu   # peak memory of ONE training step
Peak memory: CUDA max allocated; on CPU the subprocess's peak resident set size (includes the interpreter).

``--train-step``: one forward + backward of backbone + VQA head (loss = mean of the score map), train mode, no
warm-up or repeats, then the peak memory; what README's attention-memory figure was measured with.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ALL_MODES = ("sdpa", "checkpoint", "bf16", "compile", "original", "original-ckpt")


def _find_original(path: str) -> str:
    candidates = [path] + [os.path.join(path, *p) for p in (("swin_backbone.py",), ("models", "swin_backbone.py"),
                                                           ("fastvqa", "models", "swin_backbone.py"))]
    for c in candidates:
        if os.path.isfile(c) and c.endswith(".py"):
            return c
    raise SystemExit(f"--original {path}: no swin_backbone.py found there (tried {', '.join(candidates[1:])})")


def _build(mode: str, name: str, original: str | None):
    import torch

    if mode.startswith("original"):
        spec = importlib.util.spec_from_file_location("original_swin_backbone", _find_original(original))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        model = mod.SwinTransformer3D(use_checkpoint=(mode == "original-ckpt"))
        return model, model
    sys.path[:0] = [ROOT, os.path.join(ROOT, "VQA")]
    from samavqa.models import build_backbone

    model = build_backbone(name, checkpoint=(mode == "checkpoint"))
    runner = torch.compile(model) if mode == "compile" else model
    return model, runner


def run_train_step(args) -> dict:
    """ONE training step (forward + backward, loss = score map mean) and its peak memory."""
    import torch

    device = torch.device(args.device)
    torch.manual_seed(0)
    model, runner = _build(args.single, args.backbone, args.original)
    from samavqa.models import VQAHead

    head = VQAHead(in_channels=model.num_features)
    model.to(device).train(), head.to(device).train()
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    head(runner(x)).mean().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    result = {"mode": args.single, "train_step": True, "device": str(device), "threads": torch.get_num_threads(),
              "input": [args.batch, 3, args.frames, args.size, args.size], "step_s": round(time.perf_counter() - t, 1)}
    if device.type == "cuda":
        result["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def run_single(args) -> dict:
    import torch

    device = torch.device(args.device)
    torch.manual_seed(0)
    model, runner = _build(args.single, args.backbone, args.original)
    model.to(device)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=(args.single == "bf16"))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def fwd():
        model.eval()
        with torch.no_grad(), autocast:
            runner(x)

    def fwd_bwd():
        model.train()
        with autocast:
            out = runner(x)
        out.float().mean().backward()
        model.zero_grad(set_to_none=True)

    result = {"mode": args.single, "device": str(device), "threads": torch.get_num_threads(),
              "input": [args.batch, 3, args.frames, args.size, args.size]}
    steps = [("fwd", fwd)] + ([] if args.no_backward else [("fwd_bwd", fwd_bwd)])
    for label, fn in steps:
        for _ in range(args.warmup):
            fn()
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        result[f"{label}_s_per_clip"] = round(sorted(times)[len(times) // 2] / args.batch, 4)
        result[f"{label}_min_s_per_clip"] = round(min(times) / args.batch, 4)
        if device.type == "cuda":
            result[f"{label}_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if device.type != "cuda":
        result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="sdpa,checkpoint,bf16,compile", help=f"comma list from {', '.join(ALL_MODES)}")
    p.add_argument("--backbone", default="swin_tiny_grpb", help="registered backbone name")
    p.add_argument("--original", default=None, help="path to the original swin_backbone.py (or a folder holding it)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-backward", action="store_true", help="forward timing only")
    p.add_argument("--train-step", action="store_true", help="peak memory of one training step (see above)")
    p.add_argument("--single", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.single:
        print(json.dumps(run_train_step(args) if args.train_step else run_single(args)))
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.original and not any(m.startswith("original") for m in modes):
        modes.append("original")
    bad = [m for m in modes if m not in ALL_MODES]
    if bad:
        raise SystemExit(f"unknown mode(s) {bad}; choose from {', '.join(ALL_MODES)}")
    if any(m.startswith("original") for m in modes) and not args.original:
        raise SystemExit("modes 'original*' need --original PATH")
    passthrough = [a for a in sys.argv[1:]]
    for mode in modes:
        cmd = [sys.executable, os.path.abspath(__file__), *passthrough, "--device", args.device, "--single", mode]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(json.dumps({"mode": mode, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}))
        else:
            print(lines[-1])
        sys.stdout.flush()


if __name__ == "__main__":
    main()
