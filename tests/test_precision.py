"""The model under bf16 autocast and torch.compile gives what it gives in plain fp32 (within precision)."""

from __future__ import annotations

import pytest
import torch

import rmtzoo

CONFIG = {
    "backbone": {"kind": "transformer_xl", "vocab_size": 32, "n_layer": 2, "n_head": 2, "d_model": 32,
                 "d_head": 16, "d_inner": 64, "dropout": 0.0},
    "memory": {"kind": "read_write", "num_tokens": 3},
    "recurrence": {"kind": "rmt_xl", "cache_len": 6, "bptt_depth": 1},
    "segment": {"length": 6},
}


def _model():
    return rmtzoo.build_model(rmtzoo.load_config(CONFIG, registry=rmtzoo.Registry(environ={})))


def test_bf16_autocast_matches_fp32_and_backpropagates():
    model = _model()
    ids = torch.randint(0, 32, (2, 20), generator=torch.Generator().manual_seed(0))
    ref = model.forward_sequence(ids).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_sequence(ids).logits
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)
    assert (out.float().argmax(-1) == ref.argmax(-1)).float().mean() > 0.9
    out.float().sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.placement.memory.grad.abs().sum() > 0  # memory is trained under autocast too


@pytest.mark.slow
def test_torch_compile_matches_eager():
    model = _model()
    ids = torch.randint(0, 32, (2, 20), generator=torch.Generator().manual_seed(0))
    ref = model.forward_sequence(ids).logits
    model.backbone = torch.compile(model.backbone)
    out = model.forward_sequence(ids).logits
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert model.placement.memory.grad.abs().sum() > 0
