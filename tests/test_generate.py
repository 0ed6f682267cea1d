"""Generation: batched prompts, top-k / top-p, stop tokens, streaming with memory (and cache) carried
across segments, and the one-line errors of ``rmtzoo generate``'s options."""

from __future__ import annotations

import re

import pytest
import torch

import rmtzoo
from rmtzoo.cli import main
from rmtzoo.train._generate import filter_logits

CONFIG = """\
seed = {seed}

[backbone]
kind = "transformer_xl"
vocab_size = 23
n_layer = 2
n_head = 2
d_model = 16
d_head = 8
d_inner = 32
dropout = 0.0
init_std = 0.5

[memory]
kind = "read_write"
num_tokens = 2

[recurrence]
kind = "{recurrence}"
{extra}

[segment]
length = 4
"""


def _model(tmp_path, recurrence="rmt", seed=0):
    extra = "cache_len = 6" if recurrence == "rmt_xl" else ""
    path = tmp_path / f"{recurrence}-{seed}.toml"
    path.write_text(CONFIG.format(recurrence=recurrence, extra=extra, seed=seed))
    registry = rmtzoo.Registry(environ={}, entry_points=False)
    model = rmtzoo.build_model(rmtzoo.load_config(path, registry=registry), registry=registry)
    return model.eval()


def _whole_pass_greedy(model, prompt, generated):
    """What a whole-sequence pass over prompt + generated tokens predicts at each generated position."""
    with torch.no_grad():
        logits = model.forward_sequence(torch.tensor([prompt + generated])).logits[0]  # [N, V]
    return logits[len(prompt) - 1 : -1].argmax(-1).tolist()


PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10], [11, 12, 13, 14, 15, 16, 17, 18, 19], [1, 2, 3], [5, 6, 7, 8]]


@pytest.mark.parametrize("recurrence", ["rmt", "rmt_xl"])
def test_batched_prompts_equal_one_by_one_greedy(tmp_path, recurrence):
    """Prompts of different lengths (segment boundaries in different places) and equal lengths, in one
    batch: each gets exactly what it gets alone, with memory (and the Transformer-XL cache) carried."""
    model = _model(tmp_path, recurrence)
    alone = [list(rmtzoo.generate(model, p, 11)) for p in PROMPTS]
    assert len({tuple(a) for a in alone}) > 2  # the prompts lead to different continuations
    assert rmtzoo.generate_batch(model, PROMPTS, 11) == alone
    for prompt, tokens in zip(PROMPTS, alone, strict=True):
        assert _whole_pass_greedy(model, prompt, tokens) == tokens


def test_top_k_1_equals_greedy_at_any_temperature(tmp_path):
    model = _model(tmp_path, "rmt_xl", seed=1)
    for prompt in PROMPTS[:4]:
        greedy = list(rmtzoo.generate(model, prompt, 9))
        for temperature in (0.5, 3.0):
            g = torch.Generator().manual_seed(7)
            sampled = list(rmtzoo.generate(model, prompt, 9, temperature=temperature, top_k=1, generator=g))
            assert sampled == greedy
        # a tiny nucleus keeps only the most likely token too
        assert list(rmtzoo.generate(model, prompt, 9, temperature=2.0, top_p=1e-6)) == greedy


def test_sampling_draws_only_from_the_top_k(tmp_path):
    """Every sampled token is among the k most likely of the whole-sequence pass at its position."""
    model = _model(tmp_path)
    prompt = PROMPTS[1]
    g = torch.Generator().manual_seed(0)
    sampled = list(rmtzoo.generate(model, prompt, 20, temperature=5.0, top_k=3, generator=g))
    with torch.no_grad():
        logits = model.forward_sequence(torch.tensor([prompt + sampled])).logits[0]
    top3 = logits[len(prompt) - 1 : -1].topk(3, dim=-1).indices.tolist()
    assert all(t in allowed for t, allowed in zip(sampled, top3, strict=True))
    g = torch.Generator().manual_seed(0)
    unrestricted = list(rmtzoo.generate(model, prompt, 20, temperature=5.0, generator=g))
    assert not all(t in allowed for t, allowed in zip(unrestricted, top3, strict=True))  # the limit mattered


def test_filter_logits_top_k_and_nucleus():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = lambda **kw: torch.isfinite(filter_logits(logits, **kw))[0].tolist()  # noqa: E731
    assert kept(top_k=2, top_p=None) == [True, True, False, False]
    assert kept(top_k=None, top_p=0.7) == [True, True, False, False]  # 0.5 + 0.3 reaches 0.7
    assert kept(top_k=None, top_p=0.5) == [True, False, False, False]
    assert kept(top_k=None, top_p=0.81) == [True, True, True, False]
    assert kept(top_k=None, top_p=1.0) == [True] * 4
    assert kept(top_k=3, top_p=0.9) == [True, True, True, False]
    shuffled = logits[:, [2, 0, 3, 1]]  # the nucleus follows the probabilities, not the positions
    assert torch.isfinite(filter_logits(shuffled, None, 0.7))[0].tolist() == [False, True, False, True]


def test_stop_tokens_end_each_prompt_where_it_draws_one(tmp_path):
    model = _model(tmp_path)
    alone = [list(rmtzoo.generate(model, p, 12)) for p in PROMPTS]
    # a token of the first continuation (not its first) that some other continuation never draws
    stop = next(t for t in alone[0][1:] if any(t not in tokens for tokens in alone))
    expected = [tokens[: tokens.index(stop)] if stop in tokens else tokens for tokens in alone]
    assert 1 <= len(expected[0]) < 12
    assert any(len(e) == 12 for e in expected)  # some prompts never draw it and run to max_new_tokens
    assert [list(rmtzoo.generate(model, p, 12, stop_tokens=[stop])) for p in PROMPTS] == expected
    assert rmtzoo.generate_batch(model, PROMPTS, 12, stop_tokens={stop}) == expected


def test_streaming_across_segment_boundaries_equals_the_batch_result(tmp_path):
    """Tokens taken one at a time from the iterator (memory committed at every 4th token, the prompt
    ending mid-segment) equal the non-streamed result and a whole-sequence pass."""
    model = _model(tmp_path, "rmt_xl")
    prompt = [3, 1, 4, 1, 5, 9]  # one whole segment, then 2 tokens of the open one
    stream = rmtzoo.generate(model, prompt, 14)
    first = [next(stream) for _ in range(3)]  # crosses the boundary at the 8th token
    rest = list(stream)
    streamed = first + rest
    assert len(streamed) == 14
    assert streamed == rmtzoo.generate_batch(model, [prompt], 14)[0]
    assert streamed == _whole_pass_greedy(model, prompt, streamed)


@pytest.mark.parametrize(("options", "message"), [
    ({"max_new_tokens": -5}, r"max_new_tokens must be an integer >= 1, got -5"),
    ({"max_new_tokens": 0}, r"max_new_tokens must be an integer >= 1"),
    ({"temperature": -1}, r"temperature must be a finite number >= 0 \(0: greedy\), got -1"),
    ({"temperature": float("nan")}, r"temperature must be a finite number >= 0"),
    ({"top_k": 0}, r"top_k must be an integer >= 1"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
])
def test_bad_options_are_one_line_errors(tmp_path, options, message):
    model = _model(tmp_path)
    options = {"max_new_tokens": 3, **options}
    with pytest.raises(rmtzoo.InputError, match=message):
        list(rmtzoo.generate(model, [1, 2], options.pop("max_new_tokens"), **options))
    with pytest.raises(rmtzoo.InputError, match=r"every prompt needs at least one token"):
        rmtzoo.generate_batch(model, [[1], []], 3)


@pytest.mark.parametrize(("argv", "message"), [
    (["--max-tokens", "-5"], r"argument --max-tokens: expected an integer >= 1, got '-5'"),
    (["--temperature", "-1"], r"argument --temperature: expected a number >= 0, got '-1'"),
    (["--temperature", "nan"], r"argument --temperature: expected a number >= 0, got 'nan'"),
    (["--top-k", "0"], r"argument --top-k: expected an integer >= 1, got '0'"),
    (["--top-p", "0"], r"argument --top-p: expected a number \(0, 1\], got '0'"),
    (["--top-p", "1.01"], r"argument --top-p: expected a number \(0, 1\], got '1.01'"),
])
def test_cli_rejects_out_of_range_options_with_one_line(tmp_path, capsys, argv, message):
    """``rmtzoo generate <run> --max-tokens -5`` used to print nothing and exit 0; ``--temperature -1``
    was silently greedy. Each is rejected before the run is loaded, one line, exit 2."""
    with pytest.raises(SystemExit) as exc:
        main(["--no-entry-points", "generate", str(tmp_path / "run"), "--ids", "1,2", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert re.search(message, err[0]), err[0]


# -- keys and values of the open segment reused (issue 14) ---------------------------------------------
def _tokens(model, prompts, n, **options):
    from rmtzoo.train._generate import stream_batch

    out = [[] for _ in prompts]
    for step in stream_batch(model, prompts, n, **options):
        for i, token in step.items():
            out[i].append(token)
    return out


def _decoder_combos():
    from rmtzoo.testing import all_combos, is_valid

    registry = rmtzoo.Registry(environ={}, entry_points=False)
    return registry, [c for c in all_combos(registry) if c.backbone == "transformer_xl" and is_valid(c, registry)]


REGISTRY_GEN, DECODER_COMBOS = _decoder_combos()


@pytest.mark.parametrize("combo", DECODER_COMBOS, ids=lambda c: c.id)
def test_reused_keys_generate_the_tokens_of_the_rerun_path(combo):
    """Every placement and recurrence of the Transformer-XL decoder: extending the open segment gives the
    tokens re-running it gives, greedy and sampled, one prompt and a batch of different lengths."""
    model = rmtzoo.build_model(combo.config(segment_length=4, seed=1), registry=REGISTRY_GEN).eval()
    for p in model.parameters():  # large weights: the tokens depend on every position
        torch.nn.init.normal_(p, 0.0, 0.5)
    assert model.supports_extend(model.initial_state(1))
    prompts = [[1, 2, 3, 4, 5], [3], [2, 2, 2, 2, 2], [7, 8]]
    assert _tokens(model, prompts, 9, reuse_keys=True) == _tokens(model, prompts, 9, reuse_keys=False)
    sampled = {}
    for reuse in (True, False):
        sampled[reuse] = _tokens(model, prompts[:1], 9, temperature=1.0, reuse_keys=reuse,
                                 generator=torch.Generator().manual_seed(0))
    assert sampled[True] == sampled[False]


def test_extend_segment_logits_equal_step_logits(tmp_path):
    model = _model(tmp_path, "rmt_xl")
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5]])
    with torch.no_grad():
        _, state = model.step(ids[:, :4], model.initial_state(1))  # a cache and a written memory
        _, state = model.step(ids[:, 4:8], state)
        open_ = model.open_segment(state)
        for t in range(1, 5):
            step_logits = model.step(torch.tensor([[5, 3, 5, 8][:t]]), state)[0].logits[:, -1]
            logits, open_ = model.extend_segment(torch.tensor([[[5, 3, 5, 8][t - 1]]]), state, open_)
            torch.testing.assert_close(logits[:, -1], step_logits, rtol=1e-5, atol=1e-5)


def _positions_per_token(model, prompt, n, **options):
    """Positions the first layer projects between consecutive new tokens (a forward hook counts rows)."""
    from rmtzoo.train._generate import stream_batch

    rows = []
    hook = model.backbone.layers[0].qkv_net.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[1]))
    counts, seen = [], 0
    try:
        for _ in stream_batch(model, [prompt], n, **options):
            counts.append(sum(rows[seen:]))
            seen = len(rows)
    finally:
        hook.remove()
    return counts


@pytest.mark.parametrize("recurrence", ["rmt", "rmt_xl"])
def test_a_new_token_computes_one_position_however_many_came_before(tmp_path, recurrence):
    model = _model(tmp_path, recurrence)  # segments of 4, 2 memory tokens (cache 6 with rmt_xl)
    counts = _positions_per_token(model, [1, 2, 3, 4, 5], 14)
    # Before token 0: the prompt's whole first segment (one step: 2 + 4 + 2 positions, no cache yet),
    # then opening segment 2: its read memory (2) with the cache projected once (6 with rmt_xl), and
    # prompt token 5. Then one position a token; the token that fills a segment is followed by its
    # commit (one step: 2 + 4 + 2; the cache's keys and values are those the last step projected, so
    # they are not projected again), and the token after that opens the next segment again.
    cache = 6 if recurrence == "rmt_xl" else 0
    assert counts[0] == 8 + (2 + cache) + 1
    commits = {3, 7, 11}  # tokens 0-2 fill segment 2 (after prompt token 5); its commit precedes token 3
    for k, count in enumerate(counts[1:], start=1):
        want = 8 if k in commits else (2 + cache + 1 if k - 1 in commits else 1)
        assert count == want, (k, counts)
    rerun = _positions_per_token(model, [1, 2, 3, 4, 5], 14, reuse_keys=False)
    assert rerun[2] > rerun[1] > 1  # the old path re-ran the whole open segment for every token


def test_a_commit_in_a_batch_does_not_project_the_cache_again(tmp_path):
    """Two prompts committed as one batch: each row's commit computes its segment's 8 positions only,
    and the tokens are those each prompt gives alone."""
    from rmtzoo.train._generate import generate_batch

    model = _model(tmp_path, "rmt_xl")  # segments of 4, 2 memory tokens, cache 6
    prompts = [[1, 2, 3, 4, 5], [2, 7, 1, 8, 2]]
    rows = []
    hook = model.backbone.layers[0].qkv_net.register_forward_hook(
        lambda m, args, out: rows.append(tuple(args[0].shape[:2])))
    try:
        batch = generate_batch(model, prompts, 11)
    finally:
        hook.remove()
    # batch-1 rows open each prompt's segment (read memory + cache: 8); the batch-2 rows past one
    # position are the prompts' first segment and the 3 commits
    commits = [r for r in rows if r[0] == 2 and r[1] > 1]
    assert commits == [(2, 8)] * 4, rows
    assert batch == [generate_batch(model, [p], 11)[0] for p in prompts]
