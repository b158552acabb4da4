"""decord's global bridge (FAST-VQA and DOVER call decord.bridge.set_bridge("torch") at import) changes neither
the frames the project decodes nor the bridge itself."""
import pytest
import torch

from samavqa import score as S
from samavqa.datasets import FusionDataset
from samavqa.decoders import DECODERS
from test_vqa_score import FRAG
from test_vqa_score import setup  # noqa: F401  (the tiny model, its options and videos: a module fixture)

pytestmark = pytest.mark.skipif(not DECODERS["decord"].available(), reason="decord is not installed here")


def test_frames_and_scores_do_not_depend_on_the_bridge(setup):
    import decord

    path = str(setup / "videos" / "v1.mp4")
    scorer = S.load_scorer(str(setup / "tiny.pth"), str(setup / "tiny.yml"), decoder="decord")
    ds = FusionDataset(dict(phase="test", anno_file=[{"filename": path, "label": 1.0}], data_prefix=str(setup),
                            sample_types={"fragments": dict(FRAG)}, decoder="decord"), stype="sama")
    before_item, before_score = ds[0], scorer(path)
    decord.bridge.set_bridge("torch")
    try:
        after_item, after_score = ds[0], scorer(path)
        assert isinstance(decord.VideoReader(path).get_batch([0]), torch.Tensor)  # the bridge is left as it was
    finally:
        decord.bridge.set_bridge("native")
    assert after_score == before_score
    assert torch.equal(after_item["fragments"], before_item["fragments"])
    assert hasattr(decord.VideoReader(path).get_batch([0]), "asnumpy")


def test_native_frames_are_taken_over_without_a_copy(setup):
    # decord's own NDArray becomes a tensor through DLPack: its memory, not a copy (asnumpy copied every frame),
    # and it stays valid after decord's object is gone
    import gc

    import decord
    from samavqa.decoders import _as_tensor

    batch = decord.VideoReader(str(setup / "videos" / "v1.mp4")).get_batch([0, 1, 2])
    copied = torch.from_numpy(batch.asnumpy())
    frames = _as_tensor(batch)
    assert frames.dtype == torch.uint8 and frames.shape == copied.shape and torch.equal(frames, copied)
    assert frames.data_ptr() == batch.handle.contents.data  # decord's buffer itself
    del batch
    gc.collect()
    assert torch.equal(frames, copied)
