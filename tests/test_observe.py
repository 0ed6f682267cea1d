"""Observing a segment through ``model.step``'s return value: the memory it read, the backbone's input
(read memory, token embeddings, write memory) and the attention mask, without wrapping any module."""

from __future__ import annotations

import torch

import rmtzoo

CONFIG = {
    "backbone": {"kind": "transformer_xl", "vocab_size": 12, "n_layer": 1, "d_model": 8, "d_head": 4, "n_head": 2,
                 "d_inner": 16},
    "memory": {"kind": "read_write", "num_tokens": 2},
    "recurrence": {"kind": "rmt_xl", "cache_len": 3, "memory_reads_cache": False},
    "segment": {"length": 4},
}


def test_step_output_carries_what_the_segment_was_computed_from():
    model = rmtzoo.build_model(CONFIG, registry=rmtzoo.Registry(environ={}, entry_points=False)).eval()
    ids = torch.randint(0, 12, (2, 8), generator=torch.Generator().manual_seed(0))
    state = model.initial_state(2)
    for k, segment in enumerate(model.split_segments(ids)):
        before = state
        out, state = model.step(segment, state)
        torch.testing.assert_close(out.read, before.memory)  # the memory this segment read
        assert out.inputs.shape == (2, 2 + 4 + 2, 8)  # [B, R+T+W, D]
        torch.testing.assert_close(out.inputs[:, :2], before.memory)
        torch.testing.assert_close(out.inputs[:, 2:6], model.backbone.embed(segment))
        torch.testing.assert_close(out.inputs[:, 6:], before.memory)
        n_cache = 0 if k == 0 else 3
        expected = model.placement.mask(4, n_cache, causal=True, memory_reads_cache=False)
        assert torch.equal(out.mask, expected)  # [S, C+S], True: may attend
        assert not out.mask[:2, :n_cache].any()  # read memory does not see the cache here
