"""What a run leaves behind: ``runs/{name}/curves.png`` (drawn from metrics.csv after every epoch, a drawing failure
never stops training), the test commands' own run folder ``runs/{name}/test/`` (testing and scoring leave the
training run's summary.json / options.yml as they were), and the EMA warm-up's update count across ``--resume``.

Tiny runs: the nano VQA backbone on the 8 synthetic videos of conftest.vqa_data, a tiny Swin-V2 on 10 synthetic
images.
"""
import csv
import json
import os

import pytest
import torch
import yaml
from PIL import Image

from helpers import GRID, SMALL_SWIN, vqa_train_options, write_yaml
from samacore import curves
from samacore.checkpoint import load_checkpoint
from samacore.curves import PANELS, curve_series, read_metrics_csv
from samacore.options import OptionError
from samaiqa import cli as iqa_cli
from samaiqa import score as iqa_score
from samavqa import cli as vqa_cli
from samavqa import score as vqa_score

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRAINING_FILES = ("summary.json", "options.yml", "metrics.csv", "curves.png")  # both trees


def once_on_one_thread(fn, *args):
    """A module fixture's run on one thread, as the tests (module fixtures are set up before the autouse one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(n)


def chdir_run(folder, fn, *args):
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return fn(*args)
    finally:
        os.chdir(cwd)


# ----------------------------------------------------------------------------------------------- VQA
def vqa_options(root, path, **over):
    return write_yaml(path, vqa_train_options(root, "out", stype="sama", val_clips=1, ema_warmup=True, **over))


@pytest.fixture(scope="module")
def vqa_run(vqa_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vqa_run")
    once_on_one_thread(chdir_run, folder, vqa_cli.train_main, ["-o", vqa_options(vqa_data.root, folder / "train.yml")])
    return folder


def assert_png(path, size=(1100, 750)):
    data = open(path, "rb").read()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000  # four panels with lines, not an empty canvas
    with Image.open(path) as im:
        assert im.size == size and im.format == "PNG"


def test_vqa_run_draws_curves_png(vqa_run):
    assert_png(vqa_run / "runs" / "out" / "curves.png")
    assert not [f for f in os.listdir(vqa_run / "runs" / "out") if f.endswith(".tmp.png")]


def test_vqa_curve_series_are_the_metrics_csv_numbers(vqa_run):
    path = vqa_run / "runs" / "out" / "metrics.csv"
    raw = list(csv.DictReader(open(path)))
    train = [r for r in raw if r["set"] == "train"]
    val = [r for r in raw if r["set"] == "val-small"]
    assert len(train) == len(val) == 2
    series = curve_series(read_metrics_csv(str(path)))
    epochs = [0, 1]
    assert series == {
        "train loss": {"train": (epochs, [float(r["loss"]) for r in train])},
        "train SRCC": {"train": (epochs, [float(r["srcc"]) for r in train])},
        "validation SRCC": {"val-small": (epochs, [float(r["srcc"]) for r in val])},
        "validation PLCC": {"val-small": (epochs, [float(r["plcc"]) for r in val])},
    }
    assert list(series) == list(PANELS)


def test_vqa_test_and_scoring_leave_the_training_run_alone(vqa_data, vqa_run, tmp_path):
    run = vqa_run / "runs" / "out"
    before = {f: (run / f).read_bytes() for f in TRAINING_FILES}
    ckpt = vqa_run / "pretrained_weights" / "out_val-small_s_dev_v0.0.pth"
    test_opt = vqa_options(vqa_data.root, vqa_run / "test.yml", load_path=str(ckpt))
    summary = chdir_run(vqa_run, vqa_cli.test_main, ["-o", test_opt, "--no-progress"])
    # the training option file itself, with --ckpt in place of its load_path (the K400 init file): same scores
    again = chdir_run(vqa_run, vqa_cli.test_main, ["-o", str(vqa_run / "train.yml"), "--ckpt", str(ckpt),
                                                   "--no-progress", "--output", str(tmp_path / "again.csv")])
    assert again["checkpoint"] == str(ckpt) and again["results"] == summary["results"]
    scores = tmp_path / "scores.csv"
    video = str(vqa_data.root / "videos" / "v1.mp4")
    assert chdir_run(vqa_run, vqa_score.main, ["-v", video, "-v", video, "--ckpt", str(ckpt), "--options", test_opt,
                                               "--no-progress", "--output", str(scores)]) == 0
    assert {f: (run / f).read_bytes() for f in TRAINING_FILES} == before
    test = run / "test"
    assert json.load(open(test / "summary.json"))["command"] == "test"
    assert yaml.safe_load(open(test / "options.yml"))["load_path"] == str(ckpt)
    assert summary["predictions"] == str(test / "predictions.csv")
    assert len(list(csv.DictReader(open(test / "predictions.csv")))) == 4
    assert not (test / "tensorboard").exists()
    assert set(os.listdir(run)) == {"options.yml", "metrics.csv", "metrics.jsonl", "curves.png", "summary.json",
                                    "last.pth", "tensorboard", "test"}


def test_vqa_scores_a_resume_state_with_its_ema_weights(vqa_data, vqa_run, tmp_path, capsys):
    state = load_checkpoint(str(vqa_run / "runs" / "out" / "last.pth"))
    plain = tmp_path / "ema.pth"
    torch.save({"state_dict": state["ema"]}, plain)
    test_opt = vqa_options(vqa_data.root, tmp_path / "test.yml")
    video = str(vqa_data.root / "videos" / "v1.mp4")
    scores = {}
    for name, ckpt in (("state", vqa_run / "runs" / "out" / "last.pth"), ("plain", plain)):
        assert chdir_run(vqa_run, vqa_score.main, ["-v", video, "--ckpt", str(ckpt), "--options", test_opt,
                                                   "--no-progress", "--output", str(tmp_path / f"{name}.csv")]) == 0
        scores[name] = [r["score"] for r in csv.DictReader(open(tmp_path / f"{name}.csv"))]
    assert "is the resume state of a training run (after epoch 1): using its EMA weights" in capsys.readouterr().err
    assert scores["state"] == scores["plain"] and len(scores["state"]) == 1
    # without --options: the options the run stored in its state (the same as the run's options.yml), not the
    # default option file (whose model the tiny run's weights do not fit)
    for name, ckpt, given in (("state-alone", vqa_run / "runs" / "out" / "last.pth", []),
                              ("plain-with-run-options", plain, ["--options", str(vqa_run / "train.yml")])):
        assert chdir_run(vqa_run, vqa_score.main, ["-v", video, "--ckpt", str(ckpt), *given, "--no-progress",
                                                   "--output", str(tmp_path / f"{name}.csv")]) == 0
        scores[name] = [r["score"] for r in csv.DictReader(open(tmp_path / f"{name}.csv"))]
    assert f"from the options stored in {vqa_run / 'runs' / 'out' / 'last.pth'}" in capsys.readouterr().err
    assert scores["state-alone"] == scores["plain-with-run-options"] and scores["state-alone"][0] != ""


# ----------------------------------------------------------------------------------------------- IQA
@pytest.fixture(scope="module")
def images(iqa_images):
    return iqa_images  # conftest: 10 graded images


def iqa_options(info, path, run_dir, **over):
    opt = {"name": "out", "stype": "sama", "num_epochs": 2, "warmup_epochs": 1, "ema_warmup": True, "batch_size": 4,
           "num_workers": 0, "test_batch_size": 4, "test_num_workers": 0, "num_splits": 2, "seed": 5,
           "deterministic": True, "data": {"database": "syn", "data_info": str(info), "data_prefix": str(info.parent),
                                           **GRID},
           "model": {"backbone_args": SMALL_SWIN}, "run_dir": str(run_dir), "progress": False}
    return write_yaml(path, {**opt, **over})


@pytest.fixture(scope="module")
def iqa_run(images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("iqa_run")
    once_on_one_thread(iqa_cli.train_main, ["-o", iqa_options(images, folder / "o.yml", folder / "run")])
    return folder


def test_iqa_curves_one_line_per_split(iqa_run):
    run = iqa_run / "run"
    assert_png(run / "curves.png")
    raw = list(csv.DictReader(open(run / "metrics.csv")))
    series = curve_series(read_metrics_csv(str(run / "metrics.csv")))
    for panel, column, side in (("train loss", "loss", "train"), ("train SRCC", "train_srcc", "train"),
                                ("validation SRCC", "srcc", "validation"), ("validation PLCC", "plcc", "validation")):
        assert series[panel] == {
            f"{side} split {s:02d}": ([0, 1], [float(r[column]) for r in raw if int(r["split"]) == s]) for s in (0, 1)}


def test_iqa_test_and_scoring_leave_the_training_run_alone(images, iqa_run, tmp_path):
    run = iqa_run / "run"
    files = ("options.yml", "summary.json", "metrics.csv", "curves.png")
    before = {f: (run / f).read_bytes() for f in files}
    ckpt = run / "out_split00_syn_s_dev.pth"
    opt = iqa_options(images, tmp_path / "t.yml", run)  # the training options: no load_path, --ckpt gives it
    with pytest.raises(OptionError, match=r"load_path is required for testing \(or --ckpt FILE\)"):
        iqa_cli.test_main(["-o", opt])
    summary = iqa_cli.test_main(["-o", opt, "--ckpt", str(ckpt), "--no-progress"])
    assert iqa_score.main(["-i", str(images.parent / "im3.png"), "-i", str(images.parent / "im4.png"), "--ckpt",
                           str(ckpt), "--options", opt, "--no-progress", "--output", str(tmp_path / "s.csv")]) == 0
    assert {f: (run / f).read_bytes() for f in files} == before  # the training run's summary.json included
    test = run / "test"
    assert json.load(open(test / "summary.json")) == json.loads(json.dumps(summary))
    assert summary["predictions"] == str(test / "predictions.csv") and summary["results"][0]["n"] == 10
    assert yaml.safe_load(open(test / "options.yml"))["load_path"] == str(ckpt)


def test_a_resume_state_scores_as_its_ema_weights(images, iqa_run, tmp_path, capsys):
    """``--ckpt runs/{name}/last.pth`` (the resume state, not a model file): scored with the EMA weights it holds
    -- the same numbers as a plain file of those weights -- and a warning says what was used."""
    run = iqa_run / "run"
    state = load_checkpoint(str(run / "last.pth"))  # as it is: the whole resumable state
    assert {"format", "model", "ema", "optimizer"} <= set(state)
    plain = tmp_path / "ema.pth"
    torch.save({"state_dict": state["ema"]}, plain)
    opt = iqa_options(images, tmp_path / "t.yml", tmp_path / "test_run")
    from_state = iqa_cli.test_main(["-o", opt, "--ckpt", str(run / "last.pth"), "--no-progress"])
    assert f"{run / 'last.pth'} is the resume state of a training run (after epoch 1): using its EMA weights" in \
        capsys.readouterr().err
    from_plain = iqa_cli.test_main(["-o", opt, "--ckpt", str(plain), "--no-progress"])
    row, plain_row = from_state["results"][0], from_plain["results"][0]
    assert row["metrics"] == plain_row["metrics"] and row["n"] == 10
    vqa_like = load_checkpoint(str(run / "last.pth"), as_weights=True)
    assert list(vqa_like) == ["state_dict", "sama"] and all(torch.equal(vqa_like["state_dict"][k], v)
                                                            for k, v in state["ema"].items())
    assert vqa_like["sama"] == state["sama"]  # the run's options travel with the weights


# ----------------------------------------------------------------------------------------------- failures / resume
def test_a_drawing_failure_warns_once_and_training_goes_on(images, tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(curves, "draw_curves", broken)
    monkeypatch.setattr(curves, "_warned", False)
    warnings = []
    monkeypatch.setattr(curves.log, "warning", lambda msg, *a: warnings.append(msg % a))
    summary = iqa_cli.train_main(["-o", iqa_options(images, tmp_path / "o.yml", tmp_path / "run", num_splits=1)])
    assert len(summary["results"]) == 1 and (tmp_path / "run" / "out_split00_syn_s_dev.pth").exists()
    assert not (tmp_path / "run" / "curves.png").exists()
    warnings = [w for w in warnings if "curves.png" in w]  # (the logger is shared: other warnings may come)
    assert len(warnings) == 1 and "pip install matplotlib" in warnings[0]


def test_curves_are_redrawn_at_most_every_interval_and_after_the_last_epoch(images, tmp_path, monkeypatch):
    """A drawing costs ~1 s: within ``REDRAW_AFTER_S`` of the last one an epoch does not redraw, the last epoch
    always does (so the picture ends complete)."""
    from samacore import trainer

    drawn = []  # the epochs in the picture at each drawing
    monkeypatch.setattr(curves, "draw_curves", lambda series, path, title="": drawn.append(
        series["validation SRCC"]["validation split 00"][0]))
    monkeypatch.setattr(trainer, "REDRAW_AFTER_S", 3600.0)
    iqa_cli.train_main(["-o", iqa_options(images, tmp_path / "o.yml", tmp_path / "run", num_splits=1, num_epochs=3)])
    assert drawn == [[0], [0, 1, 2]]
    assert curves.update_curves(str(tmp_path / "run"), min_interval_s=3600.0) is None and len(drawn) == 2
    curves.update_curves(str(tmp_path / "run"))
    assert len(drawn) == 3


def test_resume_continues_the_ema_warmup(images, tmp_path):
    """8 training images (one 80/20 split of 10) / batch 4 = 2 EMA updates per epoch. Interrupted after epoch 0
    and resumed, the EMA equals the uninterrupted run's: the warm-up counter was restored (reset, epoch 1 would
    start again at decay 0.1 instead of 3/12)."""
    def run(folder, *extra):
        folder.mkdir(exist_ok=True)
        return iqa_cli.train_main(["-o", iqa_options(images, folder / "o.yml", folder / "run", num_splits=1),
                                   *extra])

    run(tmp_path / "a")
    run(tmp_path / "b", "--stop-after-epochs", "1")
    state = load_checkpoint(str(tmp_path / "b" / "run" / "last.pth"))
    assert state["ema_updates"] == 2  # 8 training images, batch 4
    run(tmp_path / "b", "--resume", str(tmp_path / "b" / "run"))
    assert load_checkpoint(str(tmp_path / "b" / "run" / "last.pth"))["ema_updates"] == 4
    a = load_checkpoint(str(tmp_path / "a" / "run" / "last.pth"))
    b = load_checkpoint(str(tmp_path / "b" / "run" / "last.pth"))
    for k, v in a["ema"].items():
        assert torch.equal(v, b["ema"][k]), k
    assert list(csv.DictReader(open(tmp_path / "a" / "run" / "metrics.csv"))) == \
        list(csv.DictReader(open(tmp_path / "b" / "run" / "metrics.csv")))
