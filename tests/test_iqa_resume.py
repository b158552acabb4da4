"""Run safety of the IQA trainer: an interrupted multi-split run resumed with ``--resume`` ends exactly as an
uninterrupted one; bf16 autocast for training and testing.

Deterministic mode, a tiny Swin-V2 with dropout and stochastic depth left on (so the restored RNG states
matter), 10 tiny synthetic images, 2 splits x 2 epochs. Interruptions: ``--stop-after-epochs 1`` after epoch 0
of split 0 (mid-split), then again after epoch 1 of split 0 (the split's training done, its calibration not).
"""
import csv
import json

import numpy as np
import pytest
import torch
import yaml

from helpers import GRID, SMALL_SWIN
from samacore.checkpoint import CheckpointError, load_checkpoint
from samacore.options import OptionError
from samaiqa import cli

SMALL_MODEL = {"backbone_args": SMALL_SWIN}
NAME = "res"


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.fixture(scope="module")
def images(iqa_images):
    """10 small images whose label is their brightness (conftest.iqa_images); returns the label file."""
    return iqa_images


def options(info, path, run_dir, **over):
    opt = {"name": NAME, "stype": "sama", "num_epochs": 2, "warmup_epochs": 1, "batch_size": 4, "num_workers": 0,
           "test_batch_size": 2, "test_num_workers": 0, "num_splits": 2, "deterministic": True, "seed": 5,
           "device": "cpu",
           "data": {"database": "syn", "data_info": str(info), "data_prefix": str(info.parent), **GRID},
           "model": dict(SMALL_MODEL, drop_path_rate=0.2, dropout_ratio=0.5), "run_dir": str(run_dir),
           "progress": False}
    opt.update(over)
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def outcome(run):
    """What must not depend on interruptions: summary.json (without file paths), every logged row, the best
    checkpoints' weights and calibration statistics."""
    res = json.load(open(run / "summary.json"))
    res.pop("run_dir")
    for r in res["results"]:
        r.pop("checkpoint")
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    split_rows = list(csv.DictReader(open(run / "split_01" / "metrics.csv")))
    ckpts = [load_checkpoint(str(run / f"{NAME}_split{s:02d}_syn_s_dev.pth")) for s in (0, 1)]
    return res, rows, split_rows, ckpts


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests (a module fixture is set up before the autouse one): same kernels
    try:
        cli.train_main(["-o", options(images, folder / "o.yml", folder / "run")])
    finally:
        torch.set_num_threads(n)
    return folder / "run", outcome(folder / "run")


def test_interrupted_twice_then_resumed_matches_uninterrupted(images, reference, tmp_path):
    opt = options(images, tmp_path / "o.yml", tmp_path / "run")
    run = tmp_path / "run"
    first = cli.train_main(["-o", opt, "--stop-after-epochs", "1"])
    assert "split 00 epoch 00" in first["stopped"] and first["results"] == []
    state = load_checkpoint(str(run / "last.pth"))
    assert (state["split"], state["epoch"], state["per_split"]) == (0, 0, [])
    assert {"model", "ema", "optimizer", "scheduler", "rng", "best", "log_rows"} <= set(state)

    second = cli.train_main(["-o", opt, "--resume", str(run), "--stop-after-epochs", "1"])
    assert "split 00 epoch 01" in second["stopped"] and second["results"] == []  # stopped before calibration
    assert "label_stats" in load_checkpoint(str(run / f"{NAME}_split00_syn_s_dev.pth"))
    assert "pred_mean" not in load_checkpoint(str(run / f"{NAME}_split00_syn_s_dev.pth"))["label_stats"]

    done = cli.train_main(["-o", opt, "--resume", str(run / "last.pth")])
    assert "stopped" not in done and [r["split"] for r in done["results"]] == [0, 1]
    got, want = outcome(run), reference[1]
    assert got[0] == want[0]  # per-split best / final / selected metrics and their median, exactly
    assert got[1] == want[1] and len(got[1]) == 4  # every logged row (loss, lrs, metrics), exactly
    assert got[2] == want[2]
    for a, b in zip(got[3], want[3]):
        assert a["label_stats"] == b["label_stats"] and a["epoch"] == b["epoch"]
        for k, v in a["state_dict"].items():
            assert torch.equal(v, b["state_dict"][k]), k


def test_resume_errors(images, reference, tmp_path):
    opt = options(images, tmp_path / "o.yml", tmp_path / "run")
    with pytest.raises(CheckpointError, match="has no last.pth"):
        cli.train_main(["-o", opt, "--resume", str(tmp_path)])
    with pytest.raises(CheckpointError, match="not a resumable training state"):
        cli.train_main(["-o", opt, "--resume", str(reference[0] / f"{NAME}_split00_syn_s_dev.pth")])
    with pytest.raises(OptionError, match=r"options differ from the run's: num_splits: 2 -> 3"):
        cli.train_main(["-o", options(images, tmp_path / "o3.yml", tmp_path / "run", num_splits=3),
                        "--resume", str(reference[0])])
    with pytest.raises(Exception, match="amp: unknown mixed-precision mode 'fp8'"):
        cli.train_main(["-o", options(images, tmp_path / "o4.yml", tmp_path / "run", amp="fp8")])


def test_bf16_training_and_testing(images, reference, tmp_path):
    summary = cli.train_main(["-o", options(images, tmp_path / "o.yml", tmp_path / "run", num_splits=1, num_epochs=1),
                              "--bf16"])
    assert np.isfinite([summary["aggregate"]["best_per_metric"]["median"][m] for m in ("srcc", "plcc", "krcc", "rmse")]).all()
    assert yaml.safe_load(open(tmp_path / "run" / "options.yml"))["amp"] == "bf16"
    best = str(reference[0] / f"{NAME}_split00_syn_s_dev.pth")
    test_opt = options(images, tmp_path / "t.yml", tmp_path / "test", load_path=best)
    cli.test_main(["-o", test_opt, "--output", str(tmp_path / "a.csv")])
    cli.test_main(["-o", test_opt, "--output", str(tmp_path / "b.csv"), "--bf16"])
    pa = [float(r["pred"]) for r in csv.DictReader(open(tmp_path / "a.csv"))]
    pb = [float(r["pred"]) for r in csv.DictReader(open(tmp_path / "b.csv"))]
    assert len(pa) == 10 and pa != pb
    assert np.allclose(pb, pa, rtol=0.05, atol=0.05 * np.std(pa) + 1e-3)
