"""IQA command line: options checking, a two-split training smoke run, and demo_test predictions."""
import csv
import json
import os

import numpy as np
import pytest
import torch
import yaml

from helpers import result_row, GRID, SMALL_SWIN, write_graded_images
from samacore.options import OptionError
from samaiqa import cli
from samaiqa.checkpoints import load_into_model, read_checkpoint_info
from samaiqa.datasets import ImageDataset
from samacore.splits import make_splits
from samaiqa.labels import LabelError

SMALL_MODEL = {"backbone_args": SMALL_SWIN}




def make_images(folder, n=12):
    """Tiny synthetic images whose label is their brightness (so training has something to learn)."""
    write_graded_images(folder, [f"img{i:02d}.png" for i in range(n)], [20 + 200 * i / (n - 1) for i in range(n)],
                        [(40 + i, 56) for i in range(n)], label_digits=3)
    return os.path.join(folder, "info.txt")


def write_options(path, **opt):
    with open(path, "w") as f:
        yaml.safe_dump(opt, f)
    return str(path)


def base_options(tmp_path, info, **extra):
    opt = {"name": "smoke", "stype": "sama", "num_epochs": 2, "warmup_epochs": 1, "ema": True, "save_model": True,
           "batch_size": 4, "num_workers": 0, "test_batch_size": 2, "test_num_workers": 0, "num_splits": 2,
           "data": {"database": "synthetic", "data_info": info, "data_prefix": os.path.dirname(info), **GRID},
           "model": SMALL_MODEL, "optimizer": {"lr": 1e-3, "backbone_lr_mult": 0.1, "wd": 0.05},
           "run_dir": str(tmp_path / "run"), "progress": False}
    opt.update(extra)
    return opt


def test_options_errors(tmp_path):
    info = make_images(str(tmp_path), 2)
    opt = base_options(tmp_path, info, nun_epochs=3)
    with pytest.raises(OptionError, match=r"nun_epochs.*did you mean 'num_epochs'"):
        cli.load_iqa_options(write_options(tmp_path / "o.yml", **opt), train=True)
    opt = base_options(tmp_path, info, stype="fragments")
    with pytest.raises(OptionError, match=r"did you mean 'fragment'"):
        cli.load_iqa_options(write_options(tmp_path / "o.yml", **opt), train=True)
    opt = base_options(tmp_path, info)
    opt["data"]["fwin"] = 3
    with pytest.raises(OptionError, match=r"data\.fwin"):
        cli.load_iqa_options(write_options(tmp_path / "o.yml", **opt), train=True)
    opt = base_options(tmp_path, info)
    with pytest.raises(OptionError, match="load_path is required"):
        cli.load_iqa_options(write_options(tmp_path / "o.yml", **opt), train=False)
    with pytest.raises(OptionError, match="not found"):
        cli.load_iqa_options(str(tmp_path / "nothere.yml"), train=True)


def test_shipped_options_file_is_valid():
    opt = cli.load_iqa_options("options/fast-sama-iqa.yml", train=True)  # found under IQA/ from any cwd
    assert opt["stype"] == "sama" and opt["num_splits"] == 10 and opt["num_epochs"] == 50
    assert opt["data"]["database"] == "koniq" and opt["optimizer"] == {"lr": 1e-3, "backbone_lr_mult": 0.1, "wd": 0.05}
    assert opt["load_path"].endswith("swinv2_tiny_patch4_window8_256.pth")


def test_two_split_training_smoke_run_and_demo_test(tmp_path, one_thread):
    info = make_images(str(tmp_path))
    # start from a backbone-only ImageNet-style file ({"model": ...}), as the paper's recipe does
    torch.manual_seed(0)
    init = cli.build_model(base_options(tmp_path, info))
    torch.save({"model": init.backbone.state_dict()}, tmp_path / "imagenet.pth")
    opt_path = write_options(tmp_path / "train.yml", **base_options(tmp_path, info, load_path=str(tmp_path / "imagenet.pth")))
    summary = cli.train_main(["-o", opt_path, "--no-progress"])
    run = tmp_path / "run"

    splits = json.load(open(run / "splits.json"))
    assert splits["num_items"] == 12 and len(splits["splits"]) == 2
    for s, (train, test) in enumerate(make_splits(12, 2)):
        assert splits["splits"][s]["train"] == train and splits["splits"][s]["test"] == test
        assert len(train) == 9 and len(test) == 3

    results = json.load(open(run / "summary.json"))
    assert len(results["results"]) == 2
    for m in ("srcc", "plcc", "krcc", "rmse"):
        per = [r["best_per_metric"][m] for r in results["results"]]
        assert np.isfinite(per).all()
        assert results["aggregate"]["best_per_metric"]["median"][m] == pytest.approx(float(np.median(per)))
    assert summary["aggregate"] == results["aggregate"]

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [(int(r["split"]), int(r["epoch"])) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert float(rows[1]["lr_head"]) == pytest.approx(1e-3) and float(rows[1]["lr_backbone"]) == pytest.approx(1e-4)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(run / "split_00" / "tensorboard"))

    # best checkpoint of split 0: our format, with the training labels' statistics, loads strictly
    ckpt = result_row(results, split=0)["checkpoint"]
    assert ckpt and os.path.isfile(ckpt)
    meta = read_checkpoint_info(ckpt)
    train_labels = np.array([float(l.split()[1]) for l in open(info)])[splits["splits"][0]["train"]]
    assert meta["label_stats"]["mean"] == pytest.approx(train_labels.mean(), rel=1e-5)
    assert meta["label_stats"]["std"] == pytest.approx(train_labels.std(), rel=1e-5)
    assert meta["split"] == 0 and meta["validation_results"]["srcc"] == pytest.approx(
        result_row(results, split=0)["selected"]["srcc"])
    for s in range(2):  # each split's summary row carries its checkpoint's calibration, as VQA's rows do
        row = result_row(results, split=s)
        assert row["calibration"] == read_checkpoint_info(row["checkpoint"])["label_stats"]

    # demo_test with that checkpoint: one name,pred,gt row per listed image, raw scores of the model
    test_opt = base_options(tmp_path, info, load_path=ckpt)
    out = tmp_path / "pred.csv"
    cli.test_main(["-o", write_options(tmp_path / "test.yml", **test_opt), "--output", str(out), "--no-progress"])
    rows = list(csv.DictReader(open(out)))
    assert [r["name"] for r in rows] == [f"img{i:02d}.png" for i in range(12)]
    assert [float(r["gt"]) for r in rows] == pytest.approx([float(l.split()[1]) for l in open(info)])
    model = cli.build_model(test_opt)
    load_into_model(model, ckpt)
    ds = ImageDataset([str(tmp_path / r["name"]) for r in rows[:2]], [0, 0], data_args=GRID, stype="sama")
    with torch.no_grad():
        want = model.eval()(torch.stack([ds[0]["image"], ds[1]["image"]]))
    assert [float(r["pred"]) for r in rows[:2]] == pytest.approx(want.tolist(), rel=1e-5, abs=1e-6)


def test_demo_test_bad_images_become_error_rows(tmp_path, one_thread, caplog):
    """A corrupt and a missing image get rows with an empty pred and the reason; metrics cover the other images."""
    info = make_images(str(tmp_path), 6)
    (tmp_path / "img02.png").write_bytes(b"not an image at all")
    os.remove(tmp_path / "img04.png")
    torch.manual_seed(0)
    opt = base_options(tmp_path, info)
    model = cli.build_model(opt)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "m.pth")
    opt.update(load_path=str(tmp_path / "m.pth"), test_batch_size=4)
    out = tmp_path / "pred.csv"
    with caplog.at_level("INFO", logger="samaiqa"):
        summary = cli.test_main(["-o", write_options(tmp_path / "t.yml", **opt), "--output", str(out), "--no-progress"])
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["name", "pred", "gt", "error"]
    assert [r["name"] for r in rows] == [f"img{i:02d}.png" for i in range(6)]  # every image, in order
    bad = {r["name"]: r for r in rows if r["error"]}
    assert set(bad) == {"img02.png", "img04.png"}
    assert all(r["pred"] == "" for r in bad.values())
    assert "not an image" in bad["img02.png"]["error"] and "not found" in bad["img04.png"]["error"]
    good = [r for r in rows if not r["error"]]
    assert all(np.isfinite(float(r["pred"])) for r in good)
    from samacore.metrics import compute_metrics

    want = compute_metrics([float(r["pred"]) for r in good], [float(r["gt"]) for r in good])
    row = result_row(summary)
    assert row["n"] == 4 and row["n_failed"] == 2 and row["metrics"]["n"] == 4
    assert row["metrics"]["srcc"] == pytest.approx(want["srcc"]) and row["metrics"]["rmse"] == pytest.approx(want["rmse"])
    assert "n = 4 images scored (2 of 6 failed" in caplog.text


def test_fixed_split_from_a_test_list(tmp_path, one_thread):
    """data.test_info gives one given split (e.g. an official or content-disjoint one) instead of random ones."""
    info = make_images(str(tmp_path), 8)
    test_list = tmp_path / "test.txt"
    test_list.write_text("img06.png\nimg01.png 33.3\n")  # labels optional, order free
    opt = base_options(tmp_path, info, num_epochs=1)
    del opt["num_splits"]
    opt["data"]["test_info"] = str(test_list)
    summary = cli.train_main(["-o", write_options(tmp_path / "fixed.yml", **opt), "--no-progress"])
    splits = json.load(open(tmp_path / "run" / "splits.json"))
    assert splits["protocol"].startswith("fixed") and len(splits["splits"]) == 1
    assert splits["splits"][0]["test"] == [1, 6] and splits["splits"][0]["train"] == [0, 2, 3, 4, 5, 7]
    assert len(summary["results"]) == 1 and result_row(summary, split=0)["n_test"] == 2
    # demo_test with the same options scores the test side only
    out = tmp_path / "pred.csv"
    test_opt = dict(opt, load_path=result_row(summary, split=0)["checkpoint"])
    cli.test_main(["-o", write_options(tmp_path / "fixed_test.yml", **test_opt), "--output", str(out), "--no-progress"])
    assert [r["name"] for r in csv.DictReader(open(out))] == ["img01.png", "img06.png"]

    # random splits and a fixed one do not mix; a test list must name items of data_info
    opt["num_splits"] = 3
    with pytest.raises(OptionError, match="num_splits must be 1"):
        cli.load_iqa_options(write_options(tmp_path / "bad.yml", **opt), train=True)
    del opt["num_splits"]
    test_list.write_text("img01.png\nimg99.png\n")
    with pytest.raises(LabelError, match=r"test.txt, line 2: 'img99.png' is not in .*info.txt"):
        cli.train_main(["-o", write_options(tmp_path / "bad.yml", **opt), "--no-progress"])


def test_examplar_options_train_and_test_on_different_photos():
    """The shipped examplar config runs the content-disjoint split of examplar_data_labels/examplar_iqa."""
    from samaiqa.labels import fixed_split, read_info
    opt = cli.load_iqa_options("options/examplar-sama-iqa.yml", train=True)
    assert opt["num_splits"] == 1
    labels = read_info(cli.path_option(opt["data"]["data_info"]))
    test = read_info(cli.path_option(opt["data"]["test_info"]), allow_unlabelled=True)
    [(train_idx, test_idx)] = fixed_split(labels, test)
    train_names = [labels.names[i] for i in train_idx]
    listed = read_info(os.path.join(os.path.dirname(cli.path_option(opt["data"]["test_info"])), "train.txt"))
    assert sorted(train_names) == sorted(listed.names) and (len(train_idx), len(test_idx)) == (98, 21)
    photo = lambda name: name.split("_")[0]
    assert not {photo(n) for n in train_names} & {photo(labels.names[i]) for i in test_idx}
