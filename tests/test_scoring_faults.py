"""Scoring faults, each one line (exit status 2 / ValueError) before any model work: a video given to iqa.py,
a folder as --ckpt, non-finite tensors, --stype on a trained model (calibration dropped, said), the IQA hint."""
import csv

import pytest
import torch

from samaiqa import score as IS
from samavqa import score as VS
from test_iqa_score import make_images, small_checkpoint
from test_vqa_score import write_video
from test_vqa_score import setup  # noqa: F401  (the tiny model, its options and videos: a module fixture)

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def one_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("name", ["clip.mp4", "holiday.jpg"])
def test_a_video_given_to_iqa_is_one_line(tmp_path, monkeypatch, capsys, name):
    write_video(tmp_path / "v.mp4", 0, frames=3)
    (tmp_path / "v.mp4").rename(tmp_path / name)
    img = make_images(str(tmp_path), 1)[0]
    monkeypatch.setattr(IS, "load_scorer", lambda *a, **k: pytest.fail("the model was loaded"))
    assert IS.main(["-i", img, str(tmp_path / name), "--ckpt", "x.pth"]) == 2
    assert one_error(capsys) == (f"error: -i {tmp_path / name}: it is an MP4 / QuickTime video, not an image (an "
                                 "image file is needed: .jpg, .jpeg, .png, .bmp, .tif, .tiff or any format PIL reads; "
                                 "videos are scored with VQA/vqa.py)")


def test_a_folder_as_ckpt_is_said_to_be_a_folder(setup, tmp_path, capsys):
    img = make_images(str(tmp_path), 1)[0]
    assert IS.main(["-i", img, "--ckpt", str(tmp_path)]) == 2
    assert f"--ckpt {tmp_path} is a folder, not a checkpoint file" in one_error(capsys)
    assert VS.main(["-v", str(setup / "videos" / "v0.mp4"), "--ckpt", str(tmp_path)]) == 2
    assert f"--ckpt {tmp_path} is a folder, not a checkpoint file" in one_error(capsys)


def test_non_finite_tensors_are_refused(setup, tmp_path):
    iqa = IS.load_scorer(small_checkpoint(tmp_path / "c.pth")[0])
    with pytest.raises(ValueError, match=r"an image tensor must hold finite values, got 12288 NaN / inf of 12288"):
        iqa(torch.full((3, 64, 64), float("nan")))
    almost = torch.rand(3, 64, 64)
    almost[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="got 1 NaN / inf"):
        iqa(almost)
    vqa = VS.load_scorer(str(setup / "tiny.pth"), str(setup / "tiny.yml"))
    with pytest.raises(ValueError, match="a video tensor must hold finite values"):
        vqa(torch.full((8, 64, 64, 3), float("nan")))


def test_stype_override_drops_the_calibration_and_says_so(setup, tmp_path, capsys):
    vqa = VS.load_scorer(str(setup / "tiny.pth"), str(setup / "tiny.yml"), stype="fragments")
    assert vqa.calibration is None and "sample type overridden: --stype fragments in place of sama" in \
        vqa.calibration_note and "no longer applies" in vqa.calibration_note
    assert VS.load_scorer(str(setup / "tiny.pth"), str(setup / "tiny.yml"), stype="sama").calibration is not None
    ckpt = small_checkpoint(tmp_path / "c.pth")[0]
    imgs = make_images(str(tmp_path), 2)
    out = tmp_path / "s.csv"
    assert IS.main(["-i", *imgs, "--ckpt", ckpt, "--stype", "fragment", "--output", str(out), "--no-progress"]) == 0
    assert all(r["calibrated"] == "" and r["score"] for r in csv.DictReader(open(out)))
    assert "note: sample type overridden: --stype fragment in place of sama" in capsys.readouterr().err


def test_iqa_hint_names_the_examplar_options_and_make_demo(tmp_path):
    with pytest.raises(IS.NoCheckpointError) as e:
        IS.find_default_checkpoint([str(tmp_path)])
    assert "IQA/options/examplar-sama-iqa.yml" in str(e.value) and "make demo" in str(e.value)
