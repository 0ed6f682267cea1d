"""Contract suites: each registered component of an axis, checked against that axis's protocol.

Moved from rmtzoo's own ``tests/test_contract.py``, which now runs these classes over the built-ins.
"""

from __future__ import annotations

import pydantic
import pytest
import torch

import rmtzoo
from rmtzoo.attention import eager_attention
from rmtzoo.testing._suite import Suite, where

F64 = torch.float64
TIGHT = {"rtol": 1e-9, "atol": 1e-10}
POLARITY = (
    "rmtzoo masks are True where a query MAY attend (torch.nn.MultiheadAttention's and nn.Transformer's "
    "boolean attn_mask mean the opposite)"
)


def build_backbone(spec, *, seed: int = 0, **overrides):
    params = spec.params.model_validate({**spec.test_params, **overrides})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = spec.build(params, attention=eager_attention)
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


class BackboneContract(Suite):
    """The backbone protocol (``rmtzoo.BackboneSpec``, docs/plugins.md) for every selected backbone."""

    def test_protocol_shapes(self, backbone):
        bb, _ = build_backbone(backbone)
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

    def test_nll_is_cross_entropy_of_logits(self, backbone):
        bb, _ = build_backbone(backbone)
        ids = torch.randint(0, bb.vocab_size, (B, S))
        targets = torch.randint(0, bb.vocab_size, (B, S))
        hidden = bb(bb.embed(ids)).hidden
        nll = bb.nll(hidden, targets)
        assert nll.shape == (B, S)
        expected = -torch.log_softmax(bb.logits(hidden).double(), -1).gather(-1, targets[..., None])[..., 0]
        torch.testing.assert_close(nll.double(), expected, rtol=1e-5, atol=1e-6)

    def test_mask_none_is_the_natural_attention(self, backbone):
        bb, caps = build_backbone(backbone)
        x = bb.embed(torch.randint(0, bb.vocab_size, (B, S)))
        natural = torch.ones(S, S, dtype=torch.bool)
        if caps.causal:
            natural = natural.tril()
        same = not caps.arbitrary_mask or torch.allclose(bb(x, mask=None).hidden, bb(x, mask=natural).hidden, **TIGHT)
        assert same, (
            f"{backbone.name}: mask=None and the natural mask ({'lower-triangular' if caps.causal else 'all'} True) "
            f"give different outputs; {POLARITY}"
        )
        # causal iff the capabilities say so: the last token changes the first output only when bidirectional
        changed = x.clone()
        # a random (not constant) change: a constant shift vanishes in models that LayerNorm their inputs
        changed[:, -1] += torch.randn(changed[:, -1].shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
        first_same = torch.allclose(bb(x).hidden[:, 0], bb(changed).hidden[:, 0], rtol=0, atol=1e-12)
        assert first_same == caps.causal, (
            f"{backbone.name}: capabilities say causal={caps.causal} but with mask=None the first output "
            f"{'does not depend' if first_same else 'depends'} on the last token"
        )

    def test_mask_polarity(self, backbone):
        """With the identity mask (True on the diagonal only) each query may attend to itself alone: its
        output must not move when another token changes. A backbone that reads True as 'hidden' fails here."""
        bb, caps = build_backbone(backbone)
        if not caps.arbitrary_mask:
            pytest.skip(f"{backbone.name} follows its causal order only and is never handed a mask")
        gen = torch.Generator().manual_seed(0)
        x = bb.embed(torch.randint(0, bb.vocab_size, (B, S), generator=gen))
        alone = torch.eye(S, dtype=torch.bool)
        base = bb(x, mask=alone).hidden
        assert torch.isfinite(base).all(), f"{backbone.name}: non-finite output under the identity mask; {POLARITY}"
        changed = x.clone()
        changed[:, 1:] = torch.randn(B, S - 1, bb.d_model, generator=gen, dtype=x.dtype) * 3
        moved = not torch.allclose(bb(changed, mask=alone).hidden[:, 0], base[:, 0], rtol=0, atol=1e-12)
        assert not moved, (
            f"{backbone.name} does not honour the attention mask's polarity: with mask=eye (each query may "
            f"attend to itself only) query 0's output changed when other tokens changed; {POLARITY}"
        )

    @pytest.mark.parametrize("seed", range(4))
    def test_mask_is_respected(self, backbone, seed):
        """Changing a key the mask hides from a query (through every layer) leaves that query's output
        unchanged, and changing a key it can see changes it."""
        bb, caps = build_backbone(backbone)
        gen = torch.Generator().manual_seed(seed)
        mask = (torch.rand(S, S, generator=gen) < 0.3) | torch.eye(S, dtype=torch.bool)
        given = mask
        if not caps.arbitrary_mask:  # its own causal order: every earlier position, through mask=None
            mask, given = torch.ones(S, S, dtype=torch.bool).tril(), None
        reach = closure(mask)
        x = bb.embed(torch.randint(0, bb.vocab_size, (B, S), generator=gen))
        base = bb(x, mask=given).hidden
        for key in range(S):
            changed = x.clone()
            changed[:, key] = torch.randn(B, bb.d_model, generator=gen, dtype=x.dtype) * 3
            out = bb(changed, mask=given).hidden
            for query in range(S):
                same = torch.allclose(out[:, query], base[:, query], rtol=0, atol=1e-12)
                if not reach[query, key]:
                    assert same, f"{backbone.name}: query {query} depends on key {key}, which the mask hides; {POLARITY}"
                elif mask[query, key]:
                    assert not same, f"{backbone.name}: query {query} ignores key {key}, which the mask shows; {POLARITY}"

    def test_cache(self, backbone):
        bb, caps = build_backbone(backbone)
        if not caps.accepts_cache:
            pytest.skip(f"{backbone.name} takes no cache")
        n_layers = len(bb(bb.embed(torch.randint(0, bb.vocab_size, (B, 1)))).layer_inputs)
        assert n_layers >= 1
        cache = [torch.randn(B, C, bb.d_model, dtype=F64) for _ in range(n_layers)]
        x = bb.embed(torch.randint(0, bb.vocab_size, (B, S)))
        out = bb(x, cache=cache)
        assert out.hidden.shape == (B, S, bb.d_model) and torch.isfinite(out.hidden).all()
        assert len(out.layer_inputs) == n_layers
        assert all(h.shape == (B, S, bb.d_model) for h in out.layer_inputs)
        # the cache is read: another cache gives other outputs
        other = [torch.randn(B, C, bb.d_model, dtype=F64) for _ in range(n_layers)]
        assert not torch.allclose(bb(x, cache=other).hidden, out.hidden), f"{backbone.name} ignores its cache"
        if not caps.arbitrary_mask:
            return
        natural = torch.ones(S, C + S, dtype=torch.bool)
        if caps.causal:
            natural = natural.tril(C)
        torch.testing.assert_close(bb(x, mask=natural, cache=cache).hidden, out.hidden, **TIGHT)
        # the cache is attended to: hiding it changes the output
        hidden_cache = natural.clone()
        hidden_cache[:, :C] = False
        assert not torch.allclose(bb(x, mask=hidden_cache, cache=cache).hidden, out.hidden), (
            f"{backbone.name}: hiding the cache in the mask changes nothing; {POLARITY}"
        )

    def test_params_reject_unknown_keys(self, backbone):
        assert issubclass(backbone.params, rmtzoo.Params)
        backbone.params.model_validate(dict(backbone.test_params))
        with pytest.raises(pydantic.ValidationError):
            backbone.params.model_validate({**backbone.test_params, "no_such_option": 1})
        with pytest.raises(rmtzoo.ConfigError, match="no_such_option"):
            rmtzoo.load_config(
                {
                    "backbone": {"kind": backbone.name, **backbone.test_params, "no_such_option": 1},
                    "segment": {"length": 2},
                },
                registry=self.registry(),
            )

    def test_same_seed_same_weights(self, backbone):
        a, _ = build_backbone(backbone, seed=3)
        b, _ = build_backbone(backbone, seed=3)
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


class PlacementContract(Suite):
    """The memory placement protocol (``rmtzoo.PlacementSpec``) for every selected placement."""

    def test_initial_memory(self, placement):
        pm = build_placement(placement)
        assert isinstance(pm, torch.nn.Module)
        m = pm.num_memory
        memory = pm.initial_memory(3)
        if placement.has_memory:
            assert m >= 1 and memory.shape == (3, m, D)
            assert any(p is not None for p in pm.parameters()), "initial memory is learned"
        else:
            assert m == 0 and memory is None

    @pytest.mark.parametrize("n_tokens", [1, 4])
    def test_assemble_split_round_trip(self, placement, n_tokens):
        pm = build_placement(placement)
        memory = pm.initial_memory(2)
        tokens = torch.randn(2, n_tokens, D)
        assembled = pm.assemble(memory, tokens)
        m = pm.num_memory
        assert assembled.shape[0] == 2 and assembled.shape[2] == D
        assert n_tokens + m <= assembled.shape[1] <= n_tokens + 2 * m
        out_tokens, written = pm.split(assembled, n_tokens)
        assert torch.equal(out_tokens, tokens)
        if placement.has_memory:
            assert torch.equal(written, memory)
        else:
            assert written is None

    @pytest.mark.parametrize("causal", [True, False])
    @pytest.mark.parametrize("n_cache", [0, 3])
    @pytest.mark.parametrize("reads", [True, False])
    def test_mask_shape_and_no_future_leak(self, placement, causal, n_cache, reads):
        if placement.requires_causal and not causal:
            pytest.skip(f"{placement.name} requires a causal backbone")
        pm = build_placement(placement)
        n_tokens = 4
        s, tok, _ = layout(pm, n_tokens)
        mask = pm.mask(n_tokens, n_cache, causal=causal, memory_reads_cache=reads)
        assert mask.dtype == torch.bool and mask.shape == (s, n_cache + s)
        assert mask.any(-1).all(), "every query must see at least one key"
        if causal:
            # segment tokens see the whole cache, and no segment token can learn a later one's value
            assert mask[tok, :n_cache].all()
            reach = closure(mask[:, n_cache:])
            seg = reach[tok][:, tok]
            assert torch.equal(seg, torch.ones(n_tokens, n_tokens, dtype=torch.bool).tril())

    def test_read_write_table(self, placement):
        """The read/write mask table of ``rmtzoo.placements`` exactly, for a placement with separate read and
        write blocks."""
        pm = build_placement(placement)
        n_tokens = 3
        s, tok, wr = layout(pm, n_tokens)
        if wr is None or s != n_tokens + 2 * pm.num_memory:
            pytest.skip(f"{placement.name} has no separate read and write blocks")
        m = pm.num_memory
        read = torch.arange(m)
        assert torch.equal(tok, torch.arange(m, m + n_tokens)) and torch.equal(
            wr, torch.arange(m + n_tokens, s)
        )
        for reads in (True, False):
            for n_cache in (0, 2):
                mask = pm.mask(n_tokens, n_cache, causal=True, memory_reads_cache=reads)
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

    def test_memory_written_in_place_does_not_see_segment_on_causal_backbone(self, placement):
        """A single memory block at the segment start (Memory Transformer layout) cannot see the segment
        on a causal backbone (why the Memory Transformer layout is no better than the baseline there)."""
        pm = build_placement(placement)
        n_tokens = 3
        s, tok, wr = layout(pm, n_tokens)
        if wr is None or s != n_tokens + pm.num_memory:
            pytest.skip(f"{placement.name} has no single in-place memory block")
        mask = pm.mask(n_tokens, 0, causal=True, memory_reads_cache=False)
        assert not closure(mask)[wr][:, tok].any()
        assert mask[tok][:, wr].all(), "segment tokens read the memory"
        bidirectional = pm.mask(n_tokens, 0, causal=False, memory_reads_cache=False)
        assert bidirectional[wr][:, tok].all()

    def test_params_reject_unknown_keys(self, placement):
        with pytest.raises(pydantic.ValidationError):
            placement.params.model_validate({**placement.test_params, "no_such_option": 1})


# -- recurrences ---------------------------------------------------------------------------------------
class RecurrenceContract(Suite):
    """The recurrence protocol (``rmtzoo.RecurrenceSpec``) for every selected recurrence."""

    def test_build_gives_a_consistent_policy(self, recurrence):
        params = recurrence.params.model_validate(dict(recurrence.test_params))
        policy = recurrence.build(params)
        assert isinstance(policy, rmtzoo.RecurrencePolicy)
        assert policy.carries_memory == recurrence.carries_memory
        assert (policy.cache_len > 0) == recurrence.uses_cache
        if not recurrence.carries_memory:
            assert policy.bptt_depth is None or policy.bptt_depth == 0
        memory = torch.randn(2, 3, 4)
        written = torch.randn(2, 3, 4)
        assert policy.update_memory(memory, written).shape == memory.shape

    def test_params_reject_unknown_keys(self, recurrence):
        with pytest.raises(pydantic.ValidationError):
            recurrence.params.model_validate({**recurrence.test_params, "no_such_option": 1})


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


# Kernels run on the device a model would use here; float64 only on CPU (CUDA kernels such as xformers'
# take no float64). The reference is eager attention in float64 on CPU.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32] + ([torch.float64] if DEVICE == "cpu" else [])


class AttentionContract(Suite):
    """Every selected attention kernel (``rmtzoo.AttentionSpec``) computes eager masked, biased softmax
    attention (True in the mask: may attend), with full and broadcast biases and a given scale."""

    def test_attention_availability_is_reported(self, kernel):
        reason = kernel.available()
        assert reason is None or (isinstance(reason, str) and reason)

    @where("kernel", lambda s: s.name != "auto")
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("with_bias", [True, False])
    @pytest.mark.parametrize("with_mask", [True, False])
    def test_attention_backend_matches_eager(self, kernel, dtype, with_bias, with_mask):
        reason = kernel.available()
        if reason is not None:
            pytest.skip(f"{kernel.name} unavailable: {reason}")
        attend = kernel.build(kernel.params.model_validate(dict(kernel.test_params)))
        q, k, v, bias, mask = _random_attention_inputs(0, F64)
        tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else TIGHT
        for bias_shape in ("full", "broadcast"):
            b = (bias if bias_shape == "full" else bias[:1, :1]) if with_bias else None
            m = mask if with_mask else None
            for scale in (None, 0.3):
                ref = eager_attention(q, k, v, bias=b, mask=m, dropout_p=0.0, scale=scale)
                on = {"device": DEVICE, "dtype": dtype}
                out = attend(
                    q.to(**on), k.to(**on), v.to(**on),
                    bias=None if b is None else b.to(**on),
                    mask=None if m is None else m.to(DEVICE),
                    dropout_p=0.0,
                    scale=scale,
                )
                assert out.shape == q.shape and out.dtype == dtype
                close = torch.allclose(out.cpu().double(), ref, **tol)
                if not close and m is not None:
                    flipped = eager_attention(q, k, v, bias=b, mask=~m | torch.eye(*m.shape, dtype=torch.bool),
                                              dropout_p=0.0, scale=scale)
                    if torch.allclose(out.cpu().double(), flipped, **{"rtol": 1e-2, "atol": 1e-2}):
                        pytest.fail(f"{kernel.name} attends where the mask is False; {POLARITY}")
                torch.testing.assert_close(out.cpu().double(), ref, **tol)
