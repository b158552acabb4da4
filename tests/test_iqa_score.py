"""IQA/iqa.py (samaiqa.score): single-image output, CSV with the calibrated column, determinism, bad images,
checkpoint discovery, and the calibration statistics the trainer stores."""
import csv
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from helpers import GRID, REPO, SMALL_SWIN
from samaiqa import cli, score
from samaiqa.checkpoints import read_checkpoint_info, save_model_checkpoint
from samaiqa.datasets import ImageDataset
from samaiqa.model import IQAModel

STATS = {"mean": 5.0, "std": 2.0, "n": 9, "pred_mean": 0.01, "pred_std": 0.05}


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def small_checkpoint(path, label_stats=STATS, seed=0):
    torch.manual_seed(seed)
    model = IQAModel(img_size=64, **SMALL_SWIN)
    extra = {"data": dict(GRID, exif_transpose=False), "stype": "sama"}
    if label_stats is not None:
        extra["label_stats"] = dict(label_stats)
    save_model_checkpoint(str(path), model, **extra)
    return str(path), model


def make_images(folder, n=5):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        p = os.path.join(folder, f"im{i}.png")
        Image.fromarray(rng.integers(0, 256, (48 + 5 * i, 70, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def read_rows(path):
    return list(csv.DictReader(open(path)))


def test_single_image_prints_its_score(tmp_path, capsys):
    ckpt, model = small_checkpoint(tmp_path / "c.pth")
    img = make_images(str(tmp_path), 1)[0]
    assert score.main(["-i", img, "--ckpt", ckpt]) == 0
    out = capsys.readouterr()
    with torch.no_grad():
        want = float(model.eval()(ImageDataset([img], [0.0], data_args=GRID, stype="sama")[0]["image"][None])[0])
    cal = STATS["mean"] + STATS["std"] * (want - STATS["pred_mean"]) / STATS["pred_std"]
    assert out.out.strip() == f"{img}: score {want:.6f}, calibrated {cal:.4f}"
    assert "calibrated = 5 + 2 * (score - 0.01) / 0.05" in out.err


def test_many_images_csv_with_calibrated_column_and_bad_image_row(tmp_path, capsys):
    ckpt, model = small_checkpoint(tmp_path / "c.pth")
    paths = make_images(str(tmp_path), 4)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is text, not a PNG")
    paths.insert(2, str(bad))
    out = tmp_path / "scores.csv"
    assert score.main(["-i", *paths[:3], "-i", *paths[3:], "--ckpt", ckpt, "--output", str(out), "--batch-size", "2"]) == 0
    rows = read_rows(out)
    assert list(rows[0]) == ["name", "score", "calibrated", "error", "note"]
    assert [r["name"] for r in rows] == paths
    assert rows[2]["score"] == "" and rows[2]["calibrated"] == ""
    assert "bad.png" in rows[2]["error"] and "not an image file" in rows[2]["error"]
    good = [r for i, r in enumerate(rows) if i != 2]
    ds = ImageDataset([r["name"] for r in good], [0.0] * 4, data_args=GRID, stype="sama")
    with torch.no_grad():
        want = model.eval()(torch.stack([ds[i]["image"] for i in range(4)])).tolist()
    got = [float(r["score"]) for r in good]
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    for r in good:
        assert r["error"] == ""
        assert float(r["calibrated"]) == pytest.approx(5.0 + 2.0 * (float(r["score"]) - 0.01) / 0.05, rel=1e-9)
    assert "bad.png" in capsys.readouterr().err


def test_scores_identical_across_batch_sizes_workers_and_runs(tmp_path):
    ckpt, _ = small_checkpoint(tmp_path / "c.pth")
    folder = tmp_path / "imgs"
    folder.mkdir()
    make_images(str(folder), 5)
    texts = []
    for bs, nw in ((1, 0), (3, 0), (3, 2), (1, 0)):
        out = tmp_path / f"s{bs}{nw}.csv"
        assert score.main(["--dir", str(folder), "--ckpt", ckpt, "--output", str(out), "--batch-size", str(bs),
                           "--num-workers", str(nw), "--no-progress", "--overwrite"]) == 0
        texts.append(out.read_text())
    assert [r["name"] for r in read_rows(tmp_path / "s10.csv")] == [f"im{i}.png" for i in range(5)]
    # the same settings twice, and the same batch with or without workers: bit-identical on CPU
    assert texts[3] == texts[0] and texts[2] == texts[1]
    # another batch size may take other matmul kernels (CPU-dependent blocking): equal to float32 rounding
    rows1, rows3 = read_rows(tmp_path / "s10.csv"), read_rows(tmp_path / "s30.csv")
    assert [r["name"] for r in rows3] == [r["name"] for r in rows1]
    for col in ("score", "calibrated"):
        assert [float(r[col]) for r in rows3] == pytest.approx([float(r[col]) for r in rows1], rel=1e-5, abs=1e-6)


def test_all_bad_exits_nonzero_and_missing_stats_leave_calibrated_empty(tmp_path, capsys):
    ckpt, _ = small_checkpoint(tmp_path / "c.pth", label_stats={"mean": 5.0, "std": 2.0, "n": 9})
    (tmp_path / "a.jpg").write_bytes(b"")
    out = tmp_path / "o.csv"
    assert score.main(["-i", str(tmp_path / "a.jpg"), str(tmp_path / "gone.png"), "--ckpt", ckpt,
                       "--output", str(out)]) == 1
    rows = read_rows(out)
    assert "empty file" in rows[0]["error"] and "image not found" in rows[1]["error"]
    img = make_images(str(tmp_path), 1)[0]
    assert score.main(["-i", img, "--ckpt", ckpt, "--output", str(out), "--overwrite"]) == 0
    assert read_rows(out)[0]["calibrated"] == "" and read_rows(out)[0]["score"] != ""
    assert "label_stats lack pred_mean, pred_std" in capsys.readouterr().err
    nostats, _ = small_checkpoint(tmp_path / "n.pth", label_stats=None)
    cal, note = score.calibration_from_info(read_checkpoint_info(nostats))
    assert cal is None and "no label_stats" in note


def test_default_checkpoint_choice_and_no_checkpoint_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(score, "default_search_roots", lambda: [str(tmp_path)])
    img = make_images(str(tmp_path), 1)[0]
    assert score.main(["-i", img]) == 2
    err = capsys.readouterr().err
    assert "no IQA checkpoint given" in err and "pretrained_weights/SAMA-IQA-sama-koniq_koniq_s_dev.pth" in err
    assert "tools/build_examplar_data.py --only iqa" in err and "--ckpt" in err

    older, _ = small_checkpoint(tmp_path / "runs" / "a" / "ex_split00_examplar_s_dev.pth")
    newer, _ = small_checkpoint(tmp_path / "runs" / "b" / "ex_split01_examplar_s_dev.pth", seed=1)
    os.utime(older, (time.time() - 100, time.time() - 100))
    assert score.find_default_checkpoint([str(tmp_path)])[0] == os.path.abspath(newer)
    assert score.main(["-i", img]) == 0
    assert f"checkpoint: {os.path.abspath(newer)}" in capsys.readouterr().err
    released = tmp_path / score.RELEASED_WEIGHTS
    released.parent.mkdir()
    released.write_bytes(b"x")
    assert score.find_default_checkpoint([str(tmp_path)])[0] == str(released)


def test_options_file_and_stype_override(tmp_path):
    ckpt, model = small_checkpoint(tmp_path / "c.pth")
    img = make_images(str(tmp_path), 1)[0]
    opt = tmp_path / "o.yml"
    opt.write_text(yaml.safe_dump({"stype": "fragment", "data": dict(GRID)}))
    scorer = score.load_scorer(ckpt, str(opt), device="cpu")
    assert scorer.stype == "fragment"
    got = scorer.score_paths([img], progress=False)[0].score
    with torch.no_grad():
        want = float(model.eval()(ImageDataset([img], [0.0], data_args=GRID, stype="fragment")[0]["image"][None])[0])
    assert got == pytest.approx(want, rel=1e-6)
    assert score.load_scorer(ckpt, None, "sama-spm", device="cpu").stype == "sama-spm"
    opt.write_text(yaml.safe_dump({"data": {"fwin_h": 8, "fwin_w": 8, "fsize_h": 32, "fsize_w": 32}}))
    with pytest.raises(Exception, match="64x64 inputs but the sampling grid gives 256x256"):
        score.load_scorer(ckpt, str(opt), device="cpu")


def test_trainer_stores_calibration_that_maps_training_scores_to_label_moments(tmp_path):
    """After a split, the best checkpoint's label_stats hold the model's test-mode score mean/std on the training
    images; so the calibrated scores of those images have exactly the training labels' mean and std."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(10):
        level = 30 + 20 * i
        Image.fromarray(np.clip(level + rng.normal(0, 15, (44, 60, 3)), 0, 255).astype(np.uint8)).save(tmp_path / f"t{i}.png")
        lines.append(f"t{i}.png {level / 10:.2f}")
    (tmp_path / "info.txt").write_text("\n".join(lines) + "\n")
    opt = {"name": "cal", "stype": "sama", "num_epochs": 1, "warmup_epochs": 1, "batch_size": 4, "num_workers": 0,
           "test_batch_size": 4, "test_num_workers": 0, "num_splits": 1, "device": "cpu",  # as the scorer below
           "data": {"database": "syn", "data_info": str(tmp_path / "info.txt"), "data_prefix": str(tmp_path), **GRID},
           "model": {"backbone_args": SMALL_SWIN}, "run_dir": str(tmp_path / "run"), "progress": False}
    (tmp_path / "t.yml").write_text(yaml.safe_dump(opt))
    summary = cli.train_main(["-o", str(tmp_path / "t.yml"), "--no-progress"])
    ckpt = summary["results"][0]["checkpoint"]
    stats = read_checkpoint_info(ckpt)["label_stats"]
    train_idx = __import__("json").load(open(tmp_path / "run" / "splits.json"))["splits"][0]["train"]
    labels = np.array([float(l.split()[1]) for l in lines])[train_idx]
    assert stats["mean"] == pytest.approx(labels.mean(), rel=1e-6) and stats["std"] == pytest.approx(labels.std(), rel=1e-6)
    assert stats["pred_std"] > 0 and stats["n"] == len(train_idx)
    scorer = score.load_scorer(ckpt, device="cpu")
    rows = scorer.score_paths([str(tmp_path / f"t{i}.png") for i in train_idx], progress=False)
    assert np.mean([r.score for r in rows]) == pytest.approx(stats["pred_mean"], rel=1e-5, abs=1e-6)
    cal = np.array([r.calibrated for r in rows])
    assert cal.mean() == pytest.approx(labels.mean(), rel=1e-4) and cal.std() == pytest.approx(labels.std(), rel=1e-3)


def test_wrapper_script_runs_from_a_checkout(tmp_path):
    ckpt, _ = small_checkpoint(tmp_path / "c.pth")
    img = make_images(str(tmp_path), 1)[0]
    env = dict(os.environ, PYTHONPATH="")
    res = subprocess.run([sys.executable, os.path.join(REPO, "IQA", "iqa.py"), "-i", img, "--ckpt", ckpt,
                          "--device", "cpu"], capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{img}: score ") and ", calibrated " in res.stdout
