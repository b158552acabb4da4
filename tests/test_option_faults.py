"""Bad options are rejected before any work starts, naming the key path, what is allowed and near misses."""
import pytest
import yaml

from samacore.options import OptionError
from samaiqa.cli import load_iqa_options
from samavqa import FusionDataset
from samavqa.cli import load_vqa_options
from samavqa.sampling import check_sample_options

FRAG = dict(fragments_h=7, fragments_w=7, fsize_h=32, fsize_w=32, aligned=32, clip_len=32, frame_interval=2,
            num_clips=1)
VQA_OPT = {
    "name": "t", "num_epochs": 2, "stype": "sama",
    "data": {"val": {"type": "FusionDataset", "args": {"phase": "test", "anno_file": None, "data_prefix": ".",
                                                      "sample_types": {"fragments": FRAG}}}},
    "model": {"type": "DiViDeAddEvaluator", "args": {"backbone_size": "swin_nano_grpb"}},
    "optimizer": {"lr": 1e-3, "backbone_lr_mult": 0.1, "wd": 0.05},
}
IQA_OPT = {"name": "t", "stype": "sama", "num_epochs": 2, "data": {"database": "x", "data_info": "x.txt"}}


def write(tmp_path, opt, patch):
    opt = yaml.safe_load(yaml.safe_dump(opt))
    for path, value in patch.items():
        node = opt
        *parents, key = path.split(".")
        for p in parents:
            node = node[p]
        node[key] = value
    f = tmp_path / "o.yml"
    f.write_text(yaml.safe_dump(opt))
    return str(f)


@pytest.mark.parametrize("patch, message", [
    ({"num_epochs": "eight"}, "options.num_epochs must be int, got str: 'eight'"),
    ({"train_batch_size": 0}, "options.train_batch_size must be at least 1, got 0"),
    ({"optimizer.lr": "fast"}, "options.optimizer.lr must be float"),
    ({"ema": "yes"}, "options.ema must be bool"),
    ({"num_epoch": 3}, "unknown option options.num_epoch (did you mean 'num_epochs'?)"),
    ({"stype": "sama_spm"}, "unknown sample type 'sama_spm' (did you mean 'sama-spm'?)"),
    ({"max_bad_fraction": 2}, "max_bad_fraction must be a number in [0, 1]"),
    ({"data.val.args.num_threads": "abc"}, "data.val.args.num_threads must be an integer >= 0, got the string 'abc'"),
    ({"data.val.args.num_threads": -1}, "data.val.args.num_threads must be an integer >= 0, got -1"),
])
def test_vqa_option_file_faults(tmp_path, patch, message):
    with pytest.raises(OptionError) as e:
        load_vqa_options(write(tmp_path, VQA_OPT, patch))
    assert message in str(e.value)


@pytest.mark.parametrize("patch, message", [
    ({"num_epochs": "fifty"}, "options.num_epochs must be int, got str: 'fifty'"),
    ({"stype": "fragments"}, "did you mean 'fragment'?"),
    ({"data.fwin_hh": 8}, "unknown option data.fwin_hh (did you mean 'fwin_h'?)"),
    ({"loss": "plcc"}, "loss = 'plcc' is not allowed (did you mean 'plcc_rank'?); choose one of: smooth_l1, plcc_rank"),
    ({"lr_schedule": "cos"}, "lr_schedule = 'cos' is not allowed (did you mean 'cosine'?); choose one of: constant, cosine"),
    ({"data.train_augment": "rotate"}, "data.train_augment = 'rotate' is not allowed"),
])
def test_iqa_option_file_faults(tmp_path, patch, message):
    with pytest.raises(OptionError) as e:
        load_iqa_options(write(tmp_path, IQA_OPT, patch), train=True)
    assert message in str(e.value)


@pytest.mark.parametrize("patch, message", [
    ({"aligned": 5}, "aligned=5 must divide clip_len=32"),
    ({"fsize_h": 3200}, "7*32 = 224"),
    ({"fsize_h": 0}, "fsize_h must be a positive integer, got 0"),
    ({"clip_len": 32.5}, "clip_len must be a positive integer"),
    ({"fragment_h": 7}, "did you mean 'fragments_h'?"),
])
def test_sample_option_faults_are_caught_when_the_dataset_is_built(patch, message):
    args = {"phase": "test", "anno_file": None, "data_prefix": ".", "sample_types": {"fragments": {**FRAG, **patch}}}
    with pytest.raises(OptionError) as e:
        FusionDataset(args, stype="sama")
    assert message in str(e.value) and "sample_types.fragments" in str(e.value)


def test_valid_paper_options_pass():
    for stype in ("fragments", "sama", "sama-c", "sama-mix", "sama-spm", "sama-swm"):
        check_sample_options(stype, FRAG)


@pytest.mark.parametrize("text, problem", [
    ("name: t\nwhen: 2020-13-45\n", "month must be in 1..12"),  # a date PyYAML cannot build
    ("name: t\ncount: !!int abc\n", "invalid literal for int()"),
    ("name: t\nlr: !!float fast\n", "could not convert string to float"),
])
def test_values_yaml_cannot_build_are_one_option_error_naming_the_file(tmp_path, text, problem):
    """PyYAML raises a plain ValueError for these (not a YAMLError): an OptionError naming the file, not an error
    without the file's name (or, in a scoring command, a traceback)."""
    path = tmp_path / "o.yml"
    path.write_text(text)
    with pytest.raises(OptionError) as e:
        load_vqa_options(str(path))
    assert str(e.value).startswith(f"option file {path} holds a value that cannot be read: ") and problem in str(e.value)


def test_a_set_value_yaml_cannot_build_is_kept_as_text():
    from samacore.options import parse_set

    assert parse_set("data.when=2020-13-45") == ("data.when", "2020-13-45")
    assert parse_set("optimizer.lr=3e-4") == ("optimizer.lr", 3e-4)


def test_a_grid_option_given_twice_differently_is_an_option_error():
    """The original's ``fwin_h`` and ``fragments_h`` for one option with two values: an OptionError wherever the
    data block comes from (options stored in an older checkpoint reach it without the schema's check)."""
    from samaiqa.datasets import sampling_args

    with pytest.raises(OptionError, match=r"data.fwin_h and data.fragments_h name the same grid option with "
                                          r"different values \(4, 8\): keep one"):
        sampling_args({"fwin_h": 4, "fragments_h": 8})
    assert sampling_args({"fwin_h": 4, "fragments_h": 4})["fragments_h"] == 4
