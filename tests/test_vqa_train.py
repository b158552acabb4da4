"""End-to-end smoke runs of the VQA commands on tiny synthetic videos with the tiny backbone.

train (2 epochs) -> per-epoch + best checkpoints, metrics.csv, summary; test with the best checkpoint reproduces
its stored validation metrics and writes name,pred,gt; finetune runs two splits; bad options fail clearly.
The smoke run's sets also hold an unreadable video: it is skipped (skipped.txt), validation and test metrics
cover the other videos, and test writes an error row for it. The best checkpoint carries calibration statistics
that make vqa.py's calibrated scores of the training videos match the labels' mean and std.
"""
import csv
import json
import os
import shutil

import numpy as np
import pytest
import torch
import yaml

from helpers import result_row, FRAG, MODEL, N_VIDEOS, vqa_train_options, write_yaml
from samacore.checkpoint import CheckpointError, load_checkpoint
from samacore.options import OptionError
from samavqa import cli



BROKEN = "broken.mp4"
BROKEN_LABEL = 99.0


@pytest.fixture(scope="module")
def workdir(vqa_data):
    """The shared tiny videos (tests/conftest.py); this module's outputs go beside them. ``mixed/`` holds copies
    of the videos plus an unreadable one, listed (last) in ``labels_mixed.txt`` and ``val_mixed.txt``."""
    root = vqa_data.root
    if not (root / "mixed").exists():
        os.makedirs(root / "mixed")
        for i in range(N_VIDEOS):
            shutil.copy(root / "videos" / f"v{i}.mp4", root / "mixed" / f"v{i}.mp4")
        (root / "mixed" / BROKEN).write_bytes(b"this is not a video file " * 40)
        extra = f"{BROKEN},-1,-1,{BROKEN_LABEL}\n"
        (root / "labels_mixed.txt").write_text((root / "labels.txt").read_text() + extra)
        (root / "val_mixed.txt").write_text((root / "val.txt").read_text() + extra)
    return root


def write_opt(root, name, mixed=False, **over):
    opt = vqa_train_options(root, name)
    if mixed:  # sets with an unreadable video (1 of 9 train, 1 of 5 val videos)
        for key, labels in (("train", "labels_mixed.txt"), ("val-small", "val_mixed.txt")):
            opt["data"][key]["args"].update(anno_file=str(root / labels), data_prefix=str(root / "mixed"))
        opt["max_bad_fraction"] = 0.25
    opt.update(over)
    return write_yaml(root / f"{name}.yml", opt)


@pytest.fixture(scope="module")
def trained(workdir):
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        summary = cli.train_main(["-o", write_opt(workdir, "smoke", mixed=True), "--no-progress"])
    finally:
        os.chdir(cwd)
    return summary


def test_train_writes_checkpoints_metrics_and_summary(workdir, trained):
    wdir = workdir / "pretrained_weights"
    for ep in (0, 1):
        ck = load_checkpoint(str(wdir / f"smoke_Epoch_{ep:02d}.pth"))
        assert "fragments_backbone.patch_embed.proj.weight" in ck["state_dict"]
    best = load_checkpoint(str(wdir / "smoke_val-small_s_dev_v0.0.pth"))
    labels = [10.0 + 5 * (1 + 2 * i) for i in range(N_VIDEOS)]  # the readable training videos
    stats = best["label_stats"]
    assert stats["mean"] == pytest.approx(np.mean(labels)) and stats["n"] == N_VIDEOS
    assert stats["std"] == pytest.approx(np.std(labels))
    assert np.isfinite(stats["pred_mean"]) and stats["pred_std"] > 0 and stats["pred_source"]
    assert result_row(trained, "val-small")["calibration"] == stats
    assert set(best["validation_results"]) >= {"srcc", "plcc", "krcc", "rmse"}
    # the raw and EMA weights differ (evaluation and the best checkpoint use the EMA model)
    last = load_checkpoint(str(wdir / "smoke_Epoch_01.pth"))["state_dict"]
    key = "vqa_head.fc_last.weight"
    assert not torch.equal(last[key], best["state_dict"][key])

    run = workdir / "runs" / "smoke"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    val = [r for r in rows if r["set"] == "val-small"]
    assert [int(r["epoch"]) for r in val] == [0, 1]
    assert all(int(r["n"]) == N_VIDEOS // 2 for r in val)  # the unreadable video is left out
    # the unreadable video: listed once with its reason and every set it was met in
    skipped = (run / "skipped.txt").read_text().splitlines()
    assert len(skipped) == 1
    name, reason, where = skipped[0].split("\t")
    assert name.endswith(BROKEN) and "not a readable video" in reason
    assert "train set train" in where and "validation set val-small" in where
    assert trained["skipped"]["count"] == 1
    for r in val:
        assert all(r[m] not in ("", None) for m in ("srcc", "plcc", "krcc", "rmse"))
    assert any(r["set"] == "train" and float(r["loss"]) > 0 for r in rows)
    assert (run / "options.yml").exists() and (run / "metrics.jsonl").exists()
    summary = json.load(open(run / "summary.json"))
    assert result_row(summary, "val-small")["final_epoch"] == 1
    assert "own best epoch" in summary["protocol"]
    assert result_row(trained, "val-small")["checkpoint"].endswith("smoke_val-small_s_dev_v0.0.pth")


def test_test_command_reproduces_stored_validation(workdir, trained, tmp_path):
    ckpt = str(workdir / "pretrained_weights" / "smoke_val-small_s_dev_v0.0.pth")
    out = tmp_path / "pred.csv"
    opt = write_opt(workdir, "smoke-test", mixed=True, load_path=ckpt, run_dir=str(tmp_path / "run"))
    summary = cli.test_main(["-o", opt, "--output", str(out), "--no-progress"])
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["name", "pred", "gt", "error"] and len(rows) == N_VIDEOS // 2 + 1
    assert [r["name"] for r in rows] == [f"v{i}.mp4" for i in range(0, N_VIDEOS, 2)] + [BROKEN]
    assert all(np.isfinite(float(r["pred"])) and r["error"] == "" for r in rows[:-1])
    # the unreadable video: an error row (no prediction, its label, why), left out of the metrics
    assert rows[-1]["pred"] == "" and float(rows[-1]["gt"]) == BROKEN_LABEL
    assert "not a readable video" in rows[-1]["error"]
    listed = (tmp_path / "run" / "test" / "skipped.txt").read_text().splitlines()  # the test run's own folder
    assert len(listed) == 1 and listed[0].split("\t")[0].endswith(BROKEN)
    stored = load_checkpoint(ckpt)["validation_results"]
    got = result_row(summary, "val-small")["metrics"]
    assert got["n"] == N_VIDEOS // 2
    for m in ("srcc", "plcc", "krcc", "rmse"):
        assert got[m] == pytest.approx(stored[m], abs=1e-5)


def test_vqa_py_calibrates_with_the_best_checkpoint(workdir, trained, tmp_path):
    """The stored statistics are the model's test-mode scores of its training videos, with the sampling vqa.py
    uses: so calibrated scores of those videos have exactly the training labels' mean and std."""
    from samavqa import score

    ckpt = str(workdir / "pretrained_weights" / "smoke_val-small_s_dev_v0.0.pth")
    out = tmp_path / "scores.csv"
    videos = [str(workdir / "videos" / f"v{i}.mp4") for i in range(N_VIDEOS)]
    assert score.main(["-v", *videos, "--ckpt", ckpt, "--output", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out)))
    raw = np.array([float(r["score"]) for r in rows])
    cal = np.array([float(r["calibrated"]) for r in rows])
    stats = load_checkpoint(ckpt)["label_stats"]
    assert raw.mean() == pytest.approx(stats["pred_mean"], abs=1e-5)
    assert raw.std() == pytest.approx(stats["pred_std"], rel=1e-4)
    labels = [10.0 + 5 * (1 + 2 * i) for i in range(N_VIDEOS)]
    assert cal.mean() == pytest.approx(np.mean(labels), abs=1e-3)
    assert cal.std() == pytest.approx(np.std(labels), rel=1e-3)
    np.testing.assert_allclose(cal, stats["mean"] + stats["std"] * (raw - stats["pred_mean"]) / stats["pred_std"],
                               rtol=1e-9)


def test_finetune_two_splits(workdir, trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = str(workdir / "pretrained_weights" / "smoke_val-small_s_dev_v0.0.pth")
    opt = {"name": "ft", "split_seed": 10, "num_splits": 2, "num_epochs": 1, "l_num_epochs": 0, "warmup_epochs": 0.5,
           "ema": True, "save_model": True, "train_batch_size": 3, "train_num_workers": 0, "test_batch_size": 2,
           "test_num_workers": 0, "stype": "sama", "progress": False,
           "data": {"database": "tiny", "type": "FineTuneDataset", "anno_file": str(workdir / "labels.txt"),
                    "data_prefix": str(workdir / "videos"),
                    "train": {"sample_types": {"fragments": dict(FRAG, num_clips=1)}},
                    "test": {"sample_types": {"fragments": dict(FRAG, num_clips=2)}}},
           "model": MODEL, "optimizer": {"lr": 1e-3, "backbone_lr_mult": 0.1, "wd": 0.05}, "load_path": ckpt}
    (tmp_path / "ft.yml").write_text(yaml.safe_dump(opt))
    summary = cli.finetune_main(["-o", "ft.yml", "--no-progress"])
    assert summary["num_splits"] == 2 and [s["split"] for s in summary["results"]] == [0, 1]
    for s in (0, 1):
        assert (tmp_path / "pretrained_weights" / f"ft_split{s:02d}_tiny_s_dev_v0.0.pth").exists()
    srccs = [s["best_per_metric"]["srcc"] for s in summary["results"]]
    for s in summary["results"]:  # each split's checkpoint calibrated on its own training videos (80% of 8)
        ck = load_checkpoint(str(tmp_path / "pretrained_weights" / f"ft_split{s['split']:02d}_tiny_s_dev_v0.0.pth"))
        assert ck["label_stats"] == s["calibration"] and ck["label_stats"]["n"] == int(0.8 * N_VIDEOS)
        assert ck["label_stats"]["pred_std"] > 0
    assert summary["aggregate"]["best_per_metric"]["median"]["srcc"] == pytest.approx(np.nanmedian(srccs))
    # the splits are the original protocol's: random.Random(split * 123) over the label file, first 80% train
    rows = list(csv.DictReader(open(tmp_path / "runs" / "ft" / "metrics.csv")))
    assert {r["split"] for r in rows} == {"0", "1"}


def test_option_errors(workdir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionError, match=r"valid types: fragments, sama, sama-c"):
        cli.train_main(["-o", write_opt(workdir, "e1", stype="samaa")])
    with pytest.raises(OptionError, match=r"registered backbones: .*swin_tiny_grpb"):
        bad = {**MODEL, "args": {**MODEL["args"], "backbone_size": "swin_huge"}}
        cli.train_main(["-o", write_opt(workdir, "e2", model=bad)])
    with pytest.raises(OptionError, match=r"num_epoch.*did you mean 'num_epochs'"):
        cli.train_main(["-o", write_opt(workdir, "e3", num_epoch=3)])
    data = yaml.safe_load(open(write_opt(workdir, "e4")))["data"]
    data["train"]["args"]["anno_file"] = str(tmp_path / "missing_labels.txt")
    with pytest.raises(FileNotFoundError, match="missing_labels.txt"):
        cli.train_main(["-o", write_opt(workdir, "e4", data=data)])
    with pytest.raises(CheckpointError, match="no_such.pth"):
        cli.test_main(["-o", write_opt(workdir, "e5", load_path=str(tmp_path / "no_such.pth"))])
    # a K400 (backbone-only) file is not a complete SAMA model: testing with it must not silently half-load
    with pytest.raises(CheckpointError):
        cli.finetune_main(["-o", _ft_opt(workdir, tmp_path, load_path=str(workdir / "k400_nano.pth"))])


def _ft_opt(workdir, tmp_path, **over):
    opt = {"name": "ftbad", "num_epochs": 1, "stype": "fragments", "progress": False,
           "data": {"database": "tiny", "type": "FineTuneDataset", "anno_file": str(workdir / "labels.txt"),
                    "data_prefix": str(workdir / "videos"),
                    "train": {"sample_types": {"fragments": dict(FRAG, num_clips=1)}},
                    "test": {"sample_types": {"fragments": dict(FRAG, num_clips=2)}}},
           "model": MODEL, **over}
    path = tmp_path / "ftbad.yml"
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def test_demo_script_reports_option_errors_in_one_line(workdir, tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    opt = write_opt(workdir, "e6", stype="sama+xyz")
    r = subprocess.run([sys.executable, os.path.join(repo, "VQA", "demo_test.py"), "-o", opt, "--output",
                        str(tmp_path / "p.csv")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2
    assert r.stderr.startswith("error: options.stype: unknown sample type 'sama+xyz'") and "sama-spm" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "p.csv").exists()
