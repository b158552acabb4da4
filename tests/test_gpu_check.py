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
    with one process for (b)."""
    check = runpy.run_path(GPU_CHECK)
    setup = dataclasses.replace(check["tiny_setup"](str(tmp_path)), nproc=1)
    report = check["Report"]()
    assert report.run("a", check["train_step"](setup, "fp32")).ok
    assert report.run("b", check["train_step"](setup, "fp32", setup.nproc)).ok, report.table()
    for folder in ("train-fp32", "train-fp32-torchrun1"):
        assert os.path.isfile(tmp_path / folder / "runs" / "gpu-check" / "summary.json")


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
