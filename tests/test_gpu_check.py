"""benchmarks/gpu_check.py (make gpu-check) on a machine without CUDA: one line saying so, then a CPU dry run of
the same steps at tiny size (nano Swin, four synthetic videos; the real commands as subprocesses), one table,
exit status 0. The table's figures are checked, not just its presence. Its steps are subprocesses (about 40 s
on an idle 2-core machine; the run's own timeout is 600 s, for a busy one)."""
import os
import subprocess
import sys

from helpers import REPO

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
    for folder in ("train-fp32-1p", "train-bf16-1p", "train-fp32-2p"):
        assert os.path.isfile(tmp_path / "w" / folder / "runs" / "gpu-check" / "summary.json")
