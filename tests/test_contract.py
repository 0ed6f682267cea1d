"""Contract tests: every registered component of every axis, parametrised from the registry.

A component registered by a plugin (entry point or plugin directory) is covered the moment it is
registered; nothing here names a component except the paper-specific checks at the end.
"""

from __future__ import annotations

import pydantic
import pytest
import torch
import torch.nn.functional as F
from _combos import REGISTRY

import rmtzoo
from rmtzoo.attention import eager_attention, resolve_attention
from rmtzoo.placements import layout_mask

F64 = torch.float64
TIGHT = {"rtol": 1e-9, "atol": 1e-10}


def specs(axis: str, predicate=lambda s: True) -> list:
    return [pytest.param(s, id=s.name) for s in REGISTRY.specs(axis) if predicate(s)]


def eager():
    return REGISTRY.get("attention_backends", "eager").build(rmtzoo.NoParams())


def build_backbone(spec, *, seed: int = 0, **overrides):
    params = spec.params.model_validate({**spec.test_params, **overrides})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = spec.build(params, attention=eager())
    return backbone.to(F64).eval(), spec.capabilities_for(params)


def closure(mask: torch.Tensor) -> torch.Tensor:
    """[S, S] bool: which positions a query can depend on through any number of masked layers."""
    reach = mask | torch.eye(mask.shape[0], dtype=torch.bool)
    while True:
        nxt = (reach.double() @ reach.double()) > 0
        if torch.equal(nxt, reach):
            return reach
        reach = nxt


# -- backbones ------------------------------------------------------------------------------------------
B, S, C = 2, 7, 3


@pytest.mark.parametrize("spec", specs("backbones"))
class TestBackbone:
    def test_protocol_shapes(self, spec):
        bb, _ = build_backbone(spec)
        assert isinstance(bb, torch.nn.Module)
        d, v = bb.d_model, bb.vocab_size
        assert isinstance(d, int) and isinstance(v, int)
        ids = torch.randint(0, v, (B, S))
        x = bb.embed(ids)
        assert x.shape == (B, S, d)
        out = bb(x)
        assert isinstance(out, rmtzoo.BackboneOutput)
        assert out.hidden.shape == (B, S, d) and torch.isfinite(out.hidden).all()
        for h in out.layer_inputs:
            assert h.shape == (B, S, d)
        logits = bb.logits(out.hidden)
        assert logits.shape == (B, S, v) and torch.isfinite(logits).all()

    def test_nll_is_cross_entropy_of_logits(self, spec):
        bb, _ = build_backbone(spec)
        ids = torch.randint(0, bb.vocab_size, (B, S))
        targets = torch.randint(0, bb.vocab_size, (B, S))
        hidden = bb(bb.embed(ids)).hidden
        nll = bb.nll(hidden, targets)
        assert nll.shape == (B, S)
        expected = -torch.log_softmax(bb.logits(hidden).double(), -1).gather(-1, targets[..., None])[..., 0]
        torch.testing.assert_close(nll.double(), expected, rtol=1e-5, atol=1e-6)

    def test_mask_none_is_the_natural_attention(self, spec):
        bb, caps = build_backbone(spec)
        x = bb.embed(torch.randint(0, bb.vocab_size, (B, S)))
        natural = torch.ones(S, S, dtype=torch.bool)
        if caps.causal:
            natural = natural.tril()
        torch.testing.assert_close(bb(x, mask=None).hidden, bb(x, mask=natural).hidden, **TIGHT)
        # causal iff the capabilities say so: the last token changes the first output only when bidirectional
        changed = x.clone()
        # a random (not constant) change: a constant shift vanishes in models that LayerNorm their inputs
        changed[:, -1] += torch.randn(changed[:, -1].shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
        first_same = torch.allclose(bb(x).hidden[:, 0], bb(changed).hidden[:, 0], rtol=0, atol=1e-12)
        assert first_same == caps.causal

    @pytest.mark.parametrize("seed", range(4))
    def test_mask_is_respected(self, spec, seed):
        """Changing a key the mask hides from a query (through every layer) leaves that query's output
        unchanged, and changing a key it can see changes it."""
        bb, _ = build_backbone(spec)
        gen = torch.Generator().manual_seed(seed)
        mask = (torch.rand(S, S, generator=gen) < 0.3) | torch.eye(S, dtype=torch.bool)
        reach = closure(mask)
        x = bb.embed(torch.randint(0, bb.vocab_size, (B, S), generator=gen))
        base = bb(x, mask=mask).hidden
        for key in range(S):
            changed = x.clone()
            changed[:, key] = torch.randn(B, bb.d_model, generator=gen, dtype=x.dtype) * 3
            out = bb(changed, mask=mask).hidden
            for query in range(S):
                if not reach[query, key]:
                    torch.testing.assert_close(out[:, query], base[:, query], rtol=0, atol=1e-12)
                elif mask[query, key]:
                    assert not torch.allclose(out[:, query], base[:, query], rtol=0, atol=1e-12)

    def test_cache(self, spec):
        bb, caps = build_backbone(spec)
        if not caps.accepts_cache:
            pytest.skip(f"{spec.name} takes no cache")
        n_layers = len(bb(bb.embed(torch.randint(0, bb.vocab_size, (B, 1)))).layer_inputs)
        assert n_layers >= 1
        cache = [torch.randn(B, C, bb.d_model, dtype=F64) for _ in range(n_layers)]
        x = bb.embed(torch.randint(0, bb.vocab_size, (B, S)))
        out = bb(x, cache=cache)
        assert out.hidden.shape == (B, S, bb.d_model) and torch.isfinite(out.hidden).all()
        assert len(out.layer_inputs) == n_layers
        assert all(h.shape == (B, S, bb.d_model) for h in out.layer_inputs)
        natural = torch.ones(S, C + S, dtype=torch.bool)
        if caps.causal:
            natural = natural.tril(C)
        torch.testing.assert_close(bb(x, mask=natural, cache=cache).hidden, out.hidden, **TIGHT)
        # the cache is attended to: hiding it changes the output
        hidden_cache = natural.clone()
        hidden_cache[:, :C] = False
        assert not torch.allclose(bb(x, mask=hidden_cache, cache=cache).hidden, out.hidden)

    def test_params_reject_unknown_keys(self, spec):
        assert issubclass(spec.params, rmtzoo.Params)
        spec.params.model_validate(dict(spec.test_params))
        with pytest.raises(pydantic.ValidationError):
            spec.params.model_validate({**spec.test_params, "no_such_option": 1})
        with pytest.raises(rmtzoo.ConfigError, match="no_such_option"):
            rmtzoo.load_config(
                {
                    "backbone": {"kind": spec.name, **spec.test_params, "no_such_option": 1},
                    "segment": {"length": 2},
                },
                registry=REGISTRY,
            )

    def test_same_seed_same_weights(self, spec):
        a, _ = build_backbone(spec, seed=3)
        b, _ = build_backbone(spec, seed=3)
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- memory placements ---------------------------------------------------------------------------------
D = 8


def build_placement(spec, **overrides):
    params = spec.params.model_validate({**spec.test_params, **overrides})
    torch.manual_seed(0)
    return spec.build(params, d_model=D)


def layout(placement, n_tokens: int):
    """Positions of the segment tokens and of the written memory inside the assembled sequence."""
    memory = placement.initial_memory(1)
    s = placement.assemble(memory, torch.zeros(1, n_tokens, D)).shape[1]
    index = torch.arange(s, dtype=torch.float)[None, :, None].expand(1, s, D)
    tokens, written = placement.split(index, n_tokens)
    tok = tokens[0, :, 0].long()
    wr = None if written is None else written[0, :, 0].long()
    return s, tok, wr


@pytest.mark.parametrize("spec", specs("memory_placements"))
class TestPlacement:
    def test_initial_memory(self, spec):
        placement = build_placement(spec)
        assert isinstance(placement, torch.nn.Module)
        m = placement.num_memory
        memory = placement.initial_memory(3)
        if spec.has_memory:
            assert m >= 1 and memory.shape == (3, m, D)
            assert any(p is not None for p in placement.parameters()), "initial memory is learned"
        else:
            assert m == 0 and memory is None

    @pytest.mark.parametrize("n_tokens", [1, 4])
    def test_assemble_split_round_trip(self, spec, n_tokens):
        placement = build_placement(spec)
        memory = placement.initial_memory(2)
        tokens = torch.randn(2, n_tokens, D)
        assembled = placement.assemble(memory, tokens)
        m = placement.num_memory
        assert assembled.shape[0] == 2 and assembled.shape[2] == D
        assert n_tokens + m <= assembled.shape[1] <= n_tokens + 2 * m
        out_tokens, written = placement.split(assembled, n_tokens)
        assert torch.equal(out_tokens, tokens)
        if spec.has_memory:
            assert torch.equal(written, memory)
        else:
            assert written is None

    @pytest.mark.parametrize("causal", [True, False])
    @pytest.mark.parametrize("n_cache", [0, 3])
    @pytest.mark.parametrize("reads", [True, False])
    def test_mask_shape_and_no_future_leak(self, spec, causal, n_cache, reads):
        if spec.requires_causal and not causal:
            pytest.skip(f"{spec.name} requires a causal backbone")
        placement = build_placement(spec)
        n_tokens = 4
        s, tok, _ = layout(placement, n_tokens)
        mask = placement.mask(n_tokens, n_cache, causal=causal, memory_reads_cache=reads)
        assert mask.dtype == torch.bool and mask.shape == (s, n_cache + s)
        assert mask.any(-1).all(), "every query must see at least one key"
        if causal:
            # segment tokens see the whole cache, and no segment token can learn a later one's value
            assert mask[tok, :n_cache].all()
            reach = closure(mask[:, n_cache:])
            seg = reach[tok][:, tok]
            assert torch.equal(seg, torch.ones(n_tokens, n_tokens, dtype=torch.bool).tril())

    def test_read_write_table(self, spec):
        """PAPER.md 1.2 exactly, for a placement with separate read and write blocks."""
        placement = build_placement(spec)
        n_tokens = 3
        s, tok, wr = layout(placement, n_tokens)
        if wr is None or s != n_tokens + 2 * placement.num_memory:
            pytest.skip(f"{spec.name} has no separate read and write blocks")
        m = placement.num_memory
        read = torch.arange(m)
        assert torch.equal(tok, torch.arange(m, m + n_tokens)) and torch.equal(
            wr, torch.arange(m + n_tokens, s)
        )
        for reads in (True, False):
            for n_cache in (0, 2):
                mask = placement.mask(n_tokens, n_cache, causal=True, memory_reads_cache=reads)
                c = n_cache
                cache_cols = torch.arange(c)
                expect = torch.zeros(s, c + s, dtype=torch.bool)
                for q in range(s):
                    for k in range(c + s):
                        kind_q = "read" if q in read else "seg" if q in tok else "write"
                        if k < c:
                            expect[q, k] = kind_q == "seg" or reads
                            continue
                        j = k - c
                        kind_k = "read" if j in read else "seg" if j in tok else "write"
                        if kind_q == "read":
                            expect[q, k] = kind_k == "read"
                        elif kind_q == "seg":
                            expect[q, k] = kind_k == "read" or (kind_k == "seg" and j <= q)
                        else:
                            expect[q, k] = True
                assert torch.equal(mask, expect), (reads, n_cache)
                # the table's headline facts, stated directly
                assert not mask[tok][:, c + wr].any(), "segment tokens never see write memory"
                assert not mask[read][:, c + tok].any(), "read memory never sees segment tokens"
                assert mask[wr][:, c:].all(), "write memory sees everything in the segment call"
                if c:
                    assert bool(mask[read][:, cache_cols].all()) == reads
                    assert bool(mask[wr][:, cache_cols].all()) == reads

    def test_memory_written_in_place_does_not_see_segment_on_causal_backbone(self, spec):
        """A single memory block at the segment start (Memory Transformer layout) cannot see the segment
        on a causal backbone (PAPER.md 1.7: MT is no better than the baseline)."""
        placement = build_placement(spec)
        n_tokens = 3
        s, tok, wr = layout(placement, n_tokens)
        if wr is None or s != n_tokens + placement.num_memory:
            pytest.skip(f"{spec.name} has no single in-place memory block")
        mask = placement.mask(n_tokens, 0, causal=True, memory_reads_cache=False)
        assert not closure(mask)[wr][:, tok].any()
        assert mask[tok][:, wr].all(), "segment tokens read the memory"
        bidirectional = placement.mask(n_tokens, 0, causal=False, memory_reads_cache=False)
        assert bidirectional[wr][:, tok].all()

    def test_params_reject_unknown_keys(self, spec):
        with pytest.raises(pydantic.ValidationError):
            spec.params.model_validate({**spec.test_params, "no_such_option": 1})


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


# -- recurrences ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", specs("recurrences"))
class TestRecurrence:
    def test_build_gives_a_consistent_policy(self, spec):
        params = spec.params.model_validate(dict(spec.test_params))
        policy = spec.build(params)
        assert isinstance(policy, rmtzoo.RecurrencePolicy)
        assert policy.carries_memory == spec.carries_memory
        assert (policy.cache_len > 0) == spec.uses_cache
        if not spec.carries_memory:
            assert policy.bptt_depth is None or policy.bptt_depth == 0
        memory = torch.randn(2, 3, 4)
        written = torch.randn(2, 3, 4)
        assert policy.update_memory(memory, written).shape == memory.shape

    def test_params_reject_unknown_keys(self, spec):
        with pytest.raises(pydantic.ValidationError):
            spec.params.model_validate({**spec.test_params, "no_such_option": 1})


# -- attention backends --------------------------------------------------------------------------------
def _random_attention_inputs(seed: int, dtype):
    gen = torch.Generator().manual_seed(seed)
    b, h, q, k, dh = 2, 3, 5, 7, 8
    qt = torch.randn(b, h, q, dh, generator=gen).to(dtype)
    kt = torch.randn(b, h, k, dh, generator=gen).to(dtype)
    vt = torch.randn(b, h, k, dh, generator=gen).to(dtype)
    bias = torch.randn(b, h, q, k, generator=gen).to(dtype)
    mask = torch.rand(q, k, generator=gen) < 0.6
    mask[torch.arange(q), torch.arange(q)] = True  # no query without a key
    return qt, kt, vt, bias, mask


def _attention_params(spec):
    return spec.params.model_validate(dict(spec.test_params))


# Kernels run on the device a model would use here; float64 only on CPU (CUDA kernels such as xformers'
# take no float64). The reference is eager attention in float64 on CPU.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32] + ([torch.float64] if DEVICE == "cpu" else [])


@pytest.mark.parametrize("spec", specs("attention_backends", lambda s: s.name != "auto"))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("with_mask", [True, False])
def test_attention_backend_matches_eager(spec, dtype, with_bias, with_mask):
    reason = spec.available()
    if reason is not None:
        pytest.skip(f"{spec.name} unavailable: {reason}")
    attend = spec.build(_attention_params(spec))
    q, k, v, bias, mask = _random_attention_inputs(0, F64)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else TIGHT
    for bias_shape in ("full", "broadcast"):
        b = (bias if bias_shape == "full" else bias[:1, :1]) if with_bias else None
        m = mask if with_mask else None
        for scale in (None, 0.3):
            ref = eager_attention(q, k, v, bias=b, mask=m, dropout_p=0.0, scale=scale)
            on = {"device": DEVICE, "dtype": dtype}
            out = attend(
                q.to(**on),
                k.to(**on),
                v.to(**on),
                bias=None if b is None else b.to(**on),
                mask=None if m is None else m.to(DEVICE),
                dropout_p=0.0,
                scale=scale,
            )
            assert out.shape == q.shape and out.dtype == dtype
            torch.testing.assert_close(out.cpu().double(), ref, **tol)


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


@pytest.mark.parametrize("spec", specs("attention_backends"))
def test_attention_availability_is_reported(spec):
    reason = spec.available()
    assert reason is None or (isinstance(reason, str) and reason)


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
