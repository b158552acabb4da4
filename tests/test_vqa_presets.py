"""Named released models for scoring (samavqa.presets; `vqa.py -m NAME`, `--list-models`): each preset's files,
choosing one (options and weights resolved, --ckpt / --options override), the one-line missing-weights message
with the download address, the listing, and the same hint from demo_test.py for a missing released load_path."""
import io
import os
import re

import pytest
import torch
import yaml

from helpers import REPO
from samacore.checkpoint import CheckpointError
from samacore.options import OptionError
from samavqa import cli
from samavqa import presets as P
from samavqa import score as S
from samavqa.schema import load_vqa_options
from test_vqa_score import options, write_video
from test_vqa_score import setup  # noqa: F401  (the tiny model, its options and videos: a module fixture)

# FAST-VQA's vqa.py -m names, and ours for the SAMA release
NAMES = ("SAMA", "FAST-VQA", "FAST-VQA-M", "FasterVQA", "FasterVQA-MS", "FasterVQA-MT")


def test_the_presets_are_the_released_models():
    assert P.PRESETS.names() == NAMES
    readme = open(os.path.join(REPO, "pretrained_weights", "README.md")).read()
    for name, preset in P.PRESETS.items():
        opt = load_vqa_options(preset.options_path, "test")  # a valid option file of the VQA tree ...
        assert os.path.basename(opt["load_path"]) == preset.weights  # ... whose load_path is the weight file
        if name != "SAMA":  # FAST-VQA's option files name their weight file and its address in the header
            header = open(preset.options_path).read().split("\n\n")[0]
            assert f"pretrained_weights/{preset.weights}" in header and preset.url in header
        assert preset.weights in readme and preset.url in readme
    assert P.PRESETS.get("SAMA").options_path == S.DEFAULT_OPTIONS  # the default model of vqa.py


@pytest.mark.parametrize("name", NAMES)
def test_choosing_a_preset_resolves_its_files_and_given_files_override(tmp_path, name):
    preset = P.PRESETS.get(name)
    weights = tmp_path / "pretrained_weights" / preset.weights
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    assert P.resolve_preset(name, None, None, [str(tmp_path)]) == (preset, str(weights), preset.options_path)
    assert P.resolve_preset(name, "my.pth", "my.yml", [str(tmp_path)]) == (preset, "my.pth", "my.yml")
    with pytest.raises(OptionError, match=r"--model: unknown model 'FasterVQ' \(did you mean 'FasterVQA'\?\)"):
        P.resolve_preset("FasterVQ", None, None, [str(tmp_path)])


def test_missing_weights_are_one_line_naming_the_file_and_where_to_download_it(tmp_path, setup, monkeypatch,
                                                                                capsys):
    for name, preset in P.PRESETS.items():
        with pytest.raises(CheckpointError) as e:
            P.find_weights(preset, [str(tmp_path)])
        msg = str(e.value)
        assert msg.startswith(f"model {name}: weight file pretrained_weights/{preset.weights} not found")
        assert f"download {preset.weights} from " in msg and preset.url in msg and "\n" not in msg
    # the command line (weights searched in the working directory and the repository root)
    monkeypatch.setattr(S, "default_search_roots", lambda: [str(tmp_path)])
    assert S.main(["-v", str(setup / "videos" / "v0.mp4"), "-m", "FasterVQA-MT"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: model FasterVQA-MT: weight file "
                                                   "pretrained_weights/FAST_VQA_3D_1_1.pth not found")
    assert P.PRESETS.get("FasterVQA").url in err


def test_a_registered_preset_scores_as_its_files_given_by_hand(tmp_path, setup, monkeypatch, capsys):
    """`-m NAME` is --options and --ckpt of its files: the same scores; a preset is one register_preset call."""
    preset = P.Preset("tiny", str(setup / "tiny.yml"), "tiny-release.pth", "https://example.org/tiny-release.pth",
                      "the tests", "a tiny SAMA model")
    P.register_preset(preset)
    try:
        (tmp_path / "pretrained_weights").mkdir()
        (tmp_path / "pretrained_weights" / "tiny-release.pth").write_bytes((setup / "tiny.pth").read_bytes())
        monkeypatch.chdir(tmp_path)
        videos = [str(setup / "videos" / n) for n in ("v0.mp4", "v2.mp4")]
        assert S.main(["-v", *videos, "-m", "tiny", "--output", "by_name.csv", "--no-progress"]) == 0
        err = capsys.readouterr().err
        assert "note: model tiny: a tiny SAMA model" in err
        assert f"(from {setup / 'tiny.yml'})" in err
        assert S.main(["-v", *videos, "--ckpt", str(setup / "tiny.pth"), "--options", str(setup / "tiny.yml"),
                       "--output", "by_hand.csv", "--no-progress"]) == 0
        assert (tmp_path / "by_name.csv").read_text() == (tmp_path / "by_hand.csv").read_text()
        scorer = S.load_scorer(model="tiny")  # the Python API takes the name too
        assert scorer.checkpoint == str(tmp_path / "pretrained_weights" / "tiny-release.pth")
        # --options overrides the preset's option file (here: another sample type)
        (tmp_path / "fragments.yml").write_text(yaml.safe_dump(options("fragments", str(setup))))
        assert S.load_scorer(model="tiny", options="fragments.yml").stype == "fragments"
    finally:
        P.PRESETS.unregister("tiny")


def test_list_models_prints_each_preset_and_whether_its_weights_are_there(tmp_path, capsys):
    (tmp_path / "pretrained_weights").mkdir()
    (tmp_path / "pretrained_weights" / "FAST_VQA_3D_1_1.pth").write_bytes(b"x")
    out = io.StringIO()
    P.list_presets([str(tmp_path)], out)
    lines = out.getvalue().splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:len(NAMES) + 1]}
    assert lines[0].split()[:2] == ["model", "weights"] and tuple(rows) == NAMES
    for name, preset in P.PRESETS.items():
        found = "yes" if preset.weights == "FAST_VQA_3D_1_1.pth" else "no"
        assert rows[name][1:4] == [preset.weights, found, preset.options]
    hints = [line for line in lines if line.startswith("to use ")]
    assert len(hints) == 3 and not any("FasterVQA" in h for h in hints)  # one per missing weight file
    assert any(h.startswith("to use SAMA: download SAMA-baseline_val-ltest_s_dev_v0.0.pth") for h in hints)
    # the command line: --list-models needs no files and exits 0, as --help
    with pytest.raises(SystemExit) as e:
        S.main(["--list-models"])
    printed = capsys.readouterr().out
    assert e.value.code == 0 and all(f"\n{name} " in printed for name in NAMES)


def test_demo_test_gives_the_download_hint_of_vqa_py_for_a_missing_released_checkpoint(tmp_path, setup, monkeypatch,
                                                                                       capsys):
    """load_path naming a released file that is not there: one line, exit 2, with the hint vqa.py gives, before
    any data is read (the data_prefix here does not exist either)."""
    for name in ("SAMA", "FasterVQA"):
        preset = P.PRESETS.get(name)
        opt = dict(options(data_prefix=str(tmp_path / "no-videos")), load_path=str(tmp_path / preset.weights))
        (tmp_path / "test.yml").write_text(yaml.safe_dump(opt))
        monkeypatch.setattr("sys.argv", ["demo_test.py", "-o", str(tmp_path / "test.yml")])
        with pytest.raises(SystemExit) as e:
            cli.test_command()  # demo_test.py's body
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"error: checkpoint file not found: {tmp_path / preset.weights} (load_path of the option file "
                       f"{tmp_path / 'test.yml'}): the released "
                       f"{name} weights; {preset.download_hint()}")
        # vqa.py says the same about the same file
        assert S.main(["-v", str(setup / "videos" / "v0.mp4"), "--ckpt", str(tmp_path / preset.weights)]) == 2
        assert preset.download_hint() in capsys.readouterr().err
    assert re.search(r"Either download SAMA-baseline_val-ltest_s_dev_v0\.0\.pth from the SAMA authors \(https://",
                     S.DEFAULT_CHECKPOINT.what_to_do)

