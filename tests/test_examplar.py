"""The examplar-set builder: deterministic labels, monotone in severity, content-disjoint splits, decodable media."""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict

import pytest
import torch  # (torch before decord: the other order can hang)

from samadata import examplar as E
from samacore.options import REPO_ROOT

LABELS = os.path.join(REPO_ROOT, "examplar_data_labels")
# a reduced set for the build tests: two video contents (bikes: decoded from a clip, no resize; rocket-pan: a pan
# over a photo, whose later items came out differently from run to run before x264 was pinned) and one photo
SUBSET = ["bikes-s3-left", "rocket-pan", "chelsea"]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _md5(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    """The reduced set built twice into separate folders (labels and media), by one and by two worker processes:
    the second build's workers encode other videos before (and fewer of them) than the first build's one."""
    out = []
    for workers in (1, 2):
        root = tmp_path_factory.mktemp(f"examplar{workers}")
        report = E.build(str(root / "data"), str(root / "labels"), contents=SUBSET, workers=workers, log=None)
        out.append((root, report))
    return out


def test_committed_label_files_match_the_formula():
    assert E.check_labels(LABELS, E.video_items(), E.image_items()) == []


def test_label_line_formats():
    vqa = _read(os.path.join(LABELS, "examplar_vqa", "train.txt")).splitlines()
    name, duration, fps, mos = vqa[0].split(",")
    assert name == "bikes-s1-left_ref.mp4" and float(duration) == pytest.approx(32 / 25) and float(fps) == 25.0
    assert float(mos) == 80.0
    iqa = _read(os.path.join(LABELS, "examplar_iqa", "labels.txt")).splitlines()
    assert iqa[0].split() == ["astronaut_ref.png", "80.0"]
    assert all(len(line.split()) == 2 for line in iqa)


def test_dataset_sizes_and_label_formula():
    vqa, iqa = E.video_items(), E.image_items()
    assert len(vqa) == 33 * 7 and len(iqa) == 17 * 7
    by_name = {i.filename: i.label for i in vqa + iqa}
    assert by_name["bikes-s3-left_blur2.mp4"] == 80.0 - 24.0
    assert by_name["carphone-t1_blur3.mp4"] == pytest.approx(70.0 - 36.0)
    assert by_name["gravel-pan_scale1.mp4"] == pytest.approx(80.0 - 0.8 * 12.0)
    assert by_name["camera_scale1.png"] == pytest.approx(80.0 - 0.8 * 12.0)
    assert len(set(by_name)) == len(by_name)  # unique file names


@pytest.mark.parametrize("items", [E.video_items(), E.image_items()], ids=["vqa", "iqa"])
def test_labels_strictly_decrease_with_severity(items):
    ref = {i.content.name: i.label for i in items if i.level == 0}
    series = defaultdict(list)
    for i in items:
        if i.level > 0:
            series[(i.content.name, i.kind)].append((i.level, i.label))
    assert series
    for (content, kind), pts in series.items():
        labels = [ref[content]] + [lab for _, lab in sorted(pts)]
        assert all(a > b for a, b in zip(labels, labels[1:])), (content, kind, labels)


def test_train_and_test_are_disjoint_by_content_and_scene():
    for sub, items in (("examplar_vqa", E.video_items()), ("examplar_iqa", E.image_items())):
        train = _read(os.path.join(LABELS, sub, "train.txt")).splitlines()
        test = _read(os.path.join(LABELS, sub, "test.txt")).splitlines()
        content_of = {i.filename: i.content for i in items}
        name = (lambda line: line.split(",")[0]) if sub == "examplar_vqa" else (lambda line: line.split()[0])
        tr = {content_of[name(x)] for x in train}
        te = {content_of[name(x)] for x in test}
        assert tr and te and not tr & te
        assert not {c.scene for c in tr} & {c.scene for c in te}
        # the content is readable from the file name: everything before the first "_"
        assert all(name(x).split("_")[0] == content_of[name(x)].name for x in train + test)
        # train + test = the full list
        assert sorted(train + test) == sorted(_read(os.path.join(LABELS, sub, "labels.txt")).splitlines())


def test_rebuild_gives_identical_labels_equal_to_the_committed_ones(two_builds):
    (root_a, rep_a), (root_b, _) = two_builds
    assert len(rep_a.written) == 2 * 7 + 7
    for rel in ("examplar_vqa/labels.txt", "examplar_vqa/test.txt", "examplar_iqa/labels.txt", "examplar_iqa/test.txt"):
        a, b = _read(str(root_a / "labels" / rel)), _read(str(root_b / "labels" / rel))
        assert a == b and a
        committed = set(_read(os.path.join(LABELS, rel)).splitlines())
        assert set(a.splitlines()) <= committed


def test_rebuild_gives_identical_image_bytes(two_builds):
    (root_a, rep_a), (root_b, _) = two_builds
    images = [p for p in rep_a.written if p.endswith((".png", ".jpg"))]
    assert len(images) == 7
    for p in images:
        rel = os.path.relpath(p, str(root_a))
        assert _md5(p) == _md5(str(root_b / rel)), rel


def test_rebuild_gives_videos_that_decode_to_identical_frames(two_builds):
    from samavqa.decoders import read_frames

    (root_a, rep_a), (root_b, _) = two_builds
    assert len(rep_a.vqa_items) == 2 * 7
    for item in rep_a.vqa_items:
        a = read_frames(str(root_a / "data" / "vqa" / item.filename))
        b = read_frames(str(root_b / "data" / "vqa" / item.filename))
        assert a.shape == (E.VIDEO_FRAMES, 240, 320, 3)
        assert torch.equal(a, b), (item.filename, int((a.int() - b.int()).abs().max()))


def test_every_built_file_decodes(two_builds):
    from PIL import Image

    from samavqa.decoders import open_video

    (root, report), _ = two_builds
    for item in report.vqa_items:
        with open_video(str(root / "data" / "vqa" / item.filename)) as video:
            assert video.num_frames == E.VIDEO_FRAMES
            frames = video.read([0, video.num_frames - 1])
        assert frames.shape == (2, 240, 320, 3)
    for item in report.iqa_items:
        with Image.open(str(root / "data" / "iqa" / item.filename)) as im:
            im.load()
            assert im.mode == "RGB" and im.size == (448, 300) and min(im.size) >= 256
            assert im.format == "PNG"


def test_degradations_change_the_pixels_more_at_higher_levels(two_builds):
    """A sanity check that the media match their labels' story: the error to the reference grows with the level."""
    import numpy as np

    from samavqa.decoders import read_frames

    (root, _), _ = two_builds
    folder = root / "data" / "vqa"

    def frames(tag):
        return read_frames(str(folder / f"bikes-s3-left_{tag}.mp4"), range(16)).numpy().astype(float)

    ref = frames("ref")
    for kind in E.VIDEO_LEVELS:
        err = [np.abs(frames(f"{kind}{lv}") - ref).mean() for lv in (1, 2, 3)]
        assert 0 < err[0] < err[1] < err[2], (kind, err)


def test_unknown_content_is_rejected_with_the_known_names():
    with pytest.raises(ValueError, match="known contents: .*bikes-s2-left"):
        E.build("unused", None, contents=["bikes"], log=None)


def test_cli_check_mode(capsys):
    assert E.main(["--check", "--labels", LABELS]) == 0
    assert "match" in capsys.readouterr().out


def test_cli_check_mode_says_missing_for_missing_label_files(tmp_path, capsys):
    assert E.main(["--check", "--labels", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "label file(s) missing" in out.out and "differ" not in out.out
    assert f"{tmp_path}/examplar_vqa/train.txt: missing" in out.err
