"""Property suites over every valid backbone x memory placement x recurrence combination.

Moved from rmtzoo's own ``tests/test_properties.py``, which now runs :class:`ModelProperties` over the
built-ins. Combinations come from the suite's registry, so a newly registered component is covered
without edits. Models are the specs' tiny ``test_params`` builds with dropout 0, in float64 where values
are compared across different computation paths. Hypothesis draws the batch size (1-3), segment length
(1-5), number of segments (1-4, the last one sometimes partial), memory size (1-3), seeds and, where it
matters, the attention kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import given
from hypothesis import strategies as st

import rmtzoo
from rmtzoo.testing._combos import capabilities
from rmtzoo.testing._suite import Suite, where

F64 = torch.float64
TIGHT = {"rtol": 1e-9, "atol": 1e-10}  # float64, different computation paths (batching, masking)


def _spec(suite, axis, name):
    return suite.registry().get(axis, name)


def carries_memory(combo, suite) -> bool:
    return _spec(suite, "recurrences", combo.recurrence).carries_memory


def has_memory(combo, suite) -> bool:
    return _spec(suite, "memory_placements", combo.memory).has_memory


def uses_cache(combo, suite) -> bool:
    return _spec(suite, "recurrences", combo.recurrence).uses_cache


# -- drawing a setup --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    batch: int
    segment_length: int
    n_segments: int
    n_tokens: int
    num_memory: int
    seed: int
    data_seed: int
    attention: str

    def config(self, combo, **overrides):
        kw = {
            "segment_length": self.segment_length,
            "seed": self.seed,
            "attention": self.attention,
            "num_tokens": self.num_memory,
        }
        return combo.config(**{**kw, **overrides})


@st.composite
def setups(draw, *, attention=("eager",), n_segments=None, batch=None):
    t = draw(st.integers(1, 5))
    n_seg = draw(st.integers(1, 4) if n_segments is None else n_segments)
    partial = draw(st.integers(1, t - 1)) if t > 1 and draw(st.booleans()) else 0
    n_tokens = (n_seg - 1) * t + partial if partial else n_seg * t
    return Setup(
        batch=draw(st.integers(1, 3) if batch is None else batch),
        segment_length=t,
        n_segments=n_seg,
        n_tokens=n_tokens,
        num_memory=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**16)),
        data_seed=draw(st.integers(0, 2**16)),
        attention=draw(st.sampled_from(attention)),
    )


def build(combo, setup: Setup, registry, *, dtype=F64, **overrides) -> rmtzoo.RecurrentMemoryModel:
    model = rmtzoo.build_model(setup.config(combo, **overrides), registry=registry)
    return model.to(dtype).eval()


def random_ids(model, batch: int, n_tokens: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.vocab_size, (batch, n_tokens), generator=gen)


def run_steps(model, ids):
    """Manual loop of ``model.step`` over ``model.split_segments(ids)``: per-segment logits and states."""
    state = model.initial_state(ids.shape[0])
    logits, states = [], []
    for segment in model.split_segments(ids):
        out, state = model.step(segment, state)
        logits.append(out.logits)
        states.append(state)
    return logits, states


def assert_states_equal(a: rmtzoo.RecurrentState, b: rmtzoo.RecurrentState, **tol) -> None:
    assert a.n_segments == b.n_segments
    assert (a.memory is None) == (b.memory is None)
    if a.memory is not None:
        torch.testing.assert_close(a.memory, b.memory, **(tol or {"rtol": 0, "atol": 0}))
    assert (a.cache is None) == (b.cache is None)
    if a.cache is not None:
        assert len(a.cache) == len(b.cache)
        for x, y in zip(a.cache, b.cache, strict=True):
            torch.testing.assert_close(x, y, **(tol or {"rtol": 0, "atol": 0}))
    assert (a.associative is None) == (b.associative is None)
    if a.associative is not None:
        for x, y in zip(a.associative, b.associative, strict=True):
            torch.testing.assert_close(x, y, **(tol or {"rtol": 0, "atol": 0}))


def row(state: rmtzoo.RecurrentState, i: int) -> rmtzoo.RecurrentState:
    """Row ``i`` of a batched state (memory, cache and associative memory only)."""
    memory = None if state.memory is None else state.memory[i : i + 1]
    cache = None if state.cache is None else tuple(c[i : i + 1] for c in state.cache)
    associative = None if state.associative is None else tuple(a[i : i + 1] for a in state.associative)
    return rmtzoo.RecurrentState(1, memory, cache, (), state.n_segments, associative=associative)


def xl_band_mask(n: int, segment_length: int, cache_len: int) -> torch.Tensor:
    """[N, N]: position p sees keys k with seg_start(p) - L <= k <= p."""
    p = torch.arange(n)[:, None]
    k = torch.arange(n)[None]
    seg_start = (p // segment_length) * segment_length
    return (k <= p) & (k >= seg_start - cache_len)


def written_memory_sees_segment(model, n_tokens: int) -> bool:
    """Whether the memory a segment writes can depend on that segment's tokens (through the mask)."""
    placement = model.placement
    if not placement.num_memory:
        return False
    d = model.backbone.d_model
    memory = placement.initial_memory(1).detach()
    s = placement.assemble(memory, torch.zeros(1, n_tokens, d, dtype=memory.dtype)).shape[1]
    index = torch.arange(s, dtype=torch.float64)[None, :, None]
    tokens, written = placement.split(index, n_tokens)
    mask = placement.mask(n_tokens, 0, causal=model.capabilities.causal, memory_reads_cache=False)
    if not model.capabilities.arbitrary_mask:  # what such a backbone sees: its causal order
        mask = torch.ones_like(mask).tril()
    reach = mask | torch.eye(s, dtype=torch.bool)
    while True:  # transitive closure: what each position can see through any number of layers
        nxt = (reach.double() @ reach.double()) > 0
        if torch.equal(nxt, reach):
            break
        reach = nxt
    rows = written[0, :, 0].long()
    cols = tokens[0, :, 0].long()
    return bool(reach[rows][:, cols].any())


def bptt_setups(k):
    """Enough segments that truncation at depth k is visible."""
    lo = 2 if k is None else k + 2
    return setups(n_segments=st.integers(lo, lo + 1 if k is not None and k >= 2 else lo + 2))


class ModelProperties(Suite):
    """Properties of ``rmtzoo.build_model`` over every selected valid combination."""

    # -- (1) forward_sequence == a manual loop of step (chunked equals full; state in, state out) ----------
    @given(setup=setups(attention=("eager", "sdpa")))
    def test_forward_sequence_equals_step_loop(self, combo, setup):
        model = build(combo, setup, self.registry())
        ids = random_ids(model, setup.batch, setup.n_tokens, setup.data_seed)
        with torch.enable_grad():  # truncated BPTT replays past segments only when grad is on
            out = model.forward_sequence(ids)
            logits, states = run_steps(model, ids)
        assert out.logits.shape == (setup.batch, setup.n_tokens, model.vocab_size)
        assert len(logits) == setup.n_segments
        torch.testing.assert_close(out.logits, torch.cat(logits, dim=1), rtol=0, atol=0)
        assert_states_equal(out.state, states[-1])
        # the BPTT replay must reproduce the forward values exactly as they are without grad
        with torch.no_grad():
            plain = model.forward_sequence(ids)
        torch.testing.assert_close(plain.logits, out.logits, **TIGHT)
        assert_states_equal(plain.state, out.state, **TIGHT)
        # and in two calls, handing the state over at a segment boundary
        cut = model.segment_length * (setup.n_segments // 2)
        if 0 < cut < setup.n_tokens:
            first = model.forward_sequence(ids[:, :cut])
            second = model.forward_sequence(ids[:, cut:], first.state)
            torch.testing.assert_close(torch.cat([first.logits, second.logits], dim=1), out.logits, **TIGHT)
            assert_states_equal(second.state, out.state, **TIGHT)


    # -- (2) causality ------------------------------------------------------------------------------------
    @given(
        setup=setups(attention=("eager", "sdpa")),
        where=st.floats(0, 1, exclude_max=True),
        data=st.integers(0, 2**16),
    )
    def test_later_tokens_do_not_change_earlier_outputs_or_state(self, combo, setup, where, data):
        """Changing tokens from position p on leaves the state after every segment that ends before p
        unchanged, and the logits before p (causal backbone) or before p's segment (bidirectional)."""
        model = build(combo, setup, self.registry())
        ids = random_ids(model, setup.batch, setup.n_tokens, setup.data_seed)
        p = int(where * setup.n_tokens)
        changed = ids.clone()
        shift = 1 + random_ids(model, setup.batch, setup.n_tokens - p, data) % (model.vocab_size - 1)
        changed[:, p:] = (ids[:, p:] + shift) % model.vocab_size  # every token from p on differs
        if model.vocab_size > 1:
            assert (changed[:, p:] != ids[:, p:]).all()
        logits_a, states_a = run_steps(model, ids)
        logits_b, states_b = run_steps(model, changed)
        t = model.segment_length
        done = p // t  # segments entirely before p
        keep = p if capabilities(combo, self.registry()).causal else done * t
        a, b = torch.cat(logits_a, dim=1), torch.cat(logits_b, dim=1)
        torch.testing.assert_close(a[:, :keep], b[:, :keep], **TIGHT)
        for k in range(done):
            assert_states_equal(states_a[k], states_b[k], **TIGHT)
        # the full-sequence entry point agrees
        torch.testing.assert_close(model.forward_sequence(changed).logits[:, :keep], a[:, :keep], **TIGHT)


    # -- (3) batch independence ---------------------------------------------------------------------------
    @given(setup=setups(attention=("eager", "sdpa"), batch=st.integers(2, 3)))
    def test_rows_are_independent(self, combo, setup):
        model = build(combo, setup, self.registry())
        ids = random_ids(model, setup.batch, setup.n_tokens, setup.data_seed)
        out = model.forward_sequence(ids)
        for i in range(setup.batch):
            alone = model.forward_sequence(ids[i : i + 1])
            torch.testing.assert_close(out.logits[i : i + 1], alone.logits, **TIGHT)
            assert_states_equal(row(out.state, i), alone.state, **TIGHT)


    # -- (4) no memory, no recurrence == the bare backbone on each segment -----------------------------------
    @where("combo", lambda c, suite: not has_memory(c, suite) and c.recurrence == "none")
    @given(setup=setups(attention=("eager", "sdpa")))
    def test_plain_model_is_the_backbone_per_segment(self, combo, setup):
        model = build(combo, setup, self.registry())
        ids = random_ids(model, setup.batch, setup.n_tokens, setup.data_seed)
        out = model.forward_sequence(ids)
        bb = model.backbone
        start = 0
        for segment in model.split_segments(ids):
            expected = bb.logits(bb(bb.embed(segment)).hidden)
            torch.testing.assert_close(out.logits[:, start : start + segment.shape[1]], expected, **TIGHT)
            start += segment.shape[1]


    # -- (5) Transformer-XL cache == one full pass with a banded mask ----------------------------------------
    # a causal-order-only backbone takes no band mask: its cache is covered by (1), (2) and (6)
    @where("combo", lambda c, suite: not has_memory(c, suite) and uses_cache(c, suite) and not carries_memory(c, suite)
           and capabilities(c, suite.registry()).arbitrary_mask)
    @given(setup=setups(attention=("eager", "sdpa")), cache_len=st.integers(1, 7))
    def test_xl_cache_equals_full_pass_with_band_mask(self, combo, setup, cache_len):
        model = build(combo, setup, self.registry(), cache_len=cache_len)
        assert model.policy.cache_len == cache_len
        ids = random_ids(model, setup.batch, setup.n_tokens, setup.data_seed)
        out = model.forward_sequence(ids)
        bb = model.backbone
        mask = xl_band_mask(setup.n_tokens, setup.segment_length, cache_len)
        full = bb.logits(bb(bb.embed(ids), mask=mask).hidden)
        torch.testing.assert_close(out.logits, full, **TIGHT)


    # -- (6) BPTT depth -----------------------------------------------------------------------------------
    @given(data=st.data())
    def test_bptt_depth_bounds_the_gradient_to_earlier_segments(self, combo, data):
        """Segment j's loss has an exactly-zero gradient w.r.t. the input embeddings of segments before
        j - k and a nonzero one for segments j - k .. j (all earlier ones when k is unset). Without memory
        recurrence (or when the written memory cannot see the segment), no earlier segment gets gradient:
        the Transformer-XL cache is stop-gradient."""
        k = combo.recurrence_params.get("bptt_depth")
        setup = data.draw(bptt_setups(k))
        model = build(combo, setup, self.registry()).train()
        ids = random_ids(model, setup.batch, setup.n_tokens, setup.data_seed)
        segments = model.split_segments(ids)
        for i, seg in enumerate(segments):  # make every segment's ids distinct, to tell embed calls apart
            seg[0, 0] = i % model.vocab_size
        assert model.vocab_size >= len(segments)

        calls = []
        embed = model.backbone.embed

        def recording_embed(segment_ids):
            out = embed(segment_ids)
            calls.append((segment_ids, out))
            return out

        model.backbone.embed = recording_embed
        with torch.enable_grad():
            state = model.initial_state(setup.batch)
            losses = []
            gen = torch.Generator().manual_seed(setup.data_seed)
            for seg in segments:
                out, state = model.step(seg, state)
                weights = torch.randn(out.logits.shape, generator=gen, dtype=out.logits.dtype)
                losses.append((out.logits * weights).sum())

        def segment_of(call_ids):
            hits = [i for i, s in enumerate(segments) if s.shape == call_ids.shape and torch.equal(s, call_ids)]
            assert len(hits) == 1
            return hits[0]

        owners = [segment_of(ids_) for ids_, _ in calls]
        assert all(out.requires_grad for _, out in calls)
        flows = carries_memory(combo, type(self)) and written_memory_sees_segment(model, setup.segment_length)
        for j, loss in enumerate(losses):
            grads = torch.autograd.grad(loss, [out for _, out in calls], allow_unused=True, retain_graph=True)
            per_segment = [0.0] * len(segments)
            for owner, g in zip(owners, grads, strict=True):
                if g is not None:
                    per_segment[owner] += float(g.abs().sum())
            if not flows:
                lo = j
            else:
                lo = 0 if k is None else max(0, j - k)
            for i, total in enumerate(per_segment):
                if lo <= i <= j:
                    assert total > 0, f"segment {j}'s loss has no gradient to segment {i} (k={k})"
                else:
                    assert total == 0, f"segment {j}'s loss reaches segment {i} (k={k}): |grad| = {total}"


    # -- (7) memory stays well-formed over many segments --------------------------------------------------
    @where("combo", has_memory)
    @given(setup=setups(n_segments=st.just(30)))
    def test_memory_keeps_shape_and_stays_finite(self, combo, setup):
        model = build(combo, setup, self.registry(), dtype=torch.float32)
        ids = random_ids(model, setup.batch, setup.n_tokens, setup.data_seed)
        state = model.initial_state(setup.batch)
        expected = (setup.batch, setup.num_memory, model.backbone.d_model)
        for n, seg in enumerate(model.split_segments(ids), start=1):
            out, state = model.step(seg, state)
            assert state.n_segments == n
            assert state.memory.shape == expected
            assert torch.isfinite(state.memory).all()
            assert torch.isfinite(out.logits).all()
            if out.written is not None:
                assert out.written.shape == expected
            if state.cache is not None:
                assert all(c.shape[1] <= model.policy.cache_len and torch.isfinite(c).all() for c in state.cache)
        assert n == 30


    # -- (8) seeds ----------------------------------------------------------------------------------------
    @given(setup=setups(), other=st.integers(0, 2**16))
    def test_same_seed_same_model_different_seed_different_weights(self, combo, setup, other):
        rng = torch.get_rng_state()
        a = rmtzoo.build_model(setup.config(combo), registry=self.registry()).eval()
        b = rmtzoo.build_model(setup.config(combo), registry=self.registry()).eval()
        assert torch.equal(torch.get_rng_state(), rng), "build_model must leave the global RNG alone"
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[name], sb[name]) for name in sa)
        ids = random_ids(a, setup.batch, setup.n_tokens, setup.data_seed)
        torch.testing.assert_close(a.forward_sequence(ids).logits, b.forward_sequence(ids).logits, rtol=0, atol=0)
        if other != setup.seed:
            c = rmtzoo.build_model(setup.config(combo, seed=other), registry=self.registry())
            sc = c.state_dict()
            assert any(not torch.equal(sa[name], sc[name]) for name in sa if sa[name].is_floating_point())


    # -- (9) config round trip ----------------------------------------------------------------------------
    @given(
        setup=setups(),
        cache_len=st.integers(1, 200),
        lr=st.floats(1e-6, 1.0),
        last=st.sampled_from(["shorter", "error"]),
        fmt=st.sampled_from([".json", ".yaml", ".yml"]),
    )
    def test_config_round_trips(self, combo, setup, cache_len, lr, last, fmt, tmp_path_factory):
        data = setup.config(combo, cache_len=cache_len, last=last)
        data["train"] = {"lr": lr}
        config = rmtzoo.load_config(data, registry=self.registry())
        again = rmtzoo.load_config(config.model_dump(mode="json"), registry=self.registry())
        assert again == config and again.content_hash() == config.content_hash()
        assert rmtzoo.load_config(config, registry=self.registry()) == config
        path = rmtzoo.dump_config(config, tmp_path_factory.mktemp("cfg") / f"config{fmt}")
        loaded = rmtzoo.load_config(path, registry=self.registry())
        assert loaded == config and loaded.content_hash() == config.content_hash()
        assert loaded.model_dump(mode="json") == config.model_dump(mode="json")
