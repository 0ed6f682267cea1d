"""Contract tests: every registered component of every axis, through the public kit ``rmtzoo.testing``.

The suites themselves live in ``rmtzoo/testing`` so that a plugin's own tests run the same checks; here
they run over the built-ins, installed entry points and the fixture plugin directory. A component
registered by a plugin is covered the moment it is registered; the paper-specific checks follow.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _combos import REGISTRY

import rmtzoo
import rmtzoo.testing as kit
from rmtzoo.attention import eager_attention, resolve_attention
from rmtzoo.placements import layout_mask
from rmtzoo.testing._contract import _random_attention_inputs, build_backbone, build_placement

B, S = 2, 7


class TestEveryComponent(kit.BackboneContract, kit.PlacementContract, kit.RecurrenceContract, kit.AttentionContract):
    @classmethod
    def make_registry(cls):
        return REGISTRY


def test_builtin_placements_use_the_documented_layout():
    for spec in REGISTRY.specs("memory_placements"):
        if spec.name in {"read_write", "shared", "none"}:
            placement = build_placement(spec)
            n = placement.num_memory
            mask = placement.mask(3, 2, causal=True, memory_reads_cache=True)
            expected = layout_mask(
                placement.n_read, 3, placement.n_write, 2, causal=True, memory_reads_cache=True
            )
            assert torch.equal(mask, expected)
            assert (placement.n_read, placement.n_write) == {
                "read_write": (n, n),
                "shared": (n, 0),
                "none": (0, 0),
            }[spec.name]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eager_attention_is_plain_softmax_attention(dtype):
    q, k, v, bias, mask = _random_attention_inputs(1, dtype)
    scores = (q.double() @ k.double().transpose(-1, -2)) * 0.5 + bias.double()
    scores = scores.masked_fill(~mask, float("-inf"))
    ref = torch.softmax(scores, -1) @ v.double()
    out = eager_attention(q, k, v, bias=bias, mask=mask, scale=0.5)
    assert out.dtype == dtype
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(out.double(), ref, **tol)


def test_auto_resolves_to_the_best_available_backend():
    chosen = resolve_attention("auto", REGISTRY)
    assert chosen.available() is None
    available = [
        s for s in REGISTRY.specs("attention_backends") if s.name != "auto" and s.available() is None
    ]
    best = max(s.priority for s in available)
    # auto stays itself (a per-call choice of eager or sdpa) where a built-in kernel ranks highest
    sdpa = REGISTRY.get("attention_backends", "sdpa")
    assert chosen.priority == best or (chosen.name == "auto" and sdpa.priority == best)
    for spec in REGISTRY.specs("attention_backends"):
        if spec.name != "auto":
            assert resolve_attention(spec.name, REGISTRY) is spec
    config = {
        "backbone": {
            "kind": "transformer_xl",
            "vocab_size": 5,
            "n_layer": 1,
            "d_model": 8,
            "d_head": 4,
            "n_head": 1,
            "d_inner": 8,
        },
        "segment": {"length": 2},
        "attention": {"kind": "auto"},
    }
    assert rmtzoo.build_model(config, registry=REGISTRY).attention_name == chosen.name


# -- Transformer-XL specifics (PAPER.md) ------------------------------------------------------------------
def test_adaptive_softmax_head_gives_log_probabilities():
    spec = REGISTRY.get("backbones", "transformer_xl")
    bb, _ = build_backbone(spec, adaptive_cutoffs=(4, 9), vocab_size=13)
    bb = bb.float()
    torch.manual_seed(0)
    for p in bb.adaptive.parameters():  # non-zero cluster rows and biases, so every term matters
        torch.nn.init.normal_(p, 0.0, 0.5)
    ids = torch.randint(0, 13, (B, S))
    hidden = bb(bb.embed(ids)).hidden
    logits = bb.logits(hidden)
    assert logits.shape == (B, S, 13)
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(B, S), rtol=1e-5, atol=1e-5)
    targets = torch.arange(B * S).view(B, S) % 13  # every cluster
    nll = bb.nll(hidden, targets)
    torch.testing.assert_close(nll, -logits.gather(-1, targets[..., None])[..., 0], rtol=1e-5, atol=1e-5)
    # nll still is the cross-entropy of its logits when read as (unnormalised) scores
    torch.testing.assert_close(
        nll, F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(B, S)
    )


PAPER_COPY_MODEL = {
    "vocab_size": 12,
    "n_layer": 4,
    "n_head": 4,
    "d_model": 128,
    "d_head": 64,
    "d_inner": 256,
}


@pytest.mark.parametrize("m", [1, 10])
def test_parameter_count_matches_the_paper(m):
    """PAPER.md section 2: 923,148 parameters for the copy/reverse model; RMT adds m x 128."""
    base = {"backbone": {"kind": "transformer_xl", **PAPER_COPY_MODEL}, "segment": {"length": 24}}
    model = rmtzoo.build_model(base, registry=REGISTRY)
    assert sum(p.numel() for p in model.parameters()) == 923_148
    rmt = {**base, "memory": {"kind": "read_write", "num_tokens": m}, "recurrence": {"kind": "rmt"}}
    model = rmtzoo.build_model(rmt, registry=REGISTRY)
    assert sum(p.numel() for p in model.parameters()) == 923_148 + m * 128
