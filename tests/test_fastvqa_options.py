"""The FAST-VQA / FasterVQA option files sample the frames and pixels FAST-VQA samples.

FAST-VQA's datasets build the temporal sampler of a branch from its options: without ``t_frag``,
``num_clips`` segments of ``clip_len`` frames; with ``t_frag``, each of the ``num_clips`` draws is ``t_frag``
segments of ``clip_len // t_frag`` frames. A segment's run of frames starts at a random offset in
``[0, L - span)`` (``L`` the segment length, ``span`` the run's length in frames; 0 when ``L <= span``), also
when testing, and indices past the end wrap around (modulo the frame count). Spatially every frame is a grid of
fragments, one per cell, at a random offset in ``[0, cell - fragment)`` of its cell. This project replaces the
random test draws by its deterministic test rule, the middle ``(L - span) // 2`` (SPEC section 1), and the
rules are written out below on their own (not through the project's samplers) to compare with what the
datasets give.
"""
import os

import numpy as np
import pytest
import torch  # before decord
import yaml

from samacore.options import OptionError
from samavqa.schema import VQA_DIR, load_vqa_options
from samavqa.datasets import FusionDataset
from samavqa.models.backbones import BACKBONES
from samavqa.models.swin3d import adaptive_window_size
from samavqa.temporal import build_frame_sampler

from conftest import write_video

FILES = ("FAST_VQA_B_1_4", "FAST_VQA_M_1_4", "FAST_VQA_3D_1_1", "FAST_VQA_3D_1_1-MS", "FAST_VQA_3D_1_1-MT")
# (clip_len, frame_interval, num_clips, t_frag, grid, model input, attention window at that input) of FAST-VQA's
# options/fast/*.yml test blocks (window: base window * input // (32, 224, 224), FAST-VQA's adaptive window)
FASTVQA = {"FAST_VQA_B_1_4": (32, 2, 4, None, 7, (32, 224, 224), (8, 7, 7)),
           "FAST_VQA_M_1_4": (16, 2, 4, None, 4, (16, 128, 128), (2, 2, 2)),
           "FAST_VQA_3D_1_1": (32, 2, 1, 8, 7, (32, 224, 224), (8, 7, 7)),
           "FAST_VQA_3D_1_1-MS": (32, 2, 1, 8, 5, (32, 160, 160), (8, 5, 5)),
           "FAST_VQA_3D_1_1-MT": (16, 2, 1, 4, 7, (16, 224, 224), (4, 7, 7))}
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])
LONG, SHORT = 300, 10  # frames; the short video is shorter than every configuration's span, so indices wrap


def fastvqa_frame_indices(n: int, clip_len: int, interval: int, num_clips: int, t_frag=None) -> list:
    """FAST-VQA's test-time frame indices for an ``n``-frame video, its random offsets at their middle."""
    if t_frag:
        frames, segments, draws = clip_len // t_frag, t_frag, num_clips
    else:
        frames, segments, draws = clip_len, num_clips, 1
    seg_len = n // segments
    span = frames * interval
    offset = (seg_len - span) // 2 if seg_len > span else 0
    one_draw = [(seg_len * s + offset + k * interval) % n for s in range(segments) for k in range(frames)]
    return one_draw * draws


def fastvqa_fragments(frames: np.ndarray, grid: int, fsize: int = 32) -> np.ndarray:
    """FAST-VQA's grid fragments of ``[T, H, W, C]`` frames (no enlargement needed), offsets at their middle."""
    _, h, w, _ = frames.shape
    out = np.zeros((frames.shape[0], grid * fsize, grid * fsize, frames.shape[3]), frames.dtype)
    cell_h, cell_w = h // grid, w // grid
    off_h = (cell_h - fsize) // 2 if cell_h > fsize else 0
    off_w = (cell_w - fsize) // 2 if cell_w > fsize else 0
    for i in range(grid):
        top = min(cell_h * i, h - fsize) + off_h
        for j in range(grid):
            left = min(cell_w * j, w - fsize) + off_w
            out[:, i * fsize:(i + 1) * fsize, j * fsize:(j + 1) * fsize] = frames[:, top:top + fsize, left:left + fsize]
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("fastvqa_videos")
    for n in (LONG, SHORT):
        write_video(str(root / f"v{n}.mp4"), 4.0, frames=n, h=240, w=256)
    return root


def dataset(name: str, root) -> FusionDataset:
    opt = load_vqa_options(os.path.join(VQA_DIR, "options", f"{name}.yml"))
    (args,) = [spec["args"] for key, spec in opt["data"].items() if key.startswith("val")]
    return FusionDataset(dict(args, anno_file=[{"filename": str(root / f"v{n}.mp4"), "label": 1.0}
                                               for n in (LONG, SHORT)]), stype=opt["stype"])


@pytest.mark.parametrize("name", FILES)
def test_frames_and_pixels_equal_fastvqa(videos, name):
    from samavqa.decoders import read_frames

    clip_len, interval, num_clips, t_frag, grid, _, _ = FASTVQA[name]
    ds = dataset(name, videos)
    assert ds.sample_types["fragments"].get("t_frag") == t_frag
    for index, n in enumerate((LONG, SHORT)):
        item = ds[index]
        want = fastvqa_frame_indices(n, clip_len, interval, num_clips, t_frag)
        assert item["frame_inds"]["fragments"].tolist() == want
        assert len(want) == num_clips * clip_len and item["num_clips"]["fragments"] == num_clips
        frames = read_frames(str(videos / f"v{n}.mp4"), want).numpy()  # [T, H, W, C] uint8, the dataset's decoder
        expect = (fastvqa_fragments(frames, grid) - MEAN) / STD
        got = item["fragments"].permute(1, 2, 3, 0).numpy()  # [C, T, H, W] -> [T, H, W, C]
        np.testing.assert_allclose(got, expect, rtol=0, atol=1e-5)


def test_fastvqa_t_frag_rule_differs_from_sama_layout():
    """The t_frag layout spreads one clip's frames over the whole video; SAMA's puts each clip in one segment."""
    fastervqa = build_frame_sampler(dict(clip_len=32, frame_interval=2, num_clips=1, t_frag=8))(LONG)
    sama = build_frame_sampler(dict(clip_len=32, frame_interval=2, num_clips=1))(LONG)
    assert fastervqa.tolist() == fastvqa_frame_indices(LONG, 32, 2, 1, 8)
    assert fastervqa.max() > LONG * 7 // 8 and sama.max() - sama.min() == 62  # 32 frames, every 2nd
    clamped = build_frame_sampler(dict(clip_len=32, frame_interval=2, num_clips=1, t_frag=8))(SHORT)
    assert clamped.max() == SHORT - 1 and clamped.tolist() != fastvqa_frame_indices(SHORT, 32, 2, 1, 8)


@pytest.mark.parametrize("bad, message", [({"t_frag": 6}, "t_frag = 6 must divide clip_len = 32"),
                                          ({"t_frag": 0}, "t_frag must be a positive integer"),
                                          ({"frame_overflow": "loop"}, "frame_overflow = 'loop' is not allowed")])
def test_bad_temporal_options_are_named(tmp_path, bad, message):
    opt = yaml.safe_load(open(os.path.join(VQA_DIR, "options", "FAST_VQA_3D_1_1.yml")))
    opt["data"]["val-ltest"]["args"]["sample_types"]["fragments"].update(bad)
    opt["data"]["val-ltest"]["args"]["anno_file"] = None
    opt["data"]["val-ltest"]["args"]["data_prefix"] = str(tmp_path)
    with pytest.raises(OptionError, match=message) as e:
        FusionDataset(opt["data"]["val-ltest"]["args"], stype="fragments")
    assert "sample_types.fragments" in str(e.value)


@pytest.mark.parametrize("name", FILES)
def test_model_blocks_are_the_fastvqa_backbones(name):
    """Each file's model is FAST-VQA's: Video Swin-T with GRPB (window 8x7x7), or its -M variant (4x4x4, no
    fragment tables); the window adapts to the sampled input as FAST-VQA's does."""
    opt = load_vqa_options(os.path.join(VQA_DIR, "options", f"{name}.yml"))
    config = BACKBONES.get(opt["model"]["args"]["backbone_size"])  # a SwinConfig (the builder)
    if name == "FAST_VQA_M_1_4":
        assert config.window_size == (4, 4, 4) and not any(config.frag_biases)
    else:
        assert config.window_size == (8, 7, 7) and list(config.frag_biases) == [True, True, True, False]
    size, window = FASTVQA[name][5:]
    assert adaptive_window_size(config.window_size, size, config.base_x_size) == window
    weights = {"FAST_VQA_B_1_4": "FAST_VQA_B_1_4.pth", "FAST_VQA_M_1_4": "FAST_VQA_M_1_4.pth"}
    assert opt["load_path"] == "pretrained_weights/" + weights.get(name, "FAST_VQA_3D_1_1.pth")
