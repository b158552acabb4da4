"""torchrun (DDP, gloo, 2 CPU processes) trains the IQA model like one process.

One split, one epoch: 2 processes x batch 2 against 1 process x batch 4 on the same 12 training images, in
deterministic mode (every item's random augmentation and fragment offsets depend only on seed, epoch and index)
with dropout and stochastic depth off. The global batches and (through the gathered loss) the gradients are
those of the one-process run, up to float summation order, so losses, metrics and weights agree to ~1e-5.
The sharded evaluation (3 test images over 2 ranks, gathered back) must cover every image once, in order.
"""
import csv
import json
import os

import pytest
import torch
import yaml

from helpers import GRID, REPO, SMALL_SWIN, torchrun, write_graded_images
from samacore.checkpoint import load_checkpoint
from samaiqa import cli

MODEL = {"backbone_args": SMALL_SWIN,
         "drop_path_rate": 0.0, "dropout_ratio": 0.0, "hidden_channels": 16}




def options(tmp_path, batch, run):
    # 15 images, make_splits: 12 train (divisible by the global batch 4) / 3 test; rewritten identically (same seed)
    write_graded_images(tmp_path, [f"im{i}.png" for i in range(15)], [20 + 14 * i for i in range(15)],
                        [(36 + i, 50) for i in range(15)], label_digits=1, label_div=1, seed=1)
    opt = {"name": "ddp", "stype": "sama", "num_epochs": 1, "warmup_epochs": 0.5, "batch_size": batch,
           "num_workers": 0, "test_batch_size": 1, "test_num_workers": 0, "num_splits": 1, "deterministic": True,
           "device": "cpu",
           "seed": 3, "data": {"database": "syn", "data_info": str(tmp_path / "info.txt"),
                               "data_prefix": str(tmp_path), **GRID},
           "model": MODEL, "optimizer": {"lr": 1e-3, "backbone_lr_mult": 0.5, "wd": 0.05},
           "run_dir": str(tmp_path / run), "progress": False}
    path = tmp_path / f"{run}.yml"
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def test_two_processes_match_one(tmp_path, one_thread):
    r = torchrun(os.path.join(REPO, "IQA", "demo_train_iqa_baseline.py"), ["-o", options(tmp_path, 2, "two")], tmp_path)
    assert "torchrun: 2 processes" in r.stdout and r.stdout.count("split 00 epoch 00:") == 1  # rank 0 logs
    assert not os.path.exists(tmp_path / "two" / "skipped.txt.rank1")

    one = cli.train_main(["-o", options(tmp_path, 4, "one")])
    two = json.load(open(tmp_path / "two" / "summary.json"))
    for key in ("best_per_metric", "final"):
        for m in ("srcc", "plcc", "krcc", "rmse"):
            assert two["results"][0][key][m] == pytest.approx(one["results"][0][key][m], abs=1e-5)
    rows = [list(csv.DictReader(open(tmp_path / d / "metrics.csv"))) for d in ("one", "two")]
    assert len(rows[0]) == len(rows[1]) == 1 and rows[1][0]["n"] == "3"  # every test image once
    for key in ("loss", "train_srcc", "lr_head", "srcc", "plcc", "rmse"):
        assert float(rows[1][0][key]) == pytest.approx(float(rows[0][0][key]), abs=1e-5), key
    c1 = load_checkpoint(str(tmp_path / "one" / "ddp_split00_syn_s_dev.pth"))
    c2 = load_checkpoint(str(tmp_path / "two" / "ddp_split00_syn_s_dev.pth"))
    for k, v in c1["state_dict"].items():
        assert torch.allclose(v.float(), c2["state_dict"][k].float(), atol=1e-5), k
    # calibration scored all 12 training images once over the two ranks
    assert c2["label_stats"]["n"] == 12
    assert c2["label_stats"]["pred_mean"] == pytest.approx(c1["label_stats"]["pred_mean"], abs=1e-5)
