"""Malformed inputs handed to a model raise :class:`rmtzoo.InputError` naming the problem."""

from __future__ import annotations

import re

import pytest
import torch

import rmtzoo

VOCAB = 13
SEGMENT = 4
CONFIG = {
    "backbone": {"kind": "transformer_xl", "vocab_size": VOCAB, "n_layer": 1, "n_head": 2, "d_model": 16,
                 "d_head": 8, "d_inner": 32, "dropout": 0.0},
    "memory": {"kind": "read_write", "num_tokens": 2},
    "recurrence": {"kind": "rmt", "bptt_depth": 1},
    "segment": {"length": SEGMENT},
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """A tiny model gains nothing from intra-op threads; on a busy machine they only add hand-off stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    return rmtzoo.build_model(CONFIG, registry=rmtzoo.Registry(environ={}, entry_points=False)).eval()


@pytest.fixture(scope="module")
def strict_model():
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    config = rmtzoo.load_config(CONFIG, ["segment.last=error"], registry=registry)
    return rmtzoo.build_model(config, registry=registry).eval()


def ids(batch: int, tokens: int, *, dtype=torch.long) -> torch.Tensor:
    return torch.arange(batch * tokens).remainder(VOCAB).view(batch, tokens).to(dtype)


def raises_input_error(match: str):
    return pytest.raises(rmtzoo.InputError, match=match)


def test_good_input_runs(model):
    """The baseline the bad inputs are measured against."""
    out, state = model.step(ids(2, SEGMENT), model.initial_state(2))
    assert out.logits.shape == (2, SEGMENT, VOCAB)
    assert state.n_segments == 1 and state.batch_size == 2
    seq = model.forward_sequence(ids(2, 3 * SEGMENT - 1))
    assert seq.logits.shape == (2, 3 * SEGMENT - 1, VOCAB) and seq.state.n_segments == 3


def test_input_error_is_an_rmtzoo_error():
    assert issubclass(rmtzoo.InputError, rmtzoo.RmtzooError)
    assert not issubclass(rmtzoo.InputError, rmtzoo.ConfigError)


# -- dtype -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64, torch.bool, torch.complex64])
def test_non_integer_ids_step(model, dtype):
    with raises_input_error(rf"integer tensor \(torch.long\), got dtype {re.escape(str(dtype))}") as err:
        model.step(ids(2, SEGMENT, dtype=dtype), model.initial_state(2))
    assert type(err.value) is rmtzoo.InputError


def test_float_ids_forward_sequence(model):
    with raises_input_error(r"must be an integer tensor .*got dtype torch.float32"):
        model.forward_sequence(ids(2, 2 * SEGMENT, dtype=torch.float32))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_other_integer_dtypes_are_accepted(model, dtype):
    out = model.forward_sequence(ids(2, 2 * SEGMENT, dtype=dtype))
    ref = model.forward_sequence(ids(2, 2 * SEGMENT))
    assert torch.equal(out.logits, ref.logits)


# -- rank ------------------------------------------------------------------------------------------------------
def test_rank_1_ids(model):
    with raises_input_error(r"\[batch, tokens\].*shape \(4,\)"):
        model.step(ids(1, SEGMENT).view(-1), model.initial_state(1))
    with raises_input_error(r"\[batch, tokens\].*shape \(8,\)"):
        model.forward_sequence(ids(1, 8).view(-1))


def test_rank_3_ids(model):
    with raises_input_error(r"\[batch, tokens\].*shape \(2, 2, 2\)"):
        model.step(ids(2, SEGMENT).view(2, 2, 2), model.initial_state(2))
    with raises_input_error(r"\[batch, tokens\].*shape \(2, 4, 2\)"):
        model.forward_sequence(ids(2, 8).view(2, 4, 2))


def test_not_a_tensor(model):
    with raises_input_error("segment_ids must be a torch.Tensor of token ids, got list"):
        model.step([[1, 2, 3]], model.initial_state(1))
    with raises_input_error(r"ids must be a \[batch, tokens\] tensor, got list"):
        model.forward_sequence([[1, 2, 3]])


# -- vocabulary ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, -100, VOCAB, VOCAB + 5])
def test_ids_outside_vocabulary(model, bad):
    x = ids(2, SEGMENT)
    x[1, 2] = bad
    with raises_input_error(rf"token id {bad} is outside the vocabulary \[0, {VOCAB}\)"):
        model.step(x, model.initial_state(2))
    y = ids(2, 3 * SEGMENT)
    y[0, -1] = bad  # in the last segment: still rejected
    with raises_input_error(rf"token id {bad} is outside the vocabulary"):
        model.forward_sequence(y)


def test_boundary_ids_are_accepted(model):
    x = ids(2, SEGMENT)
    x[0, 0], x[1, 3] = 0, VOCAB - 1
    out, _ = model.step(x, model.initial_state(2))
    assert torch.isfinite(out.logits).all()


# -- empty -----------------------------------------------------------------------------------------------------
def test_zero_tokens(model):
    with raises_input_error(r"empty sequence \(0 tokens\)"):
        model.forward_sequence(torch.zeros(2, 0, dtype=torch.long))
    with raises_input_error(r"segment_ids is empty \(shape \(2, 0\)\)"):
        model.step(torch.zeros(2, 0, dtype=torch.long), model.initial_state(2))


def test_zero_batch(model):
    with raises_input_error(r"batch_size must be a positive int, got 0"):
        model.forward_sequence(torch.zeros(0, SEGMENT, dtype=torch.long))
    with raises_input_error(r"segment_ids is empty \(shape \(0, 4\)\)"):
        model.step(torch.zeros(0, SEGMENT, dtype=torch.long), model.initial_state(2))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None])
def test_initial_state_bad_batch_size(model, bad):
    with raises_input_error(rf"batch_size must be a positive int, got {re.escape(repr(bad))}"):
        model.initial_state(bad)


# -- segment length ----------------------------------------------------------------------------------------------
def test_segment_longer_than_segment_length(model):
    with raises_input_error(rf"segment of {SEGMENT + 1} tokens is longer than segment.length {SEGMENT}"):
        model.step(ids(2, SEGMENT + 1), model.initial_state(2))


def test_shorter_segment_is_accepted_by_step(model):
    out, _ = model.step(ids(2, SEGMENT - 1), model.initial_state(2))
    assert out.logits.shape == (2, SEGMENT - 1, VOCAB)


@pytest.mark.parametrize("n", [1, SEGMENT - 1, SEGMENT + 1, 3 * SEGMENT - 2])
def test_last_error_rejects_partial_segment(strict_model, n):
    with raises_input_error(rf"sequence length {n} is not a multiple of segment.length {SEGMENT}.*segment.last"):
        strict_model.forward_sequence(ids(2, n))


def test_last_error_accepts_multiples(strict_model):
    out = strict_model.forward_sequence(ids(2, 2 * SEGMENT))
    assert out.logits.shape == (2, 2 * SEGMENT, VOCAB) and out.state.n_segments == 2


# -- state ---------------------------------------------------------------------------------------------------------
def test_batch_size_differs_from_state(model):
    with raises_input_error("segment_ids has batch size 3 but the state was made for batch size 2"):
        model.step(ids(3, SEGMENT), model.initial_state(2))
    _, state = model.step(ids(2, SEGMENT), model.initial_state(2))
    with raises_input_error("batch size 1 but the state was made for batch size 2"):
        model.step(ids(1, SEGMENT), state)
    with raises_input_error("batch size 2 but the state was made for batch size 5"):
        model.forward_sequence(ids(2, SEGMENT), model.initial_state(5))


@pytest.mark.parametrize("state", [None, {"memory": None}, "state", torch.zeros(2, 2, 16)])
def test_state_is_not_a_recurrent_state(model, state):
    kind = type(state).__name__ if not isinstance(state, torch.Tensor) else r"tensor of shape \(2, 2, 16\)"
    with raises_input_error(rf"state must be a RecurrentState from initial_state\(\) or step\(\), got {kind}"):
        model.step(ids(2, SEGMENT), state)


def test_state_checked_before_ids(model):
    """With both wrong, the state is reported (the ids cannot be checked against a missing state)."""
    with raises_input_error("state must be a RecurrentState"):
        model.step(ids(2, SEGMENT, dtype=torch.float32), None)


def test_bad_input_leaves_model_usable(model):
    state = model.initial_state(2)
    out_a, _ = model.step(ids(2, SEGMENT), state)
    with pytest.raises(rmtzoo.InputError):
        model.step(ids(2, SEGMENT) + VOCAB, state)
    out_b, _ = model.step(ids(2, SEGMENT), state)
    assert torch.equal(out_a.logits, out_b.logits)
