"""Video Swin Transformer (3D) with FAST-VQA's gated relative position biases (GRPB).

Layout and semantics follow the backbone that SAMA / FAST-VQA use:

* patch embedding ``2x4x4`` (Conv3d) + LayerNorm, four stages of shifted-window attention blocks with
  patch merging between stages, final LayerNorm; output ``[B, 8*C, T/2, H/32, W/32]``.
* Each attention has the usual ``relative_position_bias_table``; in the stages flagged by ``frag_biases``
  a second table, ``fragment_position_bias_table`` (zeros at start), is mixed in per token pair:
  every token gets a *fragment coordinate* (a ``(1, wh, ww)`` grid stretched by nearest interpolation
  over the padded feature map, rolled with the window shift) and with ``g = |dd| + |dh| + |dw|`` of the
  two tokens' fragment coordinates the bias is ``rpb * g + fpb * (1 - g)``.  ``g`` is an integer that is
  *not* clipped to ``{0, 1}`` -- that is how the published model was trained, so we keep it.
* The window adapts to the input: ``(Wd*T//32, Wh*H//224, Ww*W//224)`` then clamped to each stage's
  feature size (a clamped axis gets no shift); the relative-position index is the base window's index
  sliced to the smaller window.  The shift stays ``base_window // 2``.

Implementation notes (speed, same function):

* Attention runs through ``F.scaled_dot_product_attention`` with one additive float mask that holds the
  relative/fragment bias and the ``-100`` shifted-window mask.  The mask is per window, ``[nW, nH, N, N]``, and
  shared by the batch instead of repeated per sample (at batch 12 in stage 1 that repeat was 2.8 GB, kept for
  backward): :func:`window_attention` lays q/k/v out ``[B, nW*nH, N, hd]`` for one call, or in CPU inference
  calls the kernel once per sample on views of the qkv projection (no copies of q/k/v or of the output).
  Its rows are allocated ``N`` rounded up to 16 elements and sliced (N = 392 is not a multiple of 16), so the
  fused GPU kernels take it as is instead of padding a copy on every call.
* Everything that depends only on geometry (sliced index, fragment gate ``g``, shift mask, the token order of the
  rolled windows) is cached per ``(padded size, window, shift, device)``; the learnable tables are gathered on
  every call. The cyclic shift and the window partition are one gather of the tokens (and one back), not a roll
  (three concatenations) plus a permuted copy.
* ``checkpoint=True`` recomputes each block in the backward pass (activation memory for compute).

Parameter and buffer names equal the original's, so released checkpoints load unchanged. The model follows
the backbone interface of :mod:`samavqa.models.backbones` (``forward_features``, ``num_features``, and
``checkpoint_filter`` for Kinetics-400 / bare-backbone files); its configurations are registered at the end.
"""
from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as torch_checkpoint
from torch import Tensor, nn
from samacore.options import OptionError

from .backbones import register_backbone

Triple = Tuple[int, int, int]

__all__ = [
    "SwinConfig",
    "SwinTransformer3D",
    "adaptive_window_size",
    "clamp_window",
    "relative_position_index",
    "sliced_relative_index",
    "build_shift_mask",
    "build_fragment_gate",
    "window_geometry",
    "clear_geometry_cache",
    "DropPath",
    "window_attention",
]

#: mask rows start at multiples of this many elements (what the fused attention kernels need to use it in place)
MASK_ALIGN = 16


# ----------------------------------------------------------------------------------------------------------
# Geometry helpers (pure functions of sizes; cached below)
# ----------------------------------------------------------------------------------------------------------
def adaptive_window_size(base_window: Sequence[int], input_size: Sequence[int], base_input_size: Sequence[int]) -> Triple:
    """Window scaled with the input: ``base_window[i] * input_size[i] // base_input_size[i]``.

    Axes that would become 0 (inputs far smaller than ``base_input_size``; the original divides by zero
    there) are kept at 1.
    """
    return tuple(max(1, (w * x) // b) for w, x, b in zip(base_window, input_size, base_input_size))  # type: ignore[return-value]


def clamp_window(feat_size: Sequence[int], window: Sequence[int], shift: Sequence[int]) -> Tuple[Triple, Triple]:
    """An axis whose feature size is <= the window uses the whole axis as window and is not shifted."""
    w, s = list(window), list(shift)
    for i, n in enumerate(feat_size):
        if n <= w[i]:
            w[i], s[i] = n, 0
    return tuple(w), tuple(s)  # type: ignore[return-value]


def relative_position_index(window: Sequence[int]) -> Tensor:
    """Standard 3D Swin index ``[N, N]`` (``N = Wd*Wh*Ww``) into a ``(2Wd-1)(2Wh-1)(2Ww-1)`` table (a new tensor)."""
    return _relative_position_index(tuple(window)).clone()


@functools.lru_cache(maxsize=8)
def _relative_position_index(window: Triple) -> Tensor:
    # Every block of a model registers the same index: built once (20 ms per block for an 8x7x7 window), handed
    # out as clones so that no caller can alter the cached one. On the CPU also while a model is built on the meta
    # device (samacore.checkpoint.build_with_weights): the cache must hold values.
    wd, wh, ww = window
    cpu = torch.device("cpu")
    grid = torch.stack(torch.meshgrid(torch.arange(wd, device=cpu), torch.arange(wh, device=cpu),
                                      torch.arange(ww, device=cpu), indexing="ij"))
    flat = grid.flatten(1)  # [3, N]
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0)  # [N, N, 3], p - q
    rel = rel + torch.tensor([wd - 1, wh - 1, ww - 1], device=cpu)
    strides = torch.tensor([(2 * wh - 1) * (2 * ww - 1), 2 * ww - 1, 1], device=cpu)
    return (rel * strides).sum(-1)


def sliced_relative_index(base_window: Triple, window: Triple) -> Tensor:
    """Flat ``[N*N]`` index of a ``window <= base_window`` into the base window's bias table.

    Taking the sub-window ``[:d, :h, :w]`` of both token axes of the base index keeps every relative
    offset pointing at the same table row it has in the full window.
    """
    full = relative_position_index(base_window).view(*base_window, *base_window)
    d, h, w = window
    return full[:d, :h, :w, :d, :h, :w].reshape(-1).contiguous()


def _partition(x: Tensor, window: Triple) -> Tensor:
    """``[B, D, H, W, C]`` -> ``[B*nW, Wd*Wh*Ww, C]`` (windows in D, H, W raster order)."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)


def window_order(padded: Triple, window: Triple, shift: Triple) -> Tensor:
    """``[Dp*Hp*Wp]`` long: for each position of the windows (``[nW, N]`` flattened, as :func:`_partition` lays them
    out), the flat index of the token of the padded map ``(Dp, Hp, Wp)`` rolled by ``-shift`` that lands there."""
    tokens = torch.arange(math.prod(padded)).view(1, *padded, 1)
    return _partition(torch.roll(tokens, shifts=tuple(-s for s in shift), dims=(1, 2, 3)), window).flatten()


class _GatherTokens(torch.autograd.Function):
    """``x[:, order]`` for a permutation ``order`` of the token axis, whose gradient is the gather by the inverse
    permutation (``index_select``'s own backward is a scatter-add: atomics on GPUs, not deterministic)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, order: Tensor, inverse: Tensor) -> Tensor:
        ctx.inverse, ctx.order = inverse, order
        return x.index_select(1, order)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, None, None]:
        return _GatherTokens.apply(grad, ctx.inverse, ctx.order), None, None


def gather_tokens(x: Tensor, order: Tensor, inverse: Tensor) -> Tensor:
    """``[B, L, C]`` -> ``[B, L, C]`` reordered by the permutation ``order`` (``inverse`` is its inverse).

    One pass over the tokens for what a roll (three concatenations in PyTorch) and a window partition copy did.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return _GatherTokens.apply(x, order, inverse)
    return x.index_select(1, order)  # inference, tracing and ONNX export: a plain gather


def _region_labels(size: int, window: int, shift: int) -> Tensor:
    """Per-position region id along one axis after a cyclic shift (labels [0, size-w), [size-w, size-s), [size-s, size)).

    Written as successive slice assignments so that degenerate cases (shift 0, shift >= window) label
    positions exactly as the usual Swin construction does.
    """
    lab = torch.zeros(size, dtype=torch.long)
    for i, sl in enumerate((slice(-window), slice(-window, -shift), slice(-shift, None))):
        lab[sl] = i
    return lab


def aligned_length(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`MASK_ALIGN`."""
    return -(-n // MASK_ALIGN) * MASK_ALIGN


def _pad_last(t: Tensor) -> Tensor:
    """``[..., N]`` -> ``[..., aligned_length(N)]``, zero-padded; the pad columns are computed on but never read."""
    return F.pad(t, (0, aligned_length(t.shape[-1]) - t.shape[-1]))


def build_shift_mask(padded: Triple, window: Triple, shift: Triple, device: Union[torch.device, str] = "cpu") -> Optional[Tensor]:
    """Shifted-window mask, int8 ``[nW, 1, N, N]``: 0 inside one region, -100 across regions; None if no shift."""
    if not any(s > 0 for s in shift):
        return None
    ld, lh, lw = (_region_labels(n, w, s) for n, w, s in zip(padded, window, shift))
    label = ld[:, None, None] * 9 + lh[None, :, None] * 3 + lw[None, None, :]
    win = _partition(label[None, ..., None], window).squeeze(-1)  # [nW, N]
    # built in int8 (exact): a float mask of the first stage is hundreds of MB to write and convert
    mask = (win[:, None, :] != win[:, :, None]).to(torch.int8).mul_(-100)
    return mask.unsqueeze(1).to(device)


def build_fragment_gate(padded: Triple, window: Triple, shift: Triple, device: Union[torch.device, str] = "cpu") -> Tensor:
    """GRPB gate ``g`` as int8 ``[nW, 1, N, N]``: L1 distance of the two tokens' fragment coordinates.

    Fragment coordinates: a ``(1, wh, ww)`` integer grid, nearest-interpolated onto the padded feature
    map ``(D, H, W)`` and rolled by ``-shift`` like the features.  The depth coordinate is always 0.
    """
    _, wh, ww = window
    if wh + ww - 2 > 127:
        raise ValueError(f"window {tuple(window)}: fragment gates up to {wh + ww - 2} do not fit int8 (at most 127)")
    grid = torch.stack(torch.meshgrid(torch.arange(1.0), torch.arange(float(wh)), torch.arange(float(ww)), indexing="ij"))
    coords = F.interpolate(grid[None], size=padded, mode="nearest").to(torch.int8)  # [1, 3, D, H, W]
    coords = coords.permute(0, 2, 3, 4, 1)
    coords = torch.roll(coords, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
    win = _partition(coords, window)  # [nW, N, 3]
    # one [nW, N, N] int8 plane per axis (exact): a [nW, N, N, 3] int64 difference is gigabytes at the first stage
    gate = torch.zeros(win.shape[0], win.shape[1], win.shape[1], dtype=torch.int8)
    for axis in range(3):
        c = win[..., axis]
        gate += (c[:, None, :] - c[:, :, None]).abs_()
    return gate.unsqueeze(1).to(device)


class WindowGeometry(NamedTuple):
    """Cached, non-learnable tensors of one (padded size, window, shift, device).

    The last axis of every ``[.., N, N']`` tensor is padded to ``N' = aligned_length(N)`` (zeros; index 0 in
    ``rel_index``) so that the attention mask built from them has aligned rows; ``[..., :N]`` is the real part.
    ``gate`` (small integers) and ``shift_mask`` (0 / -100) are stored as int8, exact, a quarter of the memory (and
    of an exported ONNX file, where they are constants); attention casts them to its dtype.
    A NamedTuple (not a custom class) so that ``torch.compile`` sees plain tensors and ints.
    """

    window: Triple
    shift: Triple
    order: Tensor  # [Dp*Hp*Wp] long: padded-map token at each window position (rolled by -shift), window_order
    inverse: Tensor  # [Dp*Hp*Wp] long: the inverse permutation (windows back to the map)
    rel_index: Tensor  # [N*N'] long, into the base table
    gate: Tensor  # [nW, 1, N, N'] int8
    shift_mask: Optional[Tensor]  # [nW, 1, N, N'] int8 or None


_GEOMETRY_CACHE: "OrderedDict[tuple, WindowGeometry]" = OrderedDict()
_GEOMETRY_CACHE_SIZE = 64


def window_geometry(padded: Triple, base_window: Triple, window: Triple, shift: Triple, device: torch.device) -> WindowGeometry:
    """Cached :class:`WindowGeometry` (LRU over the last few dozen configurations)."""
    key = (tuple(padded), tuple(base_window), tuple(window), tuple(shift), str(device))
    geo = _GEOMETRY_CACHE.get(key)
    if geo is None:
        with torch.inference_mode(False):  # cached for later calls, which may train: never inference tensors
            n = math.prod(window)
            shift_mask = build_shift_mask(padded, window, shift, device)
            order = window_order(padded, window, shift)
            geo = WindowGeometry(
                window=tuple(window),
                shift=tuple(shift),
                order=order.to(device),
                inverse=torch.argsort(order).to(device),
                rel_index=_pad_last(sliced_relative_index(tuple(base_window), tuple(window)).view(n, n)).flatten().to(device),
                gate=_pad_last(build_fragment_gate(padded, window, shift, device)),
                shift_mask=None if shift_mask is None else _pad_last(shift_mask),
            )
        _GEOMETRY_CACHE[key] = geo
        if len(_GEOMETRY_CACHE) > _GEOMETRY_CACHE_SIZE:
            _GEOMETRY_CACHE.popitem(last=False)
    else:
        _GEOMETRY_CACHE.move_to_end(key)
    return geo


def clear_geometry_cache() -> None:
    _GEOMETRY_CACHE.clear()


# ----------------------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------------------
class DropPath(nn.Module):
    """Stochastic depth per sample: in training each sample's residual branch is zeroed with probability ``p`` and
    the kept ones are scaled by ``1 / (1 - p)``; identity in eval mode (torchvision's ``StochasticDepth(p, "row")``,
    same random draws, without importing torchvision)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        noise = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        if keep > 0.0:
            noise.div_(keep)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _eager_cpu_inference(x: Tensor) -> bool:
    """Whether ``x`` flows through an eager CPU forward without gradients: not traced, exported or compiled (where the
    CPU fast paths below have no autograd, no ONNX / dynamo form, or would fix a dimension that stays dynamic)."""
    return (x.device.type == "cpu" and not torch.is_grad_enabled() and not torch.jit.is_tracing()
            and not torch.onnx.is_in_onnx_export() and not torch.compiler.is_compiling())


def _onednn_linear_applies(x: Tensor, weight: Tensor) -> bool:
    """Whether a linear layer on ``x`` may run as oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``): fp32
    eager CPU inference outside autocast."""
    return (_eager_cpu_inference(x) and x.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and torch.backends.mkldnn.is_available())


class Linear(nn.Linear):
    """``nn.Linear`` (the same parameters and state-dict keys) that runs as oneDNN's linear in fp32 eager CPU
    inference: 20-30% faster than PyTorch's default GEMM on the token-major shapes of this model where the input
    size is 384 or more (fc2, proj and patch merging of FAST-VQA-B, measured alone: 0.52 -> 0.40 s over five of
    its shapes), equal where it is small (the first stage's qkv: the same bits). Outputs agree to a few ulps: the
    two libraries block the sums differently. Training, autocast and other dtypes use ``nn.Linear`` itself."""

    def forward(self, x: Tensor) -> Tensor:
        if _onednn_linear_applies(x, self.weight):
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return super().forward(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        if _onednn_linear_applies(x, self.fc1.weight):
            # the same GEMM and exact GELU in one pass over the hidden activations (a third faster on the first
            # stage's [B, 16, 56, 56, 384]; equal to the plain path to a few ulps, tested)
            hidden = torch.ops.mkldnn._linear_pointwise(x, self.fc1.weight, self.fc1.bias, "gelu", [], "none")
        else:
            hidden = self.act(self.fc1(x))
        return self.fc2(hidden)


def window_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """Softmax attention of ``B`` samples' windows with one additive mask per window, shared by the samples.

    q, k, v: ``[B*nW, nH, N, hd]`` (each sample's ``nW`` windows in a row; any strides with a unit last one, e.g.
    views of the qkv projection); mask: ``[nW or 1, nH, N, N]``. Returns ``[B*nW, N, nH, hd]``.
    The mask is never repeated per sample (at batch 12 in stage 1 that would be 2.8 GB, kept for backward).
    """
    nw, total = mask.shape[0], q.shape[0]
    if nw == 1:  # one mask for every window: it broadcasts in one call
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
    if _eager_cpu_inference(q):
        # One call per sample: q/k/v stay views of the projection, and the CPU kernel writes its output as
        # [nW, N, nH, hd] in memory, so only the concatenation copies (bit-identical to the batched call). Training
        # keeps the batched call (its gradients, so every recorded run, stay as they were), GPUs too (one launch),
        # and a traced / exported / compiled graph must not loop over a sample count that stays dynamic.
        return torch.cat([F.scaled_dot_product_attention(q[i:i + nw], k[i:i + nw], v[i:i + nw], attn_mask=mask)
                          .transpose(1, 2) for i in range(0, total, nw)])
    # one call for all samples: q/k/v as [B, nW*nH, N, hd] (copies), the mask [1, nW*nH, N, N] broadcast over them
    _, heads, n, hd = q.shape
    b = total // nw
    q, k, v = (t.reshape(b, nw * heads, n, hd) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.reshape(1, nw * heads, n, n))
    return out.view(b, nw, heads, n, hd).transpose(2, 3).reshape(total, n, heads, hd)


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside 3D windows with (gated) relative position bias.

    The tables are sized for ``base_window``; smaller windows use the sliced index from the geometry.
    """

    def __init__(self, dim: int, base_window: Triple, num_heads: int, qkv_bias: bool = True, frag_bias: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.base_window = tuple(base_window)
        rows = (2 * base_window[0] - 1) * (2 * base_window[1] - 1) * (2 * base_window[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))
        if frag_bias:
            self.fragment_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))
        else:
            self.register_parameter("fragment_position_bias_table", None)
        # Kept for checkpoint compatibility (released weights contain it); the loader checks that it equals
        # the canonical index, which is what forward uses (via the cached geometry).
        self.register_buffer("relative_position_index", relative_position_index(base_window))
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def _gather(self, table: Tensor, index: Tensor, n: int) -> Tensor:
        # [L, nH] -> [nH, N, N']; gathering along the rows of the transposed table avoids a permute copy.
        return table.t().index_select(1, index).view(self.num_heads, n, -1)

    def attention_bias(self, geo: WindowGeometry, n: int, dtype: Optional[torch.dtype] = None) -> Tensor:
        """Additive float mask ``[nW or 1, nH, N, N]``: relative/fragment bias (+ shift mask), in ``dtype``
        (default: the tables').

        A view of ``[.., N, N']`` storage (rows aligned, see :class:`WindowGeometry`), also in another dtype: cast
        whole, then cut (a cut view cast would be a copy with rows of N, unaligned, which the fused kernels pad
        again on every call).
        """
        rel = self._gather(self.relative_position_bias_table, geo.rel_index, n)
        if self.fragment_position_bias_table is not None:
            frag = self._gather(self.fragment_position_bias_table, geo.rel_index, n)
            # rel * g + frag * (1 - g)  ==  frag + g * (rel - frag), then the shift mask added in place: one pass
            # less over [nW, nH, N, N'] than adding it to frag first (the same values where the mask is 0; where it
            # is -100 the bias differs in the last bits, and softmax gives those entries weight exp(-100) either way)
            bias = torch.addcmul(frag, geo.gate.to(rel.dtype), rel - frag)
            if geo.shift_mask is not None:
                bias.add_(geo.shift_mask)
        else:
            bias = rel.unsqueeze(0) if geo.shift_mask is None else rel + geo.shift_mask.to(rel.dtype)
        return bias.to(dtype or bias.dtype)[..., :n]

    def forward(self, x: Tensor, geo: WindowGeometry) -> Tensor:
        """x: ``[B*nW, N, C]`` windows of ``B`` samples (each sample's ``nW`` windows in a row) -> ``[B*nW, N, C]``."""
        bn, n, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).view(bn, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)  # [3, B*nW, nH, N, hd], a view
        mask = self.attention_bias(geo, n, qkv.dtype)
        return self.proj(window_attention(*qkv.unbind(0), mask).reshape(bn, n, c))


class SwinBlock3D(nn.Module):
    """Pre-norm (shifted-)window attention + MLP, each with a residual and stochastic depth."""

    def __init__(self, dim: int, num_heads: int, base_window: Triple, shifted: bool, mlp_ratio: float,
                 qkv_bias: bool, drop_path: float, frag_bias: bool):
        super().__init__()
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, base_window, num_heads, qkv_bias=qkv_bias, frag_bias=frag_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _attend(self, x: Tensor, geo: WindowGeometry) -> Tensor:
        b, d, h, w, c = x.shape
        x = self.norm1(x)
        # pad after the norm (padded tokens are zeros) up to a multiple of the window
        pd, ph, pw = ((-n) % s for n, s in zip((d, h, w), geo.window))
        if pd or ph or pw:
            x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pd))
        # roll by -shift and cut into windows in one gather, attend, then put the tokens back the same way
        windows = gather_tokens(x.reshape(b, -1, c), geo.order, geo.inverse)
        x = self.attn(windows.view(-1, math.prod(geo.window), c), geo)
        x = gather_tokens(x.view(b, -1, c), geo.inverse, geo.order).view(b, d + pd, h + ph, w + pw, c)
        if pd or ph or pw:
            x = x[:, :d, :h, :w]
        return x

    def _forward(self, x: Tensor, geo: WindowGeometry) -> Tensor:
        x = x + self.drop_path(self._attend(x, geo))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: Tensor, geo: WindowGeometry, checkpoint: bool = False) -> Tensor:
        """x: ``[B, D, H, W, C]`` (channels last)."""
        if checkpoint and torch.is_grad_enabled() and x.requires_grad:
            return torch_checkpoint.checkpoint(self._forward, x, geo, use_reentrant=False)
        return self._forward(x, geo)


class PatchMerging(nn.Module):
    """2x2 spatial merge: ``[B, D, H, W, C]`` -> ``[B, D, ceil(H/2), ceil(W/2), 2C]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # order of the four sub-grids matters for checkpoint compatibility: (0,0), (1,0), (0,1), (1,1)
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, base_window: Triple, mlp_ratio: float, qkv_bias: bool,
                 drop_paths: Sequence[float], frag_bias: bool, downsample: bool):
        super().__init__()
        self.base_window = tuple(base_window)
        self.base_shift = tuple(s // 2 for s in base_window)
        self.blocks = nn.ModuleList(
            SwinBlock3D(dim, num_heads, base_window, shifted=(i % 2 == 1), mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                        drop_path=drop_paths[i], frag_bias=frag_bias)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def geometries(self, feat_size: Triple, window: Triple, device: torch.device) -> Tuple[WindowGeometry, WindowGeometry]:
        """(regular, shifted) geometry for features of ``feat_size`` with the requested ``window``."""
        window, shift = clamp_window(feat_size, window, self.base_shift)
        padded = tuple(math.ceil(n / w) * w for n, w in zip(feat_size, window))
        plain = window_geometry(padded, self.base_window, window, (0, 0, 0), device)
        return plain, window_geometry(padded, self.base_window, window, shift, device)

    def forward(self, x: Tensor, geometries: Tuple[WindowGeometry, WindowGeometry], checkpoint: bool = False) -> Tensor:
        """x: ``[B, D, H, W, C]`` -> ``[B, D, H', W', C']`` (merged unless last stage)."""
        plain, shifted = geometries
        for blk in self.blocks:
            x = blk(x, shifted if blk.shifted else plain, checkpoint=checkpoint)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed3D(nn.Module):
    """Conv3d patchify (input zero-padded to a multiple of the patch) + LayerNorm -> channels last."""

    def __init__(self, patch_size: Triple, in_chans: int, embed_dim: int, norm: bool = True):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[B, C, T, H, W]`` -> ``[B, T', H', W', E]``."""
        pt, ph, pw = ((-n) % p for n, p in zip(x.shape[2:], self.patch_size))
        if pt or ph or pw:
            x = F.pad(x, (0, pw, 0, ph, 0, pt))
        x = self.proj(x).permute(0, 2, 3, 4, 1)
        return x if self.norm is None else self.norm(x)


@dataclass(frozen=True)
class SwinConfig:
    """Hyper-parameters of a :class:`SwinTransformer3D`; calling a config builds the model (a backbone builder,
    ``overrides`` replacing fields)."""

    patch_size: Triple = (2, 4, 4)
    in_chans: int = 3
    embed_dim: int = 96
    depths: Tuple[int, ...] = (2, 2, 6, 2)
    num_heads: Tuple[int, ...] = (3, 6, 12, 24)
    window_size: Triple = (8, 7, 7)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.1
    patch_norm: bool = True
    frag_biases: Tuple[bool, ...] = (True, True, True, False)
    base_x_size: Triple = (32, 224, 224)

    def __call__(self, checkpoint: bool = False, **overrides) -> "SwinTransformer3D":
        return SwinTransformer3D(replace(self, **overrides) if overrides else self, checkpoint=checkpoint)


class SwinTransformer3D(nn.Module):
    """Video Swin backbone with GRPB.  ``forward([B, C, T, H, W]) -> [B, C_out, T', H', W']``.

    Args:
        config: architecture (see :class:`SwinConfig`).
        checkpoint: recompute every block in the backward pass (saves activation memory; same values).
    """

    def __init__(self, config: SwinConfig = SwinConfig(), checkpoint: bool = False):
        super().__init__()
        self.config = config
        self.checkpoint = checkpoint
        self.window_size = tuple(config.window_size)
        self.base_x_size = tuple(config.base_x_size)
        self.patch_embed = PatchEmbed3D(config.patch_size, config.in_chans, config.embed_dim, config.patch_norm)
        n_blocks = sum(config.depths)
        # stochastic depth grows with depth (computed on the CPU, also when the model is built on the meta device)
        rates = torch.linspace(0, config.drop_path_rate, n_blocks, device="cpu").tolist()
        self.layers = nn.ModuleList()
        start = 0
        for i, depth in enumerate(config.depths):
            self.layers.append(SwinStage(
                dim=config.embed_dim * 2 ** i, depth=depth, num_heads=config.num_heads[i],
                base_window=self.window_size, mlp_ratio=config.mlp_ratio, qkv_bias=config.qkv_bias,
                drop_paths=rates[start:start + depth], frag_bias=bool(config.frag_biases[i]),
                downsample=i < len(config.depths) - 1,
            ))
            start += depth
        self.num_features = config.embed_dim * 2 ** (len(config.depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def window_for(self, input_size: Sequence[int], adaptive: bool = True) -> Triple:
        """Window (before per-stage clamping) used for an input of ``(T, H, W)``; an input so much larger than
        ``base_x_size`` that the window would outgrow the position-bias tables (built for ``window_size``) is an
        :class:`~samacore.options.OptionError` (clips shaped like each video: ``original``, ``arp_*``)."""
        if not adaptive:
            return self.window_size
        window = adaptive_window_size(self.window_size, input_size, self.base_x_size)
        if any(w > b for w, b in zip(window, self.window_size)):
            size, base = "x".join(map(str, input_size)), "x".join(map(str, self.base_x_size))
            raise OptionError(f"a clip of {size} is too large for this Video Swin, built for {base} clips: its "
                              f"attention window would grow to {window}, past the {tuple(self.window_size)} its "
                              f"position-bias tables cover (the original FAST-VQA / SAMA code fails there too); "
                              f"sample clips of at most {base} (a fixed-size sample type, or smaller size options)")
        return window

    def stage_geometries(self, input_size: Sequence[int], adaptive: bool, device: torch.device) -> list:
        """Cached (regular, shifted) window geometry of every stage for an input of ``(T, H, W)``.

        Plain Python cache look-ups: under ``torch.compile`` they cost a graph break, the compiled graphs receive
        the resulting tensors. (Not marked ``torch.compiler.disable``: the decorator imports ``torch._dynamo``,
        two seconds of every scoring process that never compiles.)
        """
        window = self.window_for(input_size, adaptive)
        size = [math.ceil(n / p) for n, p in zip(input_size, self.config.patch_size)]
        out = []
        for stage in self.layers:
            out.append(stage.geometries(tuple(size), window, device))
            size = [size[0], math.ceil(size[1] / 2), math.ceil(size[2] / 2)]  # patch merging (with padding)
        return out

    def forward_features(self, x: Tensor, multi: bool = False, layer: int = -1,
                         adaptive_window_size: bool = True) -> Tensor:
        """x: ``[B, C, T, H, W]`` (normalised) -> features ``[B, C_out, T/2, H/32, W/32]``.

        ``multi``: concatenate the (trilinearly resized) inputs of every stage instead;
        ``layer >= 0``: return that intermediate (0 = patch embedding, i = output of stage i), un-normed.
        """
        # plain ints: under ONNX tracing sizes are tensors, which would miss the geometry cache
        geometries = self.stage_geometries(tuple(int(n) for n in x.shape[2:]), adaptive_window_size, x.device)
        x = self.patch_embed(x)
        feats = [x]
        for stage, geo in zip(self.layers, geometries):
            x = stage(x, geo, checkpoint=self.checkpoint)
            feats.append(x)
        if multi:
            size = x.shape[1:4]
            return torch.cat([F.interpolate(f.permute(0, 4, 1, 2, 3), size=size, mode="trilinear") for f in feats[:-1]], 1)
        if layer > -1:
            return feats[layer].permute(0, 4, 1, 2, 3)
        return self.norm(x).permute(0, 4, 1, 2, 3)

    forward = forward_features

    def checkpoint_filter(self, state: Mapping[str, Tensor],
                          init_fragment_bias_from_relative: bool = False) -> Tuple[Dict[str, Tensor], List[str]]:
        """Backbone-only weights (Kinetics-400 Video Swin, a bare backbone) -> this model's keys.

        Those files have no ``fragment_position_bias_table``: a missing one starts at zero (SAMA's recipe) or, with
        ``init_fragment_bias_from_relative``, as a copy of the block's relative table (FAST-VQA's recipe).
        """
        state = dict(state)
        own = self.state_dict()
        notes = []
        frag_keys = [k for k in own if k.endswith("fragment_position_bias_table")]
        for k in frag_keys:
            if k in state:
                continue
            rel = k.replace("fragment_position_bias_table", "relative_position_bias_table")
            if init_fragment_bias_from_relative and rel in state:
                state[k] = state[rel].clone()
            else:
                state[k] = torch.zeros_like(own[k])
        if frag_keys:
            notes.append("fragment bias tables " + ("copied from the relative tables" if init_fragment_bias_from_relative
                                                    else "set to zero"))
        return state, notes


# FAST-VQA / SAMA's backbone.
register_backbone("swin_tiny_grpb", SwinConfig())
# FAST-VQA-M: small windows and no fragment tables.
register_backbone("swin_tiny_grpb_m", SwinConfig(window_size=(4, 4, 4), frag_biases=(False, False, False, False)))
# Tiny model with the same code path, for unit tests and smoke runs (768 -> 24*8 = 192 output channels).
register_backbone("swin_nano_grpb", SwinConfig(embed_dim=24, depths=(1, 2, 1, 2), num_heads=(1, 2, 2, 4)))
# Two-stage model for the CPU demo (96 output channels). Trained from scratch on the examplar set, a shallow stack
# learns the low-level cues (blur, down-scaling) within minutes; the 4-stage nano model does not (measured: train
# and held-out SRCC stay near 0 for 1000-1500 steps), its deeper random stages wash those statistics out.
register_backbone("swin_shallow_grpb", SwinConfig(embed_dim=48, depths=(1, 1), num_heads=(2, 4), patch_norm=False,
                                                  drop_path_rate=0.0))
