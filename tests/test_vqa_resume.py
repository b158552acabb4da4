"""Run safety of the VQA trainers: an interrupted run resumed with ``--resume`` ends exactly as an uninterrupted one.

Deterministic mode, tiny backbone, 8 tiny synthetic videos. Interruptions: ``--stop-after-epochs 1`` (clean
stop), and a process killed (``os._exit``) while it writes the resumable state, between the temporary file and
the rename -- the previous epoch's state must survive intact and the run must resume from it. Finetuning is
stopped between splits and resumed.
"""
import csv
import os
import subprocess
import sys

import pytest
import torch
import yaml

from helpers import result_row
from samacore.checkpoint import CheckpointError, load_checkpoint
from samacore.options import OptionError
from samavqa import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "res"


def train_options(data, path, **over):
    root = data.root
    opt = {"name": NAME, "num_epochs": 2, "l_num_epochs": 0, "warmup_epochs": 0.5, "ema": True, "save_model": True,
           "train_batch_size": 4, "train_num_workers": 0, "test_batch_size": 2, "test_num_workers": 0,
           "stype": "sama", "progress": False, "seed": 3, "deterministic": True, "device": "cpu",
           "data": {"train": {"type": "FusionDataset", "args": {
                        "phase": "train", "anno_file": str(root / "labels.txt"), "data_prefix": str(root / "videos"),
                        "sample_types": {"fragments": dict(data.frag, num_clips=1)}}},
                    "val-small": {"type": "FusionDataset", "args": {
                        "phase": "test", "anno_file": str(root / "val.txt"), "data_prefix": str(root / "videos"),
                        "sample_types": {"fragments": dict(data.frag, num_clips=2)}}}},
           "model": data.model, "optimizer": {"lr": 1e-3, "backbone_lr_mult": 0.1, "wd": 0.05},
           "load_path": str(root / "k400_nano.pth")}
    opt.update(over)
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def outcome(folder):
    """What must not depend on interruptions: metrics log, summary metrics, final / best weights."""
    summary = yaml.safe_load(open(folder / "runs" / NAME / "summary.json"))
    val = {r["set"]: {m: v for m, v in r.items() if m != "checkpoint"} for r in summary["results"]}
    weights = {f: load_checkpoint(str(folder / "pretrained_weights" / f))["state_dict"]
               for f in (f"{NAME}_Epoch_01.pth", f"{NAME}_val-small_s_dev_v0.0.pth")}
    rows = list(csv.DictReader(open(folder / "runs" / NAME / "metrics.csv")))
    return val, weights, rows


def assert_same(a, b):
    assert a[0] == b[0]  # best / final / selected metrics, exactly
    assert a[2] == b[2]  # every logged row (losses, lrs, metrics of every epoch), exactly
    for f, state in a[1].items():
        for k, v in state.items():
            assert torch.equal(v, b[1][f][k]), (f, k)


@pytest.fixture(scope="module")
def reference(vqa_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        cli.train_main(["-o", train_options(vqa_data, folder / "o.yml")])
    finally:
        os.chdir(cwd)
    return folder, outcome(folder)


KILL_IN_SAVE = """
import os, sys
import torch
real_replace = os.replace
def replace(src, dst):  # die between writing the temporary file and renaming it (first resumable save)
    if dst.endswith("last.pth"):
        os._exit(17)
    return real_replace(src, dst)
os.replace = replace
from samacore.runs import run_command
from samavqa import cli
sys.argv[1:] = ["-o", sys.argv[1], "--resume", sys.argv[2]]
run_command(cli.train_main)
"""


def test_stop_then_killed_while_saving_then_resume_matches_uninterrupted(vqa_data, reference, tmp_path,
                                                                          monkeypatch):
    """Epoch 0 then a clean stop (stop_after_epochs); a resumed process trains epoch 1 and is killed while
    writing its state (after the temporary file, before the rename); resuming again from the intact epoch-0
    state finishes the run exactly as the uninterrupted one."""
    monkeypatch.chdir(tmp_path)
    opt = train_options(vqa_data, tmp_path / "o.yml")
    run = tmp_path / "runs" / NAME
    first = cli.train_main(["-o", opt, "--stop-after-epochs", "1"])
    assert "stop_after_epochs" in first["stopped"]
    state = load_checkpoint(str(run / "last.pth"))
    assert state["epoch"] == 0 and {"model", "ema", "optimizer", "scheduler", "rng", "best"} <= set(state)
    assert not (tmp_path / "pretrained_weights" / f"{NAME}_Epoch_01.pth").exists()

    (tmp_path / "kill.py").write_text(KILL_IN_SAVE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "VQA"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "kill.py", opt, "runs/" + NAME], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 17, r.stdout[-2000:] + r.stderr[-2000:]
    assert "continuing at epoch 1" in r.stdout
    assert len([f for f in os.listdir(run) if f.startswith(".tmp-")]) == 1  # the complete-but-unrenamed state
    assert load_checkpoint(str(run / "last.pth"))["epoch"] == 0  # the epoch-0 state is intact

    cli.train_main(["-o", opt, "--resume", str(run / "last.pth")])
    assert not [f for f in os.listdir(run) if f.startswith(".tmp-")]  # the leftover is cleaned up
    assert load_checkpoint(str(run / "last.pth"))["epoch"] == 1
    assert_same(outcome(tmp_path), reference[1])


def test_resume_refuses_changed_options_and_bad_targets(vqa_data, reference, tmp_path, monkeypatch):
    folder = reference[0]
    monkeypatch.chdir(tmp_path)
    changed = train_options(vqa_data, tmp_path / "o.yml", optimizer={"lr": 2e-3, "backbone_lr_mult": 0.1, "wd": 0.05},
                            run_dir=str(tmp_path / "run2"), save_dir=str(tmp_path / "w"))
    with pytest.raises(OptionError, match=r"differ from the run's: optimizer\.lr: 0\.001 -> 0\.002; resume with"):
        cli.train_main(["-o", changed, "--resume", str(folder / "runs" / NAME)])
    assert not (tmp_path / "run2").exists()  # refused before the run folder was touched
    # the same options in other folders (harmless keys): the finished run trains nothing and reproduces its summary
    same = train_options(vqa_data, tmp_path / "s.yml", run_dir=str(tmp_path / "run2"), save_dir=str(tmp_path / "w"),
                         progress=True)
    summary = cli.train_main(["-o", same, "--resume", str(folder / "runs" / NAME), "--no-progress"])
    assert {m: v for m, v in result_row(summary, "val-small").items() if m != "checkpoint"} == reference[1][0]["val-small"]
    assert list(csv.DictReader(open(tmp_path / "run2" / "metrics.csv"))) == reference[1][2]
    with pytest.raises(CheckpointError, match="has no last.pth"):
        cli.train_main(["-o", changed, "--resume", str(tmp_path)])
    with pytest.raises(CheckpointError, match="not a resumable training state"):
        cli.train_main(["-o", changed, "--resume",
                        str(folder / "pretrained_weights" / f"{NAME}_val-small_s_dev_v0.0.pth")])
    with pytest.raises(CheckpointError, match="saved by the train command"):
        cli.finetune_main(["-o", finetune_options(vqa_data, tmp_path / "f.yml"), "--resume",
                           str(folder / "runs" / NAME)])


def finetune_options(data, path, **over):
    opt = {"name": "ftres", "split_seed": 10, "num_splits": 2, "num_epochs": 1, "warmup_epochs": 0.5,
           "train_batch_size": 3, "test_batch_size": 2, "stype": "sama", "progress": False, "deterministic": True,
           "device": "cpu",
           "data": {"database": "tiny", "type": "FineTuneDataset", "anno_file": str(data.root / "labels.txt"),
                    "data_prefix": str(data.root / "videos"),
                    "train": {"sample_types": {"fragments": dict(data.frag, num_clips=1)}},
                    "test": {"sample_types": {"fragments": dict(data.frag, num_clips=2)}}},
           "model": data.model, "load_path": str(data.root / "k400_nano.pth"), "allow_partial_load": True}
    opt.update(over)
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def test_finetune_stop_between_splits_then_resume(vqa_data, tmp_path, monkeypatch):
    opt = finetune_options(vqa_data, tmp_path / "f.yml")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    ref = cli.finetune_main(["-o", opt])
    monkeypatch.chdir(tmp_path / "b")
    first = cli.finetune_main(["-o", opt, "--stop-after-epochs", "1"])
    assert first["stopped"] and [s["split"] for s in first["results"]] == []
    assert load_checkpoint(str(tmp_path / "b" / "runs" / "ftres" / "last.pth"))["split"] == 0
    done = cli.finetune_main(["--resume", "runs/ftres"])  # the run's own options (no -o)
    strip = lambda s: [{k: v for k, v in r.items() if k != "checkpoint"} for r in s["results"]]
    assert strip(done) == strip(ref) and [s["split"] for s in done["results"]] == [0, 1]
    assert done["aggregate"] == ref["aggregate"]
    read = lambda d: (d / "runs" / "ftres" / "metrics.csv").read_text()
    assert read(tmp_path / "b") == read(tmp_path / "a")


def test_bf16_test_command_close_to_fp32(vqa_data, reference, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    best = reference[0] / "pretrained_weights" / f"{NAME}_val-small_s_dev_v0.0.pth"
    opt = train_options(vqa_data, tmp_path / "t.yml", load_path=str(best))
    fp32 = cli.test_main(["-o", opt, "--output", "a.csv"])
    bf16 = cli.test_main(["-o", opt, "--output", "b.csv", "--bf16"])
    pa = [float(r["pred"]) for r in csv.DictReader(open("a.csv"))]
    pb = [float(r["pred"]) for r in csv.DictReader(open("b.csv"))]
    assert pa != pb and pb == pytest.approx(pa, rel=0.05, abs=0.05)
    assert result_row(fp32, "val-small")["metrics"]["srcc"] == pytest.approx(load_checkpoint(str(best))["validation_results"]["srcc"])
    assert result_row(bf16, "val-small")["metrics"]["n"] == 4
