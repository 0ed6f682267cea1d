"""bf16 without casts: under bf16 autocast the Transformer-XL attention runs in bf16 from the query to the
output (biases and the layout mask in the compute dtype, the mask folded into the position bias, no
``masked_fill`` and no dtype copy of a ``[B, H, Q, K]`` tensor in forward or backward), fp32 results are
those of the unfolded formulation, and the committed small-preset results keep their config hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import rmtzoo
from rmtzoo import attention

REGISTRY = rmtzoo.Registry(environ={})
B, H, T, M, C = 2, 2, 5, 3, 4
CONFIG = {
    "backbone": {"kind": "transformer_xl", "vocab_size": 13, "n_layer": 2, "n_head": H, "d_model": 16,
                 "d_head": 8, "d_inner": 32, "dropout": 0.0},
    "memory": {"kind": "read_write", "num_tokens": M},
    "recurrence": {"kind": "rmt_xl", "cache_len": C, "bptt_depth": 1},
    "attention": {"kind": "eager"},
    "segment": {"length": T},
    "seed": 2,
}
SMALL_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "reports" / "small"


def _model(**attention_kind):
    config = {**CONFIG, "attention": attention_kind or CONFIG["attention"]}
    model = rmtzoo.build_model(config, registry=REGISTRY)
    with torch.no_grad():  # non-zero position and content biases, so both terms are exercised
        g = torch.Generator().manual_seed(5)
        for p in (model.backbone.r_w_bias, model.backbone.r_r_bias):
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def _ids(n=3 * T - 2):
    return torch.randint(0, 13, (B, n), generator=torch.Generator().manual_seed(0))


class _ScoreOps(TorchDispatchMode):
    """Records (op, input dtypes) for every op touching a 4-d tensor with K = cache + segment + memory keys."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        if any(a.dim() == 4 and a.shape[-2] == 2 * M + T and a.shape[-1] == C + 2 * M + T for a in flat):
            self.ops.append((func.__name__, {a.dtype for a in flat}))
        return func(*args, **kwargs)


def test_bf16_attention_has_no_casts_and_no_masked_fill_on_scores_in_forward_or_backward():
    model = _model()
    ids = _ids(2 * T)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, state = model.step(ids[:, :T], model.initial_state(B))  # fills the cache: K = C + S
        with _ScoreOps() as seen:
            out, _ = model.step(ids[:, T:], state, return_logits=False, targets=ids[:, T:])
            out.nll.mean().backward()
    names = [name for name, _ in seen.ops]
    assert any(n.startswith("softmax") or n.startswith("_softmax") for n in names), names  # it saw the scores
    assert not [n for n in names if "masked_fill" in n], names
    assert not [n for n in names if n.startswith("_to_copy") or n.startswith("copy")], names
    assert all(dtypes <= {torch.bfloat16, torch.bool} for _, dtypes in seen.ops), seen.ops


def test_the_kernel_gets_bf16_queries_and_bias_with_the_mask_folded_in():
    model = _model()
    calls = []
    kernel = model.backbone.layers[0].attention

    def spy(q, k, v, **kw):
        calls.append((q.dtype, kw["bias"].dtype, kw["mask"], kw["scale"]))
        return kernel(q, k, v, **kw)

    spy.mask_in_bias = True
    model.backbone.layers[0].attention = spy
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.forward_sequence(_ids())
    assert calls and all(c[:2] == (torch.bfloat16, torch.bfloat16) for c in calls)
    assert all(c[2] is None and c[3] == 1.0 for c in calls)  # mask folded, scale folded into q


@pytest.mark.parametrize("kind", ["eager", "sdpa", "auto"])
def test_fp32_folded_mask_equals_the_bool_mask_path(kind):
    """A kernel without ``mask_in_bias`` gets the bool mask (the formulation before folding)."""
    model = _model(kind=kind)
    ids = _ids()
    out = model.forward_sequence(ids).logits
    for layer in model.backbone.layers:
        layer.attention = lambda *a, _k=layer.attention, **kw: _k(*a, **kw)  # no mask_in_bias: bool mask
    ref = model.forward_sequence(ids).logits
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_bf16_softmax_in_bf16_stays_close_to_fp32():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 40, 16, generator=g) for _ in range(3))
    bias = torch.randn(2, 3, 40, 40, generator=g) * 4
    bias[..., 30:] = float("-inf")  # masked keys as -inf entries of the bias
    want = attention.eager_attention(q.double(), k.double(), v.double(), bias=bias.double(), scale=0.25)
    got = attention.eager_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), bias=bias.bfloat16(), scale=0.25)
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=0.05, atol=0.05)


def test_committed_small_preset_results_keep_their_config_hashes():
    records = [(p, json.loads(p.read_text())) for p in sorted(SMALL_RESULTS.rglob("*.json"))]
    records = [(p, r) for p, r in records if isinstance(r, dict) and {"hash", "config"} <= set(r)]
    assert len(records) > 50
    for path, record in records:
        config = rmtzoo.load_config(record["config"], registry=REGISTRY)
        assert config.content_hash() == record["hash"] == path.stem, path
