"""The run-option table (samacore.run_options) and ``--set``: one entry gives a key both schemas check and a flag the
commands offer; ``--set KEY.PATH=VALUE`` reaches any option, typed and checked like the file, and is recorded."""
import os

import pytest
import yaml

from helpers import vqa_train_options, write_yaml
from samacore import run_options, runs
from samacore.options import OptionError
from samacore.run_options import RUN_OPTIONS, RunOption
from samaiqa.schema import load_iqa_options
from samavqa import cli
from samavqa.schema import load_vqa_options

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_TRAIN = os.path.join(REPO, "VQA", "options", "fast-SAMA-train.yml")
PAPER_IQA = os.path.join(REPO, "IQA", "options", "fast-sama-iqa.yml")


def test_set_reaches_nested_options_typed_as_the_file():
    opt = load_vqa_options(PAPER_TRAIN, "train", sets=[
        "optimizer.lr=3e-4", "data.train.args.sample_types.fragments.num_clips=2", "ema=false", "seed=7"])
    assert opt["optimizer"]["lr"] == pytest.approx(3e-4) and isinstance(opt["optimizer"]["lr"], float)
    assert opt["data"]["train"]["args"]["sample_types"]["fragments"]["num_clips"] == 2
    assert opt["ema"] is False and opt["seed"] == 7
    iqa = load_iqa_options(PAPER_IQA, train=True, sets=["num_epochs=3", "data.fwin_h=4"])
    assert iqa["num_epochs"] == 3 and iqa["data"]["fwin_h"] == 4


@pytest.mark.parametrize("item, message", [
    ("optimizer.lr=fast", "options.optimizer.lr must be float, got str: 'fast'"),
    ("num_epoch=3", "unknown option options.num_epoch (did you mean 'num_epochs'?)"),
    ("data.train.args.sample_types.fragments.fsize_hh=3", "(did you mean 'fsize_h'?)"),
    ("ema_decay=2", "options.ema_decay must be a number in [0, 1], got 2"),
    ("optimizer.lr", "--set 'optimizer.lr': expected KEY.PATH=VALUE"),
    ("name.x=1", "--set name.x: name is str"),
])
def test_set_is_checked_like_the_file(item, message):
    with pytest.raises(OptionError) as e:
        load_vqa_options(PAPER_TRAIN, "train", sets=[item])
    assert message in str(e.value)


@pytest.mark.parametrize("item", ["num_epochs=", "seed=", "name=", "optimizer.lr=", "warmup_epochs=", "ema_decay=",
                                  "train_batch_size="])
def test_an_empty_value_is_refused_where_the_trees_need_one(item, tmp_path):
    """``seed:`` left blank in a file, or ``--set seed=``, loads as null: it passed the checks (``absent or None:
    nothing to check``) and ended as ``int(None)``'s traceback mid-run, or a run folder ``runs/None``."""
    key = item[:-1]
    with pytest.raises(OptionError, match=rf"^options\.{key.replace('.', '[.]')} is empty: give it a value \((int|float|"
                                          rf"str)\) or leave the key out$"):
        load_vqa_options(PAPER_TRAIN, "train", sets=[item])
    text = open(PAPER_IQA).read() + "\nseed:\n"  # blank in the file itself
    with pytest.raises(OptionError, match=r"^options\.seed is empty"):
        load_iqa_options(write_yaml(tmp_path / "blank.yml", yaml.safe_load(text)), train=True)
    # where empty means something (load_path: none, device: automatic ...), it stays allowed
    opt = load_vqa_options(PAPER_TRAIN, "train", sets=["load_path=", "device=", "stop_after_epochs="])
    assert opt["load_path"] is None and opt["device"] is None


def test_every_table_key_is_accepted_by_its_trees_and_refused_elsewhere():
    from samaiqa.schema import top_keys as iqa_keys
    from samavqa.schema import top_keys as vqa_keys

    VQA_KEYS, IQA_KEYS = vqa_keys(), iqa_keys()

    for key, option in RUN_OPTIONS.items():
        top = key.split(".")[0]
        assert (top in VQA_KEYS) == ("vqa" in option.trees or top == "optimizer"), key
        assert (top in IQA_KEYS) == ("iqa" in option.trees or top == "optimizer"), key


def test_a_new_run_option_is_one_entry(tmp_path):
    entry = RunOption("max_clips_seen", int, "a test option", low=1, flag="--max-clips-seen", metavar="N")
    run_options.run_option(entry)
    try:
        p = runs.command_parser("t", "x.yml", "opt", test=False)
        assert "--max-clips-seen" in p.format_help()
        args = p.parse_args(["--max-clips-seen", "3"])
        assert runs.option_overrides(args) == {"max_clips_seen": 3}
        opt = load_vqa_options(PAPER_TRAIN, "train", overrides=runs.option_overrides(args))
        assert opt["max_clips_seen"] == 3
        with pytest.raises(OptionError, match="max_clips_seen must be at least 1, got 0"):
            load_vqa_options(PAPER_TRAIN, "train", sets=["max_clips_seen=0"])
    finally:
        RUN_OPTIONS.unregister("max_clips_seen")


def test_flags_come_from_the_table():
    train = runs.command_parser("t", "x.yml", "opt", test=False).parse_args(
        ["--bf16", "--trust-checkpoint", "--stop-after-epochs", "2", "--device", "cpu", "--no-progress"])
    assert runs.option_overrides(train) == {"trust_checkpoint": True, "device": "cpu", "amp": "bf16",
                                            "progress": False, "stop_after_epochs": 2}
    test = runs.command_parser("t", "x.yml", "opt", test=True).parse_args(["--ckpt", "w.pth"])
    assert runs.option_overrides(test) == {"load_path": "w.pth"}
    with pytest.raises(SystemExit):  # a training flag is not offered by the test commands
        runs.command_parser("t", "x.yml", "opt", test=True).parse_args(["--stop-after-epochs", "1"])


def test_keys_without_effect_are_named_once(tmp_path, caplog):
    opt = yaml.safe_load(open(PAPER_TRAIN))
    opt["need_feat"] = True
    opt["data"]["train"]["args"]["sample_types"]["fragments"]["nfrags"] = 1
    caplog.set_level("INFO")
    load_vqa_options(write_yaml(tmp_path / "o.yml", opt), "train")
    lines = [r.getMessage() for r in caplog.records if "no effect here" in r.getMessage()]
    assert len(lines) == 1
    assert "need_feat" in lines[0] and "data.train.args.sample_types.fragments.nfrags" in lines[0]
    iqa = yaml.safe_load(open(PAPER_IQA))
    iqa.update(constant_epochs=1, l_num_epochs=2)
    caplog.clear()
    load_iqa_options(write_yaml(tmp_path / "i.yml", iqa), train=True)
    lines = [r.getMessage() for r in caplog.records if "no effect here" in r.getMessage()]
    assert len(lines) == 1 and "l_num_epochs" in lines[0] and "constant_epochs" in lines[0]


def test_one_default_sample_type(tmp_path):
    from samacore.sampling import DEFAULT_SAMPLE_TYPE
    from samaiqa.datasets import ImageDataset
    from samavqa.datasets import FusionDataset
    from samavqa.sampling import get_single_sample

    opt = yaml.safe_load(open(PAPER_TRAIN))
    del opt["stype"]
    assert load_vqa_options(write_yaml(tmp_path / "o.yml", opt), "train")["stype"] == DEFAULT_SAMPLE_TYPE == "sama"
    iqa = yaml.safe_load(open(PAPER_IQA))
    del iqa["stype"]
    assert load_iqa_options(write_yaml(tmp_path / "i.yml", iqa), train=True)["stype"] == DEFAULT_SAMPLE_TYPE
    for fn in (get_single_sample, FusionDataset.__init__, ImageDataset.__init__):
        import inspect

        params = inspect.signature(fn).parameters
        name = "sample_type" if "sample_type" in params else "stype"
        assert params[name].default == DEFAULT_SAMPLE_TYPE, fn


def test_set_is_recorded_in_the_run_options(vqa_data, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    opt = vqa_train_options(vqa_data.root, "set-run", num_epochs=2, save_model=False)
    path = write_yaml(tmp_path / "o.yml", opt)
    summary = cli.train_main(["-o", path, "--no-progress", "--set", "num_epochs=1", "--set", "optimizer.lr=0.002"])
    saved = yaml.safe_load(open(tmp_path / "runs" / "set-run" / "options.yml"))
    assert saved["num_epochs"] == 1 and saved["optimizer"]["lr"] == pytest.approx(0.002)
    assert summary["num_epochs"] == 1


def test_scorers_take_set_too(tmp_path, iqa_images):
    """``--set`` reaches the scorers' options, checked like a file: the sample type, a bad grid value."""
    import torch

    from helpers import GRID, SMALL_SWIN
    from samaiqa import score
    from samaiqa.checkpoints import save_model_checkpoint
    from samaiqa.model import IQAModel

    torch.manual_seed(0)
    ckpt = str(tmp_path / "m.pth")
    save_model_checkpoint(ckpt, IQAModel(img_size=64, **SMALL_SWIN), data=dict(GRID), stype="sama")
    assert score.load_scorer(ckpt, device="cpu", sets=["stype=fragment"]).stype == "fragment"
    with pytest.raises(OptionError, match="data.fsize_h must be a positive integer, got 0"):
        score.load_scorer(ckpt, device="cpu", sets=["data.fsize_h=0"])
    image = str(iqa_images.parent / "im1.png")
    assert score.main(["-i", image, "--ckpt", ckpt, "--set", "stype=samma", "--no-progress"]) == 2
