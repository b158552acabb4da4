"""Every fault in one line: a run folder that cannot be written, a plugin file that does not load, a missing image
folder, a quoted number, the missing K400 weights of the default options, and no "alpha dropped" note for images
whose alpha is opaque everywhere."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import yaml
from PIL import Image

from helpers import GRID, REPO, SMALL_SWIN, vqa_train_options, write_yaml
from samacore import runs
from samacore.options import OptionError, load_plugins

from samaiqa import cli as iqa_cli  # imported here: their loggers hold the stdout of import time
from samavqa import cli as vqa_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def one_line_error(command, capsys):
    """Run a command as its script does; return the one line it printed on stderr (exit status 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        runs.run_command(command)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ------------------------------------------------------------------------------------------- read-only run folder
@pytest.fixture
def read_only(monkeypatch, tmp_path):
    """``tmp_path/ro`` behaves as a folder on a read-only file system (tests run as root, where chmod does not
    stop writes): creating a file in it fails with EROFS."""
    folder = tmp_path / "ro"
    folder.mkdir()
    real = tempfile.TemporaryFile

    def temporary_file(*args, dir=None, **kwargs):
        if dir is not None and os.path.abspath(dir).startswith(str(folder)):
            raise OSError(30, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(runs.tempfile, "TemporaryFile", temporary_file)
    return folder


def test_read_only_run_folder_is_said_before_any_work(vqa_data, read_only, tmp_path, capsys, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was built before the run folder was checked")

    monkeypatch.setattr(vqa_cli, "build_model", no_model)
    opt = write_yaml(tmp_path / "o.yml", vqa_train_options(vqa_data.root, "ro", run_dir=str(read_only / "runs/ro")))
    monkeypatch.setattr("sys.argv", ["demo_train.py", "-o", opt])
    line = one_line_error(vqa_cli.train_main, capsys)
    assert line == (f"error: run folder {read_only}/runs/ro cannot be written to (Read-only file system): make it "
                    "writable or choose another folder (option run_dir)")
    monkeypatch.setattr("sys.argv", ["demo_test.py", "-o", opt])
    assert f"run folder {read_only}/runs/ro/test cannot be written to" in one_line_error(vqa_cli.test_main, capsys)


def test_read_only_checkpoint_folder_is_said_too(vqa_data, read_only, tmp_path, capsys, monkeypatch):
    opt = write_yaml(tmp_path / "o.yml", vqa_train_options(vqa_data.root, "ro", run_dir=str(tmp_path / "runs"),
                                                           save_dir=str(read_only)))
    monkeypatch.setattr("sys.argv", ["demo_train.py", "-o", opt])
    assert "checkpoint folder (save_dir)" in one_line_error(vqa_cli.train_main, capsys)
    assert not (tmp_path / "runs").exists()


def test_read_only_iqa_test_folder(iqa_images, read_only, tmp_path, capsys, monkeypatch):
    (tmp_path / "m.pth").write_bytes(b"")  # there (a missing one is said first), never read: the folder is refused
    opt = {"name": "t", "stype": "sama", "run_dir": str(read_only), "load_path": str(tmp_path / "m.pth"),
           "data": {"data_info": str(iqa_images), "data_prefix": str(iqa_images.parent), **GRID},
           "model": {"backbone_args": SMALL_SWIN}}
    monkeypatch.setattr("sys.argv", ["demo_test_iqa.py", "-o", write_yaml(tmp_path / "t.yml", opt)])
    assert f"run folder {read_only}/test cannot be written to" in one_line_error(iqa_cli.test_main, capsys)


# ------------------------------------------------------------------------------------------- plugins
def test_plugin_with_a_syntax_error_is_named_with_its_line(tmp_path):
    plugin = tmp_path / "broken_syntax.py"
    plugin.write_text("x = 1\ndef f(:\n    pass\n")
    with pytest.raises(OptionError) as e:
        load_plugins({"plugins": [str(plugin)]})
    assert str(e.value).startswith(f"options.plugins: plugin file {plugin} has a syntax error at line 2: ")


def test_plugin_that_raises_is_named_with_its_line_and_exception(tmp_path):
    plugin = tmp_path / "refusing.py"
    plugin.write_text("import os\n\n\ndef check():\n    raise RuntimeError('plugin refuses to load')\n\n\ncheck()\n")
    with pytest.raises(OptionError) as e:
        load_plugins({"plugins": [str(plugin)]})
    assert str(e.value) == (f"options.plugins: plugin file {plugin} failed while loading at line 5: RuntimeError: "
                            "plugin refuses to load")
    assert not [m for m in sys.modules if m.startswith("sama_plugin_") and "refusing" in str(sys.modules[m])]


# ------------------------------------------------------------------------------------------- data
def test_missing_image_folder_is_named(iqa_images, tmp_path, capsys, monkeypatch):
    opt = {"name": "nf", "stype": "sama", "num_epochs": 1, "num_splits": 1, "run_dir": str(tmp_path / "run"),
           "data": {"data_info": str(iqa_images), "data_prefix": str(tmp_path / "no_images"), **GRID},
           "model": {"backbone_args": SMALL_SWIN}}
    monkeypatch.setattr("sys.argv", ["demo_train_iqa_baseline.py", "-o", write_yaml(tmp_path / "o.yml", opt)])
    line = one_line_error(iqa_cli.train_main, capsys)
    assert line == (f"error: data.data_prefix: folder {tmp_path}/no_images does not exist (the items of {iqa_images} "
                    "are looked up there); give the folder that holds them")


@pytest.mark.parametrize("tree", ["vqa", "iqa"])
def test_a_quoted_number_is_said_to_be_a_string(tree, vqa_data, iqa_images, tmp_path, capsys, monkeypatch):
    if tree == "vqa":
        cli = vqa_cli
        opt = vqa_train_options(vqa_data.root, "q")
        opt["data"]["val-small"]["args"]["sample_types"]["fragments"]["fragments_h"] = "4"
        key = "data.val-small.args.sample_types.fragments.fragments_h"
    else:
        cli = iqa_cli
        opt = {"name": "q", "stype": "sama", "data": {"data_info": str(iqa_images), **GRID, "fwin_h": "4"}}
        key = "data.fwin_h"
    monkeypatch.setattr("sys.argv", ["train", "-o", write_yaml(tmp_path / "q.yml", opt)])
    line = one_line_error(cli.train_main, capsys)
    assert line.endswith(f"{key} must be a positive integer, got the string '4' (quoted in the YAML file: write 4 "
                         "without quotes for a number)")


def test_train_without_arguments_names_the_option_file_and_the_download(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "VQA"), os.path.join(REPO, "IQA")]))
    r = subprocess.run([sys.executable, os.path.join(REPO, "VQA", "demo_train.py")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    [line] = r.stderr.splitlines()
    assert "swin_tiny_patch244_window877_kinetics400_1k.pth (load_path of the option file " in line
    assert os.path.join("VQA", "options", "fast-SAMA-train.yml") in line
    assert ("download it from https://github.com/SwinTransformer/storage/releases/download/v1.0.4/"
            "swin_tiny_patch244_window877_kinetics400_1k.pth") in line


# ------------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("see_through, noted", [(False, False), (True, True)])
def test_alpha_is_noted_only_when_some_pixel_is_not_opaque(tmp_path, see_through, noted):
    from samaiqa.datasets import load_image

    frames = []
    for level in (60, 120):
        rgba = np.full((24, 32, 4), level, np.uint8)
        rgba[..., 3] = 255
        if see_through:
            rgba[0, 0, 3] = 10
        frames.append(Image.fromarray(rgba, "RGBA"))
    path = str(tmp_path / "anim.webp")
    frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)
    notes = []
    load_image(path, notes=notes)
    assert notes[0] == "animated (2 frames): only the first frame is scored"
    assert any(n.startswith("alpha channel dropped") for n in notes) == noted


def test_iqa_missing_weights_are_named_before_the_run_folder_with_the_download(iqa_images, tmp_path, monkeypatch,
                                                                               capsys):
    """The IQA commands said ``load_path '...' not found (looked in: X, X)`` after creating the run folder, without
    the download link VQA gives; a missing ``--ckpt`` was named as the option file's ``load_path``."""
    monkeypatch.chdir(tmp_path)
    opt = {"name": "w", "stype": "sama", "num_epochs": 1, "run_dir": str(tmp_path / "run"),
           "load_path": "pretrained_weights/swinv2_tiny_patch4_window8_256.pth",
           "data": {"data_info": str(iqa_images), "data_prefix": str(iqa_images.parent), **GRID}}
    monkeypatch.setattr("sys.argv", ["train", "-o", write_yaml(tmp_path / "w.yml", opt)])
    line = one_line_error(iqa_cli.train_main, capsys)
    assert line == (f"error: checkpoint file not found: pretrained_weights/swinv2_tiny_patch4_window8_256.pth "
                    f"(load_path of the option file {tmp_path / 'w.yml'}); download it from https://github.com/"
                    f"SwinTransformer/storage/releases/download/v2.0.0/swinv2_tiny_patch4_window8_256.pth into "
                    f"pretrained_weights/ (see pretrained_weights/README.md)")
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr("sys.argv", ["test", "-o", str(tmp_path / "w.yml"), "--ckpt", str(tmp_path / "none.pth")])
    said = one_line_error(iqa_cli.test_main, capsys)
    assert said == f"error: checkpoint file not found: {tmp_path / 'none.pth'} (--ckpt)"
