"""Throughput you can see: clip-by-clip decoding (memory held: one clip's frames; items bit-identical to the
data sets'), a progress bar counting files, and the closing line (files, failures, time, files/s, frames/s)."""
import numpy as np
import pytest
import torch

from samavqa import decoders
from samavqa import score as S
from samavqa.datasets import FusionDataset
from test_iqa_score import make_images, small_checkpoint
from test_vqa_score import FRAG
from test_vqa_score import setup  # noqa: F401  (the tiny model, its options and videos: a module fixture)

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.mark.parametrize("stype", ["sama", "fragments"])
def test_clip_by_clip_items_equal_the_datasets_and_read_one_clip_at_a_time(setup, monkeypatch, stype):
    path = str(setup / "videos" / "v2.mp4")
    sample_types = {"fragments": dict(FRAG, num_clips=2, frame_interval=2)}
    ds = FusionDataset(dict(phase="test", anno_file=[{"filename": path, "label": 1.0}], data_prefix=str(setup),
                            sample_types=sample_types), stype=stype)
    want = ds[0]
    reads, real = [], decoders._Reader.read
    monkeypatch.setattr(decoders._Reader, "read", lambda self, idx, progress=None: reads.append(len(idx)) or
                        real(self, idx, progress))
    monkeypatch.setattr(S, "READ_AHEAD_BYTES", 0)  # frames over the budget
    got = S._ScoreDataset([path], sample_types, stype)[0]
    assert torch.equal(got["fragments"], want["fragments"]) and got["fragments"].shape[1] == 16
    assert all(np.array_equal(got["frame_inds"][k], v) for k, v in want["frame_inds"].items())
    # two clips of 8 frames, read one after the other (the second runs past the end: 6 distinct frames)
    assert reads == [8, 6] and got["decoded"] == 14


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
@pytest.mark.parametrize("budget", [S.READ_AHEAD_BYTES, 0])
def test_overlapping_clips_are_read_in_one_pass_when_they_fit(setup, monkeypatch, budget, decoder):
    path = str(setup / "videos" / "v2.mp4")
    sample_types = {"fragments": dict(FRAG, num_clips=4, frame_interval=2)}  # 4 clips of 8 frames that overlap
    ds = FusionDataset(dict(phase="test", anno_file=[{"filename": path, "label": 1.0}], data_prefix=str(setup),
                            sample_types=sample_types, decoder=decoder), stype="fragments")
    want = ds[0]
    reads, real = [], decoders._Reader.read
    monkeypatch.setattr(decoders._Reader, "read", lambda self, idx, progress=None: reads.append(list(idx)) or
                        real(self, idx, progress))
    monkeypatch.setattr(S, "READ_AHEAD_BYTES", budget)
    got = S._ScoreDataset([path], sample_types, "fragments", decoder=decoder)[0]
    assert torch.equal(got["fragments"], want["fragments"])  # bit-identical whichever way the frames were read
    clips = [np.unique(c) for c in want["frame_inds"]["fragments"].reshape(4, -1)]
    union = np.unique(np.concatenate(clips))
    if budget:  # every frame decoded once, in one call
        assert reads == [union.tolist()] and got["decoded"] == len(union) < sum(len(c) for c in clips)
    else:  # frames over the budget: clip by clip, one clip's frames in memory
        assert reads == [c.tolist() for c in clips] and got["decoded"] == sum(len(c) for c in clips)


def test_an_unknown_frame_size_reads_clip_by_clip(setup, monkeypatch):
    path = str(setup / "videos" / "v2.mp4")
    monkeypatch.setattr(decoders._DecordVideo, "frame_pixels", lambda self: 1 / 0)
    sample_types = {"fragments": dict(FRAG, num_clips=4, frame_interval=2)}
    got = S._ScoreDataset([path], sample_types, "fragments", decoder="decord")[0]
    clips = [np.unique(c) for c in got["frame_inds"]["fragments"].reshape(4, -1)]
    assert got["decoded"] == sum(len(c) for c in clips) > len(np.unique(np.concatenate(clips)))  # clip by clip


def test_the_bar_counts_files_and_the_closing_line_says_how_fast(setup, tmp_path, capsys):
    ckpt, _ = small_checkpoint(tmp_path / "c.pth")
    imgs = make_images(str(tmp_path), 4)
    from samaiqa import score as IS

    assert IS.main(["-i", *imgs, "--ckpt", ckpt, "--output", str(tmp_path / "s.csv"), "--batch-size", "8"]) == 0
    err = capsys.readouterr().err
    assert "/4 [" in err and "file/s" in err and "/1 [" not in err  # one batch of 4 images: 4 files, not 1 batch
    assert "note: 4 of 4 images scored (0 failed) in " in err and " images/s)" in err
    videos = [str(setup / "videos" / n) for n in ("v0.mp4", "broken.mp4")]
    assert S.main(["-v", *videos, "--ckpt", str(setup / "tiny.pth"), "--options", str(setup / "tiny.yml"),
                   "--output", str(tmp_path / "v.csv"), "--no-progress"]) == 0
    line = [x for x in capsys.readouterr().err.splitlines() if "scored" in x][0]
    assert line.startswith("note: 1 of 2 videos scored (1 failed) in ") and "decoded frames/s" in line
