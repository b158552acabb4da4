"""Spatial sampling of videos (samavqa.sampling on samacore.sampling).

Golden fingerprints (tests/fixtures/golden_sampling_small.npz) come from the original SAMA code on the synthetic
inputs rebuilt by ``synth_video``; the other tests check the invariants of each sample type directly.
"""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samacore.sampling import patch_mask, window_mask, FragmentGrid
from samavqa.sampling import SAMPLE_TYPES, get_single_sample

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
PAPER = dict(fragments_h=7, fragments_w=7, fsize_h=32, fsize_w=32, aligned=32, clip_len=32, frame_interval=2, num_clips=4)
SMALL = dict(fragments_h=3, fragments_w=3, fsize_h=16, fsize_w=16, aligned=8)  # 48x48 outputs, 4 scales per clip
GRID_TYPES = ("fragments", "sama", "sama-c", "sama-mix", "sama-spm", "sama-swm")


def synth_video(seed, t, h, w):
    """The golden inputs: uint8 [3, T, H, W], a smooth moving pattern plus noise."""
    rng = np.random.default_rng(seed)
    tt = np.arange(t, dtype=np.float32)[:, None, None]
    yy = np.arange(h, dtype=np.float32)[None, :, None]
    xx = np.arange(w, dtype=np.float32)[None, None, :]
    out = np.empty((3, t, h, w), dtype=np.uint8)
    for c in range(3):
        base = 127 + 60 * np.sin(0.031 * (xx + 2 * tt) + 0.5 * c) * np.cos(0.023 * (yy - tt) + c)
        out[c] = np.clip(base + rng.normal(0, 25, size=(t, h, w)).astype(np.float32), 0, 255).astype(np.uint8)
    return torch.from_numpy(out)


def decoded(t, h, w, seed=0):
    """A random uint8 video in the decoder's memory layout ([T, H, W, C] viewed as [C, T, H, W])."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, h, w, 3), dtype=torch.uint8, generator=g).permute(3, 0, 1, 2)


def fingerprint(arr):
    arr = np.asarray(arr, dtype=np.float64)
    idx = np.random.default_rng(1234).integers(0, arr.size, size=min(20000, arr.size))[:2000]
    return arr.reshape(arr.shape[0], -1, arr.shape[-2] * arr.shape[-1]).mean(-1), arr.reshape(-1)[idx]


# ------------------------------------------------------------------------------------------------- golden
# The 360x640 golden case (all SAMA variants) is left to ../shared/golden/check.py: building its input alone takes
# seconds. The variants share one pipeline; their differences are covered by the invariant tests below.
@pytest.mark.parametrize("case,shape", [("up180x320", (1, 128, 180, 320))])
def test_golden_fingerprints(case, shape):
    gold = np.load(os.path.join(FIXTURES, "golden_sampling_small.npz"))
    video = synth_video(*shape)
    types = sorted({k.split("|")[1] for k in gold.files if k.startswith(case + "|")})
    assert types
    for st in types:
        out = get_single_sample(video, st, False, **PAPER)
        assert out.dtype == torch.float32
        assert list(out.shape) == list(gold[f"{case}|{st}|shape"])
        means, probe = fingerprint(out.numpy())
        assert np.abs(means - gold[f"{case}|{st}|means"]).max() < 1e-2, st
        assert np.abs(probe - gold[f"{case}|{st}|probe"]).max() < 1e-2, st


# --------------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("st", SAMPLE_TYPES)
def test_shapes_every_type(st):
    video = decoded(16, 120, 200)
    opts = dict(aligned=8)
    if st in GRID_TYPES:
        opts.update(SMALL)
    if st in ("resize", "crop"):
        opts.update(size_h=64, size_w=48)
    if st == "arp_fragments":
        opts.update(short_fragments=3, fsize=16)
    if st == "arp_resize":
        opts.update(short_edge=60)
    out = get_single_sample(video, st, True, **opts)
    expect = {"original": (120, 200), "resize": (64, 48), "crop": (64, 48), "arp_fragments": (48, 80),
              "arp_resize": (60, 100)}.get(st, (48, 48))
    assert out.shape == (3, 16) + expect and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 255


@pytest.mark.parametrize("st", GRID_TYPES + ("crop", "arp_fragments"))
def test_single_frame(st):
    opts = dict(PAPER) if st in GRID_TYPES else {}
    for train in (False, True):
        out = get_single_sample(decoded(1, 300, 500), st, train, **opts)
        assert out.shape[:2] == (3, 1) and out.shape[-2] == 224


# ------------------------------------------------------------------------------------- fragments, train mode
def find_crop(frame, patch, top, left, length, fsize, tol):
    """Offsets (dy, dx) in [0, length - fsize] x ... at which ``patch`` equals ``frame`` within ``tol``."""
    room_h, room_w = max(0, length[0] - fsize), max(0, length[1] - fsize)
    hits = []
    for dy in range(room_h + 1):
        for dx in range(room_w + 1):
            crop = frame[:, top + dy:top + dy + fsize, left + dx:left + dx + fsize]
            if crop.shape[-2:] == patch.shape[-2:] and (crop - patch).abs().max() <= tol:
                hits.append((dy, dx))
    return hits


def cells_of(out, g, fsize):
    for i in range(g):
        for j in range(g):
            yield i, j, out[..., i * fsize:(i + 1) * fsize, j * fsize:(j + 1) * fsize]


def test_fragments_train_are_crops_inside_their_cells():
    video = decoded(16, 100, 130)
    torch.manual_seed(0)
    out = get_single_sample(video, "fragments", True, **SMALL)
    length = (100 // 3, 130 // 3)
    for clip in range(2):
        t = 8 * clip
        for i, j, patch in cells_of(out[:, t], 3, 16):
            top, left = min(length[0] * i, 100 - 16), min(length[1] * j, 130 - 16)
            hits = find_crop(video[:, t].float(), patch, top, left, length, 16, 0)
            assert hits, (clip, i, j)
            # the whole clip uses the same window
            dy, dx = hits[0]
            for k in range(8):
                crop = video[:, t + k, top + dy:top + dy + 16, left + dx:left + dx + 16].float()
                assert torch.equal(out[:, t + k, i * 16:(i + 1) * 16, j * 16:(j + 1) * 16], crop)


def scaled_frame(video, t, size):
    return F.interpolate(video[:, t:t + 1].float() / 255, size=size, mode="bilinear", align_corners=False)[:, 0] * 255


def test_sama_train_fragments_are_scaled_crops_with_shared_relative_offsets():
    h, w = 150, 210  # ratio = min(150/48, 210/48) = 3.125
    video = decoded(8, h, w, seed=1)
    torch.manual_seed(5)
    out = get_single_sample(video, "sama", True, **SMALL)
    factors = np.linspace(1, 48 / h, 4)  # one factor per pair of frames
    intervals = {}
    for k, f in enumerate(factors):
        size = (round(h * f), round(w * f))
        length = (size[0] // 3, size[1] // 3)
        frame = scaled_frame(video, 2 * k, size)
        for i, j, patch in cells_of(out[:, 2 * k], 3, 16):
            top, left = min(length[0] * i, size[0] - 16), min(length[1] * j, size[1] - 16)
            hits = find_crop(frame, patch, top, left, length, 16, 1e-3)
            assert len(hits) == 1, (k, i, j, hits)
            # the offset int(r * (L - fsize)) pins r to an interval; all scales must agree on one r per cell
            (dy, dx), room = hits[0], (length[0] - 16, length[1] - 16)
            lo = (dy / room[0] if room[0] else 0, dx / room[1] if room[1] else 0)
            hi = ((dy + 1) / room[0] if room[0] else 1, (dx + 1) / room[1] if room[1] else 1)
            prev = intervals.get((i, j), ((0, 0), (1, 1)))
            lo = (max(lo[0], prev[0][0]), max(lo[1], prev[0][1]))
            hi = (min(hi[0], prev[1][0]), min(hi[1], prev[1][1]))
            assert lo[0] < hi[0] and lo[1] < hi[1], (k, i, j)
            intervals[(i, j)] = (lo, hi)
        # both frames of a temporal patch share the scale and window
        top_left = out[:, 2 * k + 1]
        frame1 = scaled_frame(video, 2 * k + 1, size)
        i, j, patch = next(cells_of(top_left, 3, 16))
        assert find_crop(frame1, patch, 0, 0, length, 16, 1e-3)


def full_res_windows(video, out, grid=3, fsize=16):
    """Top-left corners of each cell's fragment in frame 0 (factor 1, full resolution)."""
    h, w = video.shape[-2:]
    length = (h // grid, w // grid)
    corners = {}
    for i, j, patch in cells_of(out[:, 0], grid, fsize):
        top, left = min(length[0] * i, h - fsize), min(length[1] * j, w - fsize)
        hits = find_crop(video[:, 0].float(), patch, top, left, length, fsize, 1e-3)
        assert len(hits) == 1
        corners[(i, j)] = (top + hits[0][0], left + hits[0][1])
    return corners


@pytest.mark.parametrize("st,kind", [("sama-spm", "patch"), ("sama-swm", "window")])
def test_masked_variants_mix_full_resolution_and_scaled(st, kind):
    video = decoded(8, 150, 210, seed=2)
    torch.manual_seed(11)
    scaled = get_single_sample(video, "sama", True, **SMALL)
    torch.manual_seed(11)
    mixed = get_single_sample(video, st, True, **SMALL)
    grid = FragmentGrid(3, 3, 16, 16)
    mask = patch_mask(48, 48) if kind == "patch" else window_mask(grid)
    assert 0.4 < mask.float().mean() < 0.6
    # scaled pixels are the sama sample
    assert torch.equal(mixed[:, :, ~mask], scaled[:, :, ~mask])
    # full-resolution pixels read every frame at the first scale's windows
    corners = full_res_windows(video, scaled)
    full = torch.empty_like(scaled)
    for (i, j), (y, x) in corners.items():
        full[:, :, i * 16:(i + 1) * 16, j * 16:(j + 1) * 16] = video[:, :, y:y + 16, x:x + 16].float()
    assert (mixed[:, :, mask] - full[:, :, mask]).abs().max() < 1e-3
    assert not torch.allclose(mixed, scaled)


def test_mask_patterns():
    m = patch_mask(16, 20)
    assert m[0, 0] and m[3, 3] and not m[0, 4] and not m[4, 0] and m[4, 4] and m[7, 7] and not m[8, 4]
    assert not m[:, 16:].any()  # beyond the last whole 8x8 block: scaled
    w = window_mask(FragmentGrid(2, 3, 4, 5))
    assert w.shape == (8, 15)
    assert w[0, 0] and not w[0, 5] and w[0, 10] and not w[4, 0] and w[4, 5]


# --------------------------------------------------------------------------------------------- randomness
@pytest.mark.parametrize("st", GRID_TYPES)
def test_seeds_drive_train_mode_and_test_mode_is_deterministic(st):
    video = decoded(16, 140, 180)
    torch.manual_seed(1)
    a = get_single_sample(video, st, True, **SMALL)
    torch.manual_seed(1)
    b = get_single_sample(video, st, True, **SMALL)
    torch.manual_seed(2)
    c = get_single_sample(video, st, True, **SMALL)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(1)
    d = get_single_sample(video, st, False, **SMALL)
    e = get_single_sample(video, st, False, **SMALL)
    assert torch.equal(d, e)


def test_input_dtype_and_layout_do_not_matter():
    video = decoded(8, 150, 210)
    ref = get_single_sample(video, "sama-spm", False, **SMALL)
    for variant in (video.contiguous(), video.float(), video.double().contiguous()):
        assert (get_single_sample(variant, "sama-spm", False, **SMALL) - ref).abs().max() < 1e-3


def test_upsampled_small_video():
    # ratio < 1: frames enlarged to (round(H/ratio), round(W/ratio)); fragments truncate to uint8 afterwards
    video = decoded(8, 30, 40)
    up = F.interpolate(video.float() / 255, size=(48, 64), mode="bilinear", align_corners=False)
    frag = get_single_sample(video, "fragments", False, **SMALL)
    # test-mode offsets: L = (16, 21): centred (0, 2)
    assert torch.equal(frag[:, :, :16, :16], (up[:, :, :16, 2:18] * 255).to(torch.uint8).float())
    sama = get_single_sample(video, "sama", False, **SMALL)
    assert (sama[:, :, :16, :16] - up[:, :, :16, 2:18] * 255).abs().max() < 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    video = decoded(32, 360, 640)
    for st in GRID_TYPES:
        cpu = get_single_sample(video, st, False, **PAPER)
        gpu = get_single_sample(video.cuda(), st, False, **PAPER)
        assert gpu.is_cuda and (gpu.cpu() - cpu).abs().max() < 1e-2


# ------------------------------------------------------------------------------------------------ errors/API
def test_unknown_type_lists_valid_names():
    with pytest.raises(ValueError, match="sama-spm") as err:
        get_single_sample(decoded(1, 64, 64), "sama_spm")
    assert "fragments" in str(err.value) and "did you mean" in str(err.value)


def test_unknown_option_lists_allowed_keys():
    with pytest.raises(ValueError, match="fragments_h") as err:
        get_single_sample(decoded(32, 240, 240), "sama", False, fragment_h=7)
    assert "allowed keys" in str(err.value)


def test_aliases_and_ignored_options():
    video = decoded(32, 224, 250)
    opts = dict(PAPER, nfrags=1, random=False, random_upsample=False, fallback_type="upsample")
    assert torch.equal(get_single_sample(video, "sama+spm", False, **opts), get_single_sample(video, "sama-spm", False, **opts))
    assert torch.equal(get_single_sample(video, "sama+swm", False, **opts), get_single_sample(video, "sama-swm", False, **opts))
    assert torch.equal(get_single_sample(video, "fragments_up", False, **opts), get_single_sample(video, "fragments", False, **opts))


def test_frames_must_fill_whole_clips():
    with pytest.raises(ValueError, match="multiple of aligned"):
        get_single_sample(decoded(20, 240, 240), "sama", False, **PAPER)
