"""VQA scoring (VQA/vqa.py, samavqa.score): single / many videos, CSV rows, calibration, determinism, defaults."""
import csv
import json
import math
import os

import numpy as np
import pytest
import torch
import yaml

import cv2

from samacore.calibration import Calibration, calibration_from_info, calibration_stats
from samavqa import score as S
from samavqa.cli import make_predict_fn
from samavqa.datasets import FusionDataset
from samavqa.models import DiViDeAddEvaluator

FRAG = dict(fragments_h=2, fragments_w=2, fsize_h=32, fsize_w=32, aligned=8, clip_len=8, frame_interval=1, num_clips=2)
MODEL = {"type": "DiViDeAddEvaluator",
         "args": {"backbone": {"fragments": {"checkpoint": False, "pretrained": None}},
                  "backbone_size": "swin_nano_grpb", "backbone_preserve_keys": "fragments", "divide_head": False,
                  "vqa_head": {"in_channels": 192, "hidden_channels": 16}}}
STATS = {"mean": 50.0, "std": 10.0, "n": 5, "pred_mean": 0.1, "pred_std": 0.2}


def write_video(path, seed, frames=20, h=64, w=80):
    rng = np.random.default_rng(seed)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for _ in range(frames):
        out.write(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8))
    out.release()


def options(stype="sama", data_prefix="."):
    return {"name": "tiny", "stype": stype, "model": MODEL,
            "data": {"val": {"type": "FusionDataset", "args": {"phase": "test", "data_prefix": data_prefix,
                                                               "sample_types": {"fragments": dict(FRAG)}}}}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa_score")
    (root / "videos").mkdir()
    for i in range(3):
        write_video(root / "videos" / f"v{i}.mp4", i, h=64 + 16 * i)
    (root / "videos" / "broken.mp4").write_bytes(b"not a video" * 20)
    torch.manual_seed(0)
    model = DiViDeAddEvaluator(**MODEL["args"])
    torch.save({"state_dict": model.state_dict(), "label_stats": STATS}, root / "tiny.pth")
    torch.save({"state_dict": model.state_dict(), "label_stats": {"mean": 50.0, "std": 10.0, "n": 5}},
               root / "nostats.pth")
    (root / "tiny.yml").write_text(yaml.safe_dump(options(data_prefix=str(root / "videos"))))
    return root


def test_many_videos_csv_rows_and_calibration(setup, capsys):
    out = setup / "scores.csv"
    rc = S.main(["--dir", str(setup / "videos"), "--ckpt", str(setup / "tiny.pth"), "--options",
                 str(setup / "tiny.yml"), "--output", str(out), "--no-progress"])
    assert rc == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["name"] for r in rows] == ["broken.mp4", "v0.mp4", "v1.mp4", "v2.mp4"]
    assert list(rows[0]) == ["name", "score", "calibrated", "error", "note"]
    assert all(r["note"] == "" for r in rows)  # normal files: nothing to say
    assert rows[0]["score"] == "" and rows[0]["calibrated"] == ""
    assert "broken.mp4" in rows[0]["error"] and "not a readable video container" in rows[0]["error"]
    scores = [float(r["score"]) for r in rows[1:]]
    assert all(r["error"] == "" for r in rows[1:]) and len(set(scores)) == 3
    for r, s in zip(rows[1:], scores):
        assert float(r["calibrated"]) == pytest.approx(50.0 + 10.0 * (s - 0.1) / 0.2, rel=1e-12)
    err = capsys.readouterr().err
    assert "3 of 4 videos scored" in err and "warning: broken.mp4" in err


def test_single_video_prints_score_equal_to_test_pipeline(setup, capsys):
    path = str(setup / "videos" / "v1.mp4")
    rc = S.main(["-v", path, "--ckpt", str(setup / "tiny.pth"), "--options", str(setup / "tiny.yml")])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{path}: score ") and "calibrated" in line
    printed = float(line.split("score ")[1].split(",")[0])
    # the same model through the dataset + predict function demo_test.py uses
    scorer = S.load_scorer(str(setup / "tiny.pth"), str(setup / "tiny.yml"))
    ds = FusionDataset(dict(phase="test", anno_file=[{"filename": path, "label": 1.0}], data_prefix=str(setup),
                            sample_types={"fragments": dict(FRAG)}), stype="sama")
    batch = torch.utils.data.default_collate([ds[0]])
    _, preds, _ = make_predict_fn(["fragments"])(scorer.model, batch, "cpu")
    assert printed == pytest.approx(float(preds[0]), abs=1e-6)


def test_deterministic_across_runs_batch_sizes_and_workers(setup):
    paths = [str(setup / "videos" / n) for n in ("v0.mp4", "broken.mp4", "v1.mp4", "v2.mp4")]
    scorer = S.load_scorer(str(setup / "tiny.pth"), options(data_prefix=str(setup)))
    a = scorer.score_paths(paths, batch_size=1, num_workers=0, progress=False)
    b = scorer.score_paths(paths, batch_size=2, num_workers=2, progress=False)
    c = S.load_scorer(str(setup / "tiny.pth"), options(data_prefix=str(setup))).score_paths(paths, 3, 0, False)
    for rows in (b, c):
        assert [r.csv_row() for r in rows] == [r.csv_row() for r in a]  # bit-identical text
    assert a[1].score is None and a[0].score is not None


def test_stype_option_changes_sampling(setup):
    p = [str(setup / "videos" / "v2.mp4")]  # 96x80: SAMA rescales, fragments does not
    sama = S.load_scorer(str(setup / "tiny.pth"), options(data_prefix=str(setup))).score_paths(p, progress=False)
    frag = S.load_scorer(str(setup / "tiny.pth"), options(data_prefix=str(setup)), stype="fragments")
    assert frag.stype == "fragments"
    assert frag.score_paths(p, progress=False)[0].score != sama[0].score


def test_without_score_stats_calibrated_is_empty(setup):
    scorer = S.load_scorer(str(setup / "nostats.pth"), str(setup / "tiny.yml"))
    assert scorer.calibration is None and "pred_mean, pred_std" in scorer.calibration_note
    row = scorer.score_paths([str(setup / "videos" / "v0.mp4")], progress=False)[0]
    assert row.score is not None and row.calibrated is None and row.csv_row()[2] == ""


def test_default_checkpoint_lookup(tmp_path, setup):
    with pytest.raises(S.NoCheckpointError) as e:
        S.find_default_checkpoint([str(tmp_path)])
    msg = str(e.value)
    assert S.RELEASED.weights in msg and "make demo" in msg and "--ckpt" in msg
    # our trainer's files: the best-epoch file wins over newer per-epoch files
    (tmp_path / "pretrained_weights").mkdir()
    best = tmp_path / "pretrained_weights" / "tiny_val_s_dev_v0.0.pth"
    best.write_bytes((setup / "tiny.pth").read_bytes())
    (tmp_path / "pretrained_weights" / "tiny_Epoch_03.pth").write_bytes(b"x")
    assert S.find_default_checkpoint([str(tmp_path)])[0] == str(best)
    # the run's options.yml is found from the checkpoint name, and the released name is preferred
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    (tmp_path / "runs" / "tiny" / "options.yml").write_text(yaml.safe_dump(options(data_prefix=str(setup))))
    scorer = S.load_scorer(None, None, search_roots=[str(tmp_path)])
    assert scorer.checkpoint == str(best) and "runs/tiny/options.yml" in scorer.notes[1].replace(os.sep, "/")
    released = tmp_path / S.RELEASED_WEIGHTS
    released.write_bytes(b"x")
    assert S.find_default_checkpoint([str(tmp_path)])[0] == str(released)


def test_backbone_only_checkpoint_is_refused(setup, tmp_path, capsys):
    bb = {f"backbone.{k[len('fragments_backbone.'):]}": v for k, v in torch.load(setup / "tiny.pth")["state_dict"].items()
          if k.startswith("fragments_backbone.")}
    torch.save({"state_dict": bb}, tmp_path / "k400.pth")
    rc = S.main(["-v", str(setup / "videos" / "v0.mp4"), "--ckpt", str(tmp_path / "k400.pth"), "--options",
                 str(setup / "tiny.yml")])
    assert rc == 2 and "backbone weights only" in capsys.readouterr().err


def test_all_failed_exit_status(setup, capsys):
    rc = S.main(["-v", str(setup / "nope.mp4"), "--ckpt", str(setup / "tiny.pth"), "--options", str(setup / "tiny.yml")])
    assert rc == 1 and "nope.mp4: file not found" in capsys.readouterr().err


def test_calibration_rule():
    preds, labels = [0.0, 1.0, 2.0, math.nan], [10.0, 20.0, 30.0, 40.0]
    stats = calibration_stats(preds, labels, source="unit test")
    assert stats["n"] == 3 and stats["pred_mean"] == 1.0 and stats["mean"] == 20.0
    cal, note = calibration_from_info({"label_stats": stats})
    assert isinstance(cal, Calibration) and "calibrated = 20" in note
    assert [cal(p) for p in preds[:3]] == pytest.approx(labels[:3])
    assert calibration_from_info({})[0] is None
    cal, note = calibration_from_info({"label_stats": dict(stats, pred_std=0.0)})
    assert cal is None and "constant score" in note


# ----------------------------------------------------------------------------------------------- odd inputs, API
from samavqa.decoders import DECODERS, read_frames  # noqa: E402


def test_image_given_to_the_video_command_is_one_line_and_exit_2(setup, tmp_path, capsys):
    from PIL import Image

    photo = tmp_path / "holiday.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(photo)
    rc = S.main(["-v", str(setup / "videos" / "v0.mp4"), str(photo), "--ckpt", str(setup / "tiny.pth"),
                 "--options", str(setup / "tiny.yml")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == (f"error: -v {photo}: it is a JPEG image, not a video (a video file is needed: .mp4, "
                               ".mkv, .webm, .avi, .mov or any format FFmpeg reads; images are scored with IQA/iqa.py)")


def test_short_video_is_scored_with_a_note(setup, tmp_path, capsys):
    write_video(tmp_path / "one_frame.mp4", 0, frames=1)
    out = tmp_path / "s.csv"
    rc = S.main(["-v", str(tmp_path / "one_frame.mp4"), str(setup / "videos" / "v0.mp4"), "--ckpt",
                 str(setup / "tiny.pth"), "--options", str(setup / "tiny.yml"), "--output", str(out), "--no-progress"])
    assert rc == 0
    rows = list(csv.DictReader(open(out)))
    note = ("only 1 frame, fewer than one clip spans (8 frames, every 1): 14 of the 16 sampled frames are copies of "
            "its last frame, so the score is not that of a real clip")
    assert rows[0]["score"] != "" and rows[0]["note"] == note and rows[1]["note"] == ""
    assert f"warning: {tmp_path / 'one_frame.mp4'}: {note}" in capsys.readouterr().err


def test_per_clip_scores_average_to_the_score(setup, tmp_path, capsys):
    out = tmp_path / "clips.csv"
    args = ["--ckpt", str(setup / "tiny.pth"), "--options", str(setup / "tiny.yml"), "--no-progress"]
    assert S.main(["--dir", str(setup / "videos"), "--per-clip", "--output", str(out), *args]) == 0
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["name", "score", "calibrated", "error", "note", "clip_scores"]
    assert rows[0]["name"] == "broken.mp4" and rows[0]["clip_scores"] == ""
    for r in rows[1:]:
        clips = [float(c) for c in r["clip_scores"].split()]
        assert len(clips) == 2 and float(r["score"]) == pytest.approx(np.mean(clips), abs=1e-6)
    plain = tmp_path / "plain.csv"
    assert S.main(["--dir", str(setup / "videos"), "--output", str(plain), *args]) == 0
    assert [r["score"] for r in csv.DictReader(open(plain))] == [r["score"] for r in rows]  # same scores
    capsys.readouterr()
    assert S.main(["-v", str(setup / "videos" / "v1.mp4"), "--per-clip", *args]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(setup / "videos" / "v1.mp4") + ": score ")
    assert len(line.split("; clip scores ")[1].split()) == 2


def test_one_long_file_gets_a_bar_over_its_frames(setup, capsys):
    scorer = S.load_scorer(str(setup / "tiny.pth"), str(setup / "tiny.yml"))
    row = scorer.score_paths([str(setup / "videos" / "v2.mp4")], progress=True)[0]
    err = capsys.readouterr().err
    assert row.score is not None and "decoding v2.mp4: " in err and "/16 [" in err  # 16 frames to decode
    assert "scoring:" not in err  # no bar over one file
    scorer.score_paths([str(setup / "videos" / n) for n in ("v0.mp4", "v1.mp4")], progress=True)
    err = capsys.readouterr().err
    assert "scoring:" in err and "decoding" not in err


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_scorer_on_each_decoder(setup, decoder, capsys):
    if not DECODERS[decoder].available():
        pytest.skip(f"{decoder} is not installed here (no wheel for this platform)")
    path = str(setup / "videos" / "v1.mp4")
    args = [path, "--ckpt", str(setup / "tiny.pth"), "--options", str(setup / "tiny.yml")]
    assert S.main(["-v", *args, "--decoder", decoder]) == 0
    out = capsys.readouterr()
    assert f"decoder: {decoder}" in out.err
    assert S.main(["-v", *args, "--decoder", "pyav"]) == 0
    assert capsys.readouterr().out == out.out  # the same score as the PyAV path's


def test_missing_decoder_is_one_line_and_exit_2(setup, monkeypatch, capsys):
    import dataclasses

    monkeypatch.setitem(DECODERS, "decord", dataclasses.replace(DECODERS["decord"], available=lambda: False))
    rc = S.main(["-v", str(setup / "videos" / "v1.mp4"), "--ckpt", str(setup / "tiny.pth"), "--decoder", "decord"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("error: --decoder: decord is not installed (decord 0.6 has wheels for Linux x86_64 "
                               "and Windows x86_64 only); use auto or pyav")


def test_library_noise_stays_off_the_terminal_unless_verbose(setup, capfd):
    args = ["-v", str(setup / "videos" / "broken.mp4"), str(setup / "videos" / "v0.mp4"), "--ckpt",
            str(setup / "tiny.pth"), "--options", str(setup / "tiny.yml"), "--no-progress"]
    assert S.main(args) == 0
    err = capfd.readouterr().err.splitlines()
    assert err and all(line.startswith(("note: ", "warning: ")) for line in err), err
    assert S.main(args + ["--verbose"]) == 0
    assert "moov atom not found" in capfd.readouterr().err  # FFmpeg's own line, on request
    S.set_verbose(False)


def test_python_api_scores_paths_lists_and_tensors_as_the_cli(setup, tmp_path):
    import samavqa
    from samavqa.decoders import VideoReadError

    paths = [str(setup / "videos" / n) for n in ("v0.mp4", "v2.mp4")]
    out = tmp_path / "cli.csv"
    assert S.main(["-v", *paths, "--ckpt", str(setup / "tiny.pth"), "--options", str(setup / "tiny.yml"),
                   "--output", str(out), "--no-progress"]) == 0
    cli = {r["name"]: r for r in csv.DictReader(open(out))}
    scorer = samavqa.load_scorer(str(setup / "tiny.pth"), str(setup / "tiny.yml"))
    assert scorer(paths[0]) == float(cli[paths[0]]["score"])
    assert scorer(paths) == [float(cli[p]["score"]) for p in paths]
    assert scorer(paths[1], calibrated=True) == float(cli[paths[1]]["calibrated"])
    frames = read_frames(paths[1])  # [T, H, W, 3] uint8: the file's frames
    assert frames.shape == (20, 96, 80, 3)
    assert scorer(frames) == float(cli[paths[1]]["score"])
    assert scorer(frames.permute(3, 0, 1, 2)) == float(cli[paths[1]]["score"])  # [3, T, H, W]
    assert scorer(frames.numpy()) == float(cli[paths[1]]["score"])
    with pytest.warns(UserWarning, match=r"tensor: only 3 frames, fewer than one clip spans"):
        scorer(frames[:3])
    with pytest.raises(VideoReadError, match="not a readable video container"):
        scorer(str(setup / "videos" / "broken.mp4"))
    with pytest.raises(ValueError, match=r"uint8 \[T, H, W, 3\] or \[3, T, H, W\] \(0-255 RGB\), got torch.float32"):
        scorer(frames.float())


def test_short_video_note_rules():
    """Shorter than one clip: always said; long enough for a clip but padded by a quarter or more: said; a few
    copies at the end of the last clip: not said (real videos of ordinary length would all get a warning)."""
    from samavqa.temporal import FragmentSampleFrames

    paper = {"fragments": dict(clip_len=32, frame_interval=2, num_clips=4)}  # one clip spans 63 frames
    note = lambda n: S.short_video_note({"fragments": FragmentSampleFrames(32, 4, 2)(n)}, paper)
    assert note(62).startswith("only 62 frames, fewer than one clip spans (32 frames, every 2): ")
    assert note(1).startswith("only 1 frame, fewer than one clip spans") and "124 of the 128" in note(1)
    assert note(63) == "only 63 frames for 4 clips of 32 frames (every 2): 44 of the 128 sampled frames are copies " \
                       "of its last frame"
    assert note(100) == note(240) == note(300) == ""  # 240 (8 s at 30 fps): one copy, 300: none
    assert (FragmentSampleFrames(32, 4, 2)(240) == 239).sum() == 2


def test_resume_with_the_checkpoint_moved_says_where_it_is_read_now(setup, tmp_path, capsys):
    """Options stored in the checkpoint move with it: after a copy elsewhere, --resume goes on, and its note names
    the checkpoint's new path only (the options' source changed with it, not their content)."""
    ckpt = tmp_path / "here" / "c.pth"
    ckpt.parent.mkdir()
    obj = torch.load(setup / "tiny.pth", weights_only=True)
    torch.save(dict(obj, sama={"options": options(data_prefix=str(setup / "videos"))}), ckpt)
    args = ["--dir", str(setup / "videos"), "--no-progress"]
    whole, out = tmp_path / "whole.csv", tmp_path / "s.csv"
    assert S.main(args + ["--ckpt", str(ckpt), "--output", str(whole)]) == 0
    lines = whole.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]))  # the last row not yet written
    os.rename(str(whole) + ".meta.json", str(out) + ".meta.json")
    (tmp_path / "there").mkdir()
    moved = tmp_path / "there" / "c.pth"
    os.rename(ckpt, moved)
    capsys.readouterr()
    assert S.main(args + ["--ckpt", str(moved), "--output", str(out), "--resume"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "--resume: checkpoint now" in line]
    digest = json.loads((tmp_path / "s.csv.meta.json").read_text())["checkpoint_sha256"]
    assert notes == [f"note: --resume: checkpoint now {moved} (was {ckpt}): the same checkpoint content (sha256 "
                     f"{digest[:12]}...) and settings"]
    assert out.read_text() == "".join(lines)
