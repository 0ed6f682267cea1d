"""Streaming without gradient computes nothing twice (issue 14): the Tr-XL cache's keys and values are
carried in the state (``RecurrentState.cache_keys``) instead of being projected again, and the projected
relative table is kept per layout; both give what the recomputing path gives, and neither survives a
change of the weights."""

from __future__ import annotations

import pytest
import torch

import rmtzoo

REGISTRY = rmtzoo.Registry(environ={}, entry_points=False)


def _model(recurrence="rmt_xl", pre_lnorm=False, **backbone):
    rec = {"kind": recurrence, **({"cache_len": 6} if "xl" in recurrence else {})}
    config = {
        "backbone": {"kind": "transformer_xl", "vocab_size": 13, "n_layer": 2, "n_head": 2, "d_model": 16,
                     "d_head": 8, "d_inner": 32, "dropout": 0.0, "init_std": 0.3, "pre_lnorm": pre_lnorm, **backbone},
        "memory": {"kind": "read_write", "num_tokens": 2},
        "recurrence": rec,
        "segment": {"length": 4},
        "seed": 0,
    }
    return rmtzoo.build_model(config, registry=REGISTRY).eval()


IDS = torch.randint(0, 13, (2, 18), generator=torch.Generator().manual_seed(0))  # 4 x 4 + 2 tokens


@pytest.mark.parametrize("recurrence", ["xl", "rmt_xl"])
@pytest.mark.parametrize("pre_lnorm", [False, True])
def test_no_grad_streaming_equals_the_recomputing_path(recurrence, pre_lnorm):
    model = _model(recurrence, pre_lnorm)
    with torch.no_grad():
        fast = model.forward_sequence(IDS)
    with torch.enable_grad():  # the projection is part of the graph: nothing is carried
        slow = model.forward_sequence(IDS)
    assert slow.state.cache_keys is None and fast.state.cache_keys is not None
    torch.testing.assert_close(fast.logits, slow.logits.detach(), rtol=1e-5, atol=1e-5)
    for a, b in zip(fast.state.cache, slow.state.cache, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-5)


def _rows(module, fn):
    rows = []
    hook = module.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[-2]))
    try:
        fn()
    finally:
        hook.remove()
    return rows


def test_the_cache_is_projected_once_and_the_relative_table_once_per_layout():
    model = _model("rmt_xl")
    layer = model.backbone.layers[0]

    def stream():
        with torch.no_grad():
            state = model.initial_state(2)
            for start in range(0, 16, 4):
                _, state = model.step(IDS[:, start : start + 4], state)

    # every segment projects its own 2 + 4 + 2 positions only; the cache (6) is never projected again
    assert _rows(layer.qkv_net, stream) == [8, 8, 8, 8]
    # the relative tables: no cache (segment 1), a cache of 6 (segments 2-4): two projections, then none
    layer.__dict__.pop("_position_memo", None)
    assert len(_rows(layer.r_net, stream)) == 2
    assert _rows(layer.r_net, stream) == []


def test_carried_keys_are_not_used_once_the_weights_change():
    model = _model("rmt_xl")
    with torch.no_grad():
        _, state = model.step(IDS[:, :4], model.initial_state(2))
        _, state = model.step(IDS[:, 4:8], state)
        assert state.cache_keys is not None
        for p in model.parameters():  # an optimizer step: in place
            p.add_(0.05)
        fresh = rmtzoo.RecurrentState(2, state.memory, state.cache, (), state.n_segments)
        want = model.step(IDS[:, 8:12], fresh)[0].logits
        got = model.step(IDS[:, 8:12], state)[0].logits
    torch.testing.assert_close(got, want)
