"""Tests of the xformers attention plugin. The core suite runs them too (tests/test_xformers.py loads
this file) wherever rmtzoo-xformers is installed."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
import rmtzoo
import torch
from rmtzoo.attention import eager_attention, resolve_attention
from rmtzoo.placements import layout_mask

from rmtzoo_xformers import _probe, available, layout_bias, xformers_attention

T, M, C = 5, 3, 4  # segment, memory, cache lengths: key lengths 5..15, mostly not multiples of 8 (padding)
# (n_read, n_write) of each placement in rmtzoo.placements
PLACEMENTS = {"none": (0, 0), "read_write": (M, M), "shared": (M, 0)}
LAYOUTS = [
    pytest.param(p, c, causal, reads, id=f"{p}-cache{c}-{'causal' if causal else 'bidir'}-{reads=}")
    for p, c, causal, reads in itertools.product(PLACEMENTS, (0, C), (True, False), (True, False))
]


def _mask(placement, n_cache, causal, memory_reads_cache):
    n_read, n_write = PLACEMENTS[placement]
    return layout_mask(n_read, T, n_write, n_cache, causal=causal, memory_reads_cache=memory_reads_cache)


def _dense(attn_bias, shape):
    """What xformers adds to the scores for ``attn_bias``, as a float tensor of ``shape``."""
    if attn_bias is None:
        return torch.zeros(shape)
    if isinstance(attn_bias, torch.Tensor):
        return attn_bias.expand(shape)
    return attn_bias.materialize(shape, dtype=torch.float32, device="cpu")


@pytest.fixture
def xformers_importable():
    pytest.importorskip("xformers", reason="xformers is not installed: its bias classes cannot be built")


TINY_XL = {"kind": "transformer_xl", "vocab_size": 13, "n_layer": 1, "n_head": 2, "d_model": 16, "d_head": 8}


def _env():
    # entry points on, nothing blocked: exactly what an installed plugin meets
    return {k: v for k, v in os.environ.items() if not k.startswith("RMTZOO_")}


# -- (1) layout_bias equals the eager additive mask plus the bias ------------------------------------------
@pytest.mark.parametrize("with_bias", [False, True], ids=["mask-only", "mask+bias"])
@pytest.mark.parametrize("placement,n_cache,causal,memory_reads_cache", LAYOUTS)
def test_layout_bias_matches_eager_mask(
    xformers_importable, placement, n_cache, causal, memory_reads_cache, with_bias
):
    mask = _mask(placement, n_cache, causal, memory_reads_cache)  # [S, C+S]
    bias = torch.randn(2, 1, *mask.shape) if with_bias else None  # [B, 1, S, C+S]
    expected = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))  # [S, C+S]
    if bias is not None:
        expected = expected + bias  # [B, 1, S, C+S]
    got = layout_bias(mask, bias)
    assert torch.equal(_dense(got, expected.shape), expected)
    if isinstance(got, torch.Tensor):
        assert got.stride(-1) == 1 and got.stride(-2) % 8 == 0  # rows aligned for xformers' vector loads


@pytest.mark.parametrize("n_cache", [0, C])
def test_plain_causal_layout_uses_xformers_bias_class(xformers_importable, n_cache):
    from xformers.ops.fmha import attn_bias as xb

    mask = _mask("none", n_cache, True, False)  # [T, C+T]
    assert isinstance(layout_bias(mask), xb.AttentionBias)
    assert isinstance(layout_bias(mask, torch.zeros(1, 1, *mask.shape)), torch.Tensor)  # a bias forces dense
    assert layout_bias(_mask("none", n_cache, False, False)) is None  # nothing masked: no bias at all


@pytest.mark.parametrize("with_bias", [False, True], ids=["mask-only", "mask+bias"])
def test_per_sample_padding_mask_is_dense_per_row(with_bias):
    """A batch with padding gives one mask per sample [B, Q, K]: a dense [B, 1, Q, K] additive bias."""
    layout = _mask("read_write", C, True, False)  # [S, C+S]
    masks = layout.expand(2, *layout.shape).clone()  # [2, S, C+S]
    masks[1, :, C + M] = False  # sample 1: its first segment token is padding
    bias = torch.randn(2, 2, *layout.shape) if with_bias else None  # [B, H, S, C+S]
    expected = torch.zeros(masks.shape).masked_fill(~masks, float("-inf"))[:, None]  # [B, 1, S, C+S]
    if bias is not None:
        expected = expected + bias
    got = layout_bias(masks, bias)
    assert isinstance(got, torch.Tensor) and torch.equal(got, expected)
    assert got.stride(-1) == 1 and got.stride(-2) % 8 == 0


def test_dense_bias_keeps_gradient():
    mask = _mask("read_write", C, True, True)  # [S, C+S]
    bias = torch.randn(1, 2, *mask.shape, requires_grad=True)  # [1, H, S, C+S]
    layout_bias(mask, bias).sum().backward()
    assert bias.grad is not None and torch.equal(bias.grad, torch.ones_like(bias))


# -- (2) available() and build_model where the kernel cannot run --------------------------------------------
def test_available_is_none_or_one_line_reason():
    reason = available()
    assert reason is None or (isinstance(reason, str) and reason.strip() and "\n" not in reason)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_available_reason_without_cuda():
    reason = available()
    assert isinstance(reason, str) and reason
    assert "CUDA" in reason or "not installed" in reason


def test_probe_reason_names_the_failure(xformers_importable):
    # xformers has no CPU kernels, so the probe fails on CPU everywhere; the reason must be one line.
    reason = _probe("cpu")
    assert isinstance(reason, str) and reason and "\n" not in reason
    assert reason.startswith("xformers ")


def test_build_model_raises_unavailable_with_reason():
    reason = available()
    if reason is None:
        pytest.skip("the xformers kernel runs here")
    config = {
        "backbone": TINY_XL,
        "memory": {"kind": "read_write", "num_tokens": 2},
        "recurrence": {"kind": "rmt"},
        "attention": {"kind": "xformers"},
        "segment": {"length": 4},
    }
    with pytest.raises(rmtzoo.UnavailableError) as info:
        rmtzoo.build_model(config, registry=rmtzoo.Registry(environ={}))
    assert "attention.kind" in str(info.value) and reason in str(info.value)


# -- (3) the kernel against eager attention ----------------------------------------------------------------
def _reference_memory_efficient_attention(query, key, value, attn_bias=None, p=0.0, scale=None):
    """Stands in for xformers' CUDA op on CPU: same [B, M, H, K] layout and input checks, plain math."""
    from xformers.ops.fmha.common import Inputs

    Inputs(query, key, value, attn_bias, p, scale).validate_inputs()  # xformers' own shape rules
    if isinstance(attn_bias, torch.Tensor):
        assert attn_bias.stride(-1) == 1 and attn_bias.stride(-2) % 8 == 0, attn_bias.stride()
    q, k, v = (t.transpose(1, 2) for t in (query, key, value))  # [B, H, M, K]
    bias = _dense(attn_bias, (*q.shape[:3], k.shape[2]))  # [B, H, Q, K]
    return eager_attention(q, k, v, bias=bias, scale=scale).transpose(1, 2)  # [B, Q, H, K]


@pytest.mark.parametrize("bias_batch", [None, 1, 2], ids=["mask-only", "mask+broadcast-bias", "mask+bias"])
@pytest.mark.parametrize("placement,n_cache,causal,memory_reads_cache", LAYOUTS)
def test_kernel_plumbing_on_cpu(
    xformers_importable, monkeypatch, placement, n_cache, causal, memory_reads_cache, bias_batch
):
    """Layout changes, bias shapes and alignment of the call into xformers, checked on CPU."""
    import xformers.ops

    monkeypatch.setattr(xformers.ops, "memory_efficient_attention", _reference_memory_efficient_attention)
    mask = _mask(placement, n_cache, causal, memory_reads_cache)  # [S, C+S]
    s, k_len = mask.shape
    q, k, v = torch.randn(2, 3, s, 8), torch.randn(2, 3, k_len, 8), torch.randn(2, 3, k_len, 8)  # [B, H, S|K, Dh]
    bias = None if bias_batch is None else torch.randn(bias_batch, 3, s, k_len, requires_grad=True)
    got = xformers_attention(q, k, v, bias=bias, mask=mask, scale=0.3)  # [B, H, S, Dh]
    torch.testing.assert_close(got, eager_attention(q, k, v, bias=bias, mask=mask, scale=0.3))


@pytest.mark.gpu
@pytest.mark.parametrize("bias_batch", [None, 1, 2], ids=["mask-only", "mask+broadcast-bias", "mask+bias"])
@pytest.mark.parametrize("placement,n_cache,causal,memory_reads_cache", LAYOUTS)
def test_kernel_matches_eager(placement, n_cache, causal, memory_reads_cache, bias_batch):
    reason = available()
    if reason is not None:
        pytest.skip(reason)
    gen = torch.Generator().manual_seed(0)
    mask = _mask(placement, n_cache, causal, memory_reads_cache).cuda()  # [S, C+S]
    s, k_len = mask.shape
    b, h, dh = 2, 3, 16

    def rand(*shape):
        return torch.randn(*shape, generator=gen).cuda().requires_grad_()

    q, k, v = rand(b, h, s, dh), rand(b, h, k_len, dh), rand(b, h, k_len, dh)  # [B, H, S|K, Dh]
    bias = None if bias_batch is None else rand(bias_batch, h, s, k_len)  # [B|1, H, S, K]
    inputs = [t for t in (q, k, v, bias) if t is not None]
    got = xformers_attention(q, k, v, bias=bias, mask=mask, scale=0.3)  # [B, H, S, Dh]
    want = eager_attention(q, k, v, bias=bias, mask=mask, scale=0.3)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)
    grad = torch.randn(got.shape, generator=gen).cuda()
    grads = zip(torch.autograd.grad(got, inputs, grad), torch.autograd.grad(want, inputs, grad), strict=True)
    for g, w in grads:
        torch.testing.assert_close(g, w, atol=1e-3, rtol=1e-3)


# -- (4) discovery through the entry point ------------------------------------------------------------------
def test_registered_through_entry_point():
    registry = rmtzoo.Registry(entry_points=True, environ={})
    assert "xformers" in registry.names("attention_backends")
    assert registry.provider("attention_backends", "xformers") == "xformers"
    priority = {s.name: s.priority for s in registry.specs("attention_backends")}
    assert priority["xformers"] > priority["sdpa"]
    info = {p.name: p for p in registry.plugins()}["xformers"]
    assert info.source == "entry point" and "rmtzoo_register_attention_backends" in info.hooks


def test_cli_plugins_lists_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "rmtzoo.cli", "plugins"], capture_output=True, text=True, env=_env(), check=True
    ).stdout
    line = next(line for line in out.splitlines() if line.split()[:1] == ["xformers"])
    assert "entry point" in line and "rmtzoo-xformers" in line


# -- (5) auto never picks an unavailable xformers -----------------------------------------------------------
def test_auto_picks_xformers_only_where_available():
    registry = rmtzoo.Registry(environ={})
    picked = resolve_attention("auto", registry).name
    assert (picked == "xformers") == (available() is None)
    model = rmtzoo.build_model({"backbone": TINY_XL, "segment": {"length": 4}}, registry=registry)
    assert model.attention_name == picked
