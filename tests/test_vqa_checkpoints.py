"""VQA weight loading: every supported checkpoint format gives the same model; errors name what is wrong."""
import pytest
import torch

from samacore.checkpoint import CheckpointError, save_checkpoint
from samavqa.models import DiViDeAddEvaluator, build_backbone, detect_format, load_vqa_weights

from test_vqa_model import NANO, NANO_OUT, seeded_weights_


def evaluator(keys="fragments", seed=None, **kw):
    model = DiViDeAddEvaluator(backbone_size=NANO, backbone_preserve_keys=keys,
                               backbone={k: {} for k in keys.split(",")}, vqa_head={"in_channels": NANO_OUT}, **kw)
    return (seeded_weights_(model, seed) if seed is not None else model).eval()


@pytest.fixture(scope="module")
def source():
    return evaluator(seed=3)


@pytest.fixture(scope="module")
def clip():
    return torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(9))


def backbone_only(model):
    return {k[len("fragments_backbone."):]: v for k, v in model.state_dict().items() if k.startswith("fragments_backbone.")}


def k400_dict(model, with_fragment_tables=False):
    """Synthetic mmaction Kinetics-400 checkpoint built from ``model``'s backbone."""
    sd = {"backbone." + k: v.clone() for k, v in backbone_only(model).items()
          if with_fragment_tables or "fragment_position_bias_table" not in k}
    sd["cls_head.fc_cls.weight"] = torch.randn(400, NANO_OUT)
    sd["cls_head.fc_cls.bias"] = torch.zeros(400)
    return {"meta": {"epoch": 30}, "state_dict": sd}


def test_detect_format(source):
    sd = source.state_dict()
    assert detect_format({"state_dict": sd, "validation_results": [0.9]}) == "vqa_release"
    assert detect_format(sd) == "bare_evaluator"
    assert detect_format({"module." + k: v for k, v in sd.items()}) == "bare_evaluator"  # DDP prefix
    assert detect_format(k400_dict(source)) == "mmaction_k400"
    assert detect_format(backbone_only(source)) == "bare_backbone"
    with pytest.raises(CheckpointError, match="unrecognised"):
        detect_format({"encoder.weight": torch.zeros(1)})


@pytest.mark.parametrize("fmt", ["release_file", "own_file", "bare", "ddp"])
def test_full_formats_load_to_identical_outputs(source, clip, fmt, tmp_path):
    sd = source.state_dict()
    if fmt == "release_file":  # as SAMA/FAST-VQA release it: plain torch.save of a dict
        path = tmp_path / "release.pth"
        torch.save({"state_dict": sd, "validation_results": {"srcc": 0.9}}, path)
        arg = str(path)
    elif fmt == "own_file":
        path = tmp_path / "ours.pth"
        save_checkpoint({"state_dict": sd, "epoch": 3}, str(path))
        arg = str(path)
    elif fmt == "bare":
        arg = dict(sd)
    else:
        arg = {"state_dict": {"module." + k: v for k, v in sd.items()}}
    target = evaluator()
    report = load_vqa_weights(target, arg)
    assert report.missing == [] and report.unexpected == []
    assert report.loaded == len(sd)
    torch.testing.assert_close(target({"fragments": clip}), source({"fragments": clip}), atol=0, rtol=0)


def test_k400_loads_every_backbone_with_zero_fragment_tables(source, clip):
    target = evaluator("fragments,resize")
    with torch.no_grad():  # non-zero fragment tables must be reset by the K400 recipe
        target.fragments_backbone.layers[0].blocks[0].attn.fragment_position_bias_table.fill_(3.0)
    head_before = target.vqa_head.fc_hid.weight.clone()
    report = load_vqa_weights(target, k400_dict(source))
    assert not report.missing and not report.unexpected
    assert any("cls_head" in n for n in report.notes) and any("zero" in n for n in report.notes)
    assert torch.equal(target.vqa_head.fc_hid.weight, head_before)  # heads are not loaded
    # reference: the source backbone with its fragment tables zeroed
    ref = build_backbone(NANO).eval()
    ref.load_state_dict(backbone_only(source))
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "fragment_position_bias_table" in name:
                p.zero_()
        expect = ref(clip)
        for branch in (target.fragments_backbone, target.resize_backbone):
            torch.testing.assert_close(branch(clip), expect, atol=0, rtol=0)


def test_k400_fragment_tables_from_relative(source, clip):
    target = evaluator()
    load_vqa_weights(target, k400_dict(source), init_fragment_bias_from_relative=True)
    attn = target.fragments_backbone.layers[1].blocks[0].attn
    assert torch.equal(attn.fragment_position_bias_table, attn.relative_position_bias_table)
    # with fpb == rpb the gate is irrelevant: same as a backbone without fragment tables
    plain = build_backbone(NANO, frag_biases=(False,) * 4).eval()
    plain.load_state_dict({k: v for k, v in backbone_only(source).items() if "fragment" not in k})
    with torch.no_grad():
        torch.testing.assert_close(target.fragments_backbone(clip), plain(clip), atol=1e-5, rtol=1e-5)


def test_bare_backbone_and_backbone_target(source, clip):
    target = evaluator()
    load_vqa_weights(target, backbone_only(source))
    bare = build_backbone(NANO).eval()
    report = load_vqa_weights(bare, {"state_dict": source.state_dict()})  # picks fragments_backbone.*
    assert not report.missing
    with torch.no_grad():
        expect = source.fragments_backbone(clip)
        torch.testing.assert_close(target.fragments_backbone(clip), expect, atol=0, rtol=0)
        torch.testing.assert_close(bare(clip), expect, atol=0, rtol=0)


def test_missing_learnable_tensor_is_an_error_naming_it(source):
    sd = dict(source.state_dict())
    key = "fragments_backbone.layers.1.blocks.0.attn.qkv.weight"
    del sd[key]
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        load_vqa_weights(evaluator(), {"state_dict": sd})
    target = evaluator(seed=11)
    before = target.get_parameter(key).clone()
    report = load_vqa_weights(target, {"state_dict": sd}, allow_partial=True)
    assert report.missing == [key]
    assert torch.equal(target.get_parameter(key), before)  # kept its value
    assert torch.equal(target.vqa_head.fc_last.weight, source.vqa_head.fc_last.weight)  # the rest loaded


def test_missing_index_buffer_is_only_reported(source):
    sd = {k: v for k, v in source.state_dict().items() if not k.endswith("relative_position_index")}
    report = load_vqa_weights(evaluator(), sd)
    assert report.missing and all(k.endswith("relative_position_index") for k in report.missing)


def test_wrong_relative_index_or_shape_is_an_error(source):
    sd = dict(source.state_dict())
    key = "fragments_backbone.layers.1.blocks.1.attn.relative_position_index"
    sd[key] = sd[key].flip(0)
    with pytest.raises(CheckpointError, match="relative_position_index"):
        load_vqa_weights(evaluator(), sd)
    # K400 weights made for another window (here nano's 8x7x7 tables into 2x3x3 ones): error unless partial
    m = build_backbone(NANO, window_size=(2, 3, 3))
    k400 = k400_dict(source)
    with pytest.raises(CheckpointError, match="wrong shape.*relative_position_bias_table"):
        load_vqa_weights(m, k400)
    report = load_vqa_weights(m, k400, allow_partial=True)
    assert any("relative_position_bias_table" in k for k in report.missing)
    assert any("skipped" in n for n in report.notes)


def test_unexpected_keys_are_reported(source):
    sd = dict(source.state_dict())
    sd["resize_backbone.norm.weight"] = torch.ones(NANO_OUT)
    report = load_vqa_weights(evaluator(), sd)
    assert report.unexpected == ["resize_backbone.norm.weight"]


def test_evaluator_pretrained_option_loads_k400_file(source, clip, tmp_path):
    path = tmp_path / "k400.pth"
    torch.save(k400_dict(source, with_fragment_tables=True), path)
    model = DiViDeAddEvaluator(backbone_size=NANO, backbone_preserve_keys="fragments",
                               backbone={"fragments": {"pretrained": str(path), "checkpoint": False}},
                               vqa_head={"in_channels": NANO_OUT}).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.fragments_backbone(clip), source.fragments_backbone(clip), atol=0, rtol=0)
    with pytest.raises(CheckpointError, match="not found"):
        DiViDeAddEvaluator(backbone_size=NANO, backbone_preserve_keys="fragments",
                           backbone={"fragments": {"pretrained": str(tmp_path / "missing.pth")}},
                           vqa_head={"in_channels": NANO_OUT})
