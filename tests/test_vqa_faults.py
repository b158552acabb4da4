"""Video media faults: each bad file either samples correctly or raises VideoReadError naming the file and the
reason; label-file errors name file and line; training skips bad videos up to max_bad_fraction."""
import os
from fractions import Fraction

import numpy as np
import pytest
import torch

import cv2

from samacore.robust import TooManyBadItems
from samacore.runs import bad_item_log
from samavqa.datasets import (FusionDataset, VideoNotFoundError, VideoReadError, decode_frames,
                              skipping_loader)
from samavqa.decoders import DECODERS
from samavqa.labels import read_label_file
from samavqa.sampling import get_single_sample
from samavqa.temporal import FragmentSampleFrames

FRAG = dict(fragments_h=2, fragments_w=2, fsize_h=32, fsize_w=32, aligned=8, clip_len=8, frame_interval=1)
SAMPLERS = {"fragments": FragmentSampleFrames(8, 2, 1)}


@pytest.fixture(params=[name for name, d in DECODERS.items() if d.available()])
def decoder(request):
    """Every installed decoder must meet the same faults the same way."""
    return request.param


def write_mp4v(path, frames, h, w, seed=0):
    rng = np.random.default_rng(seed)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for _ in range(frames):
        out.write(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8))
    out.release()
    return str(path)


def write_av(path, frames, h, w, pts=None):
    """PyAV writer: odd frame sizes and variable frame rates (OpenCV's writer rounds sizes to even)."""
    av = pytest.importorskip("av")
    c = av.open(str(path), "w")
    s = c.add_stream("mpeg4", rate=25)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    s.codec_context.time_base = s.time_base = Fraction(1, 1000)
    for i in range(frames):
        f = av.VideoFrame.from_ndarray(np.full((h, w, 3), 10 + 15 * i, np.uint8), format="rgb24")
        f.pts, f.time_base = (pts[i] if pts else 40 * i), Fraction(1, 1000)
        for p in s.encode(f):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return str(path)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("vqa_faults")
    write_mp4v(d / "good.mp4", 20, 64, 80)
    (d / "empty.mp4").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(os.urandom(4000))
    data = (d / "good.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    write_mp4v(d / "zero.mp4", 0, 32, 32)
    (d / "folder.mp4").mkdir()
    return d


@pytest.mark.parametrize("name, reason", [
    ("missing.mp4", "file not found"),
    ("empty.mp4", "empty file (0 bytes)"),
    ("garbage.mp4", "not a readable video container"),
    ("truncated.mp4", "not a readable video container"),
    ("zero.mp4", "no video stream"),
    ("folder.mp4", "it is a folder"),
])
def test_unreadable_video_raises_named_error(media, name, reason, decoder):
    path = str(media / name)
    with pytest.raises(VideoReadError) as e:
        decode_frames(path, SAMPLERS, False, decoder=decoder)
    assert str(e.value).startswith(f"cannot read video {path}: ") and reason in str(e.value)
    assert e.value.path == path and reason in e.value.reason
    assert isinstance(e.value, FileNotFoundError) == (name == "missing.mp4")
    assert "github/workspace" not in str(e.value)  # decord's source locations are not shown


def test_fifo_does_not_block(media, decoder):
    fifo = str(media / f"pipe_{decoder}.mp4")
    os.mkfifo(fifo)
    with pytest.raises(VideoReadError, match="not a regular file"):
        decode_frames(fifo, SAMPLERS, False, decoder=decoder)


def test_error_survives_worker_reraise():
    e = VideoReadError("cannot read video a.mp4: x")  # DataLoader re-raises worker errors from the message alone
    assert str(e) == "cannot read video a.mp4: x" and e.reason == str(e)
    assert issubclass(VideoNotFoundError, FileNotFoundError)


@pytest.mark.parametrize("frames, expect", [(5, [0, 1, 2, 3, 4, 4, 4, 4, 2, 3, 4, 4, 4, 4, 4, 4]), (1, [0] * 16)])
def test_fewer_frames_than_a_clip_are_clamped(media, frames, expect, decoder):
    path = write_mp4v(media / f"short{frames}.mp4", frames, 64, 64)
    videos, inds = decode_frames(path, SAMPLERS, False, decoder=decoder)
    assert inds["fragments"].tolist() == expect
    assert videos["fragments"].shape == (3, 16, 64, 64)
    out = get_single_sample(videos["fragments"], "sama", False, **FRAG)
    assert out.shape == (3, 16, 64, 64) and torch.isfinite(out).all()


@pytest.mark.parametrize("h, w", [(16, 16), (24, 24), (96, 40)])
def test_tiny_and_portrait_sizes(media, h, w, decoder):
    """decord 0.6 cannot copy frames whose rows are 16 or 24 pixels: the OpenCV fallback reads the same pixels
    (and PyAV reads them as they are)."""
    path = write_mp4v(media / f"s{h}x{w}.mp4", 6, h, w)
    videos, inds = decode_frames(path, SAMPLERS, False, decoder=decoder)
    v = videos["fragments"]
    assert v.shape == (3, 16, h, w) and v.dtype == torch.uint8
    cap = cv2.VideoCapture(path)
    ok, first = cap.read()
    assert ok and np.array_equal(v[:, 0].permute(1, 2, 0).numpy(), cv2.cvtColor(first, cv2.COLOR_BGR2RGB))
    for stype in ("sama", "fragments", "sama-spm"):
        out = get_single_sample(v, stype, False, **FRAG)  # small frames are enlarged by the sampler
        assert out.shape == (3, 16, 64, 64) and torch.isfinite(out).all()


def test_odd_size_and_variable_frame_rate(media, decoder):
    odd = write_av(media / "odd.mp4", 5, 17, 33)
    v = decode_frames(odd, SAMPLERS, False, decoder=decoder)[0]["fragments"]
    assert v.shape == (3, 16, 17, 33)
    assert get_single_sample(v, "sama", False, **FRAG).shape == (3, 16, 64, 64)
    pts = [0, 40, 80, 300, 310, 320, 700, 1000, 1010, 1500, 1510, 1520, 2000, 2010, 2040, 2080]
    vfr = write_av(media / "vfr.mp4", 16, 48, 64, pts)
    videos, inds = decode_frames(vfr, SAMPLERS, False, decoder=decoder)
    # frames are indexed by decode order, not time: frame i has the grey level written for it
    levels = videos["fragments"][0, :, 24, 32].float()
    assert torch.allclose(levels, 10 + 15 * torch.from_numpy(inds["fragments"]).float(), atol=4)


def test_label_file_errors_name_file_and_line(tmp_path):
    cases = {
        "a.mp4,0,0,1.0\nb.mp4,0,0,nan\n": r"labels.txt:2: label 'nan' is not a finite number",
        "a.mp4,0,0,1.0\n\nb.mp4,0,0,good\n": r"labels.txt:3: label 'good' is not a number",
        "a.mp4,0,0,1.0\nb.mp4,0,0,2\na.mp4,0,0,3\n": r"labels.txt:3: 'a.mp4' is listed twice \(first on line 1\)",
        "a.mp4,0,0\n": r"labels.txt:1: expected 4",
        ",0,0,1\n": r"labels.txt:1: empty file id",
    }
    for text, msg in cases.items():
        (tmp_path / "labels.txt").write_text(text)
        with pytest.raises(ValueError, match=msg):
            read_label_file(str(tmp_path / "labels.txt"), str(tmp_path))
    write_mp4v(tmp_path / "a.mp4", 4, 32, 32)
    (tmp_path / "labels.txt").write_text("a.mp4,0,0,1\nghost.mp4,0,0,2\n")
    with pytest.raises(FileNotFoundError, match=r"ghost.mp4 \(listed at .*labels.txt:2\)"):
        FusionDataset(dict(phase="test", anno_file=str(tmp_path / "labels.txt"), data_prefix=str(tmp_path),
                           sample_types={"fragments": dict(FRAG, num_clips=1)}))


def _train_set(root, n_bad):
    names = []
    for i in range(4):
        name = f"t{i}.mp4"
        if i < n_bad:
            (root / name).write_bytes(b"\x00" * 100)
        else:
            write_mp4v(root / name, 10, 32, 32, seed=i)
        names.append(name)
    (root / "labels.txt").write_text("".join(f"{n},0,0,{i}\n" for i, n in enumerate(names)))
    return FusionDataset(dict(phase="train", anno_file=str(root / "labels.txt"), data_prefix=str(root),
                              sample_types={"fragments": dict(FRAG, num_clips=1)}), stype="sama")


def test_training_skips_bad_videos_and_writes_the_list(tmp_path):
    ds = _train_set(tmp_path, 1)
    opt = {"max_bad_fraction": 0.3, "train_batch_size": 2, "train_num_workers": 2}
    log = bad_item_log(opt, str(tmp_path / "run"))
    loader = skipping_loader(ds, opt, True, log, "train")
    for _ in range(2):  # second epoch: the bad video is not read again
        seen = [n for batch in loader for n in batch["name"]]
        assert sorted(seen) == ["t1.mp4", "t2.mp4", "t3.mp4"]
    lines = (tmp_path / "run" / "skipped.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(str(tmp_path / "t0.mp4") + "\t")
    assert "not a readable video container" in lines[0] and lines[0].endswith("\ttrain")


def test_training_stops_when_too_many_are_bad(tmp_path):
    ds = _train_set(tmp_path, 2)
    opt = {"max_bad_fraction": 0.3, "train_batch_size": 4, "train_num_workers": 0}
    loader = skipping_loader(ds, opt, True, bad_item_log(opt, str(tmp_path / "run")), "train")
    with pytest.raises(TooManyBadItems, match=r"2 of 4 items of train \(50.0%\).*max_bad_fraction 0.3"):
        list(loader)


def test_4k_video_decodes_and_samples_inside_its_cells(media, decoder):
    """A 2160x3840 video: decoded at full size, and with the paper grid every scaled fragment stays in its cell."""
    h, w = 2160, 3840
    path = str(media / "uhd.mp4")
    if not os.path.exists(path):  # written once for all decoders
        out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
        yy, xx = np.mgrid[0:h, 0:w]
        frame = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 128)], -1).astype(np.uint8)
        for _ in range(4):
            out.write(frame)
        out.release()
    videos, _ = decode_frames(path, {"fragments": FragmentSampleFrames(4, 1, 1)}, False, decoder=decoder)
    v = videos["fragments"]
    assert v.shape == (3, 4, h, w)
    grid = dict(fragments_h=7, fragments_w=7, fsize_h=32, fsize_w=32, aligned=4)
    s = get_single_sample(v, "sama", False, **grid)
    assert s.shape == (3, 4, 224, 224)
    # OpenCV writes BGR: the x ramp written in slot 0 comes back as blue (channel 2) of the decoded RGB frames
    xs = s[2].float() * w / 255  # approximate source column of every sampled pixel
    for j in range(7):  # the first pair is full resolution, the last the coarsest scale: both inside cell j
        cell = xs[:, :, j * 32:(j + 1) * 32]
        assert (cell >= j * w / 7 - 40).all() and (cell <= (j + 1) * w / 7 + 40).all()
