"""The short-video note for FAST-VQA's sampling (frame_overflow: wrap, t_frag): it says what happened to the frame
indices (overlapping temporal fragments, indices wrapping around to the start), not SAMA's clamping."""
import csv

import numpy as np
import pytest
import torch
import yaml

import cv2

from samavqa import score as S
from samavqa.models import DiViDeAddEvaluator
from samavqa.temporal import build_frame_sampler

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py

# the temporal sampling of VQA/options/FAST_VQA_3D_1_1.yml (-m FasterVQA) and FAST_VQA_B_1_4.yml (-m FAST-VQA)
FASTER = dict(clip_len=32, frame_interval=2, t_frag=8, num_clips=1, frame_overflow="wrap")
FAST_B = dict(clip_len=32, frame_interval=2, num_clips=4, frame_overflow="wrap")
FASTER_32 = ("only 32 frames, fewer than one clip spans (8 temporal fragments of 4 frames, every 2: 64 frames): its "
             "temporal fragments overlap, so 14 of the 32 sampled frames repeat ones sampled before, and 2 others run "
             "past its end and wrap around to frames 0, 2")


def note(opts, n, given=True):
    """The note of ``n`` frames' test indices; ``given``: the frame count is passed (else found from the indices)."""
    inds = build_frame_sampler(opts)(n)
    if not given:
        return S.short_video_note({"fragments": inds}, {"fragments": opts})
    return S.short_video_note({"fragments": inds}, {"fragments": opts}, num_frames=n)


def test_fastervqa_32_frames_says_overlap_and_wrap():
    inds = build_frame_sampler(FASTER)(32)
    assert inds.tolist()[:8] == [0, 2, 4, 6, 4, 6, 8, 10] and inds.tolist()[-4:] == [28, 30, 0, 2]  # frame 31: never
    assert note(FASTER, 32, given=False) == FASTER_32  # the frame count is found from the indices
    assert note(FASTER, 32) == FASTER_32  # or given, as scoring does


def test_fastervqa_notes_follow_the_indices():
    # with t_frag but SAMA's clamp, the indices past the end are copies of the last frame
    clamp = dict(FASTER, frame_overflow="clamp")
    assert note(clamp, 32, given=False) == (
        "only 32 frames, fewer than one clip spans (8 temporal fragments of 4 frames, every 2: 64 frames): its "
        "temporal fragments overlap, so 14 of the 32 sampled frames repeat ones sampled before, and 1 other is a copy "
        "of its last frame")
    assert note(FASTER, 50) == ("only 50 frames, fewer than one clip spans (8 temporal fragments of 4 frames, every 2: "
                                "64 frames): its temporal fragments overlap, so 7 of the 32 sampled frames repeat ones "
                                "sampled before")  # nothing past the end
    assert note(FASTER, 60) == note(FASTER, 64) == note(FASTER, 300) == ""  # separate fragments: nothing to say


def test_fastvqa_b_wraps_instead_of_copying_and_sama_notes_stay():
    fast_b_40 = ("only 40 frames, fewer than one clip spans (32 frames, every 2): 78 of the 128 sampled frames run "
                 "past its end and wrap around to frames 0, 2, 4, 6, ...")
    assert note(FAST_B, 40, given=False) == fast_b_40
    assert note(FAST_B, 40) == fast_b_40
    assert note(FAST_B, 63).startswith("only 63 frames for 4 clips of 32 frames (every 2): 46 of the 128 sampled "
                                       "frames run past its end and wrap around to frames 0, 1, 2, 3")
    assert note(FAST_B, 240) == ""  # two indices of the last clip wrap: a few, as SAMA's single copy at 240
    sama = dict(clip_len=32, frame_interval=2, num_clips=4)  # the README's texts, unchanged
    assert note(sama, 1) == ("only 1 frame, fewer than one clip spans (32 frames, every 2): 124 of the 128 sampled "
                             "frames are copies of its last frame, so the score is not that of a real clip")
    assert note(sama, 63) == ("only 63 frames for 4 clips of 32 frames (every 2): 44 of the 128 sampled frames are "
                              "copies of its last frame")
    assert note(sama, 240) == ""


def test_scoring_writes_the_fastvqa_note(tmp_path):
    model = {"type": "DiViDeAddEvaluator",
             "args": {"backbone": {"fragments": {"checkpoint": False, "pretrained": None}},
                      "backbone_size": "swin_nano_grpb", "backbone_preserve_keys": "fragments", "divide_head": False,
                      "vqa_head": {"in_channels": 192, "hidden_channels": 16}}}
    sampling = dict(FASTER, fragments_h=2, fragments_w=2, fsize_h=32, fsize_w=32, aligned=8)
    opt = {"name": "tiny", "stype": "fragments", "model": model,
           "data": {"val": {"type": "FusionDataset", "args": {"phase": "test", "data_prefix": str(tmp_path),
                                                              "sample_types": {"fragments": sampling}}}}}
    (tmp_path / "o.yml").write_text(yaml.safe_dump(opt))
    torch.manual_seed(0)
    torch.save({"state_dict": DiViDeAddEvaluator(**model["args"]).state_dict()}, tmp_path / "m.pth")
    rng = np.random.default_rng(0)
    out = cv2.VideoWriter(str(tmp_path / "v.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (80, 64))
    for _ in range(32):
        out.write(rng.integers(0, 255, size=(64, 80, 3), dtype=np.uint8))
    out.release()
    assert S.main(["-v", str(tmp_path / "v.mp4"), "--ckpt", str(tmp_path / "m.pth"), "--options",
                   str(tmp_path / "o.yml"), "--output", str(tmp_path / "s.csv"), "--no-progress"]) == 0
    assert [r["note"] for r in csv.DictReader(open(tmp_path / "s.csv"))] == [FASTER_32]
