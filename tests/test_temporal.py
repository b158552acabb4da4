"""Temporal samplers: golden indices from the original code (test mode) and train-mode invariants."""
import os

import numpy as np
import pytest

from samavqa.temporal import FragmentSampleFrames, SampleFrames

GOLDEN = os.path.join(os.path.dirname(__file__), "fixtures", "golden_temporal.npz")


def test_golden_test_mode_indices():
    gold = np.load(GOLDEN)
    assert len(gold.files) > 20
    for key in gold.files:
        kind, segments, frames = key.split("|")
        # the datasets build FragmentSampleFrames(clip_len, num_clips, frame_interval)
        sampler = FragmentSampleFrames(32, int(segments), 2) if kind == "fsf" else SampleFrames(32, 2, int(segments))
        got = sampler(int(frames), train=False)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, gold[key], err_msg=key)


def test_fragment_sampler_test_mode_layout():
    # 4 segments of 250 frames, runs of 32 frames every 2nd frame, centred: (250 - 64) // 2 = 93
    got = FragmentSampleFrames(32, 4, 2)(1000)
    assert got.shape == (128,)
    for seg in range(4):
        expect = 250 * seg + 93 + 2 * np.arange(32)
        np.testing.assert_array_equal(got[32 * seg:32 * (seg + 1)], expect)


@pytest.mark.parametrize("frames", [20, 64, 133, 1000])
def test_fragment_sampler_train_invariants(frames):
    sampler = FragmentSampleFrames(32, 4, 2)
    np.random.seed(3)
    draws = [sampler(frames, train=True) for _ in range(20)]
    seg_len = frames // 4
    for got in draws:
        assert got.shape == (128,) and got.dtype == np.int32
        assert got.min() >= 0 and got.max() <= frames - 1
        runs = got.reshape(4, 32)
        # every run starts inside its own segment and steps by the interval until it is clamped at the end
        starts = runs[:, 0]
        assert np.all(starts >= seg_len * np.arange(4))
        assert np.all(starts < seg_len * np.arange(4) + max(1, seg_len - 64))
        steps = np.diff(runs, axis=1)
        assert np.all((steps == 2) | (runs[:, 1:] == frames - 1))
    if seg_len > 65:  # room to move: draws differ
        assert len({d.tobytes() for d in draws}) > 1
    np.random.seed(3)
    np.testing.assert_array_equal(sampler(frames, train=True), draws[0])


def test_fragment_sampler_repeats_for_num_clips():
    got = FragmentSampleFrames(8, 2, 1, num_clips=3)(100)
    assert got.shape == (48,)
    np.testing.assert_array_equal(got[:16], got[16:32])


@pytest.mark.parametrize("frames", [20, 64, 100, 1000])
def test_clip_sampler_train_invariants(frames):
    sampler = SampleFrames(8, 2, 3)
    np.random.seed(0)
    for _ in range(20):
        got = sampler(frames, train=True)
        assert got.shape == (24,) and got.dtype == np.int32
        assert got.min() >= 0 and got.max() < frames  # wrapped modulo the length
        clips = got.reshape(3, 8)
        assert np.all((np.diff(clips, axis=1) - 2) % frames == 0)


def test_clip_sampler_test_mode_is_evenly_spaced():
    got = SampleFrames(4, 2, 2)(100)
    # average interval (100 - 8 + 1) / 2 = 46.5; clips start at int(23.25) and int(69.75)
    np.testing.assert_array_equal(got, [23, 25, 27, 29, 69, 71, 73, 75])


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="frame_interval"):
        FragmentSampleFrames(32, 4, 0)
    with pytest.raises(ValueError, match="total_frames"):
        SampleFrames(8)(0)
