"""Sample types a model cannot score with are one line before any output (scoring, export, the test commands):
clips shaped like each video for a Video Swin backbone (whose windows outgrow its bias tables on larger clips, as in
the original code), and branch options the sample type does not take."""
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
FITTING = "these options fit the sample types fragments, sama, sama-c, sama-mix, sama-spm, sama-swm, crop"


def options(stype="sama", sampling=None, prefix="."):
    return {"name": "tiny", "stype": stype, "model": MODEL, "load_path": "unused.pth",
            "data": {"val": {"type": "FusionDataset", "args": {
                "phase": "test", "data_prefix": prefix, "sample_types": {"fragments": dict(sampling or GRID)}}}}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("stype")
    (root / "videos").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.mp4", "b.mp4"):  # 64x80: small enough for every sample type's clips to run through the model
        out = cv2.VideoWriter(str(root / "videos" / name), cv2.VideoWriter_fourcc(*"mp4v"), 10, (80, 64))
        for _ in range(16):
            out.write(rng.integers(0, 255, size=(64, 80, 3), dtype=np.uint8))
        out.release()
    torch.manual_seed(0)
    torch.save({"state_dict": DiViDeAddEvaluator(**MODEL["args"]).state_dict()}, root / "tiny.pth")
    (root / "tiny.yml").write_text(yaml.safe_dump(options(prefix=str(root / "videos"))))
    return root


def run(tiny, *args):
    return S.main(["--ckpt", str(tiny / "tiny.pth"), "--options", str(tiny / "tiny.yml"), "--no-progress", *args])


@pytest.mark.parametrize("stype, why", [
    ("arp_fragments", "its fragment grid follows each video's aspect ratio"),
    ("original", "it passes each video on at its own resolution"),
])
def test_video_shaped_stype_is_refused_up_front_for_a_swin_model(tiny, capsys, stype, why):
    assert run(tiny, "--dir", str(tiny / "videos"), "--stype", stype) == 2
    out, err = capsys.readouterr()
    assert out == ""  # said before the CSV header
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: --stype {stype}: {why}")
    assert ", so its clips change shape from video to video, while the Video Swin backbone of branch fragments is " \
           "built for 32x224x224 clips" in line
    assert line.endswith(FITTING) and "Traceback" not in err
    with pytest.raises(OptionError, match=f"^--stype {stype}: "):
        S.load_scorer(str(tiny / "tiny.pth"), str(tiny / "tiny.yml"), stype=stype)


def test_stype_whose_options_the_file_lacks_names_the_flag_before_any_output(tiny, capsys):
    assert run(tiny, "--dir", str(tiny / "videos"), "--stype", "resize") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines()[-1] == (
        f"error: --stype resize: the sampling options of branch fragments in {tiny / 'tiny.yml'} set fragments_h, "
        "fragments_w, fsize_h, fsize_w, which resize does not take (its own: size_h, size_w, random_crop, arp); "
        f"{FITTING}, or give options written for resize (--options)")
    # arp_resize would take other options, but no options make its clips fit the Swin model
    assert run(tiny, "-v", str(tiny / "videos" / "a.mp4"), "--stype", "arp_resize") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "error: --stype arp_resize: it scales each video to short_edge on its short side, keeping the aspect ratio")


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
                   str(tiny / "videos" / "a.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: stype resize (from {tiny / 'arp.yml'}): with arp: true it keeps each video's aspect "
                          "ratio") and err.endswith("; set arp: false (clips of size_h x size_w)")


def test_export_refuses_the_same_way(tiny, tmp_path, capsys):
    out = tmp_path / "x.onnx"
    rc = E.main(["--ckpt", str(tiny / "tiny.pth"), "--options", str(tiny / "tiny.yml"), "--stype", "arp_resize",
                 "--output", str(out)])
    assert rc == 2 and not out.exists()
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "error: --stype arp_resize: it scales each video to short_edge on its short side")


def test_an_onnx_graph_refuses_video_shaped_sampling(tiny, tmp_path, capsys):
    graph = tmp_path / "tiny.onnx"
    assert E.main(["--ckpt", str(tiny / "tiny.pth"), "--options", str(tiny / "tiny.yml"), "--output", str(graph)]) == 0
    assert S.load_scorer(onnx=str(graph), stype="fragments").stype == "fragments"  # the graph's clip shape
    with pytest.raises(OptionError, match=r"^--stype original: it passes each video on at its own resolution, so its "
                                          r"clips change shape from video to video, while an ONNX graph takes one "
                                          r"fixed clip shape; score with the graph's own sample type, sama \(no "
                                          r"--stype\)$"):
        S.load_scorer(onnx=str(graph), stype="original")


def test_test_commands_refuse_a_video_shaped_stype_when_the_options_load():
    opt = options("arp_fragments")
    with pytest.raises(OptionError, match=r"^stype arp_fragments \(data\.val\.args\): its fragment grid follows"):
        schema.check_vqa_options(dict(opt), "test")
    schema.check_vqa_options(dict(opt))  # scoring / the visualiser check the sample type they end up using
