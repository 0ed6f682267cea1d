"""The speed options are exact: the relative-position skew equals the gather it replaced, ``auto``
attention picks a kernel by situation and matches eager, and per-segment activation checkpointing
gives the gradients of plain BPTT."""

from __future__ import annotations

import pytest
import torch

import rmtzoo
from rmtzoo import attention
from rmtzoo.backbones import transformer_xl as txl
from rmtzoo.placements import layout_mask

REGISTRY = rmtzoo.Registry(environ={})
TINY = {
    "vocab_size": 13,
    "n_layer": 2,
    "n_head": 2,
    "d_model": 16,
    "d_head": 8,
    "d_inner": 32,
    "dropout": 0.0,
}


def _config(
    memory="read_write", recurrence=None, *, backbone="transformer_xl", length=4, attention="eager", **seg
):
    recurrence = recurrence or {"kind": "rmt"}
    memory = {"kind": "none"} if memory == "none" else {"kind": memory, "num_tokens": 3}
    return {
        "backbone": {"kind": backbone, **TINY},
        "memory": memory,
        "recurrence": recurrence,
        "attention": {"kind": attention},
        "segment": {"length": length, **seg},
        "seed": 1,
    }


def _nonzero_biases(model):
    """Random r_w/r_r biases (they start at zero), so the position term's every part is exercised."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in (model.backbone.r_w_bias, model.backbone.r_r_bias):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


# -- (1) relative positions: the skew equals the gather over signed distances -------------------------
def _gather_forward(self, x, *, cache, pos_emb, r_w_bias, r_r_bias, mask, **_):
    """The layer as it was before the skew: every signed distance C+S-1 .. -(S-1), then a gather."""
    b, s, _ = x.shape
    h, dh = self.n_head, self.d_head
    keys_in = x if cache is None else torch.cat([cache, x], dim=1)
    if self.pre_lnorm:
        keys_in = self.attn_norm(keys_in)
    q, k, v = self.qkv_net(keys_in).view(b, -1, 3, h, dh).unbind(2)
    q, k, v = q[:, -s:].transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    c = k.shape[2] - s
    d = x.shape[-1]
    inv_freq = 1.0 / (10000 ** (torch.arange(0.0, d, 2.0) / d))
    angles = torch.arange(c + s - 1, -s, -1.0)[:, None] * inv_freq[None]
    table = torch.cat([angles.sin(), angles.cos()], dim=-1).to(x.dtype)  # [C+2S-1, D]
    r = self.r_net(table).view(-1, h, dh)
    scale = dh**-0.5
    position = torch.einsum("bhqd,phd->bhqp", q + r_r_bias[:, None], r)
    index = (s - 1 - torch.arange(s)[:, None] + torch.arange(c + s)[None])[None, None]
    bias = position.gather(-1, index.expand(b, h, -1, -1)) * scale
    out = self.attention(q + r_w_bias[:, None], k, v, bias=bias, mask=mask, dropout_p=0.0, scale=scale)
    out = self.drop(self.o_net(out.transpose(1, 2).reshape(b, s, h * dh)))
    if self.pre_lnorm:
        x = x + out
        return x + self.ff(self.ff_norm(x))
    x = self.attn_norm(x + out)
    return self.ff_norm(x + self.ff(x))


def _loss_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    logits = model.forward_sequence(ids).logits  # [B, N, V]
    logits.square().mean().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "memory,recurrence,backbone",
    [
        ("read_write", {"kind": "rmt_xl", "cache_len": 5, "memory_reads_cache": True}, "transformer_xl"),
        ("read_write", {"kind": "rmt_xl", "cache_len": 3, "memory_reads_cache": False}, "transformer_xl"),
        ("none", {"kind": "xl", "cache_len": 4}, "transformer_xl"),
        ("shared", {"kind": "rmt"}, "transformer_xl_encoder"),
    ],
)
def test_skew_equals_the_gather_over_signed_distances(monkeypatch, memory, recurrence, backbone):
    model = _nonzero_biases(
        rmtzoo.build_model(_config(memory, recurrence, backbone=backbone), registry=REGISTRY)
    )
    ids = torch.randint(
        0, 13, (2, 14), generator=torch.Generator().manual_seed(0)
    )  # 4 segments, last partial
    out, grads = _loss_and_grads(model, ids)
    monkeypatch.setattr(txl.RelativeAttentionLayer, "forward", _gather_forward)
    ref, ref_grads = _loss_and_grads(model, ids)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    assert grads.keys() == ref_grads.keys() and "backbone.r_r_bias" in grads
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("n_cache,reads_cache", [(0, False), (5, False), (5, True)])
def test_rel_shift_reads_distance_c_plus_i_minus_j_wherever_a_query_may_attend(n_cache, reads_cache):
    m, t = 3, 4
    mask = layout_mask(m, t, m, n_cache, causal=True, memory_reads_cache=reads_cache)  # [S, C+S]
    s, k = mask.shape
    ahead = txl._lookahead(mask, s, n_cache)
    assert ahead == m - 1  # memory tokens see the memory block they sit in: m - 1 to their right
    distances = torch.arange(n_cache + s - 1, -ahead - 1, -1.0)  # the table's columns
    position = distances.expand(s, -1)  # [S, P]: each entry is its own distance
    got = txl.rel_shift(position, k)  # [S, K]
    want = n_cache + torch.arange(s)[:, None] - torch.arange(k)[None]  # C+i-j
    assert torch.equal(got[mask], want[mask].float())
    assert not torch.equal(got, want.float())  # only the attended keys are exact: the table is short
    assert txl._lookahead(None, s, n_cache) == s - 1
    one_query = torch.ones(1, n_cache + 1, dtype=torch.bool)  # a causal one-token segment looks nowhere right
    assert txl._lookahead(one_query, 1, n_cache) == 1  # but the skew needs its spare column


# -- (2) attention: auto picks a kernel by situation, and computes what eager computes -----------------
@pytest.mark.parametrize(
    "dtype,kernel",
    [(torch.float32, "sdpa"), (torch.float64, "sdpa"), (torch.bfloat16, "eager"), (torch.float16, "eager")],
)
def test_auto_runs_eager_for_half_precision_on_cpu_and_sdpa_otherwise(dtype, kernel):
    x = torch.zeros(1, 1, 1, 4, dtype=dtype)
    assert attention.auto_kernel_name(x, x) == kernel
    assert (
        attention.auto_kernel_name(torch.zeros(1, 1, 1, 4), x) == kernel
    )  # fp32 query (q + bias), half keys
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attention.auto_kernel_name(torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 1, 4)) == "eager"


def test_auto_is_the_default_and_dispatches_per_call(monkeypatch):
    assert attention.resolve_attention("auto", REGISTRY).name == "auto"
    model = rmtzoo.build_model(_config(attention="auto"), registry=REGISTRY)
    assert model.attention_name == "auto"
    assert (
        rmtzoo.build_model(
            {k: v for k, v in _config().items() if k != "attention"}, registry=REGISTRY
        ).attention_name
        == "auto"
    )
    calls = []
    for name in ("eager", "sdpa"):
        kernel = getattr(attention, f"{name}_attention")
        monkeypatch.setattr(
            attention,
            f"{name}_attention",
            lambda *a, _k=kernel, _n=name, **kw: calls.append(_n) or _k(*a, **kw),
        )
    ids = torch.randint(0, 13, (2, 8), generator=torch.Generator().manual_seed(0))
    model.forward_sequence(ids)
    assert set(calls) == {"sdpa"}
    calls.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.forward_sequence(ids).logits.float().sum().backward()  # training under bf16 autocast
    assert set(calls) == {"eager"}


def test_auto_yields_to_a_plugin_kernel_that_outranks_the_builtins():
    class Fast:
        @rmtzoo.hookimpl
        def rmtzoo_register_attention_backends(self, register):
            register(rmtzoo.AttentionSpec(name="fast", summary="s", build=lambda p: None, priority=30))
            register(
                rmtzoo.AttentionSpec(
                    name="absent",
                    summary="s",
                    build=lambda p: None,
                    priority=40,
                    available=lambda: "not installed",
                )
            )

    registry = rmtzoo.Registry(environ={})
    registry.add_plugin(Fast(), "fast")
    assert attention.resolve_attention("auto", registry).name == "fast"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("per_sample_mask", [False, True])
def test_auto_matches_eager(dtype, per_sample_mask):
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=gen).to(dtype) for _ in range(3))
    bias = torch.randn(2, 3, 5, 5, generator=gen).to(dtype)
    mask = layout_mask(1, 3, 1, 0, causal=True, memory_reads_cache=False)  # [5, 5]
    if per_sample_mask:
        mask = mask.expand(2, -1, -1).clone()  # [B, Q, K]
        mask[1, :, 2] = False  # a padded key in the second sample
        mask[1, 2, 2] = True
    got = attention.auto_attention(q, k, v, bias=bias, mask=mask, scale=0.3)
    want = attention.eager_attention(
        q.double(), k.double(), v.double(), bias=bias.double(), mask=mask, scale=0.3
    )
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, **tol)


# -- (3) per-segment activation checkpointing: the same gradients, fewer saved activations -------------
def _bptt_grads(config, *, n_segments=5, seed=0):
    """Gradients of a trainer-style loss: nll of every segment, stepped through the recurrent state."""
    model = _nonzero_biases(rmtzoo.build_model(config, registry=REGISTRY)).train()
    gen = torch.Generator().manual_seed(seed)
    t = config["segment"]["length"]
    ids = torch.randint(0, 13, (2, n_segments * t + 1), generator=gen)
    torch.manual_seed(seed)  # the same dropout masks in both runs
    state, loss, saved = model.initial_state(2), 0.0, []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda x: saved.append(x.numel() * x.element_size()) or x, lambda x: x
    ):
        for start in range(0, n_segments * t, t):
            x, y = ids[:, start : start + t], ids[:, start + 1 : start + t + 1]
            out, state = model.step(x, state, return_logits=False, targets=y)
            loss = loss + out.nll.mean()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, sum(saved)


@pytest.mark.parametrize(
    "recurrence,dropout",
    [
        ({"kind": "rmt"}, 0.0),  # full BPTT
        ({"kind": "rmt", "bptt_depth": 2}, 0.0),  # the BPTT window is replayed, checkpointed too
        ({"kind": "rmt_xl", "cache_len": 3, "bptt_depth": 1}, 0.0),  # with the Tr-XL cache
        ({"kind": "rmt", "bptt_depth": 2}, 0.2),  # dropout: recomputation draws the same masks
    ],
)
def test_checkpointing_gives_the_gradients_of_plain_bptt(recurrence, dropout):
    config = _config(recurrence=recurrence)
    config["backbone"]["dropout"] = dropout
    loss, grads, saved = _bptt_grads(config)
    config["segment"]["checkpoint_activations"] = True
    loss_ck, grads_ck, saved_ck = _bptt_grads(config)
    torch.testing.assert_close(loss_ck, loss, rtol=0, atol=1e-6)
    assert grads.keys() == grads_ck.keys() and "placement.memory" in grads
    for name, g in grads.items():
        torch.testing.assert_close(grads_ck[name], g, rtol=1e-5, atol=1e-6, msg=name)
    assert saved_ck < saved / 4, (saved_ck, saved)  # only segment boundaries are kept for backward


def test_checkpointing_is_a_validated_config_option_left_out_of_the_hash_while_off():
    off = rmtzoo.load_config(_config(), registry=REGISTRY)
    on = rmtzoo.load_config(_config(checkpoint_activations=True), registry=REGISTRY)
    assert (
        off.segment.checkpoint_activations is False
        and "checkpoint_activations" not in off.model_dump()["segment"]
    )
    assert (
        on.model_dump()["segment"]["checkpoint_activations"] is True
        and on.content_hash() != off.content_hash()
    )
    assert (
        rmtzoo.load_config(_config(checkpoint_activations=False), registry=REGISTRY).content_hash()
        == off.content_hash()
    )
    assert rmtzoo.load_config(on.model_dump(), registry=REGISTRY) == on
    assert rmtzoo.build_model(on, registry=REGISTRY).checkpoint_activations is True
    with pytest.raises(rmtzoo.ConfigError, match=r"^config: segment\.checkpoint_activations: .*boolean"):
        rmtzoo.load_config(_config(checkpoint_activations="sometimes"), registry=REGISTRY)


# -- (4) selective checkpointing: matmul outputs kept, the cheap ops recomputed ----------------------------
def _backward_op_counts(config, *, n_segments=3):
    """Per-op-name call counts during backward of a BPTT loss, plus the gradients."""
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func.__name__.split(".")[0]] += 1
            return func(*args, **(kwargs or {}))

    model = _nonzero_biases(rmtzoo.build_model(config, registry=REGISTRY)).train()
    t = config["segment"]["length"]
    ids = torch.randint(0, 13, (2, n_segments * t + 1), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    state, loss = model.initial_state(2), 0.0
    for start in range(0, n_segments * t, t):
        out, state = model.step(ids[:, start : start + t], state, return_logits=False, targets=ids[:, start + 1 : start + t + 1])
        loss = loss + out.nll.mean()
    with Count() as count:
        loss.backward()
    return count.ops, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_selective_checkpointing_recomputes_the_cheap_ops_but_no_matmul(dropout):
    config = _config(recurrence={"kind": "rmt_xl", "cache_len": 3})
    config["backbone"]["dropout"] = dropout
    plain_ops, grads = _backward_op_counts(config)
    config["segment"]["checkpoint_activations"] = "selective"
    sel_ops, grads_sel = _backward_op_counts(config)
    config["segment"]["checkpoint_activations"] = True
    full_ops, _ = _backward_op_counts(config)
    assert grads.keys() == grads_sel.keys() and "placement.memory" in grads
    for name, g in grads.items():
        torch.testing.assert_close(grads_sel[name], g, rtol=1e-5, atol=1e-6, msg=name)
    matmuls = ("mm", "addmm", "bmm")
    assert sum(full_ops[m] for m in matmuls) > sum(plain_ops[m] for m in matmuls)  # full: forward re-run
    assert sum(sel_ops[m] for m in matmuls) == sum(plain_ops[m] for m in matmuls)  # selective: none re-run
    assert sel_ops["native_layer_norm"] > plain_ops["native_layer_norm"] == 0  # cheap ops are recomputed
    assert rmtzoo.load_config(config | {"segment": {"length": 4, "checkpoint_activations": "selective"}},
                              registry=REGISTRY).model_dump()["segment"]["checkpoint_activations"] == "selective"


def test_selective_checkpointing_runs_under_bf16_autocast():
    config = _config(recurrence={"kind": "rmt"})
    config["segment"]["checkpoint_activations"] = "selective"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, grads, _ = _bptt_grads(config, n_segments=3)
    assert torch.isfinite(loss) and grads["placement.memory"].abs().sum() > 0


# -- (7) the released code's behaviours as named options ---------------------------------------------
def test_lm_rmt_rel_shift_is_the_zero_pad_skew_with_its_wrapped_values_right_of_a_query():
    n_cache, s = 2, 5
    k = n_cache + s
    position = torch.arange(s * k, dtype=torch.float).view(s, k) + 1  # every entry distinct and nonzero
    got = txl.lm_rmt_rel_shift(position, k)
    for i in range(s):
        for j in range(k):
            if j <= n_cache + i:  # at or left of the query: distance C+i-j, column K-1-(C+i-j)
                want = position[i, k - 1 - (n_cache + i - j)]
            elif j == n_cache + i + 1:
                want = torch.tensor(0.0)
            else:  # further right: the next query row's term
                want = position[i + 1, j - n_cache - i - 2]
            assert got[i, j] == want, (i, j)
    signed = txl.rel_shift(torch.cat([position, position[:, -1:]], dim=1), k)  # one spare column: ahead 1
    causal = torch.ones(s, k, dtype=torch.bool).tril(n_cache)
    assert torch.equal(got[causal], signed[causal])


def _logits(config, ids):
    torch.manual_seed(0)
    model = _nonzero_biases(rmtzoo.build_model(rmtzoo.load_config(config, registry=REGISTRY), registry=REGISTRY))
    model.eval()
    return model.forward_sequence(ids).logits


@pytest.mark.parametrize("memory", ["none", "read_write", "shared"])
def test_lm_rmt_distances_change_the_logits_only_where_a_key_sits_right_of_its_query(memory):
    ids = torch.randint(0, 13, (2, 12), generator=torch.Generator().manual_seed(3))
    recurrence = {"kind": "xl", "cache_len": 4} if memory == "none" else {"kind": "rmt"}
    signed = _config(memory, recurrence)
    signed["backbone"] = {**signed["backbone"], "init_std": 0.3}  # weights large enough for the term to tell
    lm_rmt = {**signed, "backbone": {**signed["backbone"], "relative_distances": "lm_rmt"}}
    a, b = _logits(signed, ids), _logits(lm_rmt, ids)
    if memory == "none":  # plain causal segments with a cache: no key right of a query
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    else:  # memory slots read later memory slots: the segment tokens read that memory
        assert (a - b).abs().max() > 1e-3
    assert "relative_distances" not in rmtzoo.load_config(signed, registry=REGISTRY).model_dump()["backbone"]


def test_bptt_rerun_newest_memory_changes_what_a_segment_reads_and_exact_does_not():
    """With k = 1 the exact re-run reproduces the memory the segment would read anyway (same forward
    values as without a gradient); the released LM code's re-run from the newest memory does not."""
    ids = torch.randint(0, 13, (2, 16), generator=torch.Generator().manual_seed(4))
    out = {}
    for rerun in ("exact", "newest_memory"):
        config = _config(recurrence={"kind": "rmt", "bptt_depth": 1, "bptt_rerun": rerun})
        config["backbone"]["init_std"] = 0.3  # weights large enough for the memory to tell
        torch.manual_seed(0)
        model = rmtzoo.build_model(rmtzoo.load_config(config, registry=REGISTRY), registry=REGISTRY).eval()
        with torch.no_grad():
            plain = model.forward_sequence(ids).logits  # no gradient: no re-run
        with torch.enable_grad():
            rerun_logits = model.forward_sequence(ids).logits.detach()
        out[rerun] = (plain, rerun_logits)
    torch.testing.assert_close(out["exact"][1], out["exact"][0], rtol=0, atol=1e-5)
    first_two = slice(0, 8)  # segments 1-2: nothing to re-run yet
    torch.testing.assert_close(out["newest_memory"][1][:, first_two], out["newest_memory"][0][:, first_two])
    assert (out["newest_memory"][1][:, 8:] - out["newest_memory"][0][:, 8:]).abs().max() > 1e-2
    exact = rmtzoo.load_config(_config(recurrence={"kind": "rmt", "bptt_depth": 1, "bptt_rerun": "exact"}),
                               registry=REGISTRY)
    assert "bptt_rerun" not in exact.model_dump()["recurrence"]
