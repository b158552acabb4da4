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
from samacore.runs import run_command
from samavqa import cli as vqa_cli

LABEL_FAULTS = [  # (line 2 of a label file, what the message must say)
    ("v1.mp4,-1,-1", "labels.txt:2: expected 4 comma-separated fields 'fileid,_,_,label', got 3: 'v1.mp4,-1,-1'"),
    ("v1.mp4,-1,-1,good", "labels.txt:2: label 'good' is not a number (allowed: a finite number, e.g. 3.5)"),
    ("v1.mp4,-1,-1,", "labels.txt:2: label is empty (allowed: a finite number, e.g. 3.5)"),
    ("v1.mp4,-1,-1,nan", "labels.txt:2: label 'nan' is not a finite number (allowed: a finite number, e.g. 3.5)"),
]


def vqa_options(root, tmp_path, labels, **over):
    set_args = lambda phase: {"phase": phase, "anno_file": str(labels), "data_prefix": str(root / "videos"),
                              "sample_types": {"fragments": dict(FRAG, num_clips=1)}}
    opt = {"name": "faults", "num_epochs": 1, "stype": "sama", "progress": False, "run_dir": str(tmp_path / "run"),
           "save_dir": str(tmp_path / "weights"), "model": MODEL,
           "data": {"train": {"type": "FusionDataset", "args": set_args("train")},
                    "val": {"type": "FusionDataset", "args": set_args("test")}}}
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
        run_command(command)
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


# ------------------------------------------------------------------------------------------- options
@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if a command builds a model: option faults must be found before."""
    from samaiqa import cli as iqa_cli
    from samaiqa import score as iqa_score
    from samavqa import score as vqa_score

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the options were checked")

    for module in (vqa_cli, vqa_score, iqa_cli, iqa_score):
        monkeypatch.setattr(module, "build_model", refuse)


def patched(path, tmp_path, key_path, value, name="bad.yml"):
    """A copy of the option file ``path`` with ``key_path`` (dotted) set to ``value``."""
    opt = yaml.safe_load(open(path))
    node = opt
    *parents, key = key_path.split(".")
    for p in parents:
        node = node[p]
    node[key] = value
    out = tmp_path / name
    out.write_text(yaml.safe_dump(opt))
    return str(out)


VQA_FAULTS = [  # (key path in the option file, value, the one-line message)
    ("data.val.args.sample_types.fragments.fsize_h", "32",
     "data.val.args.sample_types.fragments.fsize_h must be a positive integer, got the string '32' (quoted in the "
     "YAML file: write 32 without quotes for a number)"),
    ("data.val.args.sample_types.fragments.fragmnets_h", 7,
     "unknown option data.val.args.sample_types.fragments.fragmnets_h (did you mean 'fragments_h'?)"),
]


@pytest.mark.parametrize("key_path, value, message", VQA_FAULTS)
def test_every_vqa_entry_point_rejects_the_whole_file_at_load(vqa_data, released, tmp_path, capsys, no_model,
                                                             key_path, value, message):
    from samavqa import score

    good = vqa_options(vqa_data.root, tmp_path, vqa_data.root / "labels.txt", load_path=released)
    bad = patched(good, tmp_path, key_path, value)
    errors = [one_line_error(lambda: vqa_cli.train_main(["-o", bad]), capsys),
              one_line_error(lambda: vqa_cli.test_main(["-o", bad, "--output", str(tmp_path / "p.csv")]), capsys)]
    capsys.readouterr()
    video = str(vqa_data.root / "videos" / "v0.mp4")
    assert score.main(["-v", video, "--ckpt", released, "--options", bad]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors.append(err.splitlines()[-1])  # after the checkpoint note
    assert len(err.splitlines()) <= 2 and errors[0] == errors[1] == errors[2]
    assert errors[0].startswith("error: ") and message in errors[0], errors[0]
    # the finetune layout: the same fault under data.test
    ft = finetune_options(vqa_data.root, tmp_path, vqa_data.root / "labels.txt", released)
    ft_bad = patched(ft, tmp_path, "data.test.sample_types.fragments." + key_path.rsplit(".", 1)[1], value, "ftbad.yml")
    error = one_line_error(lambda: vqa_cli.finetune_main(["-o", ft_bad]), capsys)
    assert message.replace("data.val.args.", "data.test.") in error


def test_vqa_py_options_fault_is_one_line_from_the_script(vqa_data, released, tmp_path):
    """The script as a user runs it: the same line demo_test.py gives, exit 2, no traceback."""
    good = vqa_options(vqa_data.root, tmp_path, vqa_data.root / "labels.txt", load_path=released)
    bad = patched(good, tmp_path, "data.val.args.sample_types.fragments.clip_len", "8")
    video = str(vqa_data.root / "videos" / "v0.mp4")
    runs = [subprocess.run([sys.executable, os.path.join(REPO, "VQA", script), *args], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
            for script, args in (("vqa.py", ["-v", video, "--ckpt", released, "--options", bad]),
                                 ("demo_test.py", ["-o", bad]))]
    for r in runs:
        assert r.returncode == 2 and "Traceback" not in r.stderr
    assert runs[0].stderr.splitlines()[-1] == runs[1].stderr.splitlines()[-1] == (
        "error: data.val.args.sample_types.fragments.clip_len must be a positive integer, got the string '8' (quoted "
        "in the YAML file: write 8 without quotes for a number)")


IQA_FAULTS = [
    ("data.fsize_h", "16", "data.fsize_h must be a positive integer, got the string '16' (quoted in the YAML file: "
                           "write 16 without quotes for a number)"),
    ("model.backbone_argz", {}, "unknown option model.backbone_argz (did you mean 'backbone_args'?)"),
    ("model.backbone", "swinv2_tiny_window8_265", "model.backbone = 'swinv2_tiny_window8_265' is not a timm model "
                                                  "(did you mean 'swinv2_tiny_window8_256'?)"),
]


@pytest.mark.parametrize("key_path, value, message", IQA_FAULTS)
def test_every_iqa_entry_point_rejects_the_whole_file_at_load(tmp_path, capsys, no_model, key_path, value, message):
    from helpers import GRID, SMALL_SWIN, write_graded_images
    from samaiqa import cli as iqa_cli
    from samaiqa import score

    write_graded_images(str(tmp_path), ["a.png", "b.png"], [50, 150], [(64, 64)] * 2, label_digits=1)
    torch.save({"format": "samaiqa/1", "state_dict": {"backbone.patch_embed.proj.weight": torch.zeros(1)}},
               tmp_path / "w.pth")  # (never loaded into a model: the options fail first)
    opt = {"name": "f", "num_epochs": 1, "data": {"data_info": str(tmp_path / "info.txt"),
                                                  "data_prefix": str(tmp_path), **GRID},
           "model": {"backbone_args": SMALL_SWIN}, "load_path": str(tmp_path / "w.pth"), "run_dir": str(tmp_path)}
    (tmp_path / "good.yml").write_text(yaml.safe_dump(opt))
    bad = patched(tmp_path / "good.yml", tmp_path, key_path, value)
    errors = []
    for command in (lambda: iqa_cli.train_main(["-o", bad]), lambda: iqa_cli.test_main(["-o", bad])):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            run_command(command)
        err = capsys.readouterr().err
        assert e.value.code == 2 and len(err.splitlines()) == 1
        errors.append(err.strip())
    assert score.main(["-i", str(tmp_path / "a.png"), "--ckpt", str(tmp_path / "w.pth"), "--options", bad]) == 2
    errors.append(capsys.readouterr().err.strip().splitlines()[-1])
    assert errors[0] == errors[1] == errors[2] and errors[0].startswith(f"error: {message}"), errors


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 8 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 9000000000 bytes. Error code 12 (Cannot allocate memory)"),
    RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
])
def test_a_command_out_of_memory_is_one_line(capsys, error):
    """A training / test command that runs out of memory (GPU, or the CPU allocator's plain RuntimeError) ends with
    one line naming the settings that change it; any other exception keeps its traceback."""
    def command():
        raise error

    with pytest.raises(SystemExit) as stop:
        run_command(command)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and err[0].startswith("error: out of memory (")
    assert str(error).split(".")[0].splitlines()[0] in err[0] and err[0].endswith(
        "): use a smaller batch (the option train_batch_size (VQA) / batch_size (IQA) or test_batch_size: --set "
        "KEY=N), bf16 (--bf16) or another --device")

    def faulty():
        raise RuntimeError("index out of range in self")  # a fault of the program: not said as a user's error

    with pytest.raises(RuntimeError, match="index out of range"):
        run_command(faulty)


def test_a_loader_workers_out_of_memory_is_said_by_its_own_last_line():
    from samacore.utils import out_of_memory, out_of_memory_said

    def memory_message(e):  # the message part of the line
        return out_of_memory_said(e, "remedy")[len("out of memory ("):-len("): remedy")]

    wrapped = RuntimeError("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                           "last):\n  File \"fetch.py\", line 52, in fetch\nRuntimeError: [enforce fail at "
                           "alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes.")
    assert out_of_memory(wrapped) and not out_of_memory(RuntimeError("index out of range in self"))
    assert memory_message(wrapped) == ("RuntimeError: [enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                                       "allocate memory: you tried to allocate 8 bytes.")
    assert memory_message(RuntimeError("CUDA error: out of memory\nCompile with TORCH_USE_CUDA_DSA")) == \
        "CUDA error: out of memory Compile with TORCH_USE_CUDA_DSA"
