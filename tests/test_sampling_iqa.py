"""Spatial sampling of images (samaiqa.sampling): golden fingerprints and invariants of fragment / sama / sama-spm."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samacore.sampling import FragmentGrid, patch_mask, window_mask
from samaiqa.sampling import IQA_SAMPLE_TYPES, sample_image

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
SMALL = dict(fwin_h=4, fwin_w=4, fsize_h=16, fsize_w=16)  # 64x64 outputs


def synth_image(seed, h, w):
    """The golden inputs: float32 [3, H, W], roughly normalised."""
    rng = np.random.default_rng(seed)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    base = np.stack([np.sin(0.05 * xx + c) * np.cos(0.037 * yy - c) for c in range(3)])
    return torch.from_numpy((base + 0.5 * rng.standard_normal((3, h, w))).astype(np.float32))


def test_golden_fingerprints():
    gold = np.load(os.path.join(FIXTURES, "golden_sampling_small.npz"))
    img = synth_image(11, 384, 512)
    idx = np.random.default_rng(1234).integers(0, 3 * 256 * 256, size=20000)[:2000]
    for st in IQA_SAMPLE_TYPES:
        out = sample_image(img, st, is_train=False, fwin_h=8, fwin_w=8, fsize_h=32, fsize_w=32)
        key = f"i384x512|{st}"
        assert list(out.shape) == list(gold[key + "|shape"])
        arr = out.double().numpy()
        assert np.abs(arr.reshape(3, -1).mean(-1) - gold[key + "|means"].reshape(3)).max() < 1e-4, st
        assert np.abs(arr.reshape(-1)[idx] - gold[key + "|probe"]).max() < 1e-4, st


def cell_hits(frame, patch, top, left, length, fsize, tol):
    hits = []
    for dy in range(max(0, length[0] - fsize) + 1):
        for dx in range(max(0, length[1] - fsize) + 1):
            crop = frame[:, top + dy:top + dy + fsize, left + dx:left + dx + fsize]
            if crop.shape[-2:] == patch.shape[-2:] and (crop - patch).abs().max() <= tol:
                hits.append((top + dy, left + dx))
    return hits


def locate(frame, out, cells, fsize, tol):
    h, w = frame.shape[-2:]
    length = (h // cells, w // cells)
    found = {}
    for i in range(cells):
        for j in range(cells):
            patch = out[:, i * fsize:(i + 1) * fsize, j * fsize:(j + 1) * fsize]
            top, left = min(length[0] * i, h - fsize), min(length[1] * j, w - fsize)
            hits = cell_hits(frame, patch, top, left, length, fsize, tol)
            assert hits, (i, j)
            found[(i, j)] = hits[0]
    return found


def test_fragment_train_crops_inside_cells():
    img = torch.randn(3, 100, 90)
    torch.manual_seed(0)
    out = sample_image(img, "fragment", True, **SMALL)
    assert out.shape == (3, 64, 64)
    locate(img, out, 4, 16, 0)


@pytest.mark.parametrize("st,kind", [("sama", "window"), ("sama-spm", "patch")])
def test_sama_mixes_full_resolution_and_shrunk_views_at_shared_offsets(st, kind):
    h, w = 130, 100  # ratio = min(130/64, 100/64)
    img = torch.randn(3, h, w)
    torch.manual_seed(3)
    out = sample_image(img, st, True, **SMALL)
    mask = window_mask(FragmentGrid(4, 4, 16, 16)) if kind == "window" else patch_mask(64, 64)
    ratio = min(h / 64, w / 64)
    small = F.interpolate(img[None], size=(round(h / ratio), round(w / ratio)), mode="bilinear", align_corners=False)[0]
    # in every cell, the full-resolution pixels are a crop of img and the others a crop of the shrunk image
    length_full = (h // 4, w // 4)
    length_small = (small.shape[-2] // 4, small.shape[-1] // 4)
    for i in range(4):
        for j in range(4):
            sl = (slice(None), slice(i * 16, (i + 1) * 16), slice(j * 16, (j + 1) * 16))
            m = mask[sl[1:]]
            for frame, length, sel in ((img, length_full, m), (small, length_small, ~m)):
                if not sel.any():
                    continue
                hh, ww = frame.shape[-2:]
                top, left = min(length[0] * i, hh - 16), min(length[1] * j, ww - 16)
                ok = False
                for dy in range(max(0, length[0] - 16) + 1):
                    for dx in range(max(0, length[1] - 16) + 1):
                        crop = frame[:, top + dy:top + dy + 16, left + dx:left + dx + 16]
                        if (crop[:, sel] - out[sl][:, sel]).abs().max() <= 1e-5:
                            ok = True
                            break
                    if ok:
                        break
                assert ok, (i, j)


def test_test_mode_deterministic_and_seeds_matter():
    img = torch.randn(3, 150, 120)
    for st in IQA_SAMPLE_TYPES:
        torch.manual_seed(0)
        a = sample_image(img, st, True, **SMALL)
        torch.manual_seed(0)
        b = sample_image(img, st, True, **SMALL)
        torch.manual_seed(1)
        c = sample_image(img, st, True, **SMALL)
        assert torch.equal(a, b) and not torch.equal(a, c), st
        assert torch.equal(sample_image(img, st, False, **SMALL), sample_image(img, st, False, **SMALL))


def test_fragment_on_small_image_uses_enlarged_size():
    # the reference keeps the pre-enlargement size for its grid (and fails); here the grid is on the enlarged image
    img = torch.randn(3, 50, 80)
    out = sample_image(img, "fragment", False, **SMALL)
    up = F.interpolate(img[None], scale_factor=64 / 50, mode="bilinear", align_corners=False)[0]
    assert up.shape[-2:] == (64, 102)
    # L = (16, 25): centred offsets (0, 4)
    assert torch.equal(out[:, :16, :16], up[:, :16, 4:20])
    assert torch.equal(out[:, 48:, 48:], up[:, 48:64, 75 + 4:75 + 20])


def test_sama_on_small_image_is_the_enlarged_image():
    img = torch.randn(3, 50, 80)
    up = F.interpolate(img[None], size=(64, 102), mode="bilinear", align_corners=False)[0]
    for st in ("sama", "sama-spm"):
        out = sample_image(img, st, False, **SMALL)
        # relative offsets 0.5 at the single (enlarged) scale: int(0.5 * (25 - 16)) = 4
        assert (out[:, :16, :16] - up[:, :16, 4:20]).abs().max() < 1e-5


def test_errors():
    with pytest.raises(ValueError, match="sama-spm"):
        sample_image(torch.randn(3, 64, 64), "sama-swm")
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        sample_image(torch.randn(1, 3, 64, 64), "sama")
