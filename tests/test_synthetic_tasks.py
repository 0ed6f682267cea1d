"""The algorithmic-task generators against PAPER.md section 2: formats, vocabularies, lengths, splits,
and the segmenting table of section 2.5."""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from functools import partial

import pytest

import rmtzoo
from rmtzoo.tasks.synthetic import (
    IGNORE_INDEX,
    PAPER_SPLIT_SIZES,
    QUADRATIC_SYMBOLS,
    QUADRATIC_TOKEN_IDS,
    SAMPLE_FUNCTIONS,
    Sample,
    associative_retrieval_sample,
    copy_sample,
    generate_splits,
    quadratic_equation_sample,
    quadratic_equation_text,
    quadratic_sample_from_steps,
    quadratic_steps,
    quadratic_steps_without_roots,
    quadratic_text_from_ids,
    reverse_sample,
    segment_bounds,
    task_lengths,
)

X = IGNORE_INDEX
SHORT_COPY = partial(copy_sample, src_len=24, n_symbols=10)
SHORT_REVERSE = partial(reverse_sample, src_len=24, n_symbols=10)
ALL_TASKS = {
    "copy": SHORT_COPY,
    "reverse": SHORT_REVERSE,
    "long_copy": partial(copy_sample, src_len=120, n_symbols=8),
    "associative_retrieval": associative_retrieval_sample,
    "quadratic_equations": quadratic_equation_sample,
}


# Copy and reverse (sections 2.1, 2.2) ------------------------------------------------------------------


def test_copy_layout_by_hand():
    sample = copy_sample(random.Random(7), src_len=3, n_symbols=10)
    a, b, c = sample.input_ids[:3]
    assert sample.input_ids == (a, b, c, 1, a, b, c, a, b)  # src + [1] + target, minus the last token
    assert sample.labels == (X, X, X, a, b, c, a, b, c)  # the source twice, predicted from the start token on
    assert sample.answer_start == 3 and sample.input_ids[sample.answer_start] == 1
    assert {a, b, c} <= set(range(2, 12))


def test_reverse_layout_by_hand():
    sample = reverse_sample(random.Random(7), src_len=3, n_symbols=10)
    a, b, c = sample.input_ids[:3]
    assert sample.input_ids == (a, b, c, 1, c, b)
    assert sample.labels == (X, X, X, c, b, a)
    assert sample.answer_start == 3


@pytest.mark.parametrize(
    ("fn", "src_len", "n_symbols", "length", "n_target"),
    [
        (copy_sample, 24, 10, 72, 48),
        (reverse_sample, 24, 10, 48, 24),
        (copy_sample, 120, 8, 360, 240),
        (reverse_sample, 120, 8, 240, 120),
    ],
)
def test_copy_reverse_lengths_and_vocab(fn, src_len, n_symbols, length, n_target):
    rng = random.Random(0)
    used = Counter()
    for _ in range(50):
        sample = fn(rng, src_len=src_len, n_symbols=n_symbols)
        assert len(sample.input_ids) == len(sample.labels) == length
        assert sample.labels[:-n_target] == (X,) * (length - n_target)  # loss on the target only
        assert X not in sample.labels[-n_target:]
        assert sample.answer_start == src_len == length - n_target
        # the labels are the next input token wherever both exist
        assert sample.labels[src_len:-1] == sample.input_ids[src_len + 1 :]
        used.update(sample.input_ids[:src_len])
    # vocab 12 (short: symbols 2..11) or 10 (long: 2..9); all symbols drawn, never pad or start
    assert set(used) == set(range(2, 2 + n_symbols))


# Associative retrieval (section 2.3) ---------------------------------------------------------------------


def test_associative_retrieval_format():
    rng = random.Random(0)
    queried = Counter()
    for _ in range(2000):
        sample = associative_retrieval_sample(rng)
        ids = sample.input_ids
        keys, values, query = ids[0:8:2], ids[1:8:2], ids[8]
        assert len(ids) == 10 and ids[9] == 10 and sample.answer_start == 9
        assert len(set(keys)) == 4 and all(11 <= k <= 36 for k in keys)
        assert len(set(values)) == 4 and all(0 <= v <= 9 for v in values)
        assert query in keys
        assert sample.labels == (X,) * 9 + (values[keys.index(query)],)
        assert max(ids) < 37
        queried[keys.index(query)] += 1
    assert all(400 < n < 600 for n in queried.values())  # the query is uniform over the 4 keys


def test_associative_retrieval_rejects_more_pairs_than_digits():
    with pytest.raises(ValueError, match="n_pairs"):
        associative_retrieval_sample(random.Random(0), n_pairs=11)


# Quadratic equations (section 2.6) -------------------------------------------------------------------------

PAPER_EXAMPLE = ["-4*x^2+392*x-2208=0", "x^2-98*x+552=0", "D=98^2-4*1*552=7396=86^2", "x=(98-86)/2=6",
                 "x=(98+86)/2=92", "6,92"]  # fmt: skip


def test_quadratic_paper_example():
    assert quadratic_steps(-4, 6, 92) == PAPER_EXAMPLE
    assert quadratic_steps(-4, 92, 6) == PAPER_EXAMPLE  # roots in any order


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            (1, -4, 1),
            ["x^2+3*x-4=0", "x^2+3*x-4=0", "D=3^2-4*1*(-4)=25=5^2", "x=(-3-5)/2=-4", "x=(-3+5)/2=1", "-4,1"],
        ),
        (
            (2, 5, 5),
            ["2*x^2-20*x+50=0", "x^2-10*x+25=0", "D=10^2-4*1*25=0=0^2", "x=(10-0)/2=5", "x=(10+0)/2=5", "5"],
        ),
        (
            (-1, -3, 3),
            ["-x^2+9=0", "x^2-9=0", "D=0^2-4*1*(-9)=36=6^2", "x=(0-6)/2=-3", "x=(0+6)/2=3", "-3,3"],
        ),
        ((1, 0, 7), ["x^2-7*x=0", "x^2-7*x=0", "D=7^2-4*1*0=49=7^2", "x=(7-7)/2=0", "x=(7+7)/2=7", "0,7"]),
        (
            (3, -1, 2),
            ["3*x^2-3*x-6=0", "x^2-x-2=0", "D=1^2-4*1*(-2)=9=3^2", "x=(1-3)/2=-1", "x=(1+3)/2=2", "-1,2"],
        ),
    ],
)
def test_quadratic_signs(args, expected):
    assert quadratic_steps(*args) == expected


def test_quadratic_without_roots():
    assert quadratic_steps_without_roots(2, 1, 1) == [
        "2*x^2+2*x+2=0",
        "x^2+x+1=0",
        "D=1^2-4*1*1=-3",
        "",
        "",
        "",
    ]
    assert quadratic_steps_without_roots(-5, -4, 5)[:3] == [
        "-5*x^2+20*x-25=0",
        "x^2-4*x+5=0",
        "D=4^2-4*1*5=-4",
    ]
    with pytest.raises(ValueError):
        quadratic_steps_without_roots(1, 4, 4)  # D = 0 has a root


def test_quadratic_paper_example_layout():
    sample = quadratic_sample_from_steps(PAPER_EXAMPLE)
    ids = [QUADRATIC_TOKEN_IDS[ch] for ch in "-4*x^2+392*x-2208=0"]
    assert sample.input_ids[:30] == tuple(ids + [0] * (30 - len(ids)))
    answer = [QUADRATIC_TOKEN_IDS[ch] for ch in "6,92"]
    assert sample.input_ids[150:] == tuple(answer + [0] * 26)
    assert sample.labels[149:] == tuple(answer + [0] * 27)  # the answer slot, then the final pad label
    assert sample.answer_start == 149
    assert sample.labels[:30] == (X,) * 30
    assert sample.labels[30:] == sample.input_ids[31:] + (0,)  # shifted by one, pads included
    assert quadratic_text_from_ids(sample.input_ids) == PAPER_EXAMPLE


def test_quadratic_token_table():
    assert QUADRATIC_SYMBOLS == "0123456789+-*/^=()xD;,"
    assert QUADRATIC_TOKEN_IDS == {ch: i + 2 for i, ch in enumerate("0123456789+-*/^=()xD;,")}
    assert min(QUADRATIC_TOKEN_IDS.values()) == 2 and max(QUADRATIC_TOKEN_IDS.values()) == 23


def _value(expression: str, x: int | None = None) -> float:
    assert re.fullmatch(r"[0-9+\-*/^()x]+", expression), expression
    return eval(expression.replace("^", "**"), {"x": x})  # noqa: S307 - checked to be arithmetic only


def _coefficients(equation: str) -> tuple[int, int, int]:
    lhs, rhs = equation.split("=")
    assert rhs == "0"
    c = _value(lhs, 0)
    a_plus_b, a_minus_b = _value(lhs, 1) - c, _value(lhs, -1) - c
    return (a_plus_b + a_minus_b) // 2, (a_plus_b - a_minus_b) // 2, c


def test_quadratic_generated_equations_are_correct():
    rng = random.Random(0)
    rootless = 0
    alphas = Counter()
    for _ in range(2000):
        steps = quadratic_equation_text(rng)
        a, b, c = _coefficients(steps[0])
        assert _coefficients(steps[1]) == (1, b // a, c // a) and b % a == 0 == c % a
        alphas[a] += 1
        d_line = steps[2].split("=")
        assert d_line[0] == "D" and len({_value(e) for e in d_line[1:]}) == 1  # every "=" holds
        d = (b // a) ** 2 - 4 * (c // a)
        assert _value(d_line[2]) == d
        if d < 0:
            rootless += 1
            assert len(d_line) == 3 and steps[3:] == ["", "", ""]
            continue
        roots = [int(r) for r in steps[5].split(",")]
        assert roots == sorted(set(roots)) and all(-99 <= r <= 99 for r in roots)
        assert all(a * r * r + b * r + c == 0 for r in roots)
        lines = [steps[3].split("="), steps[4].split("=")]
        assert all(line[0] == "x" and _value(line[1]) == _value(line[2]) for line in lines)
        assert sorted({int(line[2]) for line in lines}) == roots
    assert 0.15 <= rootless / 2000 <= 0.25
    assert set(alphas) == set(range(-10, 0)) | set(range(1, 11))


def test_quadratic_samples_layout_and_loss():
    rng = random.Random(1)
    for _ in range(500):
        sample = quadratic_equation_sample(rng)
        assert len(sample.input_ids) == len(sample.labels) == 180
        assert set(sample.input_ids) <= {0} | set(range(2, 24))  # vocab 24, id 1 unused
        for start in range(0, 180, 30):  # each step is contiguous, then only padding
            slot = sample.input_ids[start : start + 30]
            n = sum(t != 0 for t in slot)
            assert all(t != 0 for t in slot[:n]) and all(t == 0 for t in slot[n:])
        loss_positions = [i for i, label in enumerate(sample.labels) if label != X]
        assert loss_positions == list(range(30, 180))
        assert sample.labels[30:] == sample.input_ids[31:] + (0,)
        assert sample.answer_start == 149


def test_quadratic_text_and_sample_agree():
    for seed in range(20):
        text = quadratic_equation_text(random.Random(seed))
        assert quadratic_text_from_ids(quadratic_equation_sample(random.Random(seed)).input_ids) == text


def test_quadratic_steps_always_fit_a_slot():
    # the longest D line is exactly 30 symbols, so check every root pair; alpha -10 is the longest equation
    longest = max(
        len(step) for x1 in range(-99, 100) for x2 in range(x1, 100) for step in quadratic_steps(-10, x1, x2)
    )
    assert longest == 30
    for b in range(-197, 198):  # rootless: b as generated, c at the ends of its range
        low = b * b // 4 + 1
        for c in {low, min(low + 1, 9801), 9801}:
            assert max(len(step) for step in quadratic_steps_without_roots(-10, b, c)) <= 30


# Determinism, lengths, splits ------------------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(ALL_TASKS))
def test_same_seed_same_data(task):
    def draw(seed):
        rng = random.Random(seed)
        return [ALL_TASKS[task](rng) for _ in range(20)]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_task_lengths():
    assert task_lengths("copy", src_len=24) == 72
    assert task_lengths("reverse", src_len=24, n_symbols=10) == 48
    assert [task_lengths("copy", src_len=n) for n in (120, 240, 360)] == [360, 720, 1080]
    assert [task_lengths("reverse", src_len=n) for n in (120, 240, 360)] == [240, 480, 720]
    assert task_lengths("associative_retrieval") == 10
    assert task_lengths("quadratic_equations") == 180
    with pytest.raises(ValueError, match="unknown task"):
        task_lengths("listops")


@pytest.mark.parametrize("task", sorted(SAMPLE_FUNCTIONS))
def test_task_lengths_match_samples(task):
    params = {"src_len": 5, "n_symbols": 3} if task in ("copy", "reverse") else {}
    sample = SAMPLE_FUNCTIONS[task](random.Random(0), **params)
    assert len(sample.input_ids) == task_lengths(task, **params)


def test_paper_split_sizes():
    assert PAPER_SPLIT_SIZES["copy"] == PAPER_SPLIT_SIZES["reverse"] == (100_000, 5_000, 10_000)
    assert PAPER_SPLIT_SIZES["associative_retrieval"] == (100_000, 5_000, 10_000)
    assert PAPER_SPLIT_SIZES["quadratic_equations"] == (100_000, 10_000, 20_000)
    assert PAPER_SPLIT_SIZES["long_copy"] == PAPER_SPLIT_SIZES["long_reverse"] == (100_000, 10_000, 20_000)


@pytest.mark.parametrize("task", sorted(ALL_TASKS))
def test_splits_are_disjoint_and_sized(task):
    splits = generate_splits(ALL_TASKS[task], sizes=(300, 40, 60), seed=0)
    assert [len(splits[name]) for name in ("train", "valid", "test")] == [300, 40, 60]
    inputs = [s.input_ids for split in splits.values() for s in split]
    assert len(set(inputs)) == 400  # no input twice in a split, nor in two splits
    assert all(isinstance(s, Sample) for split in splits.values() for s in split)
    assert generate_splits(ALL_TASKS[task], sizes=(300, 40, 60), seed=0) == splits
    assert generate_splits(ALL_TASKS[task], sizes=(300, 40, 60), seed=1) != splits


def test_splits_deduplicate_a_small_space():
    # src_len 2 over 3 symbols has 9 distinct inputs: all of them, each once
    splits = generate_splits(partial(copy_sample, src_len=2, n_symbols=3), sizes=(5, 2, 2), seed=0)
    inputs = [s.input_ids[:2] for split in splits.values() for s in split]
    assert sorted(inputs) == [(a, b) for a in (2, 3, 4) for b in (2, 3, 4)]


def test_splits_too_large_raise():
    # a user error (one line from the CLI), not a bug: RmtzooError, which is also a ValueError
    with pytest.raises(rmtzoo.RmtzooError, match=r"copy\(src_len=2, n_symbols=2\).*3/1/1"):
        generate_splits(partial(copy_sample, src_len=2, n_symbols=2), sizes=(3, 1, 1), seed=0)


def test_splits_default_to_paper_sizes():
    splits = generate_splits(SHORT_REVERSE, seed=0)
    assert tuple(len(splits[name]) for name in ("train", "valid", "test")) == PAPER_SPLIT_SIZES["reverse"]


# Segmenting (section 2.5) ----------------------------------------------------------------------------------


def _lengths(bounds):
    assert bounds[0][0] == 0 and all(e == s for (_, e), (s, _) in zip(bounds, bounds[1:], strict=False))
    return [end - start for start, end in bounds]


@pytest.mark.parametrize(
    ("csv_label", "segment_length", "split"),
    [(2, 5, [5, 5]), (3, 4, [5, 5]), (4, 3, [4, 4, 2]), (5, 2, [2, 2, 2, 2, 2])],
)
def test_associative_retrieval_chunk_quirk(csv_label, segment_length, split):
    assert math.ceil(10 / segment_length) == csv_label  # the CSV's n_chunks label
    assert _lengths(segment_bounds(10, segment_length, rule="lm_rmt_chunk")) == split


@pytest.mark.parametrize(
    ("length", "n_segments"),
    [(72, 1), (72, 3), (72, 6), (72, 9), (360, 1), (360, 3), (360, 6), (360, 9), (48, 1), (48, 2), (48, 4),
     (48, 6), (240, 1), (240, 2), (240, 4), (240, 6), (720, 6), (1080, 9), (180, 6)],
)  # fmt: skip
def test_chunking_is_exact_for_the_other_tasks(length, n_segments):
    s = length // n_segments
    expected = [(i * s, (i + 1) * s) for i in range(n_segments)]
    assert (
        segment_bounds(length, s, rule="lm_rmt_chunk") == segment_bounds(length, s, rule="equal") == expected
    )


def test_lm_rmt_chunk_matches_torch_chunk():
    torch = pytest.importorskip("torch")
    for length in range(1, 61):
        x = torch.arange(length)
        for s in range(1, length + 1):
            chunks = torch.chunk(x, length // s)
            expected = [(int(c[0]), int(c[-1]) + 1) for c in chunks]
            assert segment_bounds(length, s, rule="lm_rmt_chunk") == expected, (length, s)


def test_segment_bounds_errors():
    with pytest.raises(ValueError, match="multiple"):
        segment_bounds(10, 4, rule="equal")
    with pytest.raises(ValueError, match="longer"):
        segment_bounds(3, 4, rule="lm_rmt_chunk")
    with pytest.raises(ValueError, match="rule"):
        segment_bounds(10, 5, rule="torch")
