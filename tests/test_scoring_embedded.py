"""Checkpoints that carry their options (``obj["sama"]["options"]``) score without --options; weights that do not
fit the model are one line naming the file, the options used and what to pass."""
import pytest
import torch

from samacore.checkpoint import CheckpointError
from samacore.scoring import embedded_options
from samaiqa import score as IS
from samavqa import score as VS
from test_iqa_score import small_checkpoint
from test_vqa_score import options
from test_vqa_score import setup  # noqa: F401  (the tiny model, its options and videos: a module fixture)

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def test_embedded_options_are_read_only_from_the_sama_key():
    assert embedded_options({"sama": {"version": 1, "options": {"stype": "sama"}}}) == {"stype": "sama"}
    assert embedded_options({"state_dict": {}}) is None and embedded_options([1, 2]) is None
    assert embedded_options({"sama": {"version": 1}}) is None


def test_a_vqa_checkpoint_with_its_options_needs_no_options_file(setup, tmp_path):
    obj = torch.load(setup / "tiny.pth")
    opt = options(stype="fragments", data_prefix=str(setup))
    obj["sama"] = {"version": 1, "tree": "vqa", "options": opt, "scoring": {"stype": "fragments"}}
    torch.save(obj, tmp_path / "own.pth")
    scorer = VS.load_scorer(str(tmp_path / "own.pth"), search_roots=[str(tmp_path)])
    assert scorer.stype == "fragments" and f"from the options stored in {tmp_path / 'own.pth'}" in scorer.notes[-1]
    video = str(setup / "videos" / "v1.mp4")
    assert scorer(video) == VS.load_scorer(str(setup / "tiny.pth"), opt)(video)


def test_an_iqa_checkpoint_with_its_options_needs_no_options_file(tmp_path):
    path, _ = small_checkpoint(tmp_path / "c.pth")
    obj = torch.load(path, weights_only=False)
    obj["sama"] = {"version": 1, "tree": "iqa", "options": {"stype": "fragment", "data": dict(obj["data"])}}
    torch.save(obj, tmp_path / "own.pth")
    scorer = IS.load_scorer(str(tmp_path / "own.pth"))
    assert scorer.stype == "fragment" and "(from the checkpoint's options)" in scorer.notes[0]


def test_weights_that_do_not_fit_name_the_file_the_options_and_the_fix(setup, tmp_path):
    with pytest.raises(CheckpointError) as e:
        VS.load_scorer(str(setup / "tiny.pth"), search_roots=[str(tmp_path)])  # the paper model's options
    msg = str(e.value)
    assert msg.startswith(f"{setup / 'tiny.pth'} does not fit the model built from ") and "fast-SAMA-test.yml" in msg
    assert "pass --options FILE" in msg and "-m NAME" in msg and "\n" not in msg
