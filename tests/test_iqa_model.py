"""IQA model and checkpoint formats (small Swin-V2 config so the tests stay fast)."""
import re

import pytest
import torch

from samacore.checkpoint import CheckpointError
from samaiqa.checkpoints import OWN_FORMAT, detect_format, load_into_model, read_checkpoint_info, save_model_checkpoint
from samaiqa.model import IQAModel

# 64x64 input: patch grid 16x16, stages 16/8/4/2; stage 0 has a shifted block (window 8, shift 4) with a mask.
SMALL = dict(img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=8)


pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def small_model(seed: int) -> IQAModel:
    torch.manual_seed(seed)
    model = IQAModel(**SMALL)
    # post-norm weights start at zero in Swin-V2; randomise everything so a missed tensor shows in the output
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model.eval()


def to_microsoft(backbone_state: dict, model: IQAModel, num_classes: int = 10) -> dict:
    """timm Swin-V2 names -> Microsoft's (patch merging at the end of the previous stage, `head.*` classifier),
    with the index / coordinate / mask buffers Microsoft's code saves."""
    out = {}
    for k, v in backbone_state.items():
        k = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k)
        out[k] = v.clone()
    for k, v in model.backbone.named_buffers():
        if any(b in k for b in ("relative_position_index", "relative_coords_table", "attn_mask")):
            out[k] = v.clone()
    nf = model.backbone.num_features
    out["head.weight"] = torch.randn(num_classes, nf)
    out["head.bias"] = torch.randn(num_classes)
    return out


def x_input(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_forward_shapes_and_mean_of_tokens():
    model = small_model(0)
    x = x_input()
    tokens = model.tokens(x)
    assert tokens.shape == (2, 4, model.backbone.num_features)  # (64/32)^2 tokens
    scores = model(x)
    assert scores.shape == (2,)
    assert torch.allclose(scores, model.vqa_head(tokens).squeeze(-1).mean(1))


def test_default_model_is_swinv2_tiny_with_paper_head():
    model = IQAModel()
    assert model.backbone.num_features == 768
    assert model.vqa_head.fc1.weight.shape == (64, 768) and model.vqa_head.fc2.weight.shape == (1, 64)
    assert isinstance(model.vqa_head.dropout, torch.nn.Dropout) and model.vqa_head.dropout.p == 0.5
    n_backbone = sum(p.numel() for p in model.backbone.parameters())
    assert 27_000_000 < n_backbone < 29_000_000  # Swin-V2-T without classifier: ~27.6M
    with torch.no_grad():
        assert model.eval().tokens(torch.zeros(1, 3, 256, 256)).shape == (1, 64, 768)


def test_all_three_formats_give_identical_outputs(tmp_path):
    src = small_model(1)
    x = x_input()
    with torch.no_grad():
        want_tokens, want = src.tokens(x), src(x)

    ms_backbone = to_microsoft(src.backbone.state_dict(), src)
    head = {f"vqa_head.{k}": v for k, v in src.vqa_head.state_dict().items()}

    # (a) Microsoft ImageNet {"model": ...}: backbone only
    torch.save({"model": ms_backbone}, tmp_path / "ms.pth")
    m = small_model(2)
    report = load_into_model(m, str(tmp_path / "ms.pth"))
    assert any("equal the rebuilt ones" in n for n in report.notes)
    assert any("classifier" in n for n in report.notes)
    with torch.no_grad():
        assert torch.equal(m.tokens(x), want_tokens)
    assert not torch.equal(m.vqa_head.fc1.weight, src.vqa_head.fc1.weight)  # head not in an ImageNet file

    # (b) original SAMA IQA layout {"state_dict": backbone.<Microsoft keys>, vqa_head.fc1/fc2}
    sama = {f"backbone.{k}": v for k, v in ms_backbone.items()} | head
    torch.save({"state_dict": sama}, tmp_path / "sama.pth")
    assert detect_format(torch.load(tmp_path / "sama.pth"))[0] == "sama-iqa"
    m = small_model(3)
    load_into_model(m, str(tmp_path / "sama.pth"))
    with torch.no_grad():
        assert torch.equal(m(x), want)

    # (c) our own format, with its metadata
    save_model_checkpoint(str(tmp_path / "own.pth"), src, label_stats={"mean": 1.0, "std": 2.0})
    assert detect_format(torch.load(tmp_path / "own.pth", weights_only=True))[0] == "samaiqa"
    m = small_model(4)
    load_into_model(m, str(tmp_path / "own.pth"))
    with torch.no_grad():
        assert torch.equal(m(x), want)
    info = read_checkpoint_info(str(tmp_path / "own.pth"))
    assert info["format"] == OWN_FORMAT and info["label_stats"] == {"mean": 1.0, "std": 2.0}
    assert IQAModel(**{k: tuple(v) if isinstance(v, list) else v for k, v in info["model_config"].items()})


def test_missing_learnable_tensor_is_an_error_unless_partial():
    src = small_model(1)
    sama = {f"backbone.{k}": v for k, v in to_microsoft(src.backbone.state_dict(), src).items()}
    sama |= {f"vqa_head.{k}": v for k, v in src.vqa_head.state_dict().items()}
    del sama["backbone.layers.1.blocks.0.attn.logit_scale"]
    with pytest.raises(CheckpointError, match="logit_scale"):
        load_into_model(small_model(2), {"state_dict": sama})
    report = load_into_model(small_model(2), {"state_dict": sama}, allow_partial=True)
    assert report.missing == ["backbone.layers.1.blocks.0.attn.logit_scale"]
    del sama["vqa_head.fc2.bias"]
    with pytest.raises(CheckpointError, match="vqa_head.fc2.bias"):
        load_into_model(small_model(2), {"state_dict": sama})


def test_stored_tables_for_another_window_are_rejected():
    src = small_model(1)
    ms = to_microsoft(src.backbone.state_dict(), src)
    key = next(k for k in ms if k.endswith("relative_coords_table"))
    ms[key] = ms[key] * 0.5  # e.g. made with another pretrained window size
    with pytest.raises(CheckpointError, match="relative_coords_table"):
        load_into_model(small_model(2), {"model": ms})


def test_shape_mismatch_and_foreign_checkpoints_are_errors():
    src = small_model(1)
    big = IQAModel(img_size=64, embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_into_model(src, {"state_dict": big.state_dict()})
    with pytest.raises(CheckpointError, match="is a VQA checkpoint"):
        load_into_model(src, {"state_dict": {"fragments_backbone.layers.0.x": torch.zeros(1)}})
    with pytest.raises(CheckpointError, match="not an IQA checkpoint"):
        load_into_model(src, {"state_dict": {"encoder.layers.0.x": torch.zeros(1)}})
    with pytest.raises(CheckpointError, match="not found"):
        load_into_model(src, "/nonexistent/file.pth")
