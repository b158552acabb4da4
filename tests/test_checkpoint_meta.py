"""Checkpoints that say what they are (``"sama"``), carry a checksum of their tensors and hold CPU tensors; weights
that do not fit the model's shapes are refused naming the file and what to do."""
import os
import subprocess
import sys

import pytest
import torch
import yaml

from helpers import GRID, REPO, SMALL_SWIN, vqa_train_options, write_yaml
from samacore import checkpoint as C
from samacore.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from samaiqa.datasets import sampling_args

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.fixture(scope="module")
def vqa_run(vqa_data, tmp_path_factory):
    """One epoch of the tiny VQA training (one per-epoch checkpoint, one best checkpoint, last.pth)."""
    from samavqa import cli

    folder = tmp_path_factory.mktemp("meta_vqa")
    opt = vqa_train_options(vqa_data.root, "meta", num_epochs=1, run_dir=str(folder / "run"),
                            save_dir=str(folder / "w"))
    cli.train_main(["-o", write_yaml(folder / "o.yml", opt), "--no-progress"])
    return folder, opt


def test_vqa_checkpoints_describe_themselves(vqa_run):
    folder, opt = vqa_run
    files = [folder / "w" / "meta_val-small_s_dev_v0.0.pth", folder / "w" / "meta_Epoch_00.pth", folder / "run" / "last.pth"]
    for path in files:
        obj = torch.load(path, map_location="cpu", weights_only=True)  # plain values only: a bare weights-only load
        meta = obj["sama"]
        assert meta["version"] == C.META_VERSION and meta["tree"] == "vqa"
        assert meta["options"]["name"] == "meta" and meta["options"]["data"] == opt["data"]
        assert meta["scoring"] == {"stype": "fragments",
                                   "sample_types": opt["data"]["val-small"]["args"]["sample_types"]}
        assert obj["checksum"] == C.tensor_checksum(obj) and obj["checksum"].startswith("crc32:")
        yaml.safe_dump(meta)  # YAML-safe all through


def test_iqa_checkpoints_describe_themselves(iqa_images, tmp_path):
    from samaiqa import cli

    opt = {"name": "mi", "stype": "sama", "num_epochs": 1, "warmup_epochs": 1, "batch_size": 4, "num_workers": 0,
           "num_splits": 1, "progress": False, "run_dir": str(tmp_path / "run"),
           "data": {"database": "syn", "data_info": str(iqa_images), "data_prefix": str(iqa_images.parent),
                    "exif_transpose": True, **GRID},
           "model": {"backbone_args": SMALL_SWIN}}
    cli.train_main(["-o", write_yaml(tmp_path / "o.yml", opt)])
    for path in (tmp_path / "run" / "mi_split00_syn_s_dev.pth", tmp_path / "run" / "last.pth"):
        meta = load_checkpoint(str(path))["sama"]
        assert meta["tree"] == "iqa" and meta["options"]["num_epochs"] == 1
        assert meta["scoring"] == {"stype": "sama", "data": dict(sampling_args(GRID), exif_transpose=True)}


def test_damaged_checkpoint_is_refused(tmp_path):
    path = str(tmp_path / "m.pth")
    save_checkpoint({"state_dict": {"w": torch.randn(64, 1024)}, "epoch": 3}, path)  # 256 KB of weights
    assert load_checkpoint(path)["epoch"] == 3
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # 4 KB in the middle of the file flipped
        f.seek(size // 2)
        block = f.read(4096)
        f.seek(size // 2)
        f.write(bytes(b ^ 0xFF for b in block))
    with pytest.raises(CheckpointError, match=r"m\.pth is damaged: the checksum of its tensors differs .*copy or "
                                              r"download it again"):
        load_checkpoint(path)


def test_a_damaged_checkpoint_is_not_scored(vqa_run, vqa_data, tmp_path):
    """``vqa.py`` with a trained checkpoint that had 4 KB flipped in its middle: refused in one line, no score."""
    folder, opt = vqa_run
    path = tmp_path / "copy.pth"
    path.write_bytes((folder / "w" / "meta_val-small_s_dev_v0.0.pth").read_bytes())
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        block = f.read(4096)
        f.seek(size // 2)
        f.write(bytes(b ^ 0xFF for b in block))
    options = write_yaml(tmp_path / "o.yml", {**opt, "load_path": str(path)})
    r = subprocess.run([sys.executable, os.path.join(REPO, "VQA", "vqa.py"), "-v", str(vqa_data.root / "videos" / "v0.mp4"),
                        "--ckpt", str(path), "--options", options], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.splitlines()[-1].startswith(f"error: {path} is damaged")


def test_files_without_checksum_load_as_before(tmp_path):
    path = str(tmp_path / "released.pth")
    torch.save({"state_dict": {"w": torch.ones(3)}}, path)
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(3))


def test_saved_tensors_are_moved_to_the_cpu(tmp_path, monkeypatch):
    moved = []
    cpu = torch.Tensor.cpu

    def recording_cpu(self, *a, **k):
        moved.append(tuple(self.shape))
        return cpu(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "cpu", recording_cpu)
    state = {"model": {"a": torch.ones(2), "b": torch.zeros(3, 1)}, "rng": [torch.ones(4)], "epoch": 1}
    save_checkpoint(state, str(tmp_path / "s.pth"))
    assert {(2,), (3, 1), (4,)} <= set(moved)
    assert "checksum" not in state  # the caller's object is left as it was


def test_wrong_shapes_name_the_file_and_what_to_do(vqa_run, tmp_path):
    from samavqa import cli
    from samavqa.recipe import build_model

    folder, opt = vqa_run
    ckpt = str(folder / "w" / "meta_val-small_s_dev_v0.0.pth")
    other = dict(opt, model={**opt["model"], "args": {**opt["model"]["args"],
                                                      "vqa_head": {"in_channels": 192, "hidden_channels": 8}}})
    other["load_path"] = ckpt
    with pytest.raises(CheckpointError) as e:
        cli.load_weights(build_model(other, "cpu"), other, "model", full_model=True)
    assert ckpt in str(e.value) and "wrong shape" in str(e.value)
    assert "trained with other model options; pass the option file it was trained with (--options / -o)" in str(e.value)


def test_saved_state_dicts_keep_their_module_versions(tmp_path):
    state = torch.nn.BatchNorm1d(3).state_dict()  # an OrderedDict with _metadata (module versions)
    save_checkpoint({"state_dict": state}, str(tmp_path / "bn.pth"))
    loaded = load_checkpoint(str(tmp_path / "bn.pth"))["state_dict"]
    assert list(loaded) == list(state) and loaded._metadata == state._metadata
