"""The extension points: a sampling variant, a label format and a backbone are each added in one place (one
registry entry, here written in the test itself) and then work through the real code paths."""
import numpy as np
import pytest
import timm
import torch
import yaml
from torch import nn

import cv2

from helpers import result_row, GRID, MODEL, write_graded_images
from samacore.sampling import SAMPLE_TYPES, FragmentGrid, SamaVariant, SampleType, sama_sample

FRAG = dict(fragments_h=2, fragments_w=2, fsize_h=32, fsize_w=32, aligned=8, clip_len=8, frame_interval=1, num_clips=1)


# ------------------------------------------------------------------------------------------- a SAMA variant
@pytest.fixture
def toy_variant():
    """One entry: alternating scales with the patch mask for videos, the scaled view alone for images."""
    entry = SampleType("sama-toy", video=SamaVariant("alternate", "patch"), image=SamaVariant("coarsest"))
    SAMPLE_TYPES.register(entry.name, entry)
    yield entry
    SAMPLE_TYPES.unregister(entry.name)


def test_a_registered_variant_runs_everywhere(toy_variant, tmp_path):
    from samaiqa import score as iqa_score
    from samaiqa.sampling import IQA_SAMPLE_TYPES, sample_image
    from samaiqa.visualize import sample_mask
    from samavqa import score as vqa_score
    from samavqa import visualize
    from samavqa.datasets import FineTuneDataset
    from samavqa.sampling import SAMA_TYPES, check_sample_options, get_single_sample

    # video sampling: the variant's recipe, run by the shared sama_sample (test mode: centred offsets)
    torch.manual_seed(0)
    video = torch.randint(0, 256, (3, 8, 96, 128), dtype=torch.uint8)
    got = get_single_sample(video, "sama-toy", False, **FRAG)
    half = torch.full((2, 2, 1), 0.5)
    want = sama_sample(video, FragmentGrid(2, 2, 32, 32), SamaVariant("alternate", "patch"), half, half, 8)
    assert torch.equal(got, want)
    assert not torch.equal(got, get_single_sample(video, "sama-c", False, **FRAG))
    assert not torch.equal(got, get_single_sample(video, "sama-spm", False, **FRAG))
    # image sampling: the scaled view alone (no full-resolution cells)
    img = torch.rand(3, 128, 96)
    grid = FragmentGrid(2, 2, 16, 16)
    full = torch.full((2, 2, 1), 0.5)
    assert torch.equal(sample_image(img, "sama-toy", False, 2, 2, 16, 16),
                       sama_sample(img[:, None], grid, SamaVariant("coarsest"), full, full, 1)[:, 0])
    assert not sample_mask("sama-toy", grid).any()

    # the derived lists, option checks and command-line help know it
    assert "sama-toy" in SAMA_TYPES and "sama-toy" in IQA_SAMPLE_TYPES
    check_sample_options("sama-toy", FRAG)
    with pytest.raises(ValueError, match="did you mean 'fragments_h'"):
        check_sample_options("sama-toy", dict(FRAG, fragment_h=2))
    assert "sama-toy" in vqa_score.build_parser().format_help()
    assert "sama-toy" in iqa_score.build_parser().format_help()

    # the dataset samples with it, and the visualiser draws it as a grid with its mask
    path = str(tmp_path / "v.mp4")
    out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96))
    for frame in video.permute(1, 2, 3, 0).numpy():
        out.write(np.ascontiguousarray(frame))
    out.release()
    ds = FineTuneDataset([{"filename": path, "label": 1.0}], {"sample_types": {"fragments": FRAG}}, "sama-toy", False)
    assert ds[0]["fragments"].shape == (3, 8, 64, 64)
    view = visualize.sampling_view(path, {"fragments": FRAG}, "sama-toy")
    assert view.grid == (2, 2, 32, 32) and view.mask is not None and 0 < view.mask.mean() < 1


def test_a_registered_variant_passes_the_option_files(toy_variant, tmp_path):
    from samaiqa.schema import load_iqa_options
    from samavqa.schema import load_vqa_options

    vqa = {"name": "t", "stype": "sama-toy",
           "data": {"val": {"type": "FusionDataset", "args": {"phase": "test", "data_prefix": ".",
                                                              "sample_types": {"fragments": FRAG}}}},
           "model": {"type": "DiViDeAddEvaluator", "args": {"backbone_size": "swin_nano_grpb"}}}
    (tmp_path / "v.yml").write_text(yaml.safe_dump(vqa))
    assert load_vqa_options(str(tmp_path / "v.yml"))["stype"] == "sama-toy"
    iqa = {"name": "t", "stype": "sama-toy", "data": {"data_info": "x.txt"}}
    (tmp_path / "i.yml").write_text(yaml.safe_dump(iqa))
    assert load_iqa_options(str(tmp_path / "i.yml"), train=True)["stype"] == "sama-toy"


# ------------------------------------------------------------------------------------------- a video backbone
class TinyVideoNet(nn.Module):
    """A toy video backbone: one strided 3-D convolution. Files of its older layout call that layer ``conv``; its
    checkpoint filter, beside it, renames them."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.stem = nn.Conv3d(3, width, (2, 16, 16), (2, 16, 16))
        self.num_features = width

    def forward_features(self, x):
        return torch.relu(self.stem(x))  # [B, width, T/2, H/16, W/16]

    forward = forward_features

    def checkpoint_filter(self, state, init_fragment_bias_from_relative=False):
        return {k.replace("conv.", "stem.", 1): v for k, v in state.items()}, ["renamed conv.* to stem.*"]


@pytest.fixture
def tiny_video_net():
    from samavqa.models import BACKBONES, register_backbone

    register_backbone("tiny_video_net", lambda checkpoint=False, **overrides: TinyVideoNet(**overrides))
    yield
    BACKBONES.unregister("tiny_video_net")


def test_a_registered_backbone_trains_saves_and_loads(tiny_video_net, vqa_data, tmp_path, monkeypatch, one_thread):
    from samacore.checkpoint import load_checkpoint
    from samavqa import cli
    from samavqa.models import DiViDeAddEvaluator, load_vqa_weights

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    old_layout = {"backbone.conv.weight": torch.randn(8, 3, 2, 16, 16) * 0.05, "backbone.conv.bias": torch.zeros(8),
                  "cls_head.fc.weight": torch.zeros(400, 8)}  # a Kinetics-style release of the old layout
    torch.save({"state_dict": old_layout}, tmp_path / "k400_tiny.pth")
    args = {"backbone_size": "tiny_video_net", "backbone_preserve_keys": "fragments", "backbone": {"fragments": {}},
            "vqa_head": {"hidden_channels": 8}}  # in_channels: the backbone's num_features
    root = vqa_data.root
    opt = {"name": "tiny", "num_epochs": 2, "warmup_epochs": 0.5, "train_batch_size": 4, "test_batch_size": 2,
           "stype": "sama", "progress": False, "seed": 1,
           "model": {"type": "DiViDeAddEvaluator", "args": args}, "load_path": str(tmp_path / "k400_tiny.pth"),
           "data": {"train": {"type": "FusionDataset", "args": {
                        "phase": "train", "anno_file": str(root / "labels.txt"), "data_prefix": str(root / "videos"),
                        "sample_types": {"fragments": dict(FRAG, num_clips=1)}}},
                    "val": {"type": "FusionDataset", "args": {
                        "phase": "test", "anno_file": str(root / "val.txt"), "data_prefix": str(root / "videos"),
                        "sample_types": {"fragments": dict(FRAG, num_clips=2)}}}}}
    (tmp_path / "tiny.yml").write_text(yaml.safe_dump(opt))
    summary = cli.train_main(["-o", "tiny.yml", "--no-progress"])
    best = load_checkpoint(str(tmp_path / "pretrained_weights" / "tiny_val_s_dev_v0.0.pth"))
    assert best["state_dict"]["fragments_backbone.stem.weight"].shape == (8, 3, 2, 16, 16)
    assert best["state_dict"]["vqa_head.fc_hid.weight"].shape == (8, 8, 1, 1, 1)
    assert result_row(summary, "val")["final_epoch"] == 1 and best["label_stats"]["pred_std"] > 0

    # the old-layout file loads through the backbone's filter
    model = DiViDeAddEvaluator(**args)
    report = load_vqa_weights(model, str(tmp_path / "k400_tiny.pth"))
    assert torch.equal(model.fragments_backbone.stem.weight, old_layout["backbone.conv.weight"])
    assert "renamed conv.* to stem.*" in report.notes and not report.missing
    # testing the saved model reproduces its stored validation metrics
    test_opt = dict(opt, load_path=str(tmp_path / "pretrained_weights" / "tiny_val_s_dev_v0.0.pth"))
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test_opt))
    got = result_row(cli.test_main(["-o", "test.yml", "--output", "pred.csv", "--no-progress"]), "val")["metrics"]
    for m in ("srcc", "plcc", "krcc", "rmse"):
        assert got[m] == pytest.approx(best["validation_results"][m], abs=1e-5)


# ------------------------------------------------------------------------------------------- an image backbone
class TinyImageNet(nn.Module):
    """A toy image encoder registered with timm (``NCHW`` features, as timm's CNNs). Its ImageNet files name the
    first layer ``patch_embed.proj``; :func:`checkpoint_filter_fn` beside it maps them, as timm's models do."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, width, 16, 16)
        self.num_features = width

    def forward_features(self, x):
        return torch.relu(self.patch_embed(x))

    def forward(self, x):
        return self.forward_features(x).mean((2, 3))


def checkpoint_filter_fn(state, model):
    return {k.replace("patch_embed.proj.", "patch_embed.", 1): v for k, v in state.items()}


@timm.models.register_model
def tiny_image_net(pretrained=False, width=8, **timm_kwargs):  # no classifier, no stochastic depth to set up
    return TinyImageNet(width)


def test_a_timm_registered_backbone_trains_and_scores(tmp_path, one_thread):
    from samaiqa import cli, score
    from samaiqa.checkpoints import load_into_model
    from samaiqa.model import IQAModel

    names = [f"i{i:02d}.png" for i in range(8)]
    write_graded_images(str(tmp_path), names, [20 + 30 * i for i in range(8)], [(48, 64)] * 8, label_digits=2)
    torch.manual_seed(0)
    imagenet = {"patch_embed.proj.weight": torch.randn(8, 3, 16, 16) * 0.05, "patch_embed.proj.bias": torch.zeros(8),
                "head.weight": torch.zeros(1000, 8)}
    torch.save({"model": imagenet}, tmp_path / "imagenet_tiny.pth")
    model = {"backbone": "tiny_image_net", "backbone_args": {"width": 8}, "hidden_channels": 8}
    opt = {"name": "tinyiqa", "stype": "sama", "num_epochs": 1, "warmup_epochs": 1, "batch_size": 4, "num_splits": 1,
           "data": {"database": "toy", "data_info": str(tmp_path / "info.txt"), "data_prefix": str(tmp_path), **GRID},
           "model": model, "load_path": str(tmp_path / "imagenet_tiny.pth"), "run_dir": str(tmp_path / "run"),
           "progress": False}
    (tmp_path / "o.yml").write_text(yaml.safe_dump(opt))
    summary = cli.train_main(["-o", str(tmp_path / "o.yml"), "--no-progress"])
    ckpt = result_row(summary, split=0)["checkpoint"]

    # the ImageNet file went through the filter beside the model
    fresh = IQAModel("tiny_image_net", img_size=64, hidden_channels=8, width=8)
    report = load_into_model(fresh, str(tmp_path / "imagenet_tiny.pth"))
    assert torch.equal(fresh.backbone.patch_embed.weight, imagenet["patch_embed.proj.weight"]) and not report.missing
    # the scorer rebuilds the model from the checkpoint's model_config and scores every image
    out = tmp_path / "scores.csv"
    assert score.main(["--dir", str(tmp_path), "--ckpt", ckpt, "--output", str(out), "--no-progress"]) == 0
    rows = out.read_text().splitlines()[1:]
    assert len(rows) == 8 and all(np.isfinite(float(r.split(",")[1])) for r in rows)


# ------------------------------------------------------------------------------------------- a label format
def _vqa_options(root, anno, **over):
    set_args = {"data_prefix": str(root / "videos"), "sample_types": {"fragments": dict(FRAG, num_clips=1)}}
    opt = {"name": "ext", "num_epochs": 1, "warmup_epochs": 0.5, "train_batch_size": 4, "test_batch_size": 2,
           "stype": "sama", "progress": False, "seed": 1, "model": MODEL,
           "data": {"train": {"type": "FusionDataset", "args": dict(set_args, phase="train", anno_file=anno)},
                    "val": {"type": "FusionDataset", "args": dict(set_args, phase="test", anno_file=anno)}}}
    opt.update(over)
    return opt


@pytest.fixture
def mos_csv():
    """One entry: a csv whose header names the video and its MOS (e.g. a database's official score sheet)."""
    from samacore.labels import CsvColumns
    from samavqa.labels import LABEL_FORMATS

    fmt = LABEL_FORMATS.register(CsvColumns(name="mos-csv", title="video/MOS sheet", name_column="video",
                                            label_column="mos", location="{path}:{line}", dtype="float64"))
    yield fmt
    LABEL_FORMATS.unregister(fmt.name)


def test_a_registered_label_format_feeds_training(mos_csv, vqa_data, tmp_path, monkeypatch, one_thread):
    from samacore.labels import LabelError
    from samavqa import cli
    from samavqa.labels import read_label_file

    root = vqa_data.root
    fast_vqa = read_label_file(str(root / "labels.txt"), str(root / "videos"))
    sheet = tmp_path / "scores.csv"
    sheet.write_text("video,rater_count,mos\n" + "".join(f"{i['fileid']},20,{i['label']}\n" for i in fast_vqa))
    infos = read_label_file(str(sheet), str(root / "videos"))
    assert [(i["fileid"], i["label"], i["filename"]) for i in infos] == \
        [(i["fileid"], i["label"], i["filename"]) for i in fast_vqa]
    assert infos[1]["source"] == f"{sheet}:3"
    (tmp_path / "bad.csv").write_text("video,rater_count,mos\nv0.mp4,20,high\n")
    with pytest.raises(LabelError, match=r"bad\.csv:2: mos 'high' is not a number"):
        read_label_file(str(tmp_path / "bad.csv"), str(root / "videos"))

    monkeypatch.chdir(tmp_path)
    (tmp_path / "o.yml").write_text(yaml.safe_dump(_vqa_options(root, str(sheet))))
    summary = cli.train_main(["-o", "o.yml", "--no-progress"])
    assert summary["label_stats"]["n"] == len(fast_vqa)
    assert summary["label_stats"]["mean"] == pytest.approx(np.mean([i["label"] for i in fast_vqa]))
    assert np.isfinite(result_row(summary, "val")["final"]["srcc"])


# ------------------------------------------------------------------------------------------- a dataset type
@pytest.fixture
def inline_dataset():
    """One entry: a data set whose videos and labels are written in the option file itself."""
    from samavqa.datasets import DATASETS, DATASET_KEYS, FineTuneDataset, register_dataset

    @register_dataset
    class InlineDataset(FineTuneDataset):
        OPTION_KEYS = DATASET_KEYS + ("videos",)

        def __init__(self, opt, stype="fragments"):
            videos = [{"filename": f"{opt['data_prefix']}/{name}", "label": label}
                      for name, label in opt["videos"].items()]
            block = {k: v for k, v in opt.items() if k in ("sample_types", "num_threads")}
            super().__init__(videos, block, stype, is_train=opt.get("phase") == "train")

    yield InlineDataset
    DATASETS.unregister("InlineDataset")


def test_a_registered_dataset_type_is_built_from_the_options(inline_dataset, vqa_data, tmp_path, monkeypatch,
                                                             one_thread):
    from samavqa import cli

    root = vqa_data.root
    videos = {f"v{i}.mp4": 10.0 + 5 * i for i in range(6)}
    opt = _vqa_options(root, None)
    for key in ("train", "val"):
        opt["data"][key]["type"] = "InlineDataset"
        opt["data"][key]["args"].pop("anno_file")
        opt["data"][key]["args"]["videos"] = videos
    monkeypatch.chdir(tmp_path)
    (tmp_path / "o.yml").write_text(yaml.safe_dump(opt))
    summary = cli.train_main(["-o", "o.yml", "--no-progress"])
    assert summary["label_stats"] == {"mean": pytest.approx(np.mean(list(videos.values()))),
                                      "std": pytest.approx(np.std(list(videos.values()))), "n": 6}
    assert result_row(summary, "val")["final"]["n"] == 6
    opt["data"]["val"]["type"] = "InlinDataset"
    (tmp_path / "o.yml").write_text(yaml.safe_dump(opt))
    with pytest.raises(ValueError, match="unknown dataset type 'InlinDataset' \\(did you mean 'InlineDataset'\\?\\)"):
        cli.train_main(["-o", "o.yml", "--no-progress"])


# ------------------------------------------------------------------------------------------- a plugin file
PLUGIN = '''
"""One file, named by the option file's `plugins:`: an image variant and a label format."""
from samacore.labels import TextColumns
from samacore.sampling import SAMPLE_TYPES, SamaVariant, SampleType
from samaiqa.labels import LABEL_FORMATS

SAMPLE_TYPES.register("sama-plain", SampleType("sama-plain", image=SamaVariant("coarsest")))
LABEL_FORMATS.register(TextColumns(name="semicolon", extensions=(".lst",), fields=2, separator=";",
                                   expected="'name;score' (2 fields)"))
'''


def test_a_plugin_file_extends_an_iqa_run(tmp_path, one_thread):
    from samacore.labels import LabelError
    from samaiqa import cli
    from samaiqa.labels import LABEL_FORMATS
    from samaiqa.sampling import IQA_SAMPLE_TYPES

    names = [f"p{i}.png" for i in range(6)]
    write_graded_images(str(tmp_path), names, [30 + 35 * i for i in range(6)], [(40, 48)] * 6, label_digits=2)
    (tmp_path / "scores.lst").write_text("".join(f"{n};{i * 1.5}\n" for i, n in enumerate(names)))
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    opt = {"name": "plug", "stype": "sama-plain", "num_epochs": 1, "warmup_epochs": 1, "batch_size": 2,
           "num_splits": 1, "plugins": [str(tmp_path / "my_plugin.py")],
           "data": {"database": "toy", "data_info": str(tmp_path / "scores.lst"), "data_prefix": str(tmp_path), **GRID},
           "model": {"backbone_args": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}},
           "run_dir": str(tmp_path / "run"), "progress": False}
    (tmp_path / "o.yml").write_text(yaml.safe_dump(opt))
    try:
        summary = cli.train_main(["-o", str(tmp_path / "o.yml"), "--no-progress"])
        assert result_row(summary, split=0)["n_train"] == 4 and np.isfinite(summary["aggregate"]["best_per_metric"]["median"]["rmse"])
        with pytest.raises(LabelError, match=r"scores\.lst, line 2: label 'x' is not a number"):
            (tmp_path / "scores.lst").write_text("p0.png;1\np1.png;x\n")
            cli.train_main(["-o", str(tmp_path / "o.yml"), "--no-progress"])
    finally:
        SAMPLE_TYPES.unregister("sama-plain")
        LABEL_FORMATS.unregister("semicolon")
    assert "sama-plain" not in IQA_SAMPLE_TYPES
