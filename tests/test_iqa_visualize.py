"""IQA/visualize_sampling.py (samaiqa.visualize): figure size, the sampled-input panel equals the de-normalised
sample, the drawn fragment boxes are where the sample's pixels come from (read off the real sampler), the per-token
quality map, and a bad --out ending the command before the image is read."""
import os

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from helpers import GRID, SMALL_SWIN, read_only_folder
from samaiqa import visualize
from samaiqa.checkpoints import save_model_checkpoint
from samaiqa.datasets import IMAGENET_MEAN, IMAGENET_STD, build_transform, load_image
from samaiqa.model import IQAModel
from samaiqa.sampling import sample_image

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "pic.png"
    Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_cli_writes_png_of_expected_size_with_the_denormalised_sample(tmp_path, image):
    opt = tmp_path / "o.yml"
    opt.write_text(yaml.safe_dump({"stype": "sama", "data": GRID}))
    out = tmp_path / "fig.png"
    assert visualize.main(["-i", image, "--stype", "sama", "--options", str(opt), "--out", str(out)]) == 0
    fig = np.asarray(Image.open(out).convert("RGB"))
    zoom = 256 // 64  # 64x64 sample drawn 4x
    ph = 64 * zoom
    src_w = round(200 * ph / 150)
    m, title = visualize.MARGIN, visualize.TITLE_H
    assert fig.shape == (m + title + ph + m, m + 2 * (src_w + m) + 2 * (ph + m), 3)  # 2 source views, sample, mask

    # independent computation of the test-mode sample, de-normalised to 8 bits
    x = build_transform(False)(load_image(image, 64))
    s = sample_image(x, "sama", False, **GRID).numpy()
    want = np.clip(np.rint((s * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]) * 255),
                   0, 255).transpose(1, 2, 0)
    want = np.repeat(np.repeat(want, zoom, 0), zoom, 1)
    x0, y0 = m + 2 * (src_w + m), m + title
    panel = fig[y0:y0 + ph, x0:x0 + ph].astype(int)
    assert np.abs(panel - want).max() <= 1  # float rounding of the de-normalisation at most
    assert (np.abs(panel - want) == 0).mean() > 0.99
    mask = fig[y0:y0 + ph, x0 + ph + m:x0 + 2 * ph + m, 0]
    assert (mask[:64, :64] == 255).all() and (mask[:64, 64:128] == 90).all()  # window mask: cell (0, 1) scaled


@pytest.mark.parametrize("stype", ["fragment", "sama", "sama-spm"])
def test_drawn_full_resolution_boxes_are_where_the_sample_comes_from(image, stype):
    fig = visualize.make_figure(image, stype, GRID)
    img = np.asarray(load_image(image, 64))
    sample = visualize.denormalise(fig.sample)
    full = fig.views[0]
    assert full.label == "x1" and full.boxes.shape == (4, 4, 4)
    assert len(fig.views) == (1 if stype == "fragment" else 2)
    for i in range(4):
        for j in range(4):
            if not full.used[i, j] or stype == "sama-spm":
                continue
            bx0, by0, bx1, by1 = full.boxes[i, j].astype(int)
            cell = sample[16 * i:16 * (i + 1), 16 * j:16 * (j + 1)]
            assert (bx1 - bx0, by1 - by0) == (16, 16)
            assert np.abs(cell.astype(int) - img[by0:by1, bx0:bx1]).max() <= 1
    if stype != "fragment":  # the scaled view's boxes tile the image shrunk to just fit the 64x64 output
        scaled = fig.views[1]
        assert scaled.size == (64, round(200 * 64 / 150))
        assert scaled.boxes[..., 3].max() <= 150 + 1e-9 and scaled.boxes[..., 2].max() <= 200 + 1e-9
        assert (scaled.used == (stype == "sama-spm") | ~full.used).all()


def test_quality_map_overlays_per_token_scores(tmp_path, image):
    torch.manual_seed(0)
    model = IQAModel(img_size=64, **SMALL_SWIN)
    ckpt = tmp_path / "c.pth"
    save_model_checkpoint(str(ckpt), model, data=dict(GRID), stype="sama")
    out = tmp_path / "q.png"
    assert visualize.main(["-i", image, "--out", str(out), "--quality-map", "--ckpt", str(ckpt)]) == 0
    fig = visualize.make_figure(image, "sama", GRID, model.eval())
    assert fig.token_scores.shape == (2, 2)  # 64x64 input -> 2x2 tokens of 32x32 pixels
    assert float(fig.token_scores.mean()) == pytest.approx(fig.score, rel=1e-5, abs=1e-6)
    assert "quality_map" in fig.panels and Image.open(out).size == fig.image.size
    x0, y0, x1, y1 = fig.panels["quality_map"]
    assert (x1 - x0, y1 - y0) == (256, 256)
    q = np.asarray(fig.image)[y0:y1, x0:x1].astype(int)
    s = np.asarray(fig.image)[fig.panels["sample"][1]:fig.panels["sample"][3], fig.panels["sample"][0]:fig.panels["sample"][2]]
    assert np.abs(q - s).mean() > 5  # an overlay was drawn on top of the sample


def test_scaled_boxes_hold_the_scaled_views_fragments(tmp_path):
    """The scaled view's thick boxes: on a ramp image (red = column, green = row) each scaled-view cell of the sample
    has the mean colour of its box."""
    yy, xx = np.mgrid[0:150, 0:200]
    ramp = np.stack([xx * 255 / 199, yy * 255 / 149, np.full_like(xx, 128.0)], -1).round().astype(np.uint8)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    fig = visualize.make_figure(str(tmp_path / "ramp.png"), "sama", GRID)
    sample = visualize.denormalise(fig.sample).astype(float)
    scaled = fig.views[1]
    assert scaled.label == "x1/2.34" and scaled.factor == pytest.approx(64 / 150) and scaled.size == (64, 85)
    assert scaled.used.sum() == 8
    for i, j in zip(*np.nonzero(scaled.used)):
        x0, y0, x1, y1 = scaled.boxes[i, j]
        assert (x1 - x0, y1 - y0) == pytest.approx((16 * 200 / 85, 16 * 150 / 64), abs=1e-3)
        box = ramp[int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))].astype(float).mean((0, 1))
        cell = sample[16 * i:16 * (i + 1), 16 * j:16 * (j + 1)].mean((0, 1))
        assert np.abs(box - cell).max() < 1.5, (i, j, box, cell)


@pytest.mark.parametrize("where", ["folder", "read-only"])
def test_unusable_out_is_one_error_line_before_the_image_is_read(tmp_path, image, capsys, monkeypatch, where):
    if where == "folder":
        out, named = str(tmp_path), "is a folder"
    else:
        out, named = os.path.join(read_only_folder(tmp_path), "fig.png"), "cannot write there"

    def no_reading(*args, **kwargs):
        raise AssertionError("read the image before checking --out")

    monkeypatch.setattr(visualize, "load_image", no_reading)
    assert visualize.main(["-i", image, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out}") and named in err and len(err.strip().splitlines()) == 1
