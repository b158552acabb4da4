"""ONNX export of the VQA model (VQA/export_onnx.py, samacore.onnx_export): the exported graph scores real videos,
through the scorer's own decoding and sampling, within 1e-4 of PyTorch; metadata; one-line errors.

Random-weight models in the paper's configurations: FAST-VQA-B, FasterVQA and SAMA option files with the tiny
``swin_nano_grpb`` backbone on a small fragment grid, and one full-size export (SAMA, Video Swin-T, 32x224x224).
"""
import os

import pytest
import torch
import yaml

from conftest import write_video
from helpers import REPO
from samacore import scoring
from samacore.onnx_export import PARITY_TOLERANCE, OnnxVideoModel, load_onnx_model
from samavqa import score as S
from samavqa.export_onnx import main
from samavqa.models import DiViDeAddEvaluator

PAPER_OPTIONS = {"FAST-VQA-B": "FAST_VQA_B_1_4.yml", "FasterVQA": "FAST_VQA_3D_1_1.yml", "SAMA": "fast-SAMA-test.yml"}
NANO_MODEL = {"type": "DiViDeAddEvaluator",
              "args": {"backbone": {"fragments": {"checkpoint": False, "pretrained": None}},
                       "backbone_size": "swin_nano_grpb", "backbone_preserve_keys": "fragments", "divide_head": False,
                       "vqa_head": {"in_channels": 192, "hidden_channels": 16}}}
SMALL_GRID = dict(fragments_h=2, fragments_w=2, clip_len=8, aligned=8)
STATS = {"mean": 50.0, "std": 10.0, "n": 5, "pred_mean": 0.1, "pred_std": 0.2}


def paper_options(folder, config: str, nano: bool) -> str:
    """The paper's option file of ``config``; ``nano``: the tiny backbone on a 2x2 grid of 8-frame clips (the rest of
    the sampling as the paper's), else the full-size model with one test clip."""
    with open(os.path.join(REPO, "VQA", "options", PAPER_OPTIONS[config])) as f:
        opt = yaml.safe_load(f)
    for spec in opt["data"].values():
        for sampling in spec["args"]["sample_types"].values():
            sampling.update(SMALL_GRID if nano else {"num_clips": 1})
    if nano:
        opt["model"] = NANO_MODEL
    path = os.path.join(folder, f"{config}{'-nano' if nano else ''}.yml")
    with open(path, "w") as f:
        yaml.safe_dump(opt, f)
    return path


def random_checkpoint(folder, options: str) -> str:
    with open(options) as f:
        args = yaml.safe_load(f)["model"]["args"]
    torch.manual_seed(1)
    path = os.path.join(folder, os.path.basename(options).replace(".yml", ".pth"))
    torch.save({"state_dict": DiViDeAddEvaluator(**args).state_dict(), "label_stats": STATS}, path)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_vqa")
    paths = [str(root / f"v{q}.mp4") for q in (2, 9)]
    for q, p in zip((2, 9), paths):
        write_video(p, q, frames=24, h=64 + 16 * q, w=80)
    return root, paths


def export_and_compare(root, paths, config: str, nano: bool, capsys):
    """Export ``config``, then score ``paths`` with the PyTorch model and with the exported graph in its place."""
    options = paper_options(root, config, nano)
    ckpt, out = random_checkpoint(root, options), str(root / f"{config}-{nano}.onnx")
    assert main(["--ckpt", ckpt, "--options", options, "--output", out]) == 0
    printed = capsys.readouterr().out
    assert "parity on a random input" in printed and os.path.getsize(out) > 0
    scorer = S.load_scorer(ckpt, options, device="cpu")
    torch_rows = scorer.score_paths(paths, progress=False, per_clip=True)
    runner = load_onnx_model(out)
    scorer.model = runner
    onnx_rows = scorer.score_paths(paths, progress=False, per_clip=True)
    for t, o in zip(torch_rows, onnx_rows):
        assert not t.error and not o.error
        assert abs(t.score - o.score) <= PARITY_TOLERANCE, (config, t.name, t.score, o.score)
        assert o.clip_scores == pytest.approx(t.clip_scores, abs=PARITY_TOLERANCE)
        assert abs(t.calibrated - o.calibrated) <= PARITY_TOLERANCE * STATS["std"] / STATS["pred_std"]
    assert len({round(r.score, 6) for r in torch_rows}) == len(paths)  # different videos, different scores
    return scorer, runner


@pytest.mark.parametrize("config", list(PAPER_OPTIONS))
def test_exported_nano_model_scores_videos_as_pytorch(videos, config, capsys):
    root, paths = videos
    scorer, runner = export_and_compare(root, paths, config, True, capsys)
    assert isinstance(runner, OnnxVideoModel) and runner.branches == ["fragments"]
    meta = runner.metadata
    assert meta["tree"] == "vqa" and meta["stype"] == scorer.stype
    assert meta["sampling"] == scorer.sample_types
    clips = scorer.sample_types["fragments"]["num_clips"]
    assert meta["inputs"] == [{"name": "fragments", "shape": [clips, 3, 8, 64, 64]}]
    assert meta["calibration"]["pred_std"] == pytest.approx(STATS["pred_std"])
    # the clip axis is dynamic: two videos' clips in one call, each clip's map as alone
    x = torch.randn(2 * clips, 3, 8, 64, 64)
    both = runner({"fragments": x})
    assert both.shape == (2 * clips, 1, 4, 2, 2)
    torch.testing.assert_close(both[:1], runner({"fragments": x[:1]}), atol=1e-5, rtol=0)


def test_exported_full_size_sama_model_scores_a_video_as_pytorch(videos, capsys):
    root, paths = videos
    _, runner = export_and_compare(root, paths[:1], "SAMA", False, capsys)
    assert runner.metadata["inputs"] == [{"name": "fragments", "shape": [1, 3, 32, 224, 224]}]
    assert runner.metadata["stype"] == "sama"


def test_export_errors_are_one_line(videos, tmp_path, capsys):
    root, _ = videos
    assert main(["--ckpt", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing.pth" in err[0]
    assert main(["--ckpt", "x.pth", "--output", str(tmp_path / "no" / "such" / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_vqa_py_scores_with_the_onnx_graph_alone(videos, tmp_path, capsys):
    """``vqa.py --onnx`` needs no checkpoint: the graph's metadata gives the sampling and the calibration, and the
    rows equal the PyTorch scorer's with the graph in its place; an IQA graph or a missing file is one line."""
    import csv

    root, paths = videos
    scorer, runner = export_and_compare(root, paths, "FAST-VQA-B", True, capsys)
    want = scorer.score_paths(paths, progress=False)
    out = tmp_path / "o.csv"
    assert S.main(["--onnx", runner.path, "-v", *paths, "--output", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [float(r["score"]) for r in rows] == pytest.approx([w.score for w in want], abs=1e-6)
    assert [float(r["calibrated"]) for r in rows] == pytest.approx([w.calibrated for w in want], abs=1e-5)
    api = S.load_scorer(onnx=runner.path)
    assert api.checkpoint_format == "onnx" and api(paths[0]) == pytest.approx(want[0].score, abs=1e-6)
    capsys.readouterr()
    assert S.main(["--onnx", str(tmp_path / "none.onnx"), "-v", paths[0]]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: --onnx {tmp_path / 'none.onnx'}: file not found"
    # what the graph replaces is refused beside it (it was ignored without a word)
    assert S.main(["--onnx", runner.path, "-v", paths[0], "--bf16", "--ckpt", "x.pth", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --onnx scores with the graph alone (its weights, sampling and calibration are stored in it; fp32 on "
        "the CPU): --ckpt, --bf16 do not apply, leave them out")
    with pytest.raises(scoring.UsageError, match=r"\): -m does not apply, leave it out"):
        S.load_scorer(onnx=runner.path, model="FAST-VQA")
