"""The two CPU engines of samacore.resample against each other (the C kernel and PyTorch ops), and how one is
chosen and built."""
import os

import pytest
import torch

from samacore import resample as engine
from samacore.options import OptionError
from samavqa.sampling import get_single_sample

NATIVE_BUILT = engine._cresample is not None


@pytest.fixture
def chosen_engine():
    """Restores the process-wide engine choice after a test that changes it."""
    before = engine._CHOSEN
    yield
    engine._CHOSEN = before


def channels_last(t, h, w, seed=0, c=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, h, w, c), dtype=torch.uint8, generator=g).permute(3, 0, 1, 2)


@pytest.mark.skipif(not NATIVE_BUILT, reason="samacore._cresample is not built")
@pytest.mark.parametrize("stype", ["sama", "sama-spm", "sama-swm", "fragments"])
@pytest.mark.parametrize("source_dtype", [torch.uint8, torch.float32])
def test_engines_agree_on_real_samples(chosen_engine, stype, source_dtype):
    """The C kernel and the PyTorch ops give the same samples (exact where pixels are copied, within float32
    rounding where they are blended), for every geometry of a SAMA sample."""
    video = channels_last(64, 180, 300, seed=11).to(source_dtype)
    grid = dict(fragments_h=3, fragments_w=3, fsize_h=32, fsize_w=32, aligned=32)
    samples = {}
    for name in ("torch", "native"):
        engine.set_backend(name)
        torch.manual_seed(0)
        samples[name] = get_single_sample(video, stype, True, **grid)
    assert (samples["torch"] - samples["native"]).abs().max() <= 256 * 2 ** -23  # one ulp at 255
    full_resolution = [0, 1, 32, 33]  # the first temporal patch of each clip has factor 1: copies, bit for bit
    assert torch.equal(samples["torch"][:, full_resolution], samples["native"][:, full_resolution])


def test_backend_choice_is_checked(chosen_engine):
    for name in ("torch",) + (("native",) if NATIVE_BUILT else ()):
        engine.set_backend(name)
        assert engine.backend() == name
    engine.set_backend("auto")
    assert engine.backend() == ("native" if NATIVE_BUILT else "torch")
    with pytest.raises(OptionError, match="choose one of: auto, native, torch"):
        engine.set_backend("fast")
    if not NATIVE_BUILT:
        with pytest.raises(OptionError, match="not built"):
            engine.set_backend("native")


@pytest.mark.skipif(os.environ.get("SAMA_EXPECT_NATIVE") != "1", reason="set by CI, where a C compiler exists")
def test_ci_builds_the_c_kernel(chosen_engine):
    """CI installs with a compiler: the kernel must have been built there (the engine silently being PyTorch
    ops would only show as a slowdown)."""
    assert NATIVE_BUILT
    engine.set_backend("auto")
    assert engine.backend() == "native"


@pytest.mark.skipif(not NATIVE_BUILT, reason="samacore._cresample is not built")
def test_a_stale_build_is_not_run(monkeypatch):
    """A kernel built from an older _cresample.c (source edited, build not redone) is refused, with a warning."""
    assert engine._load_kernel() is engine._cresample  # the build in use matches its source
    monkeypatch.setattr(engine._cresample, "SOURCE_SHA256", "0" * 64)
    with pytest.warns(RuntimeWarning, match="built from another version"):
        assert engine._load_kernel() is None
