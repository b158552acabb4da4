"""VQA model: Video Swin with gated relative position biases, head and DiViDe-Add evaluator.

Most tests use the tiny registered config ``swin_nano_grpb`` (same code path as ``swin_tiny_grpb``).
"""
import hashlib

import pytest
import torch

from samavqa.models import DiViDeAddEvaluator, VQAHead, backbone_names, build_backbone
from samavqa.models import swin3d
from samavqa.models.swin3d import (
    adaptive_window_size,
    build_fragment_gate,
    build_shift_mask,
    clamp_window,
    gather_tokens,
    relative_position_index,
    sliced_relative_index,
    window_geometry,
)

NANO = "swin_nano_grpb"
NANO_OUT = 192


def seeded_weights_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Deterministic, non-trivial weights (all bias tables non-zero), by sorted state-dict name."""
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    with torch.no_grad():
        for k in sorted(sd):
            v = sd[k]
            if not v.is_floating_point():
                continue
            z = torch.randn(v.shape, generator=g)
            if k.endswith("bias_table"):
                v.copy_(0.5 * z)
            elif k.endswith("weight") and "norm" in k.split(".")[-2]:
                v.copy_(1.0 + 0.1 * z)
            elif v.dim() >= 2:
                v.copy_(z / v[0].numel() ** 0.5)
            else:
                v.copy_(0.05 * z)
    return model


def nano(seed=0, **kw):
    return seeded_weights_(build_backbone(NANO, **kw), seed).eval()


# ------------------------------------------------------------------------------------------ geometry
def test_relative_position_index_encodes_offsets():
    win = (3, 4, 5)
    idx = relative_position_index(win)
    n = 3 * 4 * 5
    assert idx.shape == (n, n)
    centre = (win[0] - 1) * (2 * win[1] - 1) * (2 * win[2] - 1) + (win[1] - 1) * (2 * win[2] - 1) + win[2] - 1
    assert torch.all(idx.diagonal() == centre)
    assert torch.equal(idx + idx.t(), torch.full_like(idx, 2 * centre))  # offset(p,q) = -offset(q,p)
    assert int(idx.max()) == (2 * 3 - 1) * (2 * 4 - 1) * (2 * 5 - 1) - 1 and int(idx.min()) == 0
    # built once per window and handed out as copies: a caller that changes its index changes no other
    idx.zero_()
    again = relative_position_index(win)
    assert int(again.max()) > 0 and again.data_ptr() != idx.data_ptr()
    with torch.device("meta"):  # a model built on the meta device still gets the values
        assert torch.equal(relative_position_index(win), again)


def test_sliced_index_keeps_each_offset_on_its_table_row():
    base, small = (8, 7, 7), (4, 3, 5)
    rows = sliced_relative_index(base, small).view(60, 60)
    # decode the base table row back into (dd, dh, dw) and compare with the small window's coordinates
    dw = rows % 13 - 6
    dh = (rows // 13) % 13 - 6
    dd = rows // 169 - 7
    c = torch.stack(torch.meshgrid(*(torch.arange(s) for s in small), indexing="ij")).flatten(1)
    rel = c[:, :, None] - c[:, None, :]
    assert torch.equal(torch.stack([dd, dh, dw]), rel)


def test_adaptive_window_and_clamping():
    assert adaptive_window_size((8, 7, 7), (32, 224, 224), (32, 224, 224)) == (8, 7, 7)
    assert adaptive_window_size((8, 7, 7), (16, 128, 160), (32, 224, 224)) == (4, 4, 5)
    assert adaptive_window_size((8, 7, 7), (2, 16, 16), (32, 224, 224)) == (1, 1, 1)  # never 0
    # an axis no longer than the window becomes one window and is not shifted
    assert clamp_window((16, 7, 7), (8, 7, 7), (4, 3, 3)) == ((8, 7, 7), (4, 0, 0))
    assert clamp_window((4, 14, 3), (8, 7, 7), (4, 3, 3)) == ((4, 7, 3), (0, 3, 0))


def test_fragment_gate_is_l1_distance_of_fragment_cells():
    # (1, 4, 4) fragment grid stretched over 8x8 tokens: token (h, w) is in cell (h // 2, w // 2)
    gate = build_fragment_gate((2, 8, 8), (2, 4, 4), (0, 0, 0))
    assert gate.shape == (1 * 2 * 2, 1, 32, 32) and gate.dtype == torch.int8  # small integers, exact
    coords = torch.stack(torch.meshgrid(torch.arange(2), torch.arange(4), torch.arange(4), indexing="ij")).flatten(1)
    # window 0 covers rows/cols 0..3 -> cells 0..1
    cell = coords[1:] // 2
    expect = (cell[:, :, None] - cell[:, None, :]).abs().sum(0).float()
    assert torch.equal(gate[0, 0].float(), expect)
    assert set(gate.unique().tolist()) == {0.0, 1.0, 2.0}  # not clipped to {0, 1}
    # a shifted gate is the gate of the rolled coordinate map: window 0 now starts at token (1, 1)
    shifted = build_fragment_gate((2, 8, 8), (2, 4, 4), (0, 1, 1))
    cell = (coords[1:] + 1) // 2
    assert torch.equal(shifted[0, 0].float(), (cell[:, :, None] - cell[:, None, :]).abs().sum(0).float())
    with pytest.raises(ValueError, match="int8"):  # gates are stored exactly in int8, which bounds the window
        build_fragment_gate((1, 128, 128), (1, 64, 66), (0, 0, 0))


def test_shift_mask_blocks_only_wrapped_regions():
    assert build_shift_mask((4, 8, 8), (2, 4, 4), (0, 0, 0)) is None
    m = build_shift_mask((4, 8, 8), (2, 4, 4), (1, 2, 2))
    assert m.shape == (2 * 2 * 2, 1, 32, 32) and m.dtype == torch.int8
    assert set(m.unique().tolist()) == {-100.0, 0.0}
    assert torch.equal(m, m.transpose(-1, -2))
    assert torch.all(m[0] == 0)  # first window never touches the wrapped border
    assert torch.all(m[-1].diagonal(dim1=-2, dim2=-1) == 0) and (m[-1] < 0).any()
    # no shift along D: tokens at different depths of one window are not separated by the mask
    m_hw = build_shift_mask((4, 8, 8), (2, 4, 4), (0, 2, 2))
    first_frame, second_frame = m_hw[-1, 0, :16, :16], m_hw[-1, 0, 16:, 16:]
    assert torch.equal(first_frame, second_frame) and torch.equal(m_hw[-1, 0, :16, 16:], first_frame)


def test_cached_geometry_equals_fresh_build():
    swin3d.clear_geometry_cache()
    args = ((4, 15, 16), (8, 7, 7), (2, 3, 4), (1, 1, 2), torch.device("cpu"))
    geo = window_geometry(*args)
    assert window_geometry(*args) is geo  # cache hit
    n = 2 * 3 * 4  # stored with rows padded to 32 elements
    assert geo.gate.shape[-1] == geo.shift_mask.shape[-1] == 32 and geo.rel_index.numel() == n * 32
    assert geo.gate.dtype == geo.shift_mask.dtype == torch.int8  # exact for these values, a quarter of the memory
    assert torch.equal(geo.gate[..., :n], build_fragment_gate(*args[0:1], *args[2:4]))
    assert torch.equal(geo.shift_mask[..., :n], build_shift_mask(*args[0:1], *args[2:4]))
    assert torch.equal(geo.rel_index.view(n, 32)[:, :n].flatten(), sliced_relative_index((8, 7, 7), (2, 3, 4)))
    # the model computes the same with a cold cache
    bb, x = nano(), torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        warm = bb(x)
        swin3d.clear_geometry_cache()
        cold = bb(x)
    assert torch.equal(warm, cold)


@pytest.mark.parametrize("shift", [(0, 0, 0), (1, 1, 2)])
def test_window_gather_is_roll_then_partition_and_back(shift):
    """The blocks cut the rolled feature map into windows with one gather (``geo.order``) and put the tokens back
    with its inverse: the same tensors, and the same gradients, as ``roll`` + partition and back."""
    padded, window = (4, 6, 8), (2, 3, 4)
    geo = window_geometry(padded, (8, 7, 7), window, shift, torch.device("cpu"))
    x = torch.randn(2, *padded, 5, requires_grad=True)
    weight = torch.randn(2 * 4 * 6 * 8, 5)

    def reference(t):
        rolled = torch.roll(t, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        return swin3d._partition(rolled, window).reshape(2, -1, 5)

    ours = gather_tokens(x.reshape(2, -1, 5), geo.order, geo.inverse)
    theirs = reference(x)
    assert torch.equal(ours, theirs)
    assert torch.equal(gather_tokens(ours, geo.inverse, geo.order).view_as(x), x)  # and back: the identity
    g_ours, = torch.autograd.grad((ours * weight.view(2, -1, 5)).sum(), x)
    g_theirs, = torch.autograd.grad((theirs * weight.view(2, -1, 5)).sum(), x)
    assert torch.equal(g_ours, g_theirs)


@pytest.fixture
def onednn_calls(monkeypatch):
    """The post-op name (``"gelu"``, ``"none"``) of every oneDNN linear call the model makes, in order."""
    calls = []
    onednn = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(swin3d.torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(a[3]) or onednn(*a),
                        raising=False)
    return calls


def test_linears_run_as_onednn_only_in_fp32_cpu_inference(onednn_calls):
    """fp32 CPU inference runs every linear layer as oneDNN's (fc1 + GELU as one op): the same GEMMs, equal to a few
    ulps (the libraries may block the sums differently); training, autocast and other dtypes take nn.Linear's path."""
    torch.manual_seed(0)
    mlp, x = swin3d.Mlp(16, 64), torch.randn(2, 3, 5, 5, 16)
    assert isinstance(mlp.fc2, torch.nn.Linear) and set(mlp.state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight",
                                                                              "fc2.bias"}
    plain = torch.nn.functional.linear(torch.nn.functional.gelu(torch.nn.functional.linear(
        x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)
    with torch.inference_mode():
        out = mlp(x)
    assert onednn_calls == ["gelu", "none"] and torch.allclose(out, plain, rtol=0, atol=1e-6)
    assert torch.equal(mlp(x), plain) and len(onednn_calls) == 2  # grad enabled (training): the plain path
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        mlp(x)
    with torch.no_grad():
        mlp.double()(x.double())
    assert len(onednn_calls) == 2


def test_the_cpu_inference_paths_give_the_plain_paths_output(onednn_calls, monkeypatch):
    """The whole backbone in CPU inference (oneDNN linears, attention per sample) against the same model with every
    fast path off: within float rounding, on a paper-layout (shifted, gated) model of two samples."""
    torch.manual_seed(0)
    net = build_backbone(NANO).eval()
    x = torch.randn(2, 3, 16, 64, 64)
    with torch.inference_mode():
        fast = net(x)
    # one oneDNN call per linear layer (each MLP's fc1 with its GELU)
    assert len(onednn_calls) == sum(isinstance(m, torch.nn.Linear) for m in net.modules()) > 0
    monkeypatch.setattr(swin3d, "_eager_cpu_inference", lambda x: False)
    with torch.inference_mode():
        plain = net(x)
    assert fast.shape == plain.shape and torch.allclose(fast, plain, rtol=0, atol=1e-5 * float(plain.abs().max()))


# ------------------------------------------------------------------------------------------ backbone
def test_registry_names_and_unknown_name():
    assert {"swin_tiny_grpb", "swin_tiny_grpb_m", NANO} <= set(backbone_names())
    with pytest.raises(ValueError, match="swin_tiny_grpb_m"):
        build_backbone("swin_huge")


@pytest.fixture(scope="module")
def full_size_model():
    return DiViDeAddEvaluator(backbone_size="swin_tiny_grpb", backbone_preserve_keys="fragments",
                              backbone={"fragments": {}}, vqa_head={"in_channels": 768, "hidden_channels": 64})


def test_full_size_state_dict_matches_release_layout(full_size_model):
    sd = full_size_model.state_dict()
    lines = sorted(f"{k}:{tuple(v.shape)}" for k, v in sd.items())
    # fingerprint of the key names and shapes of the released SAMA / FAST-VQA checkpoints
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == \
        "94de06c19d05f04e9429bfd16d8e6808b35c63e3d9be0db5a515add6cc42278b"
    assert "fragments_backbone.layers.3.blocks.0.attn.fragment_position_bias_table" not in sd
    assert torch.all(build_backbone(NANO).layers[0].blocks[0].attn.fragment_position_bias_table == 0)  # init
    m = build_backbone("swin_tiny_grpb_m")
    assert not any("fragment_position_bias_table" in k for k in m.state_dict())
    assert m.state_dict()["layers.0.blocks.0.attn.relative_position_bias_table"].shape == (343, 3)


# Values produced by the original SAMA backbone + head (fastvqa/models, use_checkpoint off) with
# seeded_weights_(seed=0) and torch.manual_seed(0); randn(1, 3, 16, 128, 160) as input.
ORIGINAL_FULL_SIZE = {"map_mean": 0.3177333, "map_first": [0.293479, 0.638267, 0.050245, 0.214486, 0.317454],
                      "feat_abs_mean": 0.7998609}


def test_full_size_forward_matches_original_values(full_size_model):
    model = seeded_weights_(full_size_model)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 128, 160)
    with torch.no_grad():
        model.eval()
        feat = model.fragments_backbone(x)
        score_map = model.vqa_head(feat)
    assert feat.shape == (1, 768, 8, 4, 5) and score_map.shape == (1, 1, 8, 4, 5)
    ref = ORIGINAL_FULL_SIZE
    assert score_map.mean().item() == pytest.approx(ref["map_mean"], abs=1e-4)
    assert score_map.flatten()[:5].tolist() == pytest.approx(ref["map_first"], abs=1e-4)
    assert feat.abs().mean().item() == pytest.approx(ref["feat_abs_mean"], abs=1e-4)


def test_shapes_with_padding_and_odd_sizes():
    bb = nano()
    with torch.no_grad():
        out = bb(torch.randn(2, 3, 8, 64, 64))
        odd = bb(torch.randn(1, 3, 7, 70, 90))  # patch padding, window padding, odd merging
    assert out.shape == (2, NANO_OUT, 4, 2, 2)
    assert odd.shape == (1, NANO_OUT, 4, 3, 3)
    assert torch.isfinite(odd).all()


def test_batch_elements_are_independent():
    # per-window masks are repeated over the batch; each sample must get exactly its own result
    bb, x = nano(), torch.randn(3, 3, 8, 64, 64)
    with torch.no_grad():
        together = bb(x)
        alone = torch.cat([bb(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_gate_is_irrelevant_when_fragment_tables_equal_relative_tables():
    # rpb * g + fpb * (1 - g) == rpb when fpb == rpb, i.e. a model without fragment tables
    gated = nano()
    plain = build_backbone(NANO, frag_biases=(False, False, False, False)).eval()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if "fragment" not in k})
    with torch.no_grad():
        for name, p in gated.named_parameters():
            if name.endswith("fragment_position_bias_table"):
                p.copy_(gated.get_parameter(name.replace("fragment", "relative")))
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gated(x), plain(x), atol=1e-5, rtol=1e-5)
        # ... while different fragment tables do change the output
        table = gated.layers[0].blocks[0].attn.fragment_position_bias_table
        table.add_(torch.randn(table.shape, generator=torch.Generator().manual_seed(5)))
        assert (gated(x) - plain(x)).abs().max() > 1e-3


def test_gated_bias_formula_in_attention():
    attn = nano().layers[1].blocks[1].attn
    geo = window_geometry((4, 8, 8), (8, 7, 7), (2, 4, 4), (1, 2, 2), torch.device("cpu"))
    n = 32
    idx = geo.rel_index.view(n, -1)[:, :n]
    gate, shift_mask = geo.gate[..., :n].float(), geo.shift_mask[..., :n].float()
    rpb = attn.relative_position_bias_table[idx].permute(2, 0, 1)
    fpb = attn.fragment_position_bias_table[idx].permute(2, 0, 1)
    expect = rpb * gate + fpb * (1 - gate) + shift_mask
    bias = attn.attention_bias(geo, n)
    torch.testing.assert_close(bias, expect, atol=1e-5, rtol=0)
    assert bias.stride(-2) % swin3d.MASK_ALIGN == 0  # rows aligned for the fused kernels (n = 32 is already)


def test_bias_in_another_dtype_keeps_its_aligned_rows():
    """Under bf16 autocast the mask takes q's dtype: cast whole and then cut, its rows stay aligned (the cut view,
    cast, was a copy with rows of N = 18 elements, which the fused attention kernels pad again on every call)."""
    attn = nano().layers[1].blocks[1].attn
    geo = window_geometry((4, 6, 6), (8, 7, 7), (2, 3, 3), (1, 1, 1), torch.device("cpu"))
    bias, half = attn.attention_bias(geo, 18), attn.attention_bias(geo, 18, torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.shape == bias.shape == (geo.gate.shape[0], attn.num_heads, 18, 18)
    assert torch.equal(half, bias.to(torch.bfloat16))
    assert bias.stride(-2) % swin3d.MASK_ALIGN == 0 and half.stride(-2) % swin3d.MASK_ALIGN == 0


def test_the_attention_gets_aligned_masks_under_bf16_autocast(monkeypatch):
    """What the attention receives in a bf16 forward: masks of q's dtype whose rows stay aligned (windows of
    4x7x7 = 196 tokens here, not a multiple of the alignment)."""
    seen, real = [], swin3d.window_attention

    def spy(q, k, v, mask):
        seen.append((q.dtype, mask.dtype, mask.shape[-1], mask.stride(-2)))
        return real(q, k, v, mask)

    monkeypatch.setattr(swin3d, "window_attention", spy)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        nano()(torch.randn(1, 3, 8, 64, 64))
    assert any(n % swin3d.MASK_ALIGN for *_, n, _ in seen)
    assert all(q == m == torch.bfloat16 and row % swin3d.MASK_ALIGN == 0 for q, m, _, row in seen), seen


def _per_sample_mask_attention(self, x, geo):
    """The attention as it was before the shared-mask layout: the per-window mask repeated for every sample."""
    bn, n, c = x.shape
    qkv = self.qkv(x).view(bn, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    mask = self.attention_bias(geo, n).contiguous()
    if mask.shape[0] not in (1, bn):
        mask = mask.unsqueeze(0).expand(bn // mask.shape[0], *mask.shape).reshape(bn, *mask.shape[1:])
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return self.proj(out.transpose(1, 2).reshape(bn, n, c))


def _outputs_with_both_layouts(model, x, monkeypatch):
    with torch.no_grad():
        shared = model(x)
        monkeypatch.setattr(swin3d.WindowAttention3D, "forward", _per_sample_mask_attention)
        repeated = model(x)
        monkeypatch.undo()
    return shared, repeated


@pytest.mark.parametrize("name, shape", [(NANO, (3, 3, 8, 64, 64)), (NANO, (2, 3, 7, 70, 90)),
                                         ("swin_tiny_grpb_m", (2, 3, 8, 64, 64))])
def test_shared_window_mask_is_bit_identical_to_per_sample_masks(name, shape, monkeypatch):
    model = seeded_weights_(build_backbone(name)).eval()
    shared, repeated = _outputs_with_both_layouts(model, torch.randn(shape), monkeypatch)
    assert torch.equal(shared, repeated)


def test_shared_window_mask_is_bit_identical_at_paper_size(full_size_model, monkeypatch):
    # the paper's input (N = 392 tokens per window, rows padded to 400), two samples so the mask is broadcast
    model = seeded_weights_(full_size_model).fragments_backbone.eval()
    shared, repeated = _outputs_with_both_layouts(model, torch.randn(2, 3, 32, 224, 224), monkeypatch)
    assert shared.shape == (2, 768, 16, 7, 7) and torch.equal(shared, repeated)


def test_window_attention_calls_per_sample_only_in_cpu_inference(monkeypatch):
    # CPU inference calls the kernel once per sample on views (no copies); training, tracing / export (the sample
    # count stays dynamic there) make one batched call; the values are the same bits
    torch.manual_seed(0)
    b, nw, heads, n, hd = 3, 4, 2, 20, 8
    q, k, v = torch.randn(b * nw, n, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
    mask = torch.randn(nw, heads, n, n)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **kw: calls.append(a[0].shape[0]) or sdpa(*a, **kw))

    def run(grad: bool):
        calls.clear()
        with torch.set_grad_enabled(grad):
            return swin3d.window_attention(q, k, v, mask), list(calls)

    (inference, inference_calls), (training, training_calls) = run(False), run(True)
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    traced, traced_calls = run(False)
    assert inference_calls == [nw] * b and training_calls == traced_calls == [b]
    assert inference.shape == (b * nw, n, heads, hd)
    assert torch.equal(inference, training) and torch.equal(inference, traced)


def test_drop_path_draws_like_torchvision_stochastic_depth():
    torchvision_ops = pytest.importorskip("torchvision.ops")
    x = torch.randn(64, 5, 3)
    ours, theirs = swin3d.DropPath(0.3).train(), torchvision_ops.StochasticDepth(0.3, "row").train()
    torch.manual_seed(7)
    a = ours(x)
    torch.manual_seed(7)
    assert torch.equal(a, theirs(x))
    dropped = (a == 0).flatten(1).all(1)
    assert 0 < int(dropped.sum()) < 64 and torch.allclose(a[~dropped], x[~dropped] / 0.7)  # per sample, rescaled
    assert torch.equal(ours.eval()(x), x)


def test_backbone_module_does_not_import_torchvision():
    import subprocess
    import sys

    code = "import sys, samavqa.models.swin3d; print('torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_checkpointing_gives_identical_outputs_and_grads():
    x = torch.randn(2, 3, 8, 64, 64)
    results = []
    for ck in (False, True):
        bb = seeded_weights_(build_backbone(NANO, checkpoint=ck)).train()  # drop path active
        torch.manual_seed(123)
        out = bb(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in bb.named_parameters()}))
    (o1, g1), (o2, g2) = results
    torch.testing.assert_close(o1, o2, atol=1e-6, rtol=1e-6)
    assert g1.keys() == g2.keys()
    for n in g1:
        torch.testing.assert_close(g1[n], g2[n], atol=1e-5, rtol=1e-4, msg=n)
    assert g1["layers.0.blocks.0.attn.fragment_position_bias_table"].abs().sum() > 0  # the tables train


def test_bf16_autocast_close_to_fp32():
    bb, x = nano(), torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        ref = bb(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = bb(x)
    assert low.dtype in (torch.float32, torch.bfloat16) and torch.isfinite(low.float()).all()
    assert (low.float() - ref).abs().mean() < 0.05 * ref.abs().mean()


def test_multi_and_layer_outputs():
    bb, x = nano(), torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        multi = bb(x, multi=True)
        first = bb(x, layer=0)
    assert multi.shape == (1, 24 + 48 + 96 + 192, 4, 2, 2)  # inputs of the four stages
    assert first.shape == (1, 24, 4, 16, 16)


# ------------------------------------------------------------------------------------------ head + evaluator
def test_vqa_head_shapes_and_dropout():
    head = VQAHead(in_channels=NANO_OUT, hidden_channels=8)
    x = torch.randn(2, NANO_OUT, 4, 2, 2)
    assert head.eval()(x).shape == (2, 1, 4, 2, 2)
    assert torch.equal(head(x), head(x))
    head.train()
    assert not torch.equal(head(x), head(x))  # dropout 0.5 active in training
    assert sorted(k for k in head.state_dict()) == ["fc_hid.bias", "fc_hid.weight", "fc_last.bias", "fc_last.weight"]


def nano_evaluator(**kw):
    args = dict(backbone_size=NANO, backbone_preserve_keys="fragments", backbone={"fragments": {}},
                vqa_head={"in_channels": NANO_OUT})
    args.update(kw)
    return seeded_weights_(DiViDeAddEvaluator(**args))


def test_evaluator_inference_and_training_outputs():
    model = nano_evaluator().train()
    x = torch.randn(2, 3, 8, 64, 64)
    score_map = model({"fragments": x})
    assert model.training  # previous mode restored
    assert score_map.shape == (2, 1, 4, 2, 2) and not score_map.requires_grad
    pooled = model({"fragments": x}, pooled=True)
    torch.testing.assert_close(pooled, score_map.mean((1, 2, 3, 4)))
    model.eval()
    maps = model({"fragments": x}, inference=False, reduce_scores=False)
    assert model.training and isinstance(maps, list) and len(maps) == 1 and maps[0].requires_grad
    scores, feats = model({"fragments_a": x}, return_pooled_feats=True)  # suffix after "_" names the branch
    assert feats["fragments_a"].shape == (2, NANO_OUT)


def test_two_branches_add_and_divide_head():
    model = nano_evaluator(backbone_preserve_keys="fragments,resize", backbone={"fragments": {}, "resize": {}},
                           divide_head=True).eval()
    assert {"fragments_backbone", "resize_backbone", "fragments_head", "resize_head"} <= set(dict(model.named_children()))
    a, b = torch.randn(1, 3, 8, 64, 64), torch.randn(1, 3, 8, 64, 64)
    both = model({"fragments": a, "resize": b})
    with torch.no_grad():
        sep = model.fragments_head(model.fragments_backbone(a)) + model.resize_head(model.resize_backbone(b))
    torch.testing.assert_close(both, sep)


def test_evaluator_options():
    divided = DiViDeAddEvaluator(backbone_size="divided", backbone_preserve_keys="fragments",
                                 backbone={"fragments": {"type": NANO, "checkpoint": True, "pretrained": None},
                                           "resize": {"type": "not-built"}},
                                 vqa_head={"in_channels": NANO_OUT})
    assert divided.fragments_backbone.checkpoint and not hasattr(divided, "resize_backbone")
    with pytest.raises(ValueError, match=r"swin_nano_grpb.*swin_tiny_grpb"):
        DiViDeAddEvaluator(backbone_size="swin_giant", backbone_preserve_keys="fragments", backbone={"fragments": {}})
    with pytest.raises(ValueError, match="window_sise"):
        nano_evaluator(backbone={"fragments": {"window_sise": 4}})
    with pytest.raises(ValueError, match="type is required"):
        nano_evaluator(backbone_size="divided")
    with pytest.raises(ValueError, match="var"):
        nano_evaluator(var=True)


def test_model_trains_after_inference_mode_scoring_of_the_same_geometry():
    """Window geometry is cached per shape: a first forward under ``torch.inference_mode`` (how vqa.py scores)
    must not leave inference tensors in the cache for a later training step of the same shape."""
    swin3d.clear_geometry_cache()
    model = build_backbone(NANO)
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.inference_mode():
        model(x)
    model(x).mean().backward()
    assert model.layers[0].blocks[0].attn.relative_position_bias_table.grad is not None
