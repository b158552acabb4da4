"""Video decoders (samavqa.decoders): the registry and the decoder option, decord and PyAV giving the same frames
(indices, pixels, rotation, unknown frame counts, any index list), still images refused, library noise kept off
the terminal, and decord required only where it has wheels."""
import os
import re
import struct

import numpy as np
import pytest
import torch  # before decord

import av
from PIL import Image

from samacore.options import OptionError
from samavqa import decoders as D
from samavqa.datasets import FusionDataset
from samavqa.decoders import DECODERS, VideoReadError, decode_frames, read_frames, resolve_decoder
from samavqa.temporal import FragmentSampleFrames

from helpers import REPO

HAVE_DECORD = DECODERS["decord"].available()
needs_decord = pytest.mark.skipif(not HAVE_DECORD, reason="decord is not installed here (it has no wheel for this "
                                                          "platform); the PyAV decoder is tested on its own")
INSTALLED = [name for name, d in DECODERS.items() if d.available()]
FRAG = dict(fragments_h=2, fragments_w=2, fsize_h=32, fsize_w=32, aligned=8, clip_len=8, frame_interval=1)


def scene(h, w, n, seed=0):
    """Moving colour ramps with sharp edges and noise: chroma detail that any colour-conversion difference shows."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(n):
        img = np.stack([(xx * 7 + t * 5) % 256, (yy * 5 + t * 3) % 256, ((xx + yy) * 3 + t * 11) % 256], -1)
        yield np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)


def encode_video(path, frames, codec="libx264", pix_fmt="yuv420p", options=None, tags=None, rate=25):
    """Encode RGB24 ``frames`` (uint8 ``[H, W, 3]`` each) with PyAV; ``tags``: colour tags of stream and frames."""
    frames = iter(frames)
    first = next(frames)
    c = av.open(str(path), "w")
    s = c.add_stream(codec, rate=rate)
    s.height, s.width = first.shape[:2]
    s.pix_fmt = pix_fmt
    s.options = dict(options or {})
    for k, v in (tags or {}).items():
        setattr(s.codec_context, k, v)
    for img in [first, *frames]:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        for k, v in (tags or {}).items():
            setattr(frame, k, v)
        for p in s.encode(frame.reformat(format=pix_fmt)):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return str(path)


def write_video(path, codec="libx264", pix_fmt="yuv420p", h=48, w=64, n=24, gop=6, bframes=2, tags=None):
    """``scene`` encoded (libx264 by default: 8-bit 4:2:0 H.264, a keyframe every ``gop`` frames and B-frames,
    so decoding must reorder and seeking has keyframes to go to)."""
    options = {"g": str(gop), "bf": str(bframes), "keyint_min": str(gop), "sc_threshold": "0"} if codec == "libx264" \
        else {"g": str(gop)}
    return encode_video(path, scene(h, w, n), codec, pix_fmt, options, tags)


def rotate_mp4(src, dst, degrees):
    """Write the display matrix of a 90/180/270-degree rotation into the video track header (as phones do)."""
    data = bytearray(open(src, "rb").read())
    i = data.find(b"tkhd")
    version = data[i + 4]
    off = i + 8 + (32 if version == 1 else 20) + 16  # box type, version/flags, times/ids/duration, reserved..volume
    one, neg = 0x10000, (-0x10000) & 0xFFFFFFFF
    abcd = {90: (0, one, neg, 0), 180: (neg, 0, 0, neg), 270: (0, neg, one, 0)}[degrees]
    data[off:off + 24] = struct.pack(">6I", abcd[0], abcd[1], 0, abcd[2], abcd[3], 0)
    open(dst, "wb").write(bytes(data))
    return str(dst)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("decoders")
    files = {
        "h264": write_video(d / "h264.mp4"),                                   # 8-bit 4:2:0, B-frames, GOP 6
        "h264_bt709": write_video(d / "bt709.mp4", tags={"colorspace": 1, "color_range": 1}),
        "h264_full_range": write_video(d / "full.mp4", pix_fmt="yuvj420p"),
        "h264_444": write_video(d / "h444.mp4", pix_fmt="yuv444p"),
        "mpeg4_odd_width": write_video(d / "odd.mp4", codec="mpeg4", h=36, w=51, n=12),
        "vp9_webm": write_video(d / "vp9.webm", codec="libvpx-vp9", n=10),   # WebM: no frame count in the file
    }
    files["rot90"] = rotate_mp4(files["h264"], d / "rot90.mp4", 90)
    (d / "garbage.mp4").write_bytes(b"not a video" * 100)
    files["garbage"] = str(d / "garbage.mp4")
    return files


# ----------------------------------------------------------------------------------------------- registry
def test_decoder_option_values_and_auto():
    assert D.decoder_choices() == ("auto", "decord", "pyav")
    assert resolve_decoder("auto") == resolve_decoder(None) == INSTALLED[0]
    assert resolve_decoder("pyav") == "pyav"
    with pytest.raises(OptionError, match=r"dataset.decoder must be one of auto, decord, pyav, got 'ffmpeg'"):
        resolve_decoder("ffmpeg", "dataset.decoder")


def test_without_decord_auto_takes_pyav_and_decord_is_refused(monkeypatch):
    import dataclasses

    monkeypatch.setitem(DECODERS, "decord", dataclasses.replace(DECODERS["decord"], available=lambda: False))
    assert resolve_decoder("auto") == "pyav"
    with pytest.raises(OptionError) as e:
        resolve_decoder("decord", "dataset.decoder")
    assert str(e.value) == ("dataset.decoder: decord is not installed (decord 0.6 has wheels for Linux x86_64 and "
                            "Windows x86_64 only); use auto or pyav")


def test_a_new_decoder_is_one_registry_entry(media, monkeypatch):
    class Constant:
        num_frames = 5

        def __init__(self, path, threads):
            pass

        def frames(self, indices):
            return torch.stack([torch.full((4, 6, 3), i, dtype=torch.uint8) for i in indices])

        def close(self):
            pass

    monkeypatch.setitem(DECODERS, "constant", D.Decoder("constant", Constant, str, lambda: True, ""))
    videos, inds = decode_frames(media["h264"], {"f": FragmentSampleFrames(4, 1)}, False, decoder="constant")
    assert inds["f"].tolist() == [0, 1, 2, 3] and videos["f"][0, :, 0, 0].tolist() == [0, 1, 2, 3]


# ----------------------------------------------------------------------------------------------- agreement
@needs_decord
@pytest.mark.parametrize("name", ["h264", "h264_bt709", "h264_full_range", "h264_444", "mpeg4_odd_width", "vp9_webm",
                                  "rot90"])
def test_pyav_gives_decords_frames(media, name):
    """Same frame count and numbering, and equal pixels (8-bit video of even height: both run swscale's
    YUV->RGB24 conversion with the frame's colour tags; the rotation metadata applied the same way). Odd frame
    heights and 10-bit video differ (benchmarks/compare_decoders.py measures it; README)."""
    a, b = read_frames(media[name], decoder="decord"), read_frames(media[name], decoder="pyav")
    assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8
    diff = (a.int() - b.int()).abs()
    assert int(diff.max()) == 0, f"max abs diff {int(diff.max())}, {float((diff > 0).float().mean()):.4f} differ"


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
@pytest.mark.parametrize("name", ["h264", "mpeg4_odd_width", "vp9_webm", "rot90"])
def test_the_frame_size_is_known_before_decoding(media, name, decoder):
    """What a reader may allocate before decoding (the scorer's one-pass read): the bytes of one decoded frame, also
    for a rotated video (its frames turn, their pixels stay) and a container without a frame count."""
    with D.open_video(media[name], decoder) as video:
        want = video.read([0])[0].numel()
    with D.open_video(media[name], decoder) as video:
        assert video.frame_bytes() == want


def test_unknown_frame_count_is_counted(media):
    with av.open(media["vp9_webm"]) as c:
        assert c.streams.video[0].frames == 0  # the container does not say
    frames = read_frames(media["vp9_webm"], decoder="pyav")
    assert frames.shape == (10, 48, 64, 3)


def test_rotation_metadata_turns_the_frames(media):
    upright = read_frames(media["h264"], decoder="pyav")
    turned = read_frames(media["rot90"], decoder="pyav")
    assert turned.shape == (24, 64, 48, 3)  # portrait
    assert torch.equal(turned, torch.rot90(upright, k=-1, dims=(1, 2)))  # 90 degrees clockwise


def test_any_index_list_gives_the_frames_of_a_full_decode(media, monkeypatch):
    """Seeking to keyframes (by timestamp), going on across calls (progress) and the no-timestamp numbering all
    give the frames of one sequential pass, for any set of indices."""
    seeks = []
    real = D._PyAVVideo._decode_from
    monkeypatch.setattr(D._PyAVVideo, "_decode_from", lambda self, key: (seeks.append(key), real(self, key))[1])
    full = read_frames(media["h264"], decoder="pyav")
    rng = np.random.default_rng(0)
    sets = [[23], [0, 23], [5, 6, 7, 18, 19], list(range(0, 24, 7)), [12, 3, 3, 20, 0]]
    sets += [rng.choice(24, size=int(rng.integers(1, 12)), replace=False).tolist() for _ in range(6)]
    for idx in sets:
        assert torch.equal(read_frames(media["h264"], idx, decoder="pyav"), full[idx]), idx
    assert any(k > 0 for k in seeks)  # keyframes were sought, not only decoded through
    with D.open_video(media["h264"], "pyav") as v:  # in parts, as the single-file progress bar reads them
        done = []
        got = v.read(list(range(2, 24, 3)), progress=lambda n, total: done.append((n, total)))
        assert torch.equal(got, full[2::3]) and done == [(n, 8) for n in range(9)]
    video = D._PyAVVideo(media["h264"], 1)
    video.pts, video.keyframes = None, []  # a stream without timestamps: frames numbered as the decoder gives them
    assert torch.equal(video.frames([1, 9, 22]), full[[1, 9, 22]])
    video.close()


def test_each_needed_frame_is_read_once_in_one_call(media, monkeypatch):
    calls = []
    real = D._PyAVVideo.frames
    monkeypatch.setattr(D._PyAVVideo, "frames", lambda self, idx: (calls.append(list(idx)), real(self, idx))[1])
    samplers = {"fragments": FragmentSampleFrames(8, 2, 1), "up": FragmentSampleFrames(8, 1, 1)}  # overlapping
    videos, inds = decode_frames(media["h264"], samplers, False, decoder="pyav")
    needed = np.unique(np.concatenate(list(inds.values())))
    assert len(calls) == 1 and calls[0] == needed.tolist()
    assert videos["fragments"].shape == (3, 16, 48, 64) and videos["up"].shape == (3, 8, 48, 64)


@needs_decord
def test_dataset_decodes_the_sampled_frames_on_both_decoders(media):
    samplers = {"fragments": FragmentSampleFrames(8, 2, 2), "up": FragmentSampleFrames(4, 1, 1)}
    a = decode_frames(media["h264"], samplers, False, decoder="decord")
    b = decode_frames(media["h264"], samplers, False, decoder="pyav")
    for branch in samplers:
        assert np.array_equal(a[1][branch], b[1][branch]) and torch.equal(a[0][branch], b[0][branch])


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_fusion_dataset_items_on_each_decoder(media, decoder, tmp_path):
    if decoder == "decord" and not HAVE_DECORD:
        pytest.skip("decord is not installed here (no wheel for this platform)")
    opt = dict(phase="test", anno_file=[{"filename": media["h264"], "label": 3.0}], data_prefix=str(tmp_path),
               sample_types={"fragments": dict(FRAG, num_clips=2)}, decoder=decoder)
    ds = FusionDataset(opt, stype="sama")
    assert ds.decoder == decoder
    item = ds[0]
    assert item["fragments"].shape == (3, 16, 64, 64) and item["gt_label"] == 3.0
    ref = FusionDataset(dict(opt, decoder="pyav"), stype="sama")[0]
    assert torch.equal(item["fragments"], ref["fragments"])
    with pytest.raises(OptionError, match=r"dataset.decoder must be one of auto, decord, pyav, got 'ffmpeg'"):
        FusionDataset(dict(opt, decoder="ffmpeg"))


# ----------------------------------------------------------------------------------------------- faults
@pytest.mark.parametrize("decoder", INSTALLED)
@pytest.mark.parametrize("fmt, kind, save", [
    ("jpg", "a JPEG image", {}), ("png", "a PNG image", {}), ("webp", "a WebP image", {}),
    ("gif", "a GIF image", {"save_all": True, "duration": 100}),
])
def test_still_images_are_refused_by_content(tmp_path, decoder, fmt, kind, save):
    path = tmp_path / f"photo.{fmt}"
    frames = [Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)) for i in range(3)]
    frames[0].save(path, append_images=frames[1:] if save else None, **save)
    renamed = tmp_path / "photo_named_like_a_video.mp4"  # the content decides, not the name
    renamed.write_bytes(path.read_bytes())
    for p in (path, renamed):
        with pytest.raises(VideoReadError) as e:
            decode_frames(str(p), {"f": FragmentSampleFrames(4, 1)}, False, decoder=decoder)
        assert str(e.value) == (f"cannot read video {p}: it is {kind}, not a video (a video file is needed: .mp4, "
                                ".mkv, .webm, .avi, .mov or any format FFmpeg reads; images are scored with "
                                "IQA/iqa.py)")


@pytest.mark.parametrize("decoder", INSTALLED)
def test_library_noise_stays_off_the_terminal_unless_verbose(media, decoder, capfd, monkeypatch):
    monkeypatch.setenv("SAMA_DECODER_LOGS", "0")
    with pytest.raises(VideoReadError, match="not a readable video container"):
        decode_frames(media["garbage"], {"f": FragmentSampleFrames(4, 1)}, False, decoder=decoder)
    assert capfd.readouterr().err == ""  # neither FFmpeg's nor decord's log lines
    D.set_verbose(True)
    try:
        with pytest.raises(VideoReadError, match="not a readable video container"):
            decode_frames(media["garbage"], {"f": FragmentSampleFrames(4, 1)}, False, decoder=decoder)
    finally:
        D.set_verbose(False)
    assert "moov atom not found" in capfd.readouterr().err  # FFmpeg's own words, on request
    assert av.logging.get_level() is None  # PyAV's silent default is back


# ----------------------------------------------------------------------------------------------- packaging
def test_decord_is_required_only_where_it_has_wheels():
    """decord 0.6.0's wheels: manylinux x86_64 and win_amd64 (any Python 3), macOS x86_64 up to Python 3.8 only."""
    from packaging.requirements import Requirement

    lines = [line for line in open(os.path.join(REPO, "requirements.txt")) if line.startswith("decord")]
    pyproject = open(os.path.join(REPO, "pyproject.toml")).read()
    specs = [lines[0].strip(), re.search(r'"(decord;[^"]+)"', pyproject).group(1)]
    assert len(lines) == 1 and "av" in {Requirement(x).name for x in re.findall(r'"([a-z-]+)[";]', pyproject)}
    for spec in specs:
        marker = Requirement(spec).marker
        for system, machine, wanted in [("linux", "x86_64", True), ("win32", "AMD64", True),
                                        ("linux", "aarch64", False), ("darwin", "arm64", False),
                                        ("darwin", "x86_64", False)]:
            assert marker.evaluate({"sys_platform": system, "platform_machine": machine}) is wanted, (spec, system)


def test_dataloader_workers_forked_after_decoding_do_not_hang(media, tmp_path):
    """Decoding in the main process must leave nothing behind that a forked DataLoader worker could block on (a
    worker freeing an inherited swscale context whose slice threads do not exist in it waits forever)."""
    import gc

    opt = dict(phase="test", anno_file=[{"filename": media["h264"], "label": 1.0}] * 2, data_prefix=str(tmp_path),
               sample_types={"fragments": dict(FRAG, num_clips=1)}, decoder="pyav")
    ds = FusionDataset(opt, stype="sama")
    gc.disable()  # whatever decoding leaves for the garbage collector is still there when the workers fork
    try:
        first = ds[0]  # decoded here, in the parent
        loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, timeout=60,
                                             worker_init_fn=lambda _: gc.collect(),  # the worker frees it now
                                             multiprocessing_context="fork")
        items = list(loader)  # a hung worker raises after the timeout instead of hanging the suite
    finally:
        gc.enable()
    assert len(items) == 2 and torch.equal(items[0]["fragments"][0], first["fragments"])
