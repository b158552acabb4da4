"""Faulty inputs: every kind of image file (loads as the right RGB or fails with ImageReadError naming the file
and the reason), skipping bad items in training (skip list, max_bad_fraction), label-file faults with file:line."""
import os
import pickle

import numpy as np
import pytest
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from helpers import GRID, SMALL_SWIN, write_graded_images
from samacore.robust import BadItemLog, SkipBadItems, SkippingLoader, TooManyBadItems
from samacore.runs import run_command
from samaiqa import cli
from samaiqa.datasets import ImageDataset, ImageReadError, load_image
from samaiqa.labels import LabelError, missing_files, read_info, read_pkl



pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def rgb(path):
    return np.asarray(load_image(str(path)))


# ------------------------------------------------------------------------------------- image kinds that load
def test_colour_modes_load_as_the_right_rgb(tmp_path):
    Image.fromarray(np.array([[0, 1], [1, 0]], dtype=bool)).save(tmp_path / "bw.png")  # 1-bit
    assert (rgb(tmp_path / "bw.png") == np.array([[0, 255], [255, 0]])[..., None]).all()
    la = np.stack([np.full((3, 3), 77, np.uint8), np.zeros((3, 3), np.uint8)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")  # grey + alpha: alpha dropped, grey replicated
    assert (rgb(tmp_path / "la.png") == 77).all()
    pa = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), "P")
    pa.putpalette([9, 8, 7, 1, 2, 3] + [0] * 762)
    pa.info["transparency"] = 0
    pa.save(tmp_path / "pt.png")  # palette with a transparent entry: colours kept
    assert rgb(tmp_path / "pt.png").tolist() == [[[9, 8, 7], [1, 2, 3]]]
    for ext in ("tif", "jpg"):  # CMYK (pure cyan) -> (0, 255, 255)
        Image.new("CMYK", (4, 3), (255, 0, 0, 0)).save(tmp_path / f"c.{ext}")
        assert np.abs(rgb(tmp_path / f"c.{ext}").astype(int) - [0, 255, 255]).max() <= 2
    g16 = np.array([[0, 65535], [257 * 7, 300]], dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")  # 16-bit grey: scaled, not clipped
    assert rgb(tmp_path / "g16.png")[..., 0].tolist() == [[0, 255], [7, 1]]


def test_sixteen_bit_rgb_png(tmp_path):
    cv2 = pytest.importorskip("cv2")
    v = np.array([[[65535, 0, 32768], [256 * 100, 256 * 200 + 255, 255]]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), v[..., ::-1])
    assert (np.abs(rgb(tmp_path / "rgb16.png").astype(int) - np.rint(v / 257.0)) <= 1).all()


def test_exif_orientation_ignored_by_default_applied_on_request(tmp_path):
    a = np.zeros((20, 30, 3), np.uint8)
    a[:5, :5] = (255, 0, 0)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "r.png", exif=exif)
    assert (rgb(tmp_path / "r.png") == a).all()  # the stored grid, as the original
    up = np.asarray(load_image(str(tmp_path / "r.png"), exif_transpose=True))
    assert up.shape == (30, 20, 3) and (up == np.rot90(a, -1)).all()
    ds = ImageDataset([str(tmp_path / "r.png")], [1.0], data_args={**GRID, "exif_transpose": True})
    assert ds.exif_transpose and ds[0]["image"].shape == (3, 64, 64)


# ------------------------------------------------------------------------------------- files that do not
def _truncated(tmp_path, ext):
    full = tmp_path / f"full.{ext}"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    (tmp_path / f"trunc.{ext}").write_bytes(data[: len(data) // 2])
    return tmp_path / f"trunc.{ext}"


def bad_files(tmp_path):
    (tmp_path / "text.png").write_text("hello, I am not a picture\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    Image.fromarray(np.full((4, 5), 0.5, np.float32)).save(tmp_path / "float.tif")
    os.mkfifo(tmp_path / "pipe.png")
    return {
        _truncated(tmp_path, "png"): "truncated",
        _truncated(tmp_path, "jpg"): "truncated",
        tmp_path / "text.png": "not an image file PIL recognises",
        tmp_path / "empty.jpg": "empty file (0 bytes)",
        tmp_path / "folder.png": "is a directory",
        tmp_path / "float.tif": "floating-point pixels (mode F)",
        tmp_path / "pipe.png": "not a regular file",  # never opened: it would block
        tmp_path / "gone.png": "image not found",
    }


def test_each_bad_file_kind_raises_image_read_error_with_name_and_reason(tmp_path):
    for path, reason in bad_files(tmp_path).items():
        with pytest.raises(ImageReadError) as e:
            load_image(str(path))
        assert str(path) in str(e.value) and reason in str(e.value), str(e.value)


def test_loader_workers_skip_bad_files_without_hanging(tmp_path):
    bad = bad_files(tmp_path)
    good = []
    for i in range(3):
        good.append(str(tmp_path / f"ok{i}.png"))
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(good[-1])
    paths = [str(p) for p in bad] + good
    ds = ImageDataset(paths, list(range(len(paths))), data_args=GRID)
    log = BadItemLog(max_bad_fraction=1.0, skip_file=str(tmp_path / "skipped.txt"))
    loader = SkippingLoader(DataLoader(SkipBadItems(ds, (ImageReadError,)), batch_size=3, num_workers=2, timeout=60),
                            log, "test set")
    labels = [y for batch in loader for y in batch["label"].tolist()]
    assert labels == [len(bad), len(bad) + 1, len(bad) + 2]  # only the good ones, in order
    assert sorted(log.reasons) == sorted(str(p) for p in bad)
    lines = (tmp_path / "skipped.txt").read_text().splitlines()
    expected = {str(p): why for p, why in bad.items()}
    assert len(lines) == len(bad)
    for line in lines:
        name, reason, where = line.split("\t")
        assert expected[name] in reason and where == "test set"
    # a second pass does not read the known-bad files again (reported from the log)
    assert [y for batch in loader for y in batch["label"].tolist()] == labels


def test_bad_item_log_stops_above_max_bad_fraction(tmp_path):
    from samacore.robust import BadItem

    log = BadItemLog(max_bad_fraction=0.25, skip_file=str(tmp_path / "s.txt"))
    log.record(BadItem(0, "a.png", "broken"), "train", 8)
    log.record(BadItem(1, "b.png", "broken"), "train", 8)  # 2/8 = 25%: still allowed
    log.record(BadItem(1, "b.png", "broken"), "train", 8)  # the same item again does not count twice
    with pytest.raises(TooManyBadItems, match=r"3 of 8 items of train \(37.5%\).*max_bad_fraction 0.25.*s\.txt"):
        log.record(BadItem(2, "c.png", "broken"), "train", 8)
    assert len((tmp_path / "s.txt").read_text().splitlines()) == 3


# ------------------------------------------------------------------------------------- training with bad items
def _training_set(tmp_path, n=12):
    return write_graded_images(tmp_path, [f"i{i:02d}.png" for i in range(n)], [20 + 200 * i / (n - 1) for i in range(n)],
                               [(40, 56)] * n, label_digits=3)


def _options(tmp_path, **extra):
    opt = {"name": "faults", "stype": "sama", "num_epochs": 1, "warmup_epochs": 1, "batch_size": 4, "num_workers": 0,
           "test_batch_size": 4, "test_num_workers": 0, "num_splits": 1,
           "data": {"database": "syn", "data_info": str(tmp_path / "info.txt"), "data_prefix": str(tmp_path), **GRID},
           "model": {"backbone_args": SMALL_SWIN}, "run_dir": str(tmp_path / "run"), "progress": False, **extra}
    (tmp_path / "o.yml").write_text(yaml.safe_dump(opt))
    return str(tmp_path / "o.yml")


def test_training_skips_a_bad_image_and_writes_the_skip_list(tmp_path):
    _training_set(tmp_path)
    broken = tmp_path / "i05.png"
    broken.write_bytes(broken.read_bytes()[:100])
    summary = cli.train_main(["-o", _options(tmp_path, max_bad_fraction=0.4), "--no-progress"])
    assert np.isfinite(summary["aggregate"]["best_per_metric"]["median"]["srcc"])
    assert summary["skipped"]["count"] == 1
    name, reason, where = (tmp_path / "run" / "skipped.txt").read_text().strip().split("\t")
    assert name == str(broken) and "truncated" in reason and "split 00" in where


def test_training_stops_when_too_many_images_are_bad(tmp_path):
    _training_set(tmp_path)
    for i in (1, 6):
        (tmp_path / f"i{i:02d}.png").write_text("not an image")
    with pytest.raises(TooManyBadItems, match=r"could not be loaded, more than max_bad_fraction 0.05"):
        cli.train_main(["-o", _options(tmp_path), "--no-progress"])
    assert (tmp_path / "run" / "skipped.txt").read_text().count("not an image file") >= 1


def test_training_reports_missing_listed_images_with_file_and_line(tmp_path):
    _training_set(tmp_path)
    os.remove(tmp_path / "i03.png")
    info = str(tmp_path / "info.txt")
    with pytest.raises(TooManyBadItems, match=rf"1 of 12 images listed in {info} are missing.*info\.txt, line 4: image 'i03.png' not found"):
        cli.train_main(["-o", _options(tmp_path), "--no-progress"])
    with pytest.raises(SystemExit) as e:  # the command line turns it into a one-line error, status 2
        run_command(lambda: cli.train_main(["-o", _options(tmp_path), "--no-progress"]))
    assert e.value.code == 2


# ------------------------------------------------------------------------------------- label files
def test_txt_label_problems_are_all_reported_with_file_and_line(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_text("a.png 1.0\nb.png\nc.png nan\n\nd.png abc\na.png 3\ne.png inf\nf g h\n")
    with pytest.raises(LabelError) as e:
        read_info(str(p))
    msg = str(e.value)
    assert f"6 problems in {p}" in msg
    for expected in ("line 2: expected 'name score' (2 fields), got 1",
                     "line 3: score 'nan' is not a finite number",
                     "line 5: score 'abc' is not a number",
                     "line 6: duplicate name 'a.png' (first listed at line 1)",
                     "line 7: score 'inf' is not a finite number",
                     "line 8: expected 'name score' (2 fields), got 3"):
        assert f"{p}, {expected}" in msg


def test_csv_and_pkl_label_problems(tmp_path):
    p = tmp_path / "koniq.csv"
    p.write_text("image_name,MOS_zscore\n1.jpg,70\n2.jpg\n3.jpg,NaN\n1.jpg,50\n")
    with pytest.raises(LabelError) as e:
        read_info(str(p))
    msg = str(e.value)
    assert f"{p}, line 3: expected 2 columns (image_name, MOS_zscore), got 1" in msg
    assert f"{p}, line 4: MOS_zscore 'NaN' is not a finite number" in msg
    assert f"{p}, line 5: duplicate name '1.jpg' (first listed at line 2)" in msg
    q = tmp_path / "dmos.csv"
    q.write_text("dist_img,ref_img,dmos,var\nI01_01.png,I01.png,4.1,0.1\nI01_01.png,I01.png,3.0,0.1\n")
    with pytest.raises(LabelError, match=r"dmos\.csv, line 3: duplicate name 'I01_01.png'"):
        read_info(str(q))
    k = tmp_path / "l.pkl"
    with open(k, "wb") as f:
        pickle.dump({"files": ["a", "b"], "labels": [1.0, float("nan")]}, f)
    with pytest.raises(LabelError, match=r"l\.pkl, item 2: label 'nan' is not a finite number"):
        read_pkl(str(k))


def test_missing_files_named_with_label_file_and_line(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    p = tmp_path / "labels.txt"
    p.write_text("a.png 1\n\nb.png 2\nsub 3\n")
    labels = read_info(str(p), str(tmp_path))
    assert labels.lines == [1, 3, 4] and labels.subset([2]).where(0) == f"{p}, line 4"
    assert missing_files(labels) == [
        (1, f"{p}, line 3: image 'b.png' not found ({tmp_path / 'b.png'})"),
        (2, f"{p}, line 4: image 'sub' is not a file ({tmp_path / 'sub'})"),
    ]
