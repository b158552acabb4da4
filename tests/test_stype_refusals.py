"""Sample types a model cannot score with are one line, not a traceback: branch options the sample type does not
take and clips shaped like each video for an ONNX graph (one fixed clip shape) before any output; for a PyTorch
Video Swin, clips shaped like each video score while they are no larger than its base input, and a larger one (whose
attention windows would outgrow the bias tables, where the original code fails too) is one line naming its size."""
import numpy as np
import pytest
import torch
import yaml

import cv2

from samacore.options import OptionError
from samavqa import export_onnx as E
from samavqa import schema
from samavqa import score as S
from samavqa.models import DiViDeAddEvaluator

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py

GRID = dict(fragments_h=2, fragments_w=2, fsize_h=32, fsize_w=32, aligned=8, clip_len=8, frame_interval=1, num_clips=1)
MODEL = {"type": "DiViDeAddEvaluator",
         "args": {"backbone": {"fragments": {"checkpoint": False, "pretrained": None}},
                  "backbone_size": "swin_nano_grpb", "backbone_preserve_keys": "fragments", "divide_head": False,
                  "vqa_head": {"in_channels": 192, "hidden_channels": 16}}}
FITTING = ("these options fit the sample types fragments, sama, sama-c, sama-mix, sama-spm, sama-swm, crop, "
           "arp_fragments, original")


def options(stype="sama", sampling=None, prefix="."):
    return {"name": "tiny", "stype": stype, "model": MODEL, "load_path": "unused.pth",
            "data": {"val": {"type": "FusionDataset", "args": {
                "phase": "test", "data_prefix": prefix, "sample_types": {"fragments": dict(sampling or GRID)}}}}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("stype")
    (root / "videos").mkdir()
    rng = np.random.default_rng(0)
    # 64x80: small enough for every sample type's clips to run through the model; 64x320 (apart): too wide for
    # clips at the video's own shape
    for name, (h, w) in (("a.mp4", (64, 80)), ("b.mp4", (64, 80)), ("../wide/w.mp4", (64, 320))):
        (root / "videos" / name).parent.mkdir(exist_ok=True)
        out = cv2.VideoWriter(str(root / "videos" / name), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
        for _ in range(16):
            out.write(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8))
        out.release()
    torch.manual_seed(0)
    torch.save({"state_dict": DiViDeAddEvaluator(**MODEL["args"]).state_dict()}, root / "tiny.pth")
    (root / "tiny.yml").write_text(yaml.safe_dump(options(prefix=str(root / "videos"))))
    return root


def run(tiny, *args):
    return S.main(["--ckpt", str(tiny / "tiny.pth"), "--options", str(tiny / "tiny.yml"), "--no-progress", *args])


def test_video_shaped_clips_score_up_to_the_swin_base_input_and_a_larger_one_is_one_line(tiny, capsys):
    """``original`` passes each video on at its own size: a 64x80 one fits the 32x224x224 Swin, a 64x320 one would
    grow its windows past the bias tables (``shape '[504, 504]' is invalid`` deep in the attention, before)."""
    assert run(tiny, "--dir", str(tiny / "videos"), "--stype", "original") == 0
    assert run(tiny, "-v", str(tiny / "wide" / "w.mp4"), "--stype", "original") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "error: a clip of 8x64x320 is too large for this Video Swin, built for 32x224x224 clips: its attention window "
        "would grow to (2, 2, 10), past the (8, 7, 7) its position-bias tables cover (the original FAST-VQA / SAMA "
        "code fails there too); sample clips of at most 32x224x224 (a fixed-size sample type, or smaller size "
        "options)")


def test_stype_whose_options_the_file_lacks_names_the_flag_before_any_output(tiny, capsys):
    assert run(tiny, "--dir", str(tiny / "videos"), "--stype", "resize") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines()[-1] == (
        f"error: --stype resize: the sampling options of branch fragments in {tiny / 'tiny.yml'} set fragments_h, "
        "fragments_w, fsize_h, fsize_w, which resize does not take (its own: size_h, size_w, random_crop, arp); "
        f"{FITTING}, or give options written for resize (--options)")
    assert run(tiny, "-v", str(tiny / "videos" / "a.mp4"), "--stype", "arp_resize") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "error: --stype arp_resize: the sampling options of branch fragments in ")


def test_fitting_stypes_still_score(tiny, capsys):
    assert run(tiny, "-v", str(tiny / "videos" / "a.mp4"), "--stype", "crop") == 0
    sampling = dict(GRID, size_h=64, size_w=64)
    for k in ("fragments_h", "fragments_w", "fsize_h", "fsize_w"):
        sampling.pop(k)
    (tiny / "resize.yml").write_text(yaml.safe_dump(options("resize", sampling, str(tiny / "videos"))))
    assert S.main(["--ckpt", str(tiny / "tiny.pth"), "--options", str(tiny / "resize.yml"), "-v",
                   str(tiny / "videos" / "a.mp4")]) == 0
    (tiny / "arp.yml").write_text(yaml.safe_dump(options("resize", dict(sampling, arp=True), str(tiny / "videos"))))
    assert S.main(["--ckpt", str(tiny / "tiny.pth"), "--options", str(tiny / "arp.yml"), "-v",
                   str(tiny / "videos" / "a.mp4")]) == 0  # clips shaped like a small video fit


def test_export_refuses_the_same_way(tiny, tmp_path, capsys):
    out = tmp_path / "x.onnx"
    rc = E.main(["--ckpt", str(tiny / "tiny.pth"), "--options", str(tiny / "tiny.yml"), "--stype", "original",
                 "--output", str(out)])
    assert rc == 2 and not out.exists()
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "error: --stype original: it passes each video on at its own resolution, so its clips change shape from video "
        "to video, while an ONNX graph takes one fixed clip shape")


def test_an_onnx_graph_refuses_video_shaped_sampling(tiny, tmp_path, capsys):
    graph = tmp_path / "tiny.onnx"
    assert E.main(["--ckpt", str(tiny / "tiny.pth"), "--options", str(tiny / "tiny.yml"), "--output", str(graph)]) == 0
    assert S.load_scorer(onnx=str(graph), stype="fragments").stype == "fragments"  # the graph's clip shape
    with pytest.raises(OptionError, match=r"^--stype original: it passes each video on at its own resolution, so its "
                                          r"clips change shape from video to video, while an ONNX graph takes one "
                                          r"fixed clip shape; score with the graph's own sample type, sama \(no "
                                          r"--stype\)$"):
        S.load_scorer(onnx=str(graph), stype="original")


def test_test_commands_take_a_video_shaped_stype():
    """Up front nothing can tell whether a data set's videos are small enough: the model says so per clip."""
    schema.check_vqa_options(dict(options("arp_fragments")), "test")
