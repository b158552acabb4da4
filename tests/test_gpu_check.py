"""benchmarks/gpu_check.py (make gpu-check) on a machine without CUDA: one line saying so, then a CPU dry run of
the same steps at tiny size (nano Swin, four synthetic videos; the real commands as subprocesses), one table,
exit status 0. The table's figures are checked, not just its presence. Its steps are subprocesses (about 40 s
on an idle 2-core machine; the run's own timeout is 600 s, for a busy one)."""
import dataclasses
import os
import runpy
import subprocess
import sys

from helpers import REPO

GPU_CHECK = os.path.join(REPO, "benchmarks", "gpu_check.py")

STEPS = ["0. data and options", "a. train 1 epoch fp32", "a. train 1 epoch bf16",
         "b. torchrun 2 processes (gloo) fp32", "c. scores cpu vs cpu", "d. sampling cpu vs cpu",
         "e. one training step fp32", "e. one training step bf16"]


def test_dry_run_without_cuda(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    script = os.path.join(REPO, "benchmarks", "gpu_check.py")
    r = subprocess.run([sys.executable, script, "--keep", str(tmp_path / "w")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0] == "gpu-check: no CUDA device on this machine; running a CPU dry run of the same steps at tiny size"
    table = lines[lines.index(next(x for x in lines if x.startswith("gpu-check on CPU dry run"))) + 1:]
    rows = {cells[0]: cells for cells in ([c.strip() for c in x.split("|", 5)] for x in table[2:])}  # detail: last
    assert list(rows) == STEPS and all(cells[1] == "ok" for cells in rows.values())
    assert float(rows["a. train 1 epoch fp32"][2]) > 0 and float(rows["e. one training step bf16"][2]) > 0  # s/step
    assert "fp32 max |d|/(1+|cpu|) 0.0e+00" in rows["c. scores cpu vs cpu"][5]  # the same command twice: equal
    assert "max |device - cpu| 0.0e+00" in rows["d. sampling cpu vs cpu"][5]
    # every training wrote its run where the table says it trained
    for folder in ("train-fp32", "train-bf16", "train-fp32-torchrun2"):
        assert os.path.isfile(tmp_path / "w" / folder / "runs" / "gpu-check" / "summary.json")


def test_one_gpu_host_trains_a_and_b_in_their_own_folders(tmp_path):
    """On a host with one GPU, step (b) runs ``torchrun`` with one process after step (a): it once reused (a)'s
    folder and was refused as a run folder that already holds a run. Here the same two steps on the tiny CPU setup
    with one process for (b), then (a) again in the same folder, as a second ``--keep DIR`` check runs it."""
    check = runpy.run_path(GPU_CHECK)
    setup = dataclasses.replace(check["tiny_setup"](str(tmp_path)), nproc=1)
    report = check["Report"]()
    assert report.run("a", check["train_step"](setup, "fp32")).ok
    assert report.run("b", check["train_step"](setup, "fp32", setup.nproc)).ok, report.table()
    for folder in ("train-fp32", "train-fp32-torchrun1"):
        assert os.path.isfile(tmp_path / folder / "runs" / "gpu-check" / "summary.json")
    # a second check in the same --keep folder starts over (it was refused: a run folder already holding a run)
    assert report.run("a again", check["train_step"](setup, "fp32")).ok, report.table()


def test_a_failed_command_is_reported_by_its_reason():
    """The table's reason for a failed step is the command's own ``error:`` line or the exception that ended it,
    not the last line of its output (torchrun ends its report with a rule of ``=``)."""
    failure_line = runpy.run_path(GPU_CHECK)["failure_line"]
    torchrun = ("error: rank 1 failed: RuntimeError: out of memory\n[rank0]: Traceback (most recent call last):\n"
                "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n" + "=" * 40 + "\n")
    assert failure_line(torchrun) == "error: rank 1 failed: RuntimeError: out of memory"
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad value\n\n'
    assert failure_line(traceback) == "ValueError: bad value"
    workers = ('[rank1]: Traceback (most recent call last):\n[rank1]:   File "x.py", line 1\n[rank1]: KeyError: '
               "'fragments'\nException ignored in: <function _after_fork>\ntorch.distributed.elastic.multiprocessing."
               "errors.ChildFailedError:\n" + "=" * 40 + "\n")  # a worker's fault under torchrun, behind its prefix
    assert failure_line(workers) == "KeyError: 'fragments'"
    assert failure_line("just this\nand this last\n") == "and this last"
    assert failure_line("") == "(no output)"


def gpu_check_module():
    """benchmarks/gpu_check.py as a module, so a test can replace what its steps call."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check_under_test", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module


def test_a_card_too_small_for_the_batch_trains_at_a_smaller_one(tmp_path, monkeypatch):
    """On a 16-24 GB card batch 12 of the paper's input runs out of memory: steps (a) and (e) go on at 6, 3 or 1
    and say so, instead of failing the check of a card that works (and (c) failing for want of (a)'s checkpoint)."""
    import torch

    gc = gpu_check_module()
    setup = dataclasses.replace(gc.tiny_setup(str(tmp_path)), train_batch=12, step_batch=12)
    tried = []

    def run(argv, cwd, env=None, timeout=3600, check=True):
        batch = int(next((a.split("=")[1] for a in argv if a.startswith("train_batch_size=")), 12))
        tried.append(batch)
        assert not os.listdir(cwd)  # every try starts in an empty folder
        if batch > 3:
            raise gc.CommandFailed("demo_train.py", 2, "error: out of memory (CUDA out of memory. Tried to allocate "
                                   "2.81 GiB): lower train_batch_size")
        os.makedirs(os.path.join(cwd, "runs", "gpu-check", "tensorboard"))
        with open(os.path.join(cwd, "runs", "gpu-check", "summary.json"), "w") as f:
            f.write('{"results": [{"set": "val-examplar", "final": {"srcc": 0.5, "plcc": 0.25}}]}')
        return subprocess.CompletedProcess(argv, 0, "", f"{gc.PEAK_TAG} {2**30} {3 * 2**29}\n")

    monkeypatch.setattr(gc, "run", run)
    row = gc.Report().run("a", gc.train_step(setup, "fp32"))
    assert tried == [12, 6, 3] and row.ok
    assert row.detail == "val SRCC 0.500 PLCC 0.250; batch 3: 12, 6 ran out of memory on a CPU"
    assert (row.peak_mib, row.reserved_mib) == (1024, 1536)

    def timed_steps(setup, amp, device, batch_size):
        if batch_size > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return torch.tensor(0.5), 0.25

    monkeypatch.setattr(gc, "timed_steps", timed_steps)
    row = gc.Report().run("e", gc.timing_step(setup, None))
    assert row.ok and row.s_per_step == 0.25
    assert row.detail == "batch 1 x 8x64x64, swin_nano_grpb; 12, 6, 3 ran out of memory on a CPU"

    def broken(setup, amp, device, batch_size):
        raise RuntimeError("a fault of the program")

    monkeypatch.setattr(gc, "timed_steps", broken)  # any other error fails the row at once
    row = gc.Report().run("e", gc.timing_step(setup, None))
    assert row.ok is False and row.detail == "RuntimeError: a fault of the program"


def test_a_gpu_pytorch_cannot_use_is_one_line_and_exit_1(monkeypatch, capsys):
    """A GPU host whose driver is too old for the wheel's CUDA (or a CPU-only build) made the check run its CPU dry
    run and exit 0, passing a host where nothing can run on the GPU. CUDA is simulated."""
    import shutil

    import torch

    gc = gpu_check_module()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gc.main([]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"gpu-check: this machine has an NVIDIA GPU, but PyTorch {torch.__version__} (built for CUDA 13.0) cannot use "
        f"it: is the NVIDIA driver new enough for CUDA 13.0 (nvidia-smi)?"]
    monkeypatch.setattr(torch.version, "cuda", None)
    assert gc.unusable_gpu() == f"this machine has an NVIDIA GPU, but PyTorch {torch.__version__} is a CPU-only build"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # hidden on purpose: the dry run, as the test above
    assert gc.unusable_gpu() is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no NVIDIA GPU here at all
    assert gc.unusable_gpu() is None or os.path.exists("/dev/nvidiactl")
    # a GPU this build has no kernels for (a V100 with a CUDA 13 wheel)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "sm_80"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Tesla V100-SXM2-16GB")
    assert gc.main([]) == 1
    assert capsys.readouterr().out.startswith("gpu-check: --device cuda:0: Tesla V100-SXM2-16GB (compute capability 7.0) "
                                              "is not supported by this PyTorch")
