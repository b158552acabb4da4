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


def test_an_impossible_device_is_one_line(setup, tmp_path, monkeypatch, capsys):
    """``--device`` is checked inside the command's error handling (it was a traceback): one line on any host."""
    img = make_images(str(tmp_path), 1)[0]
    monkeypatch.setattr(IS, "load_scorer", lambda *a, **k: pytest.fail("the model was loaded"))
    monkeypatch.setattr(VS, "load_scorer", lambda *a, **k: pytest.fail("the model was loaded"))
    assert IS.main(["-i", img, "--ckpt", "x.pth", "--device", "cuda:99"]) == 2
    assert one_error(capsys).startswith("error: --device cuda:99: ")
    assert VS.main(["-v", str(setup / "videos" / "v0.mp4"), "--ckpt", "x.pth", "--device", "cuda:99"]) == 2
    assert one_error(capsys).startswith("error: --device cuda:99: ")


def test_a_bad_resampling_engine_setting_is_one_line_before_any_work(setup, monkeypatch, capsys):
    """``SAMA_RESAMPLE_BACKEND`` (read when samacore.resample is imported) is checked when a command starts, not
    when the first frame is sampled (in a loader worker, whose error would come wrapped in its traceback)."""
    from samacore import resample
    from samavqa import cli

    monkeypatch.setattr(resample, "_CHOSEN", "fastest")
    monkeypatch.setattr(VS, "load_scorer", lambda *a, **k: pytest.fail("the model was loaded"))
    assert VS.main(["-v", str(setup / "videos" / "v0.mp4"), "--ckpt", str(setup / "tiny.pth")]) == 2
    assert one_error(capsys) == ("error: SAMA_RESAMPLE_BACKEND: unknown resampling backend 'fastest'; choose one "
                                 "of: auto, native, torch")
    monkeypatch.setattr("sys.argv", ["demo_train.py", "-o", str(setup / "tiny.yml")])
    monkeypatch.setattr(cli, "train_main", lambda: pytest.fail("the training started"))
    with pytest.raises(SystemExit) as stop:
        cli.train_command()
    assert stop.value.code == 2 and "unknown resampling backend 'fastest'" in one_error(capsys)


def test_a_fault_of_the_program_keeps_its_traceback(setup, monkeypatch):
    """Only what a user can fix (options, checkpoint, output, command line, a missing file, GPU memory) ends as one
    ``error:`` line; a ValueError / RuntimeError from the program itself propagates, traceback and all (it was
    shown as a usage error with exit status 2)."""
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(VS, "load_scorer", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        VS.main(["-v", str(setup / "videos" / "v0.mp4"), "--ckpt", str(setup / "tiny.pth")])


def test_resuming_into_a_file_that_is_not_text_is_one_line(setup, tmp_path, capsys):
    """--resume reads the rows already written: a CSV replaced by something that is not text (its record still
    there) is one line (it was a UnicodeDecodeError shown as a usage error by accident)."""
    out = tmp_path / "scores.csv"
    args = ["-v", str(setup / "videos" / "v0.mp4"), str(setup / "videos" / "v1.mp4"), "--ckpt",
            str(setup / "tiny.pth"), "--options", str(setup / "tiny.yml"), "--output", str(out), "--no-progress"]
    assert VS.main(args) == 0
    out.write_bytes(b"\xff\xfe\x00binary\x00")
    capsys.readouterr()
    assert VS.main(args + ["--resume"]) == 2
    assert one_error(capsys) == (f"error: --resume: {out} is not a CSV this command wrote (not UTF-8 text); pass "
                                 "--overwrite to start it again, or another --output")


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 8 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 9000000000 bytes. Error code 12 (Cannot allocate memory)"),
])
def test_running_out_of_memory_is_one_line(setup, monkeypatch, capsys, error):
    """Out of memory (GPU, or the CPU allocator's plain RuntimeError) is what the user changes settings for: one
    line saying so and what to change, not a traceback."""
    def score_batch(self, batch, per_clip=False):
        raise error

    monkeypatch.setattr(VS.VideoScorer, "score_batch", score_batch)
    args = ["-v", str(setup / "videos" / "v0.mp4"), "--ckpt", str(setup / "tiny.pth"), "--options",
            str(setup / "tiny.yml"), "--no-progress"]
    assert VS.main(args) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: out of memory (") and str(error).split(".")[0] in line
    assert line.endswith("): score with a smaller --batch-size or fewer --num-workers, or on another --device")


def test_model_options_the_layers_refuse_are_one_line(setup, capsys):
    """Values inside ``model.args`` that the schema leaves to the layers (a head dropout of 1.5) are an option
    error naming the options, not the layer's ValueError."""
    args = ["-v", str(setup / "videos" / "v0.mp4"), "--ckpt", str(setup / "tiny.pth"), "--options",
            str(setup / "tiny.yml"), "--no-progress", "--set", "model.args.vqa_head.dropout_ratio=1.5"]
    assert VS.main(args) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: cannot build the model from options.model.args {") and line.endswith(
        "dropout probability has to be between 0 and 1, but got 1.5")
