"""The Makefile's demo targets (``make -n``: printed, not run): ``demo`` = the VQA demo then the IQA demo, each
building its data, training, testing and scoring with the checkpoint its training writes (paths checked against
the option files and the trainers' naming rules)."""
import os
import shutil
import subprocess

import pytest

from samaiqa.schema import load_iqa_options
from samavqa.schema import load_vqa_options

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def dry_run(target):
    """The commands ``make TARGET`` would run, without the venv set-up (``-o setup``)."""
    r = subprocess.run(["make", "-n", "-o", "setup", target, "PY=py"], cwd=REPO, capture_output=True, text=True,
                       check=True)
    return [line for line in r.stdout.splitlines() if line.startswith("py ")]


def test_demo_runs_the_vqa_demo_then_the_iqa_demo():
    vqa, iqa = dry_run("demo-vqa"), dry_run("demo-iqa")
    assert dry_run("demo") == vqa + iqa
    steps = lambda lines: [line.split()[1] for line in lines]
    assert steps(vqa) == ["tools/build_examplar_data.py", "VQA/demo_train.py", "VQA/demo_test.py", "VQA/vqa.py"]
    assert steps(iqa) == ["tools/build_examplar_data.py", "IQA/demo_train_iqa_baseline.py", "IQA/demo_test_iqa.py",
                          "IQA/iqa.py"]
    assert vqa[0].endswith("--if-missing --only vqa") and iqa[0].endswith("--if-missing --only iqa")


def test_iqa_demo_tests_and_scores_the_checkpoint_its_training_writes():
    _, train, test, score = dry_run("demo-iqa")
    opt_file = train.split("-o ")[1].split()[0]
    opt = load_iqa_options(os.path.join(REPO, opt_file), train=True)
    # samaiqa.cli.train_split: runs/{name}/{name}_split{NN}_{database}_s_dev.pth (one fixed split: 00)
    ckpt = f"runs/{opt['name']}/{opt['name']}_split00_{opt['data']['database']}_s_dev.pth"
    assert opt["num_splits"] == 1 and f"-o {opt_file} --ckpt {ckpt} " in test + " "
    image = score.split("-i ")[1].split()[0]
    test_names = [line.split()[0] for line in open(os.path.join(REPO, "examplar_data_labels", "examplar_iqa",
                                                                  "test.txt"))]
    assert f"--ckpt {ckpt} " in score and image == f"data/examplar/iqa/{test_names[0]}"


def test_vqa_demo_tests_and_scores_the_checkpoint_its_training_writes():
    _, train, test, score = dry_run("demo-vqa")
    opt = load_vqa_options(os.path.join(REPO, train.split("-o ")[1].split()[0]), "train")
    val = [k for k in opt["data"] if k.startswith("val")][0]
    ckpt = f"pretrained_weights/{opt['name']}_{val}_s_dev_v0.0.pth"  # samavqa.cli._job's best_path
    test_opt = load_vqa_options(os.path.join(REPO, test.split("-o ")[1].split()[0]), "test")
    assert test_opt["load_path"] == ckpt and test_opt["name"] == opt["name"]
    assert f"--ckpt {ckpt} " in score
