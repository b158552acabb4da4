"""Helpers shared by the test files (``from helpers import ...``; pytest puts ``tests/`` on ``sys.path``)."""
import os
import socket
import subprocess
import sys
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny Swin-V2 the IQA tests train (timm arguments), and a 4x4 grid of 16x16 fragments (64x64 input).
SMALL_SWIN = {"embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 2, 4]}
GRID = {"fwin_h": 4, "fwin_w": 4, "fsize_h": 16, "fsize_w": 16}

# The tiny VQA data of conftest.vqa_data: N_VIDEOS videos, FRAG sampling, the nano Swin MODEL options.
N_VIDEOS = 8
# 2x2 fragments of 32x32 over 8-frame clips: the smallest input the tiny Swin backbone accepts.
FRAG = dict(fragments_h=2, fragments_w=2, fsize_h=32, fsize_w=32, aligned=8, clip_len=8, frame_interval=1)
MODEL = {"type": "DiViDeAddEvaluator",
         "args": {"backbone": {"fragments": {"checkpoint": False, "pretrained": None}},
                  "backbone_size": "swin_nano_grpb", "backbone_preserve_keys": "fragments", "divide_head": False,
                  "vqa_head": {"in_channels": 192, "hidden_channels": 16}}}


def vqa_train_options(root, name: str, stype: str = "fragments", val_clips: int = 2, **over) -> dict:
    """Training options over ``conftest.vqa_data`` (``root``): its train and ``val-small`` sets with FRAG
    sampling (``val_clips`` test clips), the nano MODEL from its K400-style weights; ``over`` replaces keys."""
    def dataset(phase: str, labels: str, clips: int) -> dict:
        return {"type": "FusionDataset", "args": {
            "phase": phase, "anno_file": str(root / labels), "data_prefix": str(root / "videos"),
            "sample_types": {"fragments": dict(FRAG, num_clips=clips)}}}

    opt = {"name": name, "num_epochs": 2, "l_num_epochs": 0, "warmup_epochs": 0.5, "ema": True, "save_model": True,
           "train_batch_size": 4, "train_num_workers": 0, "test_batch_size": 2, "test_num_workers": 0,
           "stype": stype, "progress": False, "seed": 3, "device": "cpu",
           "data": {"train": dataset("train", "labels.txt", 1), "val-small": dataset("test", "val.txt", val_clips)},
           "model": MODEL, "optimizer": {"lr": 1e-3, "backbone_lr_mult": 0.1, "wd": 0.05},
           "load_path": str(root / "k400_nano.pth")}
    opt.update(over)
    return opt


def write_yaml(path, opt: dict) -> str:
    """Write ``opt`` as a YAML option file at ``path``; returns the path as a string."""
    import yaml

    with open(path, "w") as f:
        yaml.safe_dump(opt, f)
    return str(path)


def write_graded_images(folder, names: Sequence[str], levels: Sequence[float], sizes: Sequence[Tuple[int, int]],
                        label_digits: int, label_div: float = 10.0, seed: int = 0) -> List[str]:
    """Noisy grey-ish images of brightness ``levels[i]`` (size ``sizes[i]`` = (h, w)), so a model has something to
    learn; writes ``folder/info.txt`` with ``name label`` lines (label = level / label_div) and returns the lines."""
    rng = np.random.default_rng(seed)
    lines = []
    for name, level, (h, w) in zip(names, levels, sizes):
        img = np.clip(level + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(str(folder), name))
        lines.append(f"{name} {level / label_div:.{label_digits}f}")
    with open(os.path.join(str(folder), "info.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: str, args: Sequence[str], cwd, nproc: int = 2, timeout: int = 300,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run ``script args`` under ``torch.distributed.run`` (``nproc`` CPU processes, one thread each, the repo's
    packages importable); with ``check``, asserts it succeeded; returns the finished process (stdout / stderr as
    text). No CUDA device is visible to the processes, so they use the CPU and gloo on a GPU host too."""
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=os.pathsep.join(
        [REPO, os.path.join(REPO, "VQA"), os.path.join(REPO, "IQA"), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(script), *args]
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def read_only_folder(tmp_path) -> str:
    """A folder in which no file can be made: a chmod-ed one, or (as root, to whom modes do not apply) /sys;
    skips the test when there is none."""
    import pytest
    import tempfile

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (str(folder), "/sys"):
        try:
            tempfile.TemporaryFile(dir=candidate).close()
        except OSError:
            return candidate
    pytest.skip("no read-only folder on this machine")


def result_row(summary: dict, set_name=None, split=None) -> dict:
    """The row of a run's summary.json (``samacore.summary``) for validation set ``set_name`` (None: any) and
    ``split`` (None: any)."""
    rows = [r for r in summary["results"] if (set_name is None or r["set"] == set_name)
            and (split is None or r["split"] == split)]
    assert len(rows) == 1, (set_name, split, summary["results"])
    return rows[0]


def rows_by_set(summary: dict) -> dict:
    """``{set: row}`` of a one-split run's summary.json."""
    return {r["set"]: r for r in summary["results"]}
