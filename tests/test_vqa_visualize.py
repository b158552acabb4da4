"""Sampling pictures (VQA/visualize_sampling.py, samavqa.visualize): the sampled-frame panel is the model input,
footprints / scale factors come from the coordinate-video trick, and the quality map overlay runs."""
import numpy as np
import pytest
import torch
from PIL import Image

import cv2

from samavqa import visualize as V
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
    boxes = V._footprints(src.numpy(), 0, (2, 2, 32, 32))
    assert len(boxes) == 4 and all(x1 - x0 == 32 and y1 - y0 == 32 for x0, y0, x1, y1 in boxes)


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
