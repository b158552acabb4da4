"""Check a GPU host end to end with the commands users run: ``make gpu-check`` (= ``python benchmarks/gpu_check.py``).

On a CUDA machine, in a temporary folder (``--keep DIR`` keeps it), after building the examplar videos if missing:

a. trains ``VQA/options/examplar-SAMA-train-full.yml`` for one epoch (``VQA/demo_train.py``, option override
   ``num_epochs: 1``; the Kinetics-400 weights when present, else from scratch) in fp32 and in bf16: s/step and
   peak GPU memory;
b. the same under ``torchrun --nproc_per_node <all GPUs>`` (NCCL, ``--device cuda``);
c. scores examplar test videos with the checkpoint of (a) (``VQA/vqa.py``) with ``--device cuda`` (fp32 and bf16)
   and ``--device cpu``, and compares: |cuda - cpu| <= FP32_TOL * (1 + |cpu|) in fp32 (TF32 convolutions),
   BF16_TOL * (1 + |cpu|) in bf16;
d. samples a video on CUDA tensors and on CPU tensors (``samavqa.get_single_sample``, every SAMA type) and compares;
e. times one training step of batch 12 at the paper's input (Video Swin-T, 32x224x224) in fp32 and bf16.

With 2+ GPUs also (on small synthetic videos and the nano Swin): NCCL training with ``--device cuda``, a stop and
``--resume``, a deterministic pair of runs compared bit for bit, and a run whose rank 1 fails (both ranks must end
within seconds, with the reason). It prints one table; the exit status is 1 if any step failed.

A card too small for batch 12 (about 20 GiB in fp32) trains and times at the largest of 6, 3, 1 that fits, and the
row says so; bf16 rows are skipped on GPUs without native bfloat16 (compute capability below 8.0). A GPU that this
PyTorch cannot use (a driver too old for its CUDA, a CPU-only build, an architecture it has no kernels for) is one
line and exit status 1, not a dry run.

On a machine without CUDA it says so in one line and runs the same steps on the CPU at tiny size (nano Swin,
four synthetic videos; a few seconds each) as a dry run of this script, then exits 0 if they passed
(``--multi``: also the 2+ GPU steps, on 2 CPU processes with gloo; ``--dry-run``: the dry run on a CUDA machine).
Run it from anywhere; it needs the repository's ``.venv`` (or an environment with the packages installed).
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL_OPT = os.path.join(REPO, "VQA", "options", "examplar-SAMA-train-full.yml")
FP32_TOL = 5e-3   # cuDNN runs the patch-embedding convolution in TF32 by default
BF16_TOL = 5e-2   # bfloat16 keeps 8 bits of mantissa
SAMPLE_TOL = 1e-2  # on the 0..255 scale: bilinear blends in float32 on two devices
PEAK_TAG = "gpu-check peak bytes (allocated, reserved):"
#: the batches a training or timing step falls back to, in turn, when the one before ran out of GPU memory
SMALLER_BATCHES = (6, 3, 1)
#: a launcher's variables (torchrun, Kubeflow, a shell that exported them): never passed to the commands run here,
#: so a one-process command cannot wait for peers that do not exist
LAUNCHER_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                 "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT")


# ----------------------------------------------------------------------------------------------- results
@dataclass
class Row:
    step: str
    ok: Optional[bool]          # None: skipped
    detail: str = ""
    s_per_step: Optional[float] = None
    peak_mib: Optional[float] = None      # torch.cuda.max_memory_allocated
    reserved_mib: Optional[float] = None  # max_memory_reserved: what the card must hold (plus the CUDA context)
    seconds: float = 0.0


@dataclass
class Report:
    rows: List[Row] = field(default_factory=list)

    def run(self, step: str, fn: Callable[[], Row]) -> Optional[Row]:
        """Run one step; an exception is a failed row whose detail is the error's last line."""
        tic = time.monotonic()
        try:
            row = fn()
        except Exception as e:  # a failed check is a row of the table, never the end of the script
            lines = [line for line in str(e).strip().splitlines() if line.strip()] or [type(e).__name__]
            row = Row(step, False, f"{type(e).__name__}: {lines[-1][:300]}")
        row.step, row.seconds = step, time.monotonic() - tic
        self.rows.append(row)
        print(f"[{'ok' if row.ok else 'skip' if row.ok is None else 'FAIL'}] {step} ({row.seconds:.0f}s) {row.detail}",
              flush=True)
        return row

    def table(self) -> str:
        head = ["step", "result", "s/step", "peak GPU MiB alloc/reserved", "time (s)", "detail"]
        body = [[r.step, "ok" if r.ok else "skip" if r.ok is None else "FAIL",
                 "" if r.s_per_step is None else f"{r.s_per_step:.3f}",
                 "" if r.peak_mib is None else f"{r.peak_mib:.0f} / {r.reserved_mib or 0:.0f}", f"{r.seconds:.0f}",
                 r.detail] for r in self.rows]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
        lines = [" | ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [head] + body]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return "\n".join(lines)

    @property
    def failed(self) -> bool:
        return any(r.ok is False for r in self.rows)


# ----------------------------------------------------------------------------------------------- commands
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(script: str, args: Sequence[str], nproc: int = 0) -> List[str]:
    """The argv of a repository script run through this file's ``--exec`` (which reports the peak GPU memory);
    under ``torchrun`` with ``nproc`` processes."""
    inner = [os.path.abspath(__file__), "--exec", os.path.join(REPO, script), *args]
    if not nproc:
        return [sys.executable, *inner]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
            f"--master_port={free_port()}", *inner]


class CommandFailed(RuntimeError):
    """A command of a step exited non-zero; ``reason``: its :func:`failure_line`."""

    def __init__(self, script: str, status: int, reason: str) -> None:
        super().__init__(f"{script} exited {status}: {reason}")
        self.reason = reason


def run(argv: Sequence[str], cwd: str, env: Optional[Dict[str, str]] = None, timeout: int = 3600,
        check: bool = True) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS and not k.startswith("TORCHELASTIC_")}
    environ.update(env or {})
    environ["PYTHONPATH"] = os.pathsep.join([REPO, os.path.join(REPO, "VQA"), environ.get("PYTHONPATH", "")])
    script = os.path.basename(str(argv[argv.index("--exec") + 1] if "--exec" in argv else argv[1]))
    p = subprocess.Popen(list(argv), cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except BaseException as e:
        # SIGTERM first: torchrun passes it on to its workers (started in sessions of their own, which killing
        # torchrun alone would leave holding the GPUs); what has not ended after 30 s is killed
        p.terminate()
        try:
            p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
        if isinstance(e, subprocess.TimeoutExpired):
            raise RuntimeError(f"{script} did not end within {timeout} s (stopped)") from None
        raise
    r = subprocess.CompletedProcess(list(argv), p.returncode, out, err)
    if check and r.returncode != 0:
        raise CommandFailed(script, r.returncode, failure_line("\n".join([r.stderr, r.stdout])))
    return r


def fresh_folder(path: str) -> str:
    """``path`` made empty (a second run with the same ``--keep DIR`` starts over, as the first did)."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def ran_out_of_memory(e: BaseException) -> bool:
    """Whether a step's command (its reason) or call ran out of memory."""
    from samacore.utils import out_of_memory

    return "out of memory" in getattr(e, "reason", "") or out_of_memory(e)


def gpu_gib(setup: "Setup") -> str:
    return "CPU" if setup.dry else f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB GPU"


def smaller_batches(batch: int) -> List[int]:
    """``batch``, then the smaller :data:`SMALLER_BATCHES` to fall back to."""
    return [batch] + [b for b in SMALLER_BATCHES if b < batch]


def no_native_bf16(setup: "Setup") -> Optional[str]:
    """Why the bf16 rows are skipped on this host's GPU (None: native bfloat16, or the CPU dry run)."""
    if setup.dry or torch.cuda.get_device_capability(0) >= (8, 0):
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return f"no native bfloat16 on {torch.cuda.get_device_name(0)} (compute capability {major}.{minor} < 8.0)"


def failure_line(output: str) -> str:
    """The line of a failed command's output that says why: the project's ``error: ...`` line, else the last line
    of a Python traceback (``SomeError: ...``, also behind torch's ``[rankN]:`` prefix), else the last line.
    torchrun's own report (its ``ChildFailedError`` and a rule of ``=``) comes after the worker's error: skipped."""
    lines = [re.sub(r"^\[rank\d+\]:\s*", "", x.strip()) for x in output.splitlines() if x.strip()]
    said = [x for x in lines if x.startswith("error:")]
    raised = [x for x in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b:", x)
              and "ChildFailedError" not in x]
    return (said or raised or lines or ["(no output)"])[-1]


def peak_mib(output: str) -> Tuple[Optional[float], Optional[float]]:
    """The largest (allocated, reserved) peak GPU memory, MiB, that the processes of a command reported."""
    peaks = [(int(a), int(r)) for a, r in re.findall(re.escape(PEAK_TAG) + r" (\d+) (\d+)", output)]
    return (max(a for a, _ in peaks) / 2**20, max(r for _, r in peaks) / 2**20) if peaks else (None, None)


def seconds_per_step(run_dir: str) -> Optional[float]:
    """From the wall times of the per-iteration ``train/loss`` events (the first step, with its warm-up, left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(run_dir, "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    if "train/loss" not in acc.Tags().get("scalars", []):
        return None
    times = [e.wall_time for e in acc.Scalars("train/loss")]
    return (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None


def exec_script(argv: List[str]) -> None:
    """``--exec SCRIPT ARGS``: run a repository script as ``__main__`` and print its process's peak GPU memory."""
    import atexit

    def report() -> None:
        if torch.cuda.is_initialized():
            print(f"{PEAK_TAG} {torch.cuda.max_memory_allocated()} {torch.cuda.max_memory_reserved()}",
                  file=sys.stderr, flush=True)

    atexit.register(report)
    sys.argv = list(argv)
    sys.path[:0] = [os.path.dirname(argv[0])]
    runpy.run_path(argv[0], run_name="__main__")


# ----------------------------------------------------------------------------------------------- setups
@dataclass
class Setup:
    """What the steps run on: the GPU host's full-size check or the CPU dry run's tiny one."""

    work: str
    device: str                  # "cuda" or "cpu"
    train_opt: str               # a training option file (written into work)
    videos: List[str]            # videos to score and sample
    nproc: int                   # torchrun processes
    train_batch: int             # (a), (b): the option file's train_batch_size (per process)
    step_batch: int              # (e) batch, clip frames, size
    step_input: tuple
    step_model: Dict[str, Any]
    env: Dict[str, str] = field(default_factory=dict)  # for every command (the dry run hides CUDA)
    multi: bool = False          # the dry run: also the 2+ GPU steps (f-h), on 2 CPU processes

    @property
    def dry(self) -> bool:
        return self.device == "cpu"


def write_options(path: str, opt: Dict[str, Any]) -> str:
    with open(path, "w") as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path


def full_setup(work: str) -> Setup:
    """The examplar data (built if missing) and ``examplar-SAMA-train-full.yml`` for one epoch."""
    run([sys.executable, os.path.join(REPO, "tools", "build_examplar_data.py"), "--if-missing", "--only", "vqa"],
        REPO)
    opt = yaml.safe_load(open(FULL_OPT))
    for ds in opt["data"].values():  # absolute paths: the runs work in a temporary folder
        for key in ("anno_file", "data_prefix"):
            ds["args"][key] = os.path.join(REPO, ds["args"][key])
    weights = os.path.join(REPO, str(opt.get("load_path") or ""))
    opt.update(name="gpu-check", num_epochs=1, warmup_epochs=0.5, load_path=weights if os.path.isfile(weights) else "")
    names = [line.split(",")[0] for line in open(opt["data"]["val-examplar"]["args"]["anno_file"]) if line.strip()]
    videos = [os.path.join(opt["data"]["val-examplar"]["args"]["data_prefix"], n) for n in names[:4]]
    model = dict(opt["model"]["args"])
    return Setup(work, "cuda", write_options(os.path.join(work, "train.yml"), opt), videos, torch.cuda.device_count(),
                 int(opt["train_batch_size"]), 12, (32, 224, 224), model)


def tiny_videos(folder: str, n: int = 4) -> List[str]:
    """``n`` small MPEG-4 videos (48 frames of 64x80 blocky noise, blockier = worse) and their label file."""
    import cv2
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        rng, block = np.random.default_rng(i), 8 >> (i % 4)
        path = os.path.join(folder, f"v{i}.mp4")
        out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (80, 64))
        for _ in range(48):
            small = rng.integers(0, 255, size=(64 // block + 1, 80 // block + 1, 3), dtype=np.uint8)
            out.write(np.ascontiguousarray(np.kron(small, np.ones((block, block, 1), np.uint8))[:64, :80]))
        out.release()
        paths.append(path)
    with open(os.path.join(folder, "labels.txt"), "w") as f:
        f.writelines(f"{os.path.basename(p)},-1,-1,{10 + 20 * i}\n" for i, p in enumerate(paths))
    return paths


NANO_MODEL = {"backbone": {"fragments": {"checkpoint": False, "pretrained": None}}, "backbone_size": "swin_nano_grpb",
              "backbone_preserve_keys": "fragments", "divide_head": False,
              "vqa_head": {"in_channels": 192, "hidden_channels": 16}}


def tiny_options(folder: str, name: str, **over: Any) -> Dict[str, Any]:
    """The nano Swin on :func:`tiny_videos`: 2x2 fragments of 32, 8-frame clips, batch 2, one epoch."""
    frag = dict(fragments_h=2, fragments_w=2, fsize_h=32, fsize_w=32, aligned=8, clip_len=8, frame_interval=2)

    def dataset(phase: str, clips: int) -> Dict[str, Any]:
        return {"type": "FusionDataset", "args": {"phase": phase, "anno_file": os.path.join(folder, "labels.txt"),
                                                  "data_prefix": folder,
                                                  "sample_types": {"fragments": dict(frag, num_clips=clips)}}}

    opt = {"name": name, "num_epochs": 1, "l_num_epochs": 0, "warmup_epochs": 0.5, "ema": True, "save_model": True,
           "train_batch_size": 2, "train_num_workers": 0, "test_batch_size": 2, "test_num_workers": 0,
           "stype": "sama", "seed": 1, "data": {"train": dataset("train", 1), "val-examplar": dataset("test", 2)},
           "model": {"type": "DiViDeAddEvaluator", "args": NANO_MODEL},
           "optimizer": {"lr": 1e-3, "backbone_lr_mult": 0.1, "wd": 0.05}}
    opt.update(over)
    return opt


def tiny_setup(work: str, device: str = "cpu", multi: bool = False) -> Setup:
    folder = os.path.join(work, "videos")
    videos = tiny_videos(folder)
    opt = write_options(os.path.join(work, "train.yml"), tiny_options(folder, "gpu-check"))
    # the dry run shows the CPU nothing but one thread per process: tiny models, and a machine possibly shared
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"} if device == "cpu" else {}
    return Setup(work, device, opt, videos, 2 if device == "cpu" else torch.cuda.device_count(), 2, 2, (8, 64, 64),
                 NANO_MODEL, env, multi)


# ----------------------------------------------------------------------------------------------- steps
def train_folder(setup: Setup, amp: str, nproc: int = 0) -> str:
    """Where step (a) (one process, ``nproc`` 0) or (b) (``torchrun`` with ``nproc`` processes) trains: a folder
    of its own for each, also on a one-GPU host where (b) runs one process too."""
    return os.path.join(setup.work, f"train-{amp}" + (f"-torchrun{nproc}" if nproc else ""))


def train_step(setup: Setup, amp: str, nproc: int = 0) -> Callable[[], Row]:
    """(a) / (b): one epoch of ``VQA/demo_train.py`` in its own folder; out of GPU memory, again at a smaller
    batch (the row says which)."""
    def check() -> Row:
        if amp == "bf16" and no_native_bf16(setup):
            return Row("", None, no_native_bf16(setup))
        cwd, too_big = train_folder(setup, amp, nproc), []
        for batch in smaller_batches(setup.train_batch):
            args = ["-o", setup.train_opt, "--no-progress", "--device", setup.device]
            args += (["--bf16"] if amp == "bf16" else []) + (["--set", f"train_batch_size={batch}"] if too_big else [])
            try:
                r = run(command("VQA/demo_train.py", args, nproc), fresh_folder(cwd), setup.env)
                break
            except CommandFailed as e:
                if not ran_out_of_memory(e) or batch == 1:
                    raise
                too_big.append(batch)
        summary = json.load(open(os.path.join(cwd, "runs", "gpu-check", "summary.json")))
        final = next(row for row in summary["results"] if row["set"] == "val-examplar")["final"]
        detail = f"val SRCC {final['srcc']:.3f} PLCC {final['plcc']:.3f}"
        if nproc > 1:
            detail += f"; batch {batch} per process, {batch * nproc} per step"
        if too_big:
            detail += f"; batch {batch}: {', '.join(map(str, too_big))} ran out of memory on a {gpu_gib(setup)}"
        return Row("", True, detail, seconds_per_step(os.path.join(cwd, "runs", "gpu-check")), *peak_mib(r.stderr))
    return check


def best_checkpoint(setup: Setup) -> str:
    """The best checkpoint of step (a)'s fp32 training, else of its bf16 training."""
    for amp in ("fp32", "bf16"):
        found = sorted(glob.glob(os.path.join(train_folder(setup, amp), "pretrained_weights", "*_s_dev_v0.0.pth")))
        if found:
            return found[0]
    raise FileNotFoundError("no checkpoint from the training step (a) to score with")


def scores(setup: Setup, device: str, bf16: bool) -> List[float]:
    out = os.path.join(setup.work, f"scores-{device}{'-bf16' if bf16 else ''}.csv")
    if os.path.exists(out):  # from an earlier check in the same --keep folder
        os.remove(out)
    args = ["-v", *setup.videos, "--ckpt", best_checkpoint(setup), "--options", setup.train_opt, "--output", out,
            "--device", device, "--no-progress"] + (["--bf16"] if bf16 else [])
    hidden = {"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}
    run(command("VQA/vqa.py", args), setup.work, dict(setup.env, **hidden))
    return [float(row["score"]) for row in csv.DictReader(open(out))]


def score_step(setup: Setup) -> Callable[[], Row]:
    """(c): the scorer on the device (fp32, bf16) against the CPU."""
    def check() -> Row:
        cpu = scores(setup, "cpu", False)
        details, ok = [], True
        for bf16, tol in ((False, FP32_TOL), (True, BF16_TOL)):
            if bf16 and no_native_bf16(setup):
                details.append(f"bf16 skipped: {no_native_bf16(setup)}")
                continue
            # the dry run's "device" is the CPU: its fp32 scores are the reference itself
            got = cpu if setup.dry and not bf16 else scores(setup, setup.device, bf16)
            worst = max(abs(a - b) / (1 + abs(b)) for a, b in zip(got, cpu))
            ok &= len(got) == len(cpu) and worst <= tol
            details.append(f"{'bf16' if bf16 else 'fp32'} max |d|/(1+|cpu|) {worst:.1e} (tol {tol:g})")
        return Row("", ok, f"{len(cpu)} videos: " + "; ".join(details))
    return check


def sampling_step(setup: Setup) -> Callable[[], Row]:
    """(d): ``get_single_sample`` of every SAMA type on device tensors against CPU tensors (same random draws)."""
    def check() -> Row:
        from samavqa import get_single_sample, read_frames

        video = read_frames(setup.videos[0]).permute(3, 0, 1, 2)[:, :32]  # [C, T, H, W] uint8
        grid = dict(fragments_h=2, fragments_w=2, fsize_h=32, fsize_w=32, aligned=8) if setup.dry else {}
        worst = 0.0
        for stype in ("sama", "sama-spm", "sama-swm", "sama-c", "fragments"):
            for is_train in (False, True):  # training draws its grid offsets on the CPU's generator: the same
                torch.manual_seed(0)
                on_cpu = get_single_sample(video, stype, is_train, **grid)
                torch.manual_seed(0)
                on_device = get_single_sample(video.to(setup.device), stype, is_train, **grid)
                if on_device.device.type != torch.device(setup.device).type:
                    raise RuntimeError(f"{stype}: a {setup.device} video was sampled into {on_device.device}")
                worst = max(worst, (on_device.cpu() - on_cpu).abs().max().item())
        return Row("", worst <= SAMPLE_TOL, f"5 sample types, test and training draws, max |device - cpu| "
                   f"{worst:.1e} (0..255; tol {SAMPLE_TOL:g})")
    return check


def timing_step(setup: Setup, amp: Optional[str]) -> Callable[[], Row]:
    """(e): one training step (forward, PLCC + rank loss, backward, AdamW) of the configured batch and input."""
    def check() -> Row:
        if amp == "bf16" and no_native_bf16(setup):
            return Row("", None, no_native_bf16(setup))
        device = "cuda" if setup.device == "cuda" else "cpu"
        too_big = []
        try:
            for batch in smaller_batches(setup.step_batch):
                try:
                    loss, seconds = timed_steps(setup, amp, device, batch)
                    break
                except Exception as e:
                    if not ran_out_of_memory(e) or batch == 1:
                        raise
                    too_big.append(batch)
            peak = (torch.cuda.max_memory_allocated() / 2**20, torch.cuda.max_memory_reserved() / 2**20) \
                if device == "cuda" else (None, None)
        finally:
            if device == "cuda":  # the next steps' commands need this GPU's memory
                torch.cuda.empty_cache()
        t, h, w = setup.step_input
        detail = f"batch {batch} x {t}x{h}x{w}, {setup.step_model['backbone_size']}"
        if too_big:
            detail += f"; {', '.join(map(str, too_big))} ran out of memory on a {gpu_gib(setup)}"
        return Row("", bool(torch.isfinite(loss)), detail, seconds, *peak)
    return check


def timed_steps(setup: Setup, amp: Optional[str], device: str, batch_size: int) -> Tuple[torch.Tensor, float]:
    """The last loss and mean seconds of steps 2-4 (the first, with allocation and autotuning, left out) of a new
    model and optimizer at ``batch_size``, its input already on ``device``."""
    from samacore.precision import autocast
    from samavqa.models import DiViDeAddEvaluator
    from samavqa.recipe import make_step_fn

    model = DiViDeAddEvaluator(**setup.step_model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    step = make_step_fn(["fragments"])
    t, h, w = setup.step_input
    batch = {"fragments": torch.randn(batch_size, 3, t, h, w, device=device),
             "gt_label": torch.rand(batch_size, device=device)}
    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(4):
        tic = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = step(model, batch, device)[0]
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tic)
    return loss.detach(), sum(times[1:]) / 3


# ----------------------------------------------------------------------------------------------- 2+ GPUs
FAILING_PLUGIN = '''
import os
from samavqa.models.backbones import build_backbone, register_backbone


@register_backbone("gpu_check_failing")
def gpu_check_failing(checkpoint=False, **overrides):
    net = build_backbone("swin_nano_grpb", checkpoint=checkpoint, **overrides)
    forward, calls = net.forward_features, []

    def forward_features(x, **kwargs):
        calls.append(1)  # the DDP probe, then training steps
        if os.environ.get("RANK") == "1" and len(calls) == 3:
            raise RuntimeError("gpu-check: planned failure of rank 1")
        return forward(x, **kwargs)

    net.forward_features = forward_features
    return net
'''


def multi_gpu_steps(report: Report, setup: Setup) -> None:
    """(f) training on all GPUs (NCCL, ``--device cuda``) stopped and resumed, (g) a deterministic pair of runs
    compared bit for bit, (h) a run whose rank 1 fails; on the nano Swin and small synthetic videos."""
    tiny = tiny_setup(os.path.join(setup.work, "multi"), setup.device)
    folder = os.path.dirname(tiny.videos[0])
    nproc = setup.nproc

    def train(name: str, extra: Sequence[str] = (), **over: Any) -> subprocess.CompletedProcess:
        opt = write_options(os.path.join(tiny.work, f"{name}.yml"), tiny_options(folder, name, **over))
        cwd = os.path.join(tiny.work, name)
        if "--resume" not in extra:
            fresh_folder(cwd)
        args = ["-o", opt, "--no-progress", "--device", tiny.device, *extra]
        return run(command("VQA/demo_train.py", args, nproc), cwd, tiny.env, timeout=600, check=not over.get("plugins"))

    def resume() -> Row:
        train("resume", ["--stop-after-epochs", "1"], num_epochs=2)
        train("resume", ["--resume", os.path.join(tiny.work, "resume", "runs", "resume")], num_epochs=2)
        rows = list(csv.DictReader(open(os.path.join(tiny.work, "resume", "runs", "resume", "metrics.csv"))))
        return Row("", sorted({r["epoch"] for r in rows}) == ["0", "1"], "epochs 0 and 1 in one metrics.csv")

    def deterministic_pair() -> Row:
        sums = []
        for name in ("det-a", "det-b"):
            train(name, deterministic=True, num_epochs=2)
            path = glob.glob(os.path.join(tiny.work, name, "pretrained_weights", "*_Epoch_01.pth"))[0]
            sums.append(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        same = all(torch.equal(v, sums[1][k]) for k, v in sums[0].items())
        return Row("", same, "weights after 2 epochs " + ("identical" if same else "DIFFER"))

    def one_rank_fails() -> Row:
        plugin = os.path.join(tiny.work, "failing.py")
        with open(plugin, "w") as f:
            f.write(FAILING_PLUGIN)
        model = {"type": "DiViDeAddEvaluator", "args": dict(NANO_MODEL, backbone_size="gpu_check_failing")}
        tic = time.monotonic()
        r = train("fail", plugins=[plugin], model=model)
        took, said = time.monotonic() - tic, "error: rank 1 failed: RuntimeError: gpu-check" in r.stdout + r.stderr
        return Row("", r.returncode != 0 and said and took < 180, f"exit {r.returncode} after {took:.0f}s, "
                   f"{'reason shown' if said else 'reason NOT shown'} on the other ranks")

    backend = "gloo, CPU" if tiny.dry else "NCCL, --device cuda"
    report.run(f"f. {nproc} processes ({backend}): stop + resume", resume)
    report.run(f"g. {nproc} processes: deterministic pair, bit for bit", deterministic_pair)
    report.run(f"h. {nproc} processes: rank 1 fails, every rank ends", one_rank_fails)


# ----------------------------------------------------------------------------------------------- main
def unusable_gpu() -> Optional[str]:
    """Why this machine's NVIDIA GPU cannot be checked (None: usable, or none here, or hidden on purpose with an
    empty ``CUDA_VISIBLE_DEVICES``): a GPU that PyTorch does not see must not pass as a CPU dry run."""
    from samacore.distributed import refuse_unsupported_gpu
    from samacore.options import OptionError

    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            try:
                refuse_unsupported_gpu(f"cuda:{index}")
            except OptionError as e:
                return str(e)
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if (visible is not None and visible.strip() in ("", "-1")) or not (
            os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi")):
        return None
    if torch.version.cuda is None:
        return f"this machine has an NVIDIA GPU, but PyTorch {torch.__version__} is a CPU-only build"
    shown = f" (CUDA_VISIBLE_DEVICES={visible})" if visible else ""
    return (f"this machine has an NVIDIA GPU, but PyTorch {torch.__version__} (built for CUDA {torch.version.cuda}) "
            f"cannot use it{shown}: is the NVIDIA driver new enough for CUDA {torch.version.cuda} (nvidia-smi)?")


def check_all(report: Report, setup: Setup) -> None:
    report.run("a. train 1 epoch fp32", train_step(setup, "fp32"))
    report.run("a. train 1 epoch bf16", train_step(setup, "bf16"))
    if setup.nproc >= 1:  # one GPU: torchrun's launch and environment, but no process group to test
        group = ("gloo" if setup.dry else "NCCL") if setup.nproc >= 2 else "no process group"
        report.run(f"b. torchrun {setup.nproc} process{'es' if setup.nproc > 1 else ''} ({group}) fp32",
                   train_step(setup, "fp32", setup.nproc))
    report.run(f"c. scores {setup.device} vs cpu", score_step(setup))
    report.run(f"d. sampling {setup.device} vs cpu", sampling_step(setup))
    report.run("e. one training step fp32", timing_step(setup, None))
    report.run("e. one training step bf16", timing_step(setup, "bf16"))
    if setup.nproc >= 2 and (not setup.dry or setup.multi):
        multi_gpu_steps(report, setup)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--exec"]:
        exec_script(argv[1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="the CPU dry run at tiny size, even where CUDA is available")
    p.add_argument("--multi", action="store_true", help="in the dry run, also the steps of 2+ GPUs (f-h) on 2 CPU "
                                                         "processes (a minute or two more)")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    problem = None if args.dry_run else unusable_gpu()
    if problem:
        print(f"gpu-check: {problem}")
        return 1
    dry = args.dry_run or not torch.cuda.is_available()
    if dry and not args.dry_run:
        print("gpu-check: no CUDA device on this machine; running a CPU dry run of the same steps at tiny size")
    work = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="sama-gpu-check-")
    os.makedirs(work, exist_ok=True)
    report, setups = Report(), []

    def prepare() -> Row:
        setups.append(tiny_setup(work, multi=args.multi) if dry else full_setup(work))
        return Row("", True, f"{len(setups[0].videos)} videos to score; work folder {work}")

    if dry:
        torch.set_num_threads(1)  # as the dry run's commands (OMP_NUM_THREADS=1)
    try:
        if report.run("0. data and options", prepare).ok:
            check_all(report, setups[0])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    device = "CPU dry run" if dry else f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    print(f"\ngpu-check on {device} (torch {torch.__version__}):\n{report.table()}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
