"""One-line errors for users (issue 14): a faulty VQA label file, or a faulty option anywhere in an option file,
ends every command with ONE line on stderr naming the file / key and what is allowed, and exit status 2 -- no
traceback, and for options before any model is built or data read."""
import os
import subprocess
import sys

import pytest
import torch
import yaml

from helpers import FRAG, MODEL, REPO
from samavqa import cli as vqa_cli

LABEL_FAULTS = [  # (line 2 of a label file, what the message must say)
    ("v1.mp4,-1,-1", "labels.txt:2: expected 4 comma-separated fields 'fileid,_,_,label', got 3: 'v1.mp4,-1,-1'"),
    ("v1.mp4,-1,-1,good", "labels.txt:2: label 'good' is not a number (allowed: a finite number, e.g. 3.5)"),
    ("v1.mp4,-1,-1,", "labels.txt:2: label is empty (allowed: a finite number, e.g. 3.5)"),
    ("v1.mp4,-1,-1,nan", "labels.txt:2: label 'nan' is not a finite number (allowed: a finite number, e.g. 3.5)"),
]


def vqa_options(root, tmp_path, labels, **over):
    set_args = {"anno_file": str(labels), "data_prefix": str(root / "videos"),
                "sample_types": {"fragments": dict(FRAG, num_clips=1)}}
    opt = {"name": "faults", "num_epochs": 1, "stype": "sama", "progress": False, "run_dir": str(tmp_path / "run"),
           "save_dir": str(tmp_path / "weights"), "model": MODEL,
           "data": {"train": {"type": "FusionDataset", "args": dict(set_args, phase="train")},
                    "val": {"type": "FusionDataset", "args": dict(set_args, phase="test")}}}
    opt.update(over)
    path = tmp_path / "o.yml"
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def finetune_options(root, tmp_path, labels, load_path):
    opt = {"name": "faults-ft", "num_epochs": 1, "stype": "sama", "progress": False, "model": MODEL,
           "run_dir": str(tmp_path / "run"), "load_path": load_path,
           "data": {"type": "FineTuneDataset", "anno_file": str(labels), "data_prefix": str(root / "videos"),
                    "train": {"sample_types": {"fragments": dict(FRAG, num_clips=1)}},
                    "test": {"sample_types": {"fragments": dict(FRAG, num_clips=1)}}}}
    path = tmp_path / "ft.yml"
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def one_line_error(command, capsys):
    """Run a command as its script does; return the one line it printed on stderr (exit status 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        vqa_cli.run_command(command)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def released(vqa_data, tmp_path_factory):
    """A complete model file for the commands that need one (test, finetune)."""
    from samavqa.models import DiViDeAddEvaluator

    path = tmp_path_factory.mktemp("released") / "model.pth"
    torch.save({"state_dict": DiViDeAddEvaluator(**MODEL["args"]).state_dict()}, path)
    return str(path)


@pytest.mark.parametrize("line, message", LABEL_FAULTS)
def test_vqa_label_faults_are_one_line_in_every_command(vqa_data, released, tmp_path, capsys, line, message):
    labels = tmp_path / "labels.txt"
    labels.write_text(f"v0.mp4,-1,-1,15\n{line}\nv2.mp4,-1,-1,35\n")
    opt = vqa_options(vqa_data.root, tmp_path, labels, load_path=released)
    for command in (lambda: vqa_cli.train_main(["-o", opt]),
                    lambda: vqa_cli.test_main(["-o", opt, "--output", str(tmp_path / "p.csv")]),
                    lambda: vqa_cli.finetune_main(["-o", finetune_options(vqa_data.root, tmp_path, labels, released)])):
        error = one_line_error(command, capsys)
        assert error == f"error: {labels}:2: {message.split(':', 2)[2].strip()}"
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "weights").exists()


def test_demo_train_script_reports_a_label_fault_in_one_line(vqa_data, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("v0.mp4,-1,-1,15\nv1.mp4,-1,-1,nan\n")
    r = subprocess.run([sys.executable, os.path.join(REPO, "VQA", "demo_train.py"), "-o",
                        vqa_options(vqa_data.root, tmp_path, labels)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [f"error: {labels}:2: label 'nan' is not a finite number "
                                     "(allowed: a finite number, e.g. 3.5)"]
