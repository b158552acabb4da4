"""Sampling pictures (VQA/visualize_sampling.py, samavqa.visualize): the sampled-frame panel is the model input,
footprints / scale factors come from the coordinate-video trick, the quality map overlay runs, a bad --out ends
the command before any decoding, and a too-short video gets vqa.py's warning."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import cv2

from helpers import read_only_folder
from samacore import visual
from samavqa import visualize as V
from samavqa.score import short_video_note
from samavqa.datasets import FineTuneDataset
from samavqa.models import DiViDeAddEvaluator
from samavqa.sampling import get_single_sample

FRAG = dict(fragments_h=2, fragments_w=2, fsize_h=32, fsize_w=32, aligned=8, clip_len=8, frame_interval=1, num_clips=2)
ARGS = {"backbone": {"fragments": {"checkpoint": False, "pretrained": None}}, "backbone_size": "swin_nano_grpb",
        "backbone_preserve_keys": "fragments", "divide_head": False, "vqa_head": {"in_channels": 192, "hidden_channels": 16}}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("vqa_vis") / "grad.mp4"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 128))
    rng = np.random.default_rng(0)
    for _ in range(20):
        out.write(rng.integers(0, 255, size=(128, 160, 3), dtype=np.uint8))
    out.release()
    return str(path)


def test_panel_equals_denormalised_sample_and_factors(video, tmp_path):
    view = V.sampling_view(video, {"fragments": FRAG}, "sama-spm", clip=1)
    img, layout = V.render(view, str(tmp_path / "v.png"))
    png = np.asarray(Image.open(tmp_path / "v.png").convert("RGB"))
    assert png.shape[:2] == (img.height, img.width)
    ds = FineTuneDataset([{"filename": video, "label": 0.0}], {"sample_types": {"fragments": FRAG}}, "sama-spm", False)
    want = V.denormalise(ds[0]["fragments"])[8:16]  # clip 1 of the model input, [T, H, W, 3]
    assert [t for _, _, t in layout["frames"]] == [0, 2, 4, 6]
    for x, y, t in layout["frames"]:
        assert np.array_equal(png[y:y + 64, x:x + 64], want[t])
    # 128x160 source on a 64x64 output: ratio 2, pair factors linspace(1, 1/2, 4)
    assert view.factors[::2] == pytest.approx([1.0, 5 / 6, 2 / 3, 0.5], rel=0.02)
    assert view.mask is not None and view.mask.shape == (64, 64) and 0 < view.mask.mean() < 1
    mx, my, mw, mh = layout["mask"]
    assert np.array_equal(png[my:my + mh, mx:mx + mw, 0] == 255, view.mask)


def test_coordinate_video_gives_sampled_positions():
    """The trick behind the footprints: at scale factor 1 each sampled pixel is the source pixel at its coords."""
    video = torch.randint(0, 256, (3, 8, 128, 160), dtype=torch.uint8)
    real = get_single_sample(video, "sama", False, **FRAG)
    src = V.sample_sources((8, 128, 160), "sama", **FRAG)
    ys, xs, ts = src[0, :2].round().long(), src[1, :2].round().long(), src[2, :2].round().long()
    assert torch.equal(real[:, :2], video[:, ts, ys, xs].float())
    assert torch.equal(ts[0], torch.zeros_like(ts[0])) and torch.equal(ts[1], torch.ones_like(ts[1]))
    boxes = visual.cell_footprints(src[0, 0].numpy(), src[1, 0].numpy(), (2, 2, 32, 32)).reshape(-1, 4)
    assert len(boxes) == 4 and all(x1 - x0 == 32 and y1 - y0 == 32 for x0, y0, x1, y1 in boxes)
    # each box holds the source pixels its cell copied
    for (x0, y0, x1, y1), (i, j) in zip(boxes.astype(int), [(0, 0), (0, 1), (1, 0), (1, 1)]):
        assert torch.equal(real[:, 0, 32 * i:32 * i + 32, 32 * j:32 * j + 32], video[:, 0, y0:y1, x0:x1].float())


def test_quality_map_cli(video, tmp_path, capsys):
    torch.manual_seed(0)
    model = DiViDeAddEvaluator(**ARGS)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "m.pth")
    import yaml

    opt = {"name": "t", "stype": "sama", "model": {"type": "DiViDeAddEvaluator", "args": ARGS},
           "data": {"val": {"type": "FusionDataset", "args": {"phase": "test", "data_prefix": ".",
                                                              "sample_types": {"fragments": FRAG}}}}}
    (tmp_path / "o.yml").write_text(yaml.safe_dump(opt))
    out = tmp_path / "q.png"
    rc = V.main(["-v", video, "--out", str(out), "--quality-map", "--ckpt", str(tmp_path / "m.pth"),
                 "--options", str(tmp_path / "o.yml")])
    assert rc == 0 and out.is_file()
    assert "score map (1, 1, 4, 2, 2) -> (8, 64, 64)" in capsys.readouterr().out
    view = V.score_map(model, V.sampling_view(video, {"fragments": FRAG}, "sama"), "fragments")
    assert view.scores.shape == (8, 64, 64)
    # nearest upsampling: each 32x32 block of a frame pair holds one map value
    assert np.unique(view.scores[0, :32, :32]).size == 1 and np.array_equal(view.scores[0], view.scores[1])
    assert V.main(["-v", str(tmp_path / "none.mp4"), "--out", str(out), "--options", str(tmp_path / "o.yml")]) == 2


def _no_decoding(*args, **kwargs):
    raise AssertionError("decoded before checking --out")


@pytest.mark.parametrize("where", ["folder", "read-only"])
def test_unusable_out_is_one_error_line_before_decoding(video, tmp_path, capsys, monkeypatch, where):
    if where == "folder":
        out, named = str(tmp_path), "is a folder"
    else:
        out, named = os.path.join(read_only_folder(tmp_path), "sub", "fig.png"), "cannot write there"
    monkeypatch.setattr(V, "decode_frames", _no_decoding)
    assert V.main(["-v", video, "--out", out, "--options", "none.yml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out}") and named in err and len(err.strip().splitlines()) == 1


def test_one_frame_video_is_drawn_with_the_warning_vqa_py_gives(tmp_path, capsys):
    path = tmp_path / "one.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 128))
    writer.write(np.full((128, 160, 3), 90, dtype=np.uint8))
    writer.release()
    out = tmp_path / "one.png"
    assert V.main(["-v", str(path), "--out", str(out), "--stype", "sama"]) == 0 and out.is_file()
    err = capsys.readouterr().err
    paper = V.paper_sample_types()
    want = short_video_note({"fragments": np.zeros(128, dtype=int)}, paper)  # 4 clips of 32 copies of frame 0
    assert want.startswith("only 1 frame, fewer than one clip spans")
    assert err.strip().splitlines() == [f"warning: one.mp4: {want}"]
