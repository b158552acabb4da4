"""VQA datasets: label files, one batched decode per video, item layout and normalisation, clear errors."""
import math
import os

import numpy as np
import pytest
import torch  # before decord

import cv2

from samacore.options import OptionError
from samavqa import FineTuneDataset, FusionDataset, FragmentSampleFrames
from samavqa.datasets import MEAN, STD, decode_frames, list_videos
from samavqa.decoders import pick_frames, take_rows
from samavqa.decoders import read_frames
from samavqa.labels import read_label_file

H, W, T = 64, 80, 20
FRAG = dict(fragments_h=2, fragments_w=2, fsize_h=32, fsize_w=32, aligned=8, clip_len=8, frame_interval=1)


def write_video(path, seed, frames=T, h=H, w=W):
    """Smooth random colour video (mp4v), so decoding is close to the written values."""
    rng = np.random.default_rng(seed)
    out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    base = rng.integers(40, 200, size=3)
    for t in range(frames):
        img = np.zeros((h, w, 3), np.uint8)
        img[:] = np.clip(base + 3 * t, 0, 255).astype(np.uint8)
        img[: h // 2, : w // 2] = 255 - img[: h // 2, : w // 2]
        out.write(img)
    out.release()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa_videos")
    os.makedirs(root / "clips")
    lines = []
    for i in range(4):
        write_video(str(root / "clips" / f"v{i}.mp4"), i)
        lines.append(f"clips/v{i}.mp4, -1, -1, {10.0 * i + 1.5}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n\n")
    return root


def opts(root, phase="test", num_clips=2, **extra):
    return dict(phase=phase, anno_file=str(root / "labels.txt"), data_prefix=str(root),
                sample_types={"fragments": dict(FRAG, num_clips=num_clips)}, **extra)


def test_label_file_parsing(videos):
    infos = read_label_file(str(videos / "labels.txt"), str(videos))
    assert [i["fileid"] for i in infos] == [f"clips/v{i}.mp4" for i in range(4)]
    assert [i["label"] for i in infos] == [1.5, 11.5, 21.5, 31.5]
    assert infos[2]["filename"] == os.path.join(str(videos), "clips/v2.mp4")


def test_item_layout_and_values(videos):
    ds = FusionDataset(opts(videos), stype="fragments")
    assert len(ds) == 4
    item = ds[1]
    assert set(item) == {"fragments", "num_clips", "frame_inds", "gt_label", "name"}
    assert item["name"] == "clips/v1.mp4" and item["gt_label"] == 11.5
    assert item["num_clips"] == {"fragments": 2}
    # test mode: 2 segments of 10 frames, 8 consecutive frames centred in each -> starts 1 and 11
    np.testing.assert_array_equal(item["frame_inds"]["fragments"], np.r_[1:9, 11:19])
    x = item["fragments"]
    assert x.shape == (3, 16, 64, 64) and x.dtype == torch.float32
    # normalisation: undoing it gives the sampled frames back on the 0-255 scale (the grid covers this 64x80 video
    # without resizing: 64 rows in full, a centred 64-column window per cell column pair)
    frames = read_frames(str(videos / "clips/v1.mp4"), list(range(1, 9)) + list(range(11, 19))).permute(3, 0, 1, 2)
    back = x * STD.view(-1, 1, 1, 1) + MEAN.view(-1, 1, 1, 1)
    # cell (0, 0): rows 0-31, columns start at offset (40 - 32) // 2 = 4
    torch.testing.assert_close(back[:, :, :32, :32], frames[:, :, :32, 4:36].float(), atol=1e-3, rtol=0)


def test_each_frame_decoded_once_in_one_batch(videos, monkeypatch):
    decord = pytest.importorskip("decord", reason="decord is not installed here (no wheel for this platform)")
    calls = []
    orig = decord.VideoReader.get_batch

    def spy(self, indices):
        calls.append(list(indices))
        return orig(self, indices)

    monkeypatch.setattr(decord.VideoReader, "get_batch", spy)
    monkeypatch.setattr(decord.VideoReader, "__getitem__", lambda *a: pytest.fail("per-frame decoding used"))
    # two branches sampling overlapping frames: every needed frame is decoded exactly once, in one call
    samplers = {"fragments": FragmentSampleFrames(8, 2, 1), "fragments_up": FragmentSampleFrames(8, 1, 1)}
    vids, inds = decode_frames(str(videos / "clips/v0.mp4"), samplers, is_train=False)
    assert len(calls) == 1
    needed = np.unique(np.concatenate(list(inds.values())))
    assert sorted(calls[0]) == needed.tolist() and len(set(calls[0])) == len(calls[0])
    assert vids["fragments"].shape == (3, 16, H, W) and vids["fragments_up"].shape == (3, 8, H, W)
    # frame 6 is in both branches and must hold the same pixels in each
    a = vids["fragments"][:, list(inds["fragments"]).index(6)]
    b = vids["fragments_up"][:, list(inds["fragments_up"]).index(6)]
    assert torch.equal(a, b)


def test_pick_frames_views_consecutive_rows_and_copies_the_rest():
    frames = torch.arange(6 * 2 * 2 * 3, dtype=torch.uint8).view(6, 2, 2, 3)
    reads = []
    samplers = {"a": lambda n, train: np.array([1, 2, 3]), "b": lambda n, train: np.array([3, 1, 1, 5])}
    videos, _ = pick_frames(6, samplers, False, lambda idx: reads.append(idx) or frames[idx])
    assert reads == [[1, 2, 3, 5]]
    assert torch.equal(videos["a"], frames[[1, 2, 3]].permute(3, 0, 1, 2))
    assert torch.equal(videos["b"], frames[[3, 1, 1, 5]].permute(3, 0, 1, 2))
    read = frames[[1, 2, 3, 5]]
    videos, _ = pick_frames(6, {"a": samplers["a"]}, False, lambda idx: read)
    assert videos["a"].data_ptr() == read.data_ptr()  # the rows it needs are consecutive: no copy of full frames


def test_train_mode_random_and_finetune_dataset(videos):
    infos = read_label_file(str(videos / "labels.txt"), str(videos))
    ds = FineTuneDataset(infos[:2], {"sample_types": {"fragments": dict(FRAG, num_clips=1)}}, stype="sama", is_train=True)
    assert ds.is_train and len(ds) == 2
    np.random.seed(0)
    torch.manual_seed(0)
    item = ds[0]
    assert item["fragments"].shape == (3, 8, 64, 64)
    assert item["name"] == "clips/v0.mp4"
    assert 0 <= item["frame_inds"]["fragments"].min() and item["frame_inds"]["fragments"].max() < T


def test_label_free_folder(videos):
    ds = FusionDataset(dict(phase="test", data_prefix=str(videos / "clips"),
                            sample_types={"fragments": dict(FRAG, num_clips=1)}))
    assert [i["fileid"] for i in ds.video_infos] == [f"v{i}.mp4" for i in range(4)]
    assert math.isnan(ds[0]["gt_label"])
    assert [i["fileid"] for i in list_videos(str(videos / "clips"))] == [f"v{i}.mp4" for i in range(4)]


def test_a_training_set_without_labels_is_refused(videos):
    """``anno_file: null`` lists a folder's videos unlabelled: as a training set every loss was NaN, every step
    skipped, and the run ended in a traceback after max_bad_steps."""
    with pytest.raises(OptionError, match=r"^dataset\.anno_file: a training set needs its labels .* which only a test "
                                          r"set can be$"):
        FusionDataset(dict(phase="train", data_prefix=str(videos / "clips"),
                           sample_types={"fragments": dict(FRAG, num_clips=1)}))


def test_missing_label_file_names_path(videos):
    bad = str(videos / "nope.txt")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        FusionDataset(dict(opts(videos), anno_file=bad))


def test_missing_video_names_path(videos, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("clips/v0.mp4,0,0,1.0\nclips/ghost.mp4,0,0,2.0\n")
    with pytest.raises(FileNotFoundError, match="ghost.mp4"):
        FusionDataset(dict(opts(videos), anno_file=str(labels)))
    with pytest.raises(FileNotFoundError, match="ghost.mp4"):
        decode_frames(str(videos / "clips/ghost.mp4"), {"fragments": FragmentSampleFrames(8, 1)}, False)


def test_bad_label_line_and_options(videos, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("clips/v0.mp4,0,1.0\n")
    with pytest.raises(ValueError, match=r"labels.txt:1: expected 4"):
        read_label_file(str(labels), str(videos))
    with pytest.raises(OptionError, match="valid types: fragments, sama"):
        FusionDataset(opts(videos), stype="sama-xyz")
    with pytest.raises(OptionError, match="did you mean 'anno_file'"):
        FusionDataset(dict(phase="test", ano_file="x", data_prefix=str(videos), sample_types=opts(videos)["sample_types"]))
    with pytest.raises(OptionError, match="clip_len"):
        FusionDataset(dict(opts(videos), sample_types={"fragments": {"num_clips": 1, "frame_interval": 1}}))


@pytest.mark.parametrize("rows, view", [([3, 4, 5], True), ([1, 3, 5, 7], True), ([6], True), ([2, 5, 6], False),
                                        ([5, 3, 1], False), ([4, 4], False)])
def test_take_rows_views_evenly_rising_rows_and_copies_the_rest(rows, view):
    frames = torch.arange(10 * 4 * 2 * 3, dtype=torch.uint8).view(10, 4, 2, 3)
    got = take_rows(frames, np.array(rows))
    assert torch.equal(got, frames[torch.tensor(rows)])
    assert (got.untyped_storage().data_ptr() == frames.untyped_storage().data_ptr()) == view  # a view shares memory
