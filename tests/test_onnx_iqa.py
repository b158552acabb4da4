"""ONNX export of the IQA model (IQA/export_onnx.py, samacore.onnx_export): the exported graph scores real image
files, through the scorer's own reading and sampling, within 1e-4 of PyTorch (a small timm Swin-V2 and the
paper's full-size default encoder, random weights); dynamic batch; metadata; one-line errors."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import GRID, SMALL_SWIN
from samacore import onnx_export, scoring
from samacore.onnx_export import PARITY_TOLERANCE, OnnxImageModel, load_onnx_model
from samaiqa import score
from samaiqa.checkpoints import save_model_checkpoint
from samaiqa.export_onnx import main
from samaiqa.model import IQAModel

STATS = {"mean": 5.0, "std": 2.0, "n": 9, "pred_mean": 0.01, "pred_std": 0.05}
FULL_GRID = {"fwin_h": 8, "fwin_w": 8, "fsize_h": 32, "fsize_w": 32}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_iqa")
    rng = np.random.default_rng(3)
    paths = []
    for i, (h, w) in enumerate([(48, 70), (300, 260), (90, 400)]):
        paths.append(str(folder / f"im{i}.png"))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return folder, paths


def export_and_compare(folder, paths, name: str, model: IQAModel, grid: dict, capsys):
    """Save ``model`` as a checkpoint, export it, score ``paths`` with PyTorch and with the graph in its place."""
    ckpt, out = str(folder / f"{name}.pth"), str(folder / f"{name}.onnx")
    save_model_checkpoint(ckpt, model, data=dict(grid, exif_transpose=False), stype="sama", label_stats=STATS)
    assert main(["--ckpt", ckpt, "--output", out]) == 0
    assert "parity on a random input" in capsys.readouterr().out
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask  # a normal file, not the private temporary
    scorer = score.load_scorer(ckpt, device="cpu")
    torch_rows = scorer.score_paths(paths, batch_size=2, progress=False)
    runner = load_onnx_model(out)
    scorer.model = runner
    onnx_rows = scorer.score_paths(paths, batch_size=2, progress=False)  # batches of 2 and 1: dynamic batch
    for t, o in zip(torch_rows, onnx_rows):
        assert not t.error and not o.error
        assert abs(t.score - o.score) <= PARITY_TOLERANCE, (name, t.name, t.score, o.score)
    assert len({round(r.score, 6) for r in torch_rows}) == len(paths)
    return scorer, runner


def test_exported_small_model_scores_images_as_pytorch(images, capsys):
    folder, paths = images
    torch.manual_seed(0)
    scorer, runner = export_and_compare(folder, paths, "small", IQAModel(img_size=64, **SMALL_SWIN), GRID, capsys)
    assert isinstance(runner, OnnxImageModel)
    meta = runner.metadata
    assert meta["tree"] == "iqa" and meta["stype"] == "sama" and meta["sampling"] == scorer.data_args
    assert meta["inputs"] == [{"name": "image", "shape": [2, 3, 64, 64]}]
    assert meta["calibration"] == {"label_mean": 5.0, "label_std": 2.0, "pred_mean": 0.01, "pred_std": 0.05, "n": 9}
    assert runner(torch.randn(5, 3, 64, 64)).shape == (5,)


def test_exported_full_size_default_model_scores_images_as_pytorch(images, capsys):
    folder, paths = images
    torch.manual_seed(0)
    export_and_compare(folder, paths, "full", IQAModel(), FULL_GRID, capsys)


def test_export_errors_are_one_line(images, tmp_path, capsys):
    _, paths = images
    assert main(["--ckpt", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing.pth" in err[0]
    assert main(["--ckpt", "x.pth", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder" in err[0]
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        load_onnx_model(str(tmp_path / "nothing.onnx"))
    with pytest.raises(Exception, match="not a loadable ONNX model"):
        load_onnx_model(paths[0])


def test_iqa_py_scores_with_the_onnx_graph_alone(images, tmp_path, capsys):
    """``iqa.py --onnx`` needs no checkpoint (sampling and calibration from the graph); a VQA graph is refused."""
    import csv

    folder, paths = images
    torch.manual_seed(0)
    scorer, runner = export_and_compare(folder, paths, "alone", IQAModel(img_size=64, **SMALL_SWIN), GRID, capsys)
    want = scorer.score_paths(paths, batch_size=2, progress=False)
    out = tmp_path / "o.csv"
    assert score.main(["--onnx", runner.path, "-i", *paths, "--output", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [float(r["score"]) for r in rows] == pytest.approx([w.score for w in want], abs=1e-6)
    assert [float(r["calibrated"]) for r in rows] == pytest.approx([w.calibrated for w in want], abs=1e-5)
    assert score.load_scorer(onnx=runner.path, exif_transpose=False).calibration == scorer.calibration
    with pytest.raises(scoring.UsageError, match=r"\): --set does not apply, leave it out"):
        score.load_scorer(onnx=runner.path, sets=["data.fragments_h=4"])


def test_failed_parity_check_is_one_line_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    ckpt, out = str(tmp_path / "small.pth"), tmp_path / "small.onnx"
    save_model_checkpoint(ckpt, IQAModel(img_size=64, **SMALL_SWIN), data=dict(GRID, exif_transpose=False), stype="sama")
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)  # no graph can pass
    assert main(["--ckpt", ckpt, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differ by up to" in err[0] and "not fit for scoring" in err[0]
    assert not out.exists() and os.listdir(tmp_path) == ["small.pth"]
