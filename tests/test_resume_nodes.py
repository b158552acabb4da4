"""Two machines without a shared file system, on one host: ``torchrun --nnodes 2 --nproc_per_node 1``, each node
in its own working folder (relative run_dir / save_dir), so only node 0 holds the checkpoints and ``last.pth``.
Node 1 must never read them itself: calibration, ``--resume`` and the run's options come from rank 0
(:func:`samacore.checkpoint.load_on_main`). A tiny VQA training stops after one epoch, resumes (``--resume`` alone,
no option file) and ends with exit 0 on both nodes."""
import os
import subprocess
import sys

from helpers import REPO, free_port, vqa_train_options, write_yaml
from samacore.checkpoint import load_checkpoint


def run_two_nodes(folders, args, timeout=120):
    """``VQA/demo_train.py args`` on two torchrun nodes (one process each), node i in ``folders[i]``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [REPO, os.path.join(REPO, "VQA"), os.path.join(REPO, "IQA"), os.environ.get("PYTHONPATH", "")]))
    port = free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}",
         "--master_addr=127.0.0.1", f"--master_port={port}", os.path.join(REPO, "VQA", "demo_train.py"), *args],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for node, folder in enumerate(folders)]
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for node, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"node {node}:\n{out[-4000:]}"
    return outs


def test_two_nodes_without_shared_files_train_stop_and_resume(vqa_data, tmp_path):
    folders = [tmp_path / "node0", tmp_path / "node1"]
    opt = vqa_train_options(vqa_data.root, "nodes", run_dir="runs/nodes", save_dir="weights")
    for folder in folders:
        folder.mkdir()
        write_yaml(folder / "o.yml", opt)
    run_two_nodes(folders, ["-o", "o.yml", "--device", "cpu", "--stop-after-epochs", "1"])
    assert load_checkpoint(str(folders[0] / "runs/nodes/last.pth"))["epoch"] == 0
    assert not (folders[1] / "runs/nodes/last.pth").exists()  # nothing shared: node 1 has no state of its own
    outs = run_two_nodes(folders, ["--resume", "runs/nodes", "--device", "cpu"])
    assert "resumed from" in outs[0]
    best = load_checkpoint(str(folders[0] / "weights/nodes_val-small_s_dev_v0.0.pth"))
    assert best["label_stats"]["n"] == vqa_data.n  # calibrated (on both ranks, from rank 0's file)
    assert load_checkpoint(str(folders[0] / "runs/nodes/last.pth"))["epoch"] == 1
    assert not (folders[1] / "weights").exists()
