"""Pure, deterministic generators for the paper's algorithmic tasks (docs/paper-settings.md section 2).

Every generator takes a ``random.Random`` and returns one :class:`Sample`: the decoder input, the label
at each input position (``IGNORE_INDEX`` where no loss is taken) and ``answer_start``, the first position
whose label greedy evaluation must produce without teacher forcing. Inputs and targets are one decoder
sequence, labels are the next token ("shifted by one"), and loss covers target tokens only (section 2).

Token ids (model vocabulary in brackets):

- copy / reverse [12 short, 10 long]: 0 pad (never emitted), 1 start-to-generate, symbols 2..1+n_symbols.
- associative retrieval [37]: values (digits) 0-9, separator 10, keys (letters) 11-36.
- quadratic equations [24]: 0 pad, 1 unused, then ``QUADRATIC_SYMBOLS`` at 2..23 in the authors' order
  (LM-RMT ``eval_sqeq.py`` decodes ids with the same table; it names id 1 ``g``, which never occurs).

No torch here: datasets are built once and reused (section 2), so generation stays cheap and importable.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from rmtzoo._errors import ConfigError

IGNORE_INDEX = -100
PAD_ID = 0
START_ID = 1
AR_SEPARATOR_ID = 10
AR_FIRST_KEY_ID, AR_N_KEYS, AR_N_VALUES = 11, 26, 10

QUADRATIC_SYMBOLS = "0123456789+-*/^=()xD;,"
QUADRATIC_TOKEN_IDS = {symbol: i + 2 for i, symbol in enumerate(QUADRATIC_SYMBOLS)}
QUADRATIC_SLOT_LEN, QUADRATIC_N_SLOTS = 30, 6
QUADRATIC_LENGTH = QUADRATIC_SLOT_LEN * QUADRATIC_N_SLOTS  # 180
QUADRATIC_LOSS_POSITIONS = QUADRATIC_LENGTH - QUADRATIC_SLOT_LEN  # 150: all but the equation slot

# (train, valid, test). Section 2.4: the long copy/reverse sizes are unverified; the released generator
# notebooks use 100k/10k/20k, so the long sets take that.
PAPER_SPLIT_SIZES: dict[str, tuple[int, int, int]] = {
    "copy": (100_000, 5_000, 10_000),
    "reverse": (100_000, 5_000, 10_000),
    "associative_retrieval": (100_000, 5_000, 10_000),
    "quadratic_equations": (100_000, 10_000, 20_000),
    "long_copy": (100_000, 10_000, 20_000),  # unverified
    "long_reverse": (100_000, 10_000, 20_000),  # unverified
}
LONG_SRC_LEN = 120  # A.1: the long copy/reverse sets start at source 120


@dataclass(frozen=True)
class Sample:
    """input_ids: what the decoder reads; labels[i]: the token to predict at position i, or
    IGNORE_INDEX; answer_start: first position whose label greedy evaluation must generate."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    answer_start: int

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"input_ids has {len(self.input_ids)} tokens but labels has {len(self.labels)}")
        if not 0 <= self.answer_start < len(self.input_ids):
            raise ValueError(f"answer_start {self.answer_start} is outside 0..{len(self.input_ids) - 1}")


def _decoder_sample(source: list[int], target: list[int]) -> Sample:
    """The shared copy/reverse/AR layout: ``full = source + target``, the decoder reads ``full[:-1]`` and
    predicts ``full[1:]``; positions whose next token is still source take no loss (section 2)."""
    full = source + target
    n_ignored = len(source) - 1
    labels = [IGNORE_INDEX] * n_ignored + full[len(source) :]
    return Sample(tuple(full[:-1]), tuple(labels), answer_start=n_ignored)


def _symbols(rng: random.Random, *, src_len: int, n_symbols: int) -> list[int]:
    if src_len < 1 or n_symbols < 1:
        raise ValueError(f"src_len and n_symbols must be >= 1, got {src_len} and {n_symbols}")
    # Section 2: tokens are drawn uniformly from the dictionary, with replacement (ids 2..1+n_symbols).
    return rng.choices(range(START_ID + 1, START_ID + 1 + n_symbols), k=src_len)


def copy_sample(rng: random.Random, *, src_len: int, n_symbols: int) -> Sample:
    """Section 2.1: ``x1..xn 1 x1..xn x1..xn`` (the source is reproduced twice); input length 3n."""
    src = _symbols(rng, src_len=src_len, n_symbols=n_symbols)
    return _decoder_sample(src + [START_ID], src + src)


def reverse_sample(rng: random.Random, *, src_len: int, n_symbols: int) -> Sample:
    """Section 2.2: ``x1..xn 1 xn..x1``; input length 2n."""
    src = _symbols(rng, src_len=src_len, n_symbols=n_symbols)
    return _decoder_sample(src + [START_ID], src[::-1])


def associative_retrieval_sample(rng: random.Random, *, n_pairs: int = 4) -> Sample:
    """Section 2.3: ``k1 v1 .. k4 v4 q 10 v(q)``; keys and values each without replacement, the query
    uniform over the keys. The decoder reads 10 tokens; only the separator's label (the answer) is
    trained, so answer_start is the separator position 2*n_pairs + 1 = 9."""
    if not 1 <= n_pairs <= AR_N_VALUES:
        raise ValueError(f"n_pairs must be in 1..{AR_N_VALUES} (values are distinct digits), got {n_pairs}")
    keys = rng.sample(range(AR_FIRST_KEY_ID, AR_FIRST_KEY_ID + AR_N_KEYS), n_pairs)
    values = rng.sample(range(AR_N_VALUES), n_pairs)
    query = rng.randrange(n_pairs)
    pairs = [token for pair in zip(keys, values, strict=True) for token in pair]
    return _decoder_sample(pairs + [keys[query], AR_SEPARATOR_ID], [values[query]])


# Quadratic equations (section 2.6) -----------------------------------------------------------------
# Number formatting is not specified beyond the paper's one example; the choices below keep that example
# exact and stay unambiguous for the other signs: a coefficient of +-1 is written without "1*", a zero
# term is left out, D's line squares |b| (the example writes 98^2 for b = -98) and wraps a negative c in
# parentheses, and the root lines write -b as a plain signed number: "x=(-3-5)/2=-4".


def _polynomial(a: int, b: int, c: int) -> str:
    """``a*x^2+b*x+c=0`` in the paper's style: ``-4*x^2+392*x-2208=0``, ``x^2-98*x+552=0``."""
    text = {1: "x^2", -1: "-x^2"}.get(a, f"{a}*x^2")
    if b:
        text += {1: "+x", -1: "-x"}.get(b, f"{b:+d}*x")
    if c:
        text += f"{c:+d}"
    return text + "=0"


def _discriminant_line(b: int, c: int) -> str:
    """``D=b^2-4*1*c=D`` and, when D >= 0, ``=s^2`` with s = sqrt(D) (section 2.6 template)."""
    d = b * b - 4 * c
    line = f"D={abs(b)}^2-4*1*{c if c >= 0 else f'({c})'}={d}"
    return line + (f"={math.isqrt(d)}^2" if d >= 0 else "")


def quadratic_steps(alpha: int, x1: int, x2: int) -> list[str]:
    """The six step strings for ``alpha*(x-x1)*(x-x2) = 0``: equation, canonical monic equation, D line,
    the two root lines (-b-s first, so the smaller root) and the answer (ascending, unique roots).

    >>> quadratic_steps(-4, 6, 92)
    ['-4*x^2+392*x-2208=0', 'x^2-98*x+552=0', 'D=98^2-4*1*552=7396=86^2', 'x=(98-86)/2=6', 'x=(98+86)/2=92', '6,92']
    """
    if alpha == 0:
        raise ValueError("alpha must be non-zero")
    x1, x2 = sorted((x1, x2))
    b, c = -(x1 + x2), x1 * x2
    s = math.isqrt(b * b - 4 * c)  # = x2 - x1
    return [
        _polynomial(alpha, alpha * b, alpha * c),
        _polynomial(1, b, c),
        _discriminant_line(b, c),
        f"x=({-b}-{s})/2={x1}",
        f"x=({-b}+{s})/2={x2}",
        str(x1) if x1 == x2 else f"{x1},{x2}",
    ]


def quadratic_steps_without_roots(alpha: int, b: int, c: int) -> list[str]:
    """Section 2.6's rootless form for ``alpha*(x^2+b*x+c) = 0`` with b^2-4c < 0: the equation, the
    canonical equation, the D line without a square root, then empty root and answer steps."""
    if alpha == 0 or b * b - 4 * c >= 0:
        raise ValueError(f"need alpha != 0 and b^2-4c < 0, got alpha={alpha}, b={b}, c={c}")
    return [
        _polynomial(alpha, alpha * b, alpha * c),
        _polynomial(1, b, c),
        _discriminant_line(b, c),
        "",
        "",
        "",
    ]


def _root(rng: random.Random) -> int:
    # Section 2.6: the authors draw uniform(-100, 100) and truncate to int, so roots lie in -99..99 and
    # 0 is twice as likely as any other value; kept for fidelity.
    return int(rng.uniform(-100, 100))


def quadratic_equation_text(rng: random.Random, *, no_root_fraction: float = 0.2) -> list[str]:
    """One sample's six step strings. alpha is 1..10 with a random sign (section 2.6). Each sample is
    rootless with probability ``no_root_fraction`` (the paper says 20% of equations; a per-sample coin
    keeps this a pure per-sample generator).

    Rootless design (the paper is silent): b is drawn as a rooted equation's b = -(r1 + r2) would be,
    then c uniformly from the integers with b^2/4 < c <= 99^2 (the largest rooted c), redrawing b if no
    such c exists. Coefficients thus stay in the rooted ranges, so every step fits its 30-token slot."""
    alpha = rng.randint(1, 10) * rng.choice((-1, 1))
    if rng.random() >= no_root_fraction:
        return quadratic_steps(alpha, _root(rng), _root(rng))
    while True:
        b = -(_root(rng) + _root(rng))
        low = b * b // 4 + 1
        if low <= 99 * 99:
            return quadratic_steps_without_roots(alpha, b, rng.randint(low, 99 * 99))


def quadratic_equation_sample(rng: random.Random, *, no_root_fraction: float = 0.2) -> Sample:
    """One quadratic-equations sample; see :func:`quadratic_sample_from_steps` for the layout."""
    return quadratic_sample_from_steps(quadratic_equation_text(rng, no_root_fraction=no_root_fraction))


def quadratic_sample_from_steps(steps: list[str]) -> Sample:
    """Section 2.6 layout: six 30-token slots (equation, canonical, D, x1 line, x2 line, answer), each
    zero-padded, 180 tokens in all; the decoder reads the whole layout.

    Labels are the layout shifted by one: labels[i] = layout[i+1], and the last position's label is a
    pad (0), as if the layout went on with padding (the paper is silent; a pad keeps 180 inputs and 180
    labels). The loss covers the last 150 positions, pads included, as in the authors' code, i.e.
    positions 30..179; position 29 (predicting the canonical slot's first token, always "x") is
    unlabelled. answer_start is 149, the position predicting the answer slot's first token."""
    if len(steps) != QUADRATIC_N_SLOTS:
        raise ValueError(f"need {QUADRATIC_N_SLOTS} steps, got {len(steps)}")
    layout: list[int] = []
    for step in steps:
        # Generated steps are at most 30 symbols (the longest D line is exactly 30; tests check all roots).
        if len(step) > QUADRATIC_SLOT_LEN:
            raise ValueError(f"step {step!r} is longer than a {QUADRATIC_SLOT_LEN}-token slot")
        layout += [QUADRATIC_TOKEN_IDS[ch] for ch in step] + [PAD_ID] * (QUADRATIC_SLOT_LEN - len(step))
    next_tokens = layout[1:] + [PAD_ID]
    n_ignored = QUADRATIC_LENGTH - QUADRATIC_LOSS_POSITIONS
    labels = [IGNORE_INDEX] * n_ignored + next_tokens[n_ignored:]
    return Sample(tuple(layout), tuple(labels), answer_start=QUADRATIC_LENGTH - QUADRATIC_SLOT_LEN - 1)


def quadratic_text_from_ids(input_ids: tuple[int, ...] | list[int]) -> list[str]:
    """Inverse of the layout: the six step strings of a quadratic-equation sample (pads dropped)."""
    symbol_of = {i: ch for ch, i in QUADRATIC_TOKEN_IDS.items()}
    slots = [input_ids[i : i + QUADRATIC_SLOT_LEN] for i in range(0, QUADRATIC_LENGTH, QUADRATIC_SLOT_LEN)]
    return ["".join(symbol_of[t] for t in slot if t != PAD_ID) for slot in slots]


def target_start(name: str, answer_start: int) -> int:
    """The first position whose prediction is part of the target: quadratic equations generate
    everything after the equation slot (position 29 predicts the canonical slot's first token,
    docs/paper-settings.md 2.6) though only the answer slot is scored; for the other tasks target and
    answer coincide."""
    return QUADRATIC_SLOT_LEN - 1 if name == "quadratic_equations" else answer_start


# Task table ------------------------------------------------------------------------------------------

SAMPLE_FUNCTIONS: dict[str, Callable[..., Sample]] = {
    "copy": copy_sample,
    "reverse": reverse_sample,
    "associative_retrieval": associative_retrieval_sample,
    "quadratic_equations": quadratic_equation_sample,
}
_LENGTHS: dict[str, Callable[..., int]] = {
    "copy": lambda *, src_len, n_symbols=None: 3 * src_len,
    "reverse": lambda *, src_len, n_symbols=None: 2 * src_len,
    "associative_retrieval": lambda *, n_pairs=4: 2 * n_pairs + 2,
    "quadratic_equations": lambda *, no_root_fraction=None: QUADRATIC_LENGTH,
}


def task_lengths(task: str, **params) -> int:
    """The decoder input length T: copy 3n, reverse 2n, associative retrieval 10, quadratic eqs 180."""
    if task not in _LENGTHS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(_LENGTHS)}")
    return _LENGTHS[task](**params)


def _task_name(sample_fn: Callable[..., Sample]) -> str:
    """``copy``, ``long_copy`` (src_len >= 120), ... for a sample function or a partial of one."""
    func = getattr(sample_fn, "func", sample_fn)
    keywords = getattr(sample_fn, "keywords", {})
    name = next((n for n, f in SAMPLE_FUNCTIONS.items() if f is func), getattr(func, "__name__", "task"))
    if name in ("copy", "reverse") and keywords.get("src_len", 0) >= LONG_SRC_LEN:
        name = "long_" + name
    return name


def _describe(sample_fn: Callable[..., Sample]) -> str:
    keywords = getattr(sample_fn, "keywords", {})
    return _task_name(sample_fn) + (
        f"({', '.join(f'{k}={v}' for k, v in keywords.items())})" if keywords else ""
    )


def generate_splits(
    sample_fn: Callable[[random.Random], Sample],
    *,
    sizes: tuple[int, int, int] | None = None,
    seed: int,
) -> dict[str, list[Sample]]:
    """Train/valid/test sets drawn once from ``random.Random(seed)`` (section 2: datasets are
    pre-generated and reused), e.g. ``generate_splits(partial(copy_sample, src_len=24, n_symbols=10),
    seed=0)``. Like the authors' generator, inputs are de-duplicated before splitting, then shuffled, so
    no input appears twice in a split or in two splits. ``sizes`` defaults to PAPER_SPLIT_SIZES for the
    task. Raises ValueError when fewer distinct inputs turn up than requested."""
    if sizes is None:
        if _task_name(sample_fn) not in PAPER_SPLIT_SIZES:
            raise ValueError(
                f"no paper split sizes for {_describe(sample_fn)}; pass sizes=(train, valid, test)"
            )
        sizes = PAPER_SPLIT_SIZES[_task_name(sample_fn)]
    if len(sizes) != 3 or any(size < 0 for size in sizes):
        raise ValueError(f"sizes must be three non-negative (train, valid, test) counts, got {sizes}")
    total = sum(sizes)
    rng = random.Random(seed)
    seen: dict[tuple[int, ...], Sample] = {}
    # A long run of draws with nothing new means the input space is (nearly) exhausted; give up then
    # rather than loop forever. The bound is generous: collecting the last of N inputs takes ~N draws.
    patience = max(10_000, 10 * total)
    stale = 0
    while len(seen) < total:
        sample = sample_fn(rng)
        if sample.input_ids in seen:
            stale += 1
            if stale >= patience:
                raise ConfigError(  # a ValueError too; the CLI prints it as one line
                    f"{_describe(sample_fn)}: asked for {total} distinct inputs (train/valid/test = "
                    f"{sizes[0]}/{sizes[1]}/{sizes[2]}) but found only {len(seen)} after {patience} "
                    "draws without a new one; the task has too few distinct inputs"
                )
            continue
        seen[sample.input_ids] = sample
        stale = 0
    samples = list(seen.values())
    rng.shuffle(samples)  # draw order would favour frequent inputs in train; shuffle as the authors do
    train, valid = sizes[0], sizes[0] + sizes[1]
    return {"train": samples[:train], "valid": samples[train:valid], "test": samples[valid:]}


# Segmenting (section 2.5) ----------------------------------------------------------------------------


def segment_bounds(
    length: int, segment_length: int, *, rule: Literal["equal", "lm_rmt_chunk"]
) -> list[tuple[int, int]]:
    """``(start, end)`` of each segment of a length-``length`` sample.

    ``equal``: exact segments of ``segment_length``; raises if they do not tile the sample.
    ``lm_rmt_chunk``: the authors' ``torch.chunk(x, floor(T/s))``, which makes chunks of
    ``ceil(T/n)`` tokens and so may return fewer, unequal chunks; for AR (T=10) s=4 gives 5+5 and s=3
    gives 4+4+2 (section 2.5, section 7 item 3). Needed to reproduce Fig 3c exactly."""
    if length < 1 or segment_length < 1:
        raise ValueError(f"length and segment_length must be >= 1, got {length} and {segment_length}")
    if rule == "equal":
        if length % segment_length:
            raise ValueError(f"length {length} is not a multiple of segment_length {segment_length}")
        step = segment_length
    elif rule == "lm_rmt_chunk":
        n_chunks = length // segment_length
        if n_chunks == 0:  # torch.chunk(x, 0) raises too
            raise ValueError(f"segment_length {segment_length} is longer than the sample ({length})")
        step = -(-length // n_chunks)  # ceil(T / n_chunks), torch.chunk's chunk size
    else:
        raise ValueError(f"unknown rule {rule!r}; use 'equal' or 'lm_rmt_chunk'")
    return [(start, min(start + step, length)) for start in range(0, length, step)]


__all__ = [
    "AR_SEPARATOR_ID",
    "IGNORE_INDEX",
    "PAD_ID",
    "PAPER_SPLIT_SIZES",
    "QUADRATIC_SYMBOLS",
    "QUADRATIC_TOKEN_IDS",
    "SAMPLE_FUNCTIONS",
    "START_ID",
    "Sample",
    "associative_retrieval_sample",
    "copy_sample",
    "generate_splits",
    "quadratic_equation_sample",
    "quadratic_equation_text",
    "quadratic_sample_from_steps",
    "quadratic_steps",
    "quadratic_steps_without_roots",
    "quadratic_text_from_ids",
    "reverse_sample",
    "segment_bounds",
    "task_lengths",
]
