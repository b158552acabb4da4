"""Text files as people save them: a UTF-8 byte-order mark, Windows line endings and trailing blank lines in
--list files and in the label files of both trees."""
import csv

import pytest

from samaiqa import score
from samaiqa.labels import read_info
from samavqa.labels import read_label_file
from test_iqa_score import make_images, small_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py

BOM = "\ufeff"


def as_saved(lines):
    """A text file as Notepad saves it: byte-order mark, CRLF line endings, blank lines at the end."""
    return (BOM + "\r\n".join(lines) + "\r\n\r\n\r\n").encode("utf-8")


def test_list_file_with_bom_crlf_and_blank_lines_scores_every_file(tmp_path):
    ckpt, _ = small_checkpoint(tmp_path / "c.pth")
    make_images(str(tmp_path), 2)
    (tmp_path / "list.txt").write_bytes(as_saved(["im0.png", "im1.png"]))
    out = tmp_path / "s.csv"
    assert score.main(["--list", str(tmp_path / "list.txt"), "--ckpt", ckpt, "--output", str(out),
                       "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["name"] for r in rows] == ["im0.png", "im1.png"] and all(r["error"] == "" for r in rows)


def test_video_label_file_as_saved(tmp_path):
    (tmp_path / "labels.txt").write_bytes(as_saved(["a.mp4,-1,-1,3.5", "b.mp4,-1,-1,4.25"]))
    infos = read_label_file(str(tmp_path / "labels.txt"), str(tmp_path))
    assert [(i["fileid"], i["label"]) for i in infos] == [("a.mp4", 3.5), ("b.mp4", 4.25)]


@pytest.mark.parametrize("name, lines", [
    ("info.txt", ["im0.png 3.5", "im1.png 4.25"]),
    ("koniq.csv", ["image_name,MOS_zscore", "im0.png,3.5", "im1.png,4.25"]),
])
def test_image_label_files_as_saved(tmp_path, name, lines):
    (tmp_path / name).write_bytes(as_saved(lines))
    labels = read_info(str(tmp_path / name), str(tmp_path))
    assert labels.names == ["im0.png", "im1.png"] and list(labels.labels) == [3.5, 4.25]
