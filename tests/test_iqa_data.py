"""IQA label readers, split protocol, image loading and the dataset."""
import pickle
import random

import numpy as np
import pytest
import torch
from PIL import Image

from torchvision import transforms

from samaiqa.datasets import ImageDataset, ImageReadError, build_transform, load_image
from samacore.splits import make_splits
from samaiqa.labels import LabelError, kadid_groups, read_info, read_pkl, read_txt


# ------------------------------------------------------------------------------------------------ labels
def test_txt_reader(tmp_path):
    p = tmp_path / "info.txt"
    p.write_text("a.png 50.5\n\nsub/b.jpg  -1e-1\n")
    ls = read_info(str(p), "/data")
    assert ls.names == ["a.png", "sub/b.jpg"]
    assert ls.paths == ["/data/a.png", "/data/sub/b.jpg"]
    np.testing.assert_allclose(ls.labels, [50.5, -0.1])
    assert ls.labels.dtype == np.float32 and ls.groups is None


def test_txt_reader_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("a.png 1\nb.png 2 3\n")
    with pytest.raises(LabelError, match=r"bad\.txt, line 2"):
        read_txt(str(p))
    p.write_text("a.png 1\nb.png\n")
    with pytest.raises(LabelError, match=r"line 2"):
        read_txt(str(p))
    ls = read_txt(str(p), allow_unlabelled=True)  # test-only lists may omit scores
    assert np.isnan(ls.labels[1]) and ls.labels[0] == 1
    p.write_text("a.png good\n")
    with pytest.raises(LabelError, match=r"line 1: score 'good' is not a number"):
        read_txt(str(p))
    with pytest.raises(LabelError, match="not found"):
        read_info(str(tmp_path / "missing.txt"))
    with pytest.raises(LabelError, match="unknown label file type"):
        (tmp_path / "x.json").write_text("{}")
        read_info(str(tmp_path / "x.json"))


def test_koniq_csv(tmp_path):
    p = tmp_path / "koniq10k_scores.csv"
    p.write_text('"image_name","c1","MOS","SD","MOS_zscore"\n"1.jpg",0,3.1,0.5,70.25\n"2.jpg",1,2.0,0.4,40\n')
    ls = read_info(str(p), "img")
    assert ls.names == ["1.jpg", "2.jpg"] and ls.paths[0].endswith("img/1.jpg")
    np.testing.assert_allclose(ls.labels, [70.25, 40.0])
    p.write_text("image_name,MOS_zscore\n1.jpg,70\n2.jpg,x\n")
    with pytest.raises(LabelError, match=r"line 3: MOS_zscore 'x'"):
        read_info(str(p))
    p.write_text("image_name,MOS\n1.jpg,70\n")
    with pytest.raises(LabelError, match="unknown csv layout"):
        read_info(str(p))


def test_kadid_csv_groups_and_split_by_reference(tmp_path):
    p = tmp_path / "dmos.csv"
    rows = ["dist_img,ref_img,dmos,var"]
    for r in range(1, 11):
        for d in range(1, 4):
            rows.append(f"I{r:02d}_{d:02d}_01.png,I{r:02d}.png,{r + d / 10:.2f},0.1")
    p.write_text("\n".join(rows) + "\n")
    ls = read_info(str(p))
    assert len(ls) == 30 and ls.groups[:4] == ["I01.png"] * 3 + ["I02.png"]
    splits = make_splits(len(ls), 3, kadid_groups(ls))
    for train, test in splits:
        assert len(test) == int(0.2 * 10) * 3  # 2 of 10 references, all their distortions
        assert not {ls.groups[i] for i in train} & {ls.groups[i] for i in test}
        assert sorted(train + test) == list(range(30))
    # without the csv's ref column, names I01_... give the same groups (as ids)
    ls.groups = None
    assert kadid_groups(ls)[:4] == ["I01"] * 3 + ["I02"]


def test_pkl_reader_and_refuses_code(tmp_path):
    p = tmp_path / "info.pkl"
    with open(p, "wb") as f:
        pickle.dump({"files": np.array(["a.png", "b.png"]), "labels": np.array([1.5, 2.5], dtype=np.float32)}, f)
    ls = read_pkl(str(p), "pre")
    assert ls.names == ["a.png", "b.png"] and ls.paths[1].endswith("pre/b.png")
    np.testing.assert_allclose(ls.labels, [1.5, 2.5])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(p, "wb") as f:
        pickle.dump({"files": ["a"], "labels": [Evil()]}, f)
    with pytest.raises(LabelError, match="refusing to load builtins.print"):
        read_pkl(str(p))


def test_make_splits_matches_the_reference_protocol():
    n = 37
    splits = make_splits(n, 4)
    for s, (train, test) in enumerate(splits):
        index = np.arange(n)  # the reference shuffles a numpy index array with random.Random(s * 123)
        random.Random(s * 123).shuffle(index)
        assert train == sorted(index[: int(0.8 * n)].tolist())
        assert test == sorted(index[int(0.8 * n):].tolist())
    assert splits[0] != splits[1]


# ------------------------------------------------------------------------------------------------ images
def test_modes_load_as_rgb8(tmp_path):
    gray = np.array([[0, 10, 200], [255, 128, 7]], dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(np.asarray(load_image(str(tmp_path / "gray.png"))), np.repeat(gray[..., None], 3, -1))

    pal = Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), mode="P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 10, 20, 30] + [0] * (256 * 3 - 9))
    pal.save(tmp_path / "pal.png")
    want = np.array([[[255, 0, 0], [0, 255, 0]], [[10, 20, 30], [0, 255, 0]]], dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(load_image(str(tmp_path / "pal.png"))), want)

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, np.array([[0, 128], [255, 7]])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    out = np.asarray(load_image(str(tmp_path / "rgba.png")))
    assert out.shape == (2, 2, 3) and (out == [200, 100, 50]).all()  # alpha dropped, colour kept

    g16 = np.array([[0, 257 * 100, 65535], [32896, 1000, 128]], dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    img = load_image(str(tmp_path / "g16.png"))
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img)[..., 1], [[0, 100, 255], [128, 4, 0]])  # scaled, not clipped


def test_small_images_are_enlarged_with_truncated_sizes(tmp_path):
    Image.fromarray(np.zeros((30, 40, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    img = load_image(str(tmp_path / "s.png"), min_size=64)
    assert img.size == (int(40 * 64 / 30), int(30 * 64 / 30))
    assert load_image(str(tmp_path / "s.png"), min_size=20).size == (40, 30)


def test_unreadable_image_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="broken.png"):
        load_image(str(bad))
    ds = ImageDataset([str(bad)], [1.0], stype="sama")
    with pytest.raises(ImageReadError, match="broken.png"):
        ds[0]
    with pytest.raises(ImageReadError, match="nothere.png"):
        load_image(str(tmp_path / "nothere.png"))


def test_dataset_items(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    args = {"fwin_h": 4, "fwin_w": 4, "fsize_h": 16, "fsize_w": 16, "database": "x"}
    test = ImageDataset([str(tmp_path / "a.png")], [3.5], ["a.png"], args, stype="sama", is_train=False)
    item = test[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["label"] == 3.5 and item["name"] == "a.png"
    assert torch.equal(test[0]["image"], item["image"])  # test mode is deterministic
    train = ImageDataset([str(tmp_path / "a.png")], [3.5], None, args, stype="fragment", is_train=True)
    torch.manual_seed(0)
    a = train[0]["image"]
    torch.manual_seed(1)
    assert a.shape == (3, 64, 64) and not torch.equal(a, train[0]["image"])
    with pytest.raises(ValueError, match="stype"):
        ImageDataset([], [], stype="fragments")


def test_train_augment_option_chooses_the_training_transforms(tmp_path):
    """``data.train_augment``: the original's flip + rotation by default; ``flip`` keeps only the flip (no black
    corners: a training image keeps every pixel, as at test time); test mode never augments."""
    def kinds(t):
        return [type(s).__name__ for s in t.transforms]

    assert kinds(build_transform(True)) == ["ToTensor", "RandomHorizontalFlip", "RandomRotation", "Normalize"]
    assert kinds(build_transform(True, "flip")) == ["ToTensor", "RandomHorizontalFlip", "Normalize"]
    assert kinds(build_transform(True, "none")) == kinds(build_transform(False)) == ["ToTensor", "Normalize"]
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(tmp_path / "flat.png")
    args = {"fwin_h": 2, "fwin_w": 2, "fsize_h": 32, "fsize_w": 32}
    black = (0 - 0.485) / 0.229  # a black corner pixel, normalised (red channel)
    for augment, corners in (("flip_rotate", True), ("flip", False)):
        data = ImageDataset([str(tmp_path / "flat.png")], [1.0], None, {**args, "train_augment": augment},
                            stype="fragment", is_train=True)
        torch.manual_seed(0)
        seen = torch.stack([data[0]["image"][0] for _ in range(8)])
        assert bool(torch.isclose(seen, torch.tensor(black), atol=1e-4).any()) == corners
