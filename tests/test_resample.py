"""The bilinear read engine under the samplers (samacore.resample): values against F.interpolate, every memory
layout, copy and blend geometries, masks, threads and forks -- each on both CPU engines (PyTorch ops and the C
kernel; they are compared with each other in test_resample_engines.py)."""
import multiprocessing as mp
import os

import pytest
import torch
import torch.nn.functional as F

from samacore import resample as engine
from samacore.resample import TapSource, plan_taps, resample
from samacore.sampling import FragmentGrid, _grid_positions, _mask_parts, make_mask

NATIVE_BUILT = engine._cresample is not None


@pytest.fixture(autouse=True, params=["torch", "native"])
def cpu_engine(request):
    """Every test of this module runs on both engines (the C kernel only where it is built)."""
    if request.param == "native" and not NATIVE_BUILT:
        pytest.skip("samacore._cresample is not built")
    before = engine._CHOSEN
    engine.set_backend(request.param)
    yield request.param
    engine._CHOSEN = before


def reference(video, t, size):
    """PyTorch's own float32 bilinear resize of frame ``t`` (the semantics every plan must reproduce, tap
    positions and weights included: a float64 resize places taps slightly differently)."""
    return F.interpolate(video[:, t:t + 1].float(), size=size, mode="bilinear", align_corners=False)[:, 0].double()


def random_source(grid, sizes, n, gen):
    """A TapSource for ``n`` frames rescaled to ``sizes`` (list of (h, w)) with random in-range cell offsets."""
    sizes_h = torch.tensor([s[0] for s in sizes])
    sizes_w = torch.tensor([s[1] for s in sizes])
    room_h = (sizes_h // grid.fragments_h - grid.fsize_h).clamp_min(0) + 1
    room_w = (sizes_w // grid.fragments_w - grid.fsize_w).clamp_min(0) + 1
    shape = (n, grid.fragments_h, grid.fragments_w)
    off_h = (torch.rand(shape, generator=gen) * room_h.view(-1, 1, 1)).long()
    off_w = (torch.rand(shape, generator=gen) * room_w.view(-1, 1, 1)).long()
    rows, cols = _grid_positions(grid, sizes_h, sizes_w, off_h, off_w)
    return TapSource(sizes_h, sizes_w, rows, cols)


def expected(video, source, frame_idx, grid):
    """The sample the slow way: resize each frame fully, then cut the cells out."""
    c = video.shape[0]
    out = torch.empty(c, len(frame_idx), grid.out_h, grid.out_w, dtype=torch.float64)
    for n, t in enumerate(frame_idx):
        size = (int(source.sizes_h[n]), int(source.sizes_w[n]))
        frame = reference(video, t, size)
        for i in range(grid.fragments_h):
            for j in range(grid.fragments_w):
                r, q = source.rows[n, i, j], source.cols[n, i, j]
                out[:, n, i * grid.fsize_h:(i + 1) * grid.fsize_h, j * grid.fsize_w:(j + 1) * grid.fsize_w] = \
                    frame[:, r][:, :, q]
    return out


def channels_last(t, h, w, seed=0, c=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, h, w, c), dtype=torch.uint8, generator=g).permute(3, 0, 1, 2)


GRID = FragmentGrid(3, 4, 8, 6)  # 24 x 24 output, non-square cells


@pytest.mark.parametrize("layout", ["channels_last", "planar", "float64", "strided", "one_channel"])
def test_values_match_interpolate_in_every_layout(layout):
    video = channels_last(4, 61, 77, seed=1)
    if layout == "planar":
        video = video.contiguous()
    elif layout == "float64":
        video = video.double()
    elif layout == "strided":  # every other column and frame of a larger decode
        video = channels_last(8, 61, 154, seed=1)[:, ::2, :, ::2]
    elif layout == "one_channel":
        video = video[:1]
    gen = torch.Generator().manual_seed(3)
    # downscales, the identity (a copy) and an upscale, all in one plan
    sizes = [(30, 40), (61, 77), (50, 33), (70, 90)]
    source = random_source(GRID, sizes, 4, gen)
    plan = plan_taps(video, [source])
    assert [part.kind for part in plan.parts] == [["blend", "copy", "blend", "blend"]]
    # taps are kept per output row and per output column (separable), not per pixel
    assert plan.top.shape == (4, 3 * 8 * 4) and plan.pair.shape == (4, 3 * 4 * 6)
    assert plan.parts[0].row.shape == (24 * 4,)  # one run per output row of each cell
    frames = [3, 0, 2, 1]
    got = resample(video, plan, list(range(4)), frames)
    assert got.dtype == torch.float32 and got.shape == (video.shape[0], 4, 24, 24)
    want = expected(video, source, frames, GRID)
    assert (got.double() - want).abs().max() < 2e-4
    # the copy geometry is exact, bit for bit
    assert torch.equal(got[:, 1], want[:, 1].float())


def test_edges_and_one_pixel_wide_frames():
    grid = FragmentGrid(1, 1, 4, 1)
    for w in (1, 2):
        video = channels_last(2, 9, w, seed=w)
        source = TapSource(torch.tensor([4, 9]), torch.tensor([w, w]),
                           torch.arange(4).view(1, 1, 1, 4).repeat(2, 1, 1, 1) + torch.tensor([0, 5]).view(2, 1, 1, 1),
                           torch.full((2, 1, 1, 1), w - 1))
        got = resample(video, plan_taps(video, [source]), [0, 1], [0, 1])
        assert (got.double() - expected(video, source, [0, 1], grid)).abs().max() < 2e-4


def test_mask_reads_each_pixel_from_its_own_source():
    grid = FragmentGrid(2, 2, 8, 8)
    video = channels_last(2, 40, 50, seed=4)
    gen = torch.Generator().manual_seed(5)
    full = random_source(grid, [(40, 50)] * 2, 2, gen)
    scaled = random_source(grid, [(20, 25), (33, 41)], 2, gen)
    for kind in ("window", "patch"):
        mask = make_mask(kind, grid)
        plan = plan_taps(video, [full, scaled], _mask_parts(kind, grid))
        assert len(plan.parts) == 4 and [part.kind[0] for part in plan.parts] == ["copy", "blend", "blend", "copy"]
        got = resample(video, plan, [0, 1], [0, 1])
        want = torch.where(mask, expected(video, full, [0, 1], grid), expected(video, scaled, [0, 1], grid))
        assert (got.double() - want).abs().max() < 2e-4
    # an irregular mask works too (one weight per pixel instead of per run)
    odd = torch.rand(16, 16, generator=gen) < 0.5
    got = resample(video, plan_taps(video, [full, scaled], choice=odd), [0, 1], [0, 1])
    want = torch.where(odd, expected(video, full, [0, 1], grid), expected(video, scaled, [0, 1], grid))
    assert (got.double() - want).abs().max() < 2e-4


def test_threads_do_not_change_values():
    video = channels_last(16, 90, 120, seed=6)
    grid = FragmentGrid(3, 3, 16, 16)
    source = random_source(grid, [(60, 80)] * 8 + [(90, 120)] * 8, 16, torch.Generator().manual_seed(7))
    plan = plan_taps(video, [source])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = resample(video, plan, list(range(16)), list(range(16)))
        torch.set_num_threads(2)
        two = resample(video, plan, list(range(16)), list(range(16)))
        assert torch.get_num_threads() == 2  # restored after the pool ran
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_inference_mode_in_and_out():
    """Scoring samples inside inference mode, training outside: reused buffers and helper threads follow suit."""
    video = channels_last(4, 50, 60, seed=3)
    source = random_source(FragmentGrid(2, 2, 8, 8), [(30, 40)] * 4, 4, torch.Generator().manual_seed(2))
    plan = plan_taps(video, [source])
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                inside = resample(video, plan, list(range(4)), list(range(4)))
            outside = resample(video, plan, list(range(4)), list(range(4)))
            assert inside.is_inference() and not outside.is_inference()
            assert torch.equal(inside, outside)
    finally:
        torch.set_num_threads(before)


def _sample_in_child(queue):
    # OpenMP itself is not fork-safe once the parent ran parallel regions (DataLoader workers run one intra-op
    # thread for that reason): torch ops here run on one thread, and only resample's own pool uses two.
    torch.set_num_threads(1)
    video = channels_last(4, 50, 60, seed=8)
    grid = FragmentGrid(2, 2, 8, 8)
    source = random_source(grid, [(30, 40)] * 4, 4, torch.Generator().manual_seed(9))
    plan = plan_taps(video, [source])
    torch.set_num_threads(2)
    out = resample(video, plan, list(range(4)), list(range(4)))
    queue.put(float(out.sum()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_pool_survives_fork():
    """A DataLoader worker forked after the parent sampled with threads must not wait on dead threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        video = channels_last(4, 50, 60, seed=8)
        grid = FragmentGrid(2, 2, 8, 8)
        source = random_source(grid, [(30, 40)] * 4, 4, torch.Generator().manual_seed(9))
        parent = float(resample(video, plan_taps(video, [source]), list(range(4)), list(range(4))).sum())
    finally:
        torch.set_num_threads(before)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_sample_in_child, args=(queue,))
    child.start()
    try:
        child.join(60)
        assert child.exitcode == 0
        assert queue.get(timeout=5) == parent
    finally:
        if child.is_alive():
            child.kill()


def test_plan_for_another_layout_is_refused():
    video = channels_last(2, 30, 40)
    source = random_source(GRID, [(24, 30)] * 2, 2, torch.Generator().manual_seed(1))
    plan = plan_taps(video, [source])
    with pytest.raises(ValueError, match="row steps"):
        resample(video.contiguous(), plan, [0, 1], [0, 1])


def test_reads_outside_the_video_are_refused():
    """The C kernel trusts the plan: a plan for other frames, or indices past the video, fail with a message."""
    video = channels_last(2, 30, 40)
    source = random_source(GRID, [(24, 30)] * 2, 2, torch.Generator().manual_seed(1))
    plan = plan_taps(video, [source])
    taller = channels_last(2, 60, 40)  # same row steps, more rows
    with pytest.raises(ValueError, match="made for 30x40 frames"):
        resample(taller, plan, [0, 1], [0, 1])
    with pytest.raises(ValueError, match=r"frame indices must lie in \[0, 2\)"):
        resample(video, plan, [0, 1], [0, 2])
    with pytest.raises(ValueError, match="geometries in"):
        resample(video, plan, [0, 2], [0, 1])
    with pytest.raises(ValueError, match="float32"):
        resample(video, plan, [0, 1], [0, 1], out=torch.empty(3, 2, 24, 24, dtype=torch.float64))


def test_no_frames_give_an_empty_sample():
    from samacore.sampling import sama_sample, sama_variant, sample_fragments
    video = channels_last(0, 50, 60)
    grid = FragmentGrid(2, 2, 8, 8)
    none = torch.zeros(0, dtype=torch.int64)
    assert sample_fragments(video, grid, none, none, none.view(0, 2, 2), none.view(0, 2, 2)).shape == (3, 0, 16, 16)
    rel = torch.full((2, 2, 0), 0.5)
    assert sama_sample(video, grid, sama_variant("sama-spm"), rel, rel, 2).shape == (3, 0, 16, 16)


def test_tables_on_another_device_are_refused():
    """A CPU video with a plan whose tables live elsewhere (here ``meta``, standing in for CUDA) never reaches the
    C kernel, which would dereference device pointers."""
    import dataclasses

    video = channels_last(2, 30, 40)
    source = random_source(GRID, [(24, 30)] * 2, 2, torch.Generator().manual_seed(1))
    plan = plan_taps(video, [source])
    assert engine.plan_devices(plan) == {torch.device("cpu")}
    moved = dataclasses.replace(plan, wx=plan.wx.to("meta"))
    with pytest.raises(ValueError, match=r"the tap plan's tables are on meta, the video on cpu"):
        resample(video, moved, [0, 1], [0, 1])
    part = dataclasses.replace(plan.parts[0], dest=plan.parts[0].dest.to("meta"))
    with pytest.raises(ValueError, match="tables are on meta"):
        resample(video, dataclasses.replace(plan, parts=[part] + list(plan.parts[1:])), [0, 1], [0, 1])


def test_every_table_is_made_on_the_videos_device():
    """A plan's tables are made on its video's device, never on the default one: a CUDA video's plan once kept its
    run tables on the CPU, so every sampling of a CUDA tensor was refused as a plan on another device. No GPU is
    lent to the tests, so the default device stands in for the CPU of that case (``meta``: tables made without
    naming the video's device land there), with all three kinds of parts and both engines."""
    grid = FragmentGrid(2, 2, 8, 8)
    video = channels_last(2, 40, 50, seed=4)
    gen = torch.Generator().manual_seed(5)
    full = random_source(grid, [(40, 50)] * 2, 2, gen)
    scaled = random_source(grid, [(20, 25), (33, 41)], 2, gen)
    odd = torch.rand(16, 16, generator=gen) < 0.5
    plans = {"one source": lambda: plan_taps(video, [full]),
             "parts": lambda: plan_taps(video, [full, scaled], _mask_parts("window", grid)),
             "irregular mask": lambda: plan_taps(video, [full, scaled], choice=odd)}
    for name, make in plans.items():
        want = resample(video, make(), [0, 1], [1, 0])
        with torch.device("meta"):
            plan = make()
            assert engine.plan_devices(plan) == {torch.device("cpu")}, name
            got = resample(video, plan, [0, 1], [1, 0])
        assert got.device == video.device and torch.equal(got, want), name
