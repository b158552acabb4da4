"""IQA scoring of odd inputs and the ways in: EXIF orientation (applied by default, --no-exif-transpose), notes
for odd but usable images (CSV column and warnings), --list, --dir --recursive, and the Python API
(samaiqa.load_scorer: paths, lists, tensors) giving the command line's values."""
import csv

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torchvision.transforms.functional import to_tensor

import samaiqa
from samaiqa import score
from samaiqa.datasets import ImageReadError

from test_iqa_score import small_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def texture(h, w, seed=0):
    """Not symmetric under rotation or flips, so a wrongly oriented image scores differently."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, (xx * yy) % 256], -1) + rng.normal(0, 25, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("iqa_inputs")
    ckpt, _ = small_checkpoint(d / "c.pth")
    photo = texture(60, 90)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to view
    photo.save(d / "phone.png", exif=exif)
    ImageOps.exif_transpose(Image.open(d / "phone.png")).save(d / "phone_upright.png")
    photo.save(d / "phone_as_stored.png")
    texture(1, 1).save(d / "tiny.png")
    frames = [texture(70, 80, seed=s).quantize(64) for s in range(3)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    Image.open(d / "anim.gif").convert("RGB").save(d / "anim_first.png")
    rgba = texture(70, 80, seed=5).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(80, dtype=np.uint8) * 3, (70, 1))))
    rgba.save(d / "alpha.png")
    rgba.convert("RGB").save(d / "alpha_dropped.png")
    texture(70, 80, seed=7).save(d / "normal.png")
    return d, ckpt


def rows_of(path):
    return {r["name"]: r for r in csv.DictReader(open(path))}


def cli_rows(d, ckpt, *args):
    out = d / "out.csv"
    assert score.main([*args, "--ckpt", ckpt, "--output", str(out), "--no-progress", "--overwrite"]) == 0
    return rows_of(out)


def test_exif_orientation_is_applied_by_default_and_the_flag_turns_it_off(media, capsys):
    d, ckpt = media
    names = [str(d / n) for n in ("phone.png", "phone_upright.png", "phone_as_stored.png")]
    on = cli_rows(d, ckpt, "-i", *names)
    off = cli_rows(d, ckpt, "-i", *names, "--no-exif-transpose")
    phone, upright, stored = names
    assert on[phone]["score"] == on[upright]["score"] != on[stored]["score"]  # scored as it is seen
    assert off[phone]["score"] == off[stored]["score"] != off[upright]["score"]  # the stored pixel grid
    assert on[phone]["note"] == "EXIF orientation 6 applied (turned upright)"
    assert off[phone]["note"] == "EXIF orientation 6 ignored: scored as stored, not upright"
    assert on[upright]["note"] == on[stored]["note"] == ""
    assert f"warning: {phone}: EXIF orientation 6 applied (turned upright)" in capsys.readouterr().err


def test_odd_images_are_scored_with_a_note_and_a_warning(media, capsys):
    d, ckpt = media
    rows = cli_rows(d, ckpt, "--dir", str(d))
    assert rows["tiny.png"]["note"] == ("enlarged 64x from 1x1 to 64x64 to fill the 64-pixel sampling grid: the score "
                                        "judges interpolated pixels more than the image's own detail")
    assert rows["anim.gif"]["note"] == "animated (3 frames): only the first frame is scored"
    assert rows["alpha.png"]["note"] == "alpha channel dropped (colour values kept, not composited on a background)"
    assert rows["normal.png"]["note"] == "" and rows["tiny.png"]["score"] != ""
    # what the note says is what was scored
    assert rows["anim.gif"]["score"] == rows["anim_first.png"]["score"]
    assert rows["alpha.png"]["score"] == rows["alpha_dropped.png"]["score"]
    err = capsys.readouterr().err
    for name in ("tiny.png", "anim.gif", "alpha.png"):
        assert f"warning: {name}: {rows[name]['note']}" in err
    assert "normal.png" not in err


def test_file_list_and_recursive_folder(media, tmp_path, capsys):
    d, ckpt = media
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    texture(70, 80, 1).save(tmp_path / "top.png")
    texture(70, 80, 2).save(tmp_path / "sub" / "deeper" / "low.jpg")
    (tmp_path / "sub" / "notes.txt").write_text("not an image")
    flat = cli_rows(tmp_path, ckpt, "--dir", str(tmp_path))
    deep = cli_rows(tmp_path, ckpt, "--dir", str(tmp_path), "--recursive")
    assert list(flat) == ["top.png"] and list(deep) == ["sub/deeper/low.jpg", "top.png"]
    listing = tmp_path / "sub" / "files.txt"  # relative paths are relative to the list's folder
    listing.write_text(f"# the photos\ndeeper/low.jpg\n\n  {d / 'normal.png'}  \n# done\nghost.png\n")
    rows = cli_rows(tmp_path, ckpt, "--list", str(listing))
    assert list(rows) == ["deeper/low.jpg", str(d / "normal.png"), "ghost.png"]
    assert rows["deeper/low.jpg"]["score"] == deep["sub/deeper/low.jpg"]["score"]
    assert rows["ghost.png"]["score"] == "" and "image not found" in rows["ghost.png"]["error"]
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["--list", "nope.txt"], "error: --list 'nope.txt': file not found"),
    (["--list", "EMPTY"], "names no image files (one path per line; lines starting with # are comments)"),
    (["-i", "x.png", "--recursive"], "error: --recursive applies to --dir only"),
])
def test_batch_input_faults_are_one_line_and_exit_2(media, tmp_path, capsys, args, message):
    _, ckpt = media
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    args = [str(tmp_path / "empty.txt") if a == "EMPTY" else a for a in args]
    assert score.main([*args, "--ckpt", ckpt]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_python_api_scores_paths_lists_and_tensors_as_the_cli(media):
    """Equal values, not just close ones: the API runs the command line's pipeline (a float model's last digits
    can depend on how many images share a model call, so each comparison keeps the batch the same)."""
    d, ckpt = media
    files = [str(d / "normal.png"), str(d / "phone.png")]
    one_by_one = cli_rows(d, ckpt, "-i", *files, "--batch-size", "1")
    together = cli_rows(d, ckpt, "-i", *files)  # one batch of two
    scorer = samaiqa.load_scorer(ckpt)
    normal, phone = (float(one_by_one[f]["score"]) for f in files)
    assert scorer(files[0]) == normal
    with pytest.warns(UserWarning, match=r"phone.png: EXIF orientation 6 applied \(turned upright\)"):
        assert scorer(d / "phone.png") == phone  # a PathLike too
    with pytest.warns(UserWarning, match="phone.png: EXIF orientation 6 applied"):
        assert scorer(files) == [float(together[f]["score"]) for f in files]
    assert scorer(files[0], calibrated=True) == float(one_by_one[files[0]]["calibrated"])
    pixels = Image.open(d / "normal.png")
    assert scorer(to_tensor(pixels)) == normal  # [3, H, W] float in [0, 1]
    assert scorer(np.asarray(pixels)) == normal  # [H, W, 3] uint8
    assert scorer(torch.from_numpy(np.array(pixels)).permute(2, 0, 1)) == normal  # [3, H, W] uint8
    pair = [files[0], str(d / "alpha_dropped.png")]
    batch = torch.stack([to_tensor(Image.open(f)) for f in pair])
    assert scorer(batch) == scorer(pair)  # [B, 3, H, W] -> one score each, as the files in one batch
    with pytest.warns(UserWarning, match=r"tensor: enlarged 64x from 1x1"):
        scorer(to_tensor(Image.open(d / "tiny.png")))
    with pytest.raises(ImageReadError, match="image not found"):
        scorer(str(d / "ghost.png"))
    with pytest.raises(ValueError, match=r"float image tensor must hold values in \[0, 1\]"):
        scorer(to_tensor(pixels) - 0.5)
    with pytest.raises(ValueError, match=r"must be \[3, H, W\] \(layout CHW\) or \[H, W, 3\]"):
        scorer(torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="no calibrated score: the checkpoint's label_stats lack pred_mean"):
        samaiqa.load_scorer(small_checkpoint(d / "nostats.pth", {"mean": 5.0, "std": 2.0, "n": 9})[0])(
            str(d / "normal.png"), calibrated=True)
