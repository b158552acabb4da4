"""The extension points: a sampling variant, a label format and a backbone are each added in one place (one
registry entry, here written in the test itself) and then work through the real code paths."""
import numpy as np
import pytest
import torch
import yaml

import cv2

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
    from samaiqa.cli import load_iqa_options
    from samavqa.cli import load_vqa_options

    vqa = {"name": "t", "stype": "sama-toy",
           "data": {"val": {"type": "FusionDataset", "args": {"phase": "test", "data_prefix": ".",
                                                              "sample_types": {"fragments": FRAG}}}},
           "model": {"type": "DiViDeAddEvaluator", "args": {"backbone_size": "swin_nano_grpb"}}}
    (tmp_path / "v.yml").write_text(yaml.safe_dump(vqa))
    assert load_vqa_options(str(tmp_path / "v.yml"))["stype"] == "sama-toy"
    iqa = {"name": "t", "stype": "sama-toy", "data": {"data_info": "x.txt"}}
    (tmp_path / "i.yml").write_text(yaml.safe_dump(iqa))
    assert load_iqa_options(str(tmp_path / "i.yml"), train=True)["stype"] == "sama-toy"
