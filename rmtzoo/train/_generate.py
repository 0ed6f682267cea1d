"""Generation for any length: memory (and cache) carried across segments, one prompt or a batch.

Each prompt runs in its own segments, aligned at its own first token, exactly as a whole-sequence pass
over prompt + generated tokens would cut it. In the open segment each new token is the only position
computed: the keys and values of the read memory, the cache and the tokens before it are kept
(:meth:`rmtzoo.RecurrentMemoryModel.extend_segment`), so a token costs the same however many came
before it. Once the open segment holds ``segment_length`` tokens it is committed: run once more whole
through ``model.step`` (the write memory reads every token), and its memory (and cache) carry to the next
segment, so the token that closes a segment costs one segment. A model whose backbone or layout cannot
extend exactly (``supports_extend``: ARMT, the ``lm_rmt`` distances, a plugin backbone without
``extend``) re-runs the open segment from the state it started with for each new token instead. A
batch is exact too: at every step, the prompts whose open segments have the same length and the same
number of committed segments run as one batch (equal-length prompts always do), so a batch gives what
each prompt gives alone.

Decoding: greedy with ``temperature = 0``; otherwise sampling from ``softmax(logits / temperature)``
restricted to the ``top_k`` most likely tokens and to the smallest set whose probability reaches
``top_p`` (nucleus sampling). A token in ``stop_tokens`` ends that prompt's generation and is not
returned.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence

import torch

from rmtzoo._errors import InputError
from rmtzoo.model import OpenSegment, RecurrentState


def check_options(max_new_tokens, temperature, top_k, top_p) -> None:
    """One-line errors naming the option and its allowed range."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not isinstance(temperature, int | float) or not temperature >= 0 or temperature == float("inf"):
        raise InputError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InputError(f"top_k must be an integer >= 1 (or None: no limit), got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, int | float) or not 0 < top_p <= 1):
        raise InputError(f"top_p must be in (0, 1] (or None: no limit), got {top_p!r}")


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """logits ``[B, V]`` with every token outside the top-k and outside the top-p nucleus at -inf."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # [B, V]
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability of the tokens ranked above each one
        drop = before >= top_p  # the most likely token is always kept
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def _pick(logits: torch.Tensor, temperature: float, top_k, top_p, generator) -> list[int]:
    """One token per row of ``logits [B, V]``; rows are sampled in order from ``generator``."""
    if temperature == 0:
        return logits.argmax(-1).tolist()
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)  # [B, V]
    if generator is not None and probs.device != generator.device:
        probs = probs.to(generator.device)  # a CPU generator for a model on an accelerator
    return [int(torch.multinomial(row, 1, generator=generator)) for row in probs]


def _stack(states: list[RecurrentState]) -> RecurrentState:
    """Batch-1 states with the same shapes as one state of batch ``len(states)``. The BPTT window is
    dropped: without a gradient the model never reads it. The Tr-XL cache's reused keys and values
    (``cache_keys``) are stacked too where every state has them from the same weights, so a commit does
    not project the cache again; otherwise they are dropped and the model projects it as usual."""
    if len(states) == 1:
        return states[0]
    first = states[0]

    def cat(values):
        return None if values[0] is None else torch.cat(values, dim=0)

    cache = None if first.cache is None else tuple(
        torch.cat(layer, dim=0) for layer in zip(*(s.cache for s in states), strict=True))  # [B, C, D] each
    associative = None if first.associative is None else tuple(
        torch.cat(layer, dim=0) for layer in zip(*(s.associative for s in states), strict=True))  # [B, F, D+1]
    keys = None
    if all(s.cache_keys is not None and s.cache_keys[0] == first.cache_keys[0] for s in states):
        keys = (first.cache_keys[0], tuple(
            (torch.cat([kv[0] for kv in layer]), torch.cat([kv[1] for kv in layer]))  # [B, H, C, Dh] each
            for layer in zip(*(s.cache_keys[1] for s in states), strict=True)))
    return RecurrentState(len(states), cat([s.memory for s in states]), cache, (), first.n_segments,
                          cat([s.cache_valid for s in states]), associative, keys)


def _unstack(state: RecurrentState) -> list[RecurrentState]:
    """One batch-1 state per row, the window dropped and the cache's reused keys kept."""
    def row(x, i):
        return None if x is None else x[i : i + 1]

    def keys(i):
        if state.cache_keys is None:
            return None
        stamp, per_layer = state.cache_keys
        return stamp, tuple((k[i : i + 1], v[i : i + 1]) for k, v in per_layer)  # [1, H, C, Dh] each

    return [RecurrentState(1, row(state.memory, i), None if state.cache is None else tuple(c[i : i + 1] for c in state.cache),
                           (), state.n_segments, row(state.cache_valid, i),
                           None if state.associative is None else tuple(a[i : i + 1] for a in state.associative),
                           keys(i))
            for i in range(state.batch_size)]


def _stack_open(opens: list[OpenSegment]) -> OpenSegment:
    """Batch-1 open segments of one length as one of batch ``len(opens)``."""
    if len(opens) == 1:
        return opens[0]
    first = opens[0]
    past = None if first.past is None else tuple(
        (torch.cat([o.past[i][0] for o in opens]), torch.cat([o.past[i][1] for o in opens]))  # [G, H, P, Dh]
        for i in range(len(first.past)))
    cache = None if first.cache is None else tuple(torch.cat(layer) for layer in zip(*(o.cache for o in opens), strict=True))
    return OpenSegment(past, first.n_tokens, cache)


def _unstack_open(open_: OpenSegment, n: int) -> list[OpenSegment]:
    """One batch-1 open segment per row. ``cache`` is None after :meth:`extend_segment`: the cache's keys
    and values are then held in ``past``, so nothing is lost."""
    if n == 1:
        return [open_]
    return [OpenSegment(tuple((k[i : i + 1], v[i : i + 1]) for k, v in open_.past), open_.n_tokens, None)
            for i in range(n)]


@torch.no_grad()
def stream_batch(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, *, temperature: float = 0.0,
                 top_k: int | None = None, top_p: float | None = None, stop_tokens: Collection[int] = (),
                 generator: torch.Generator | None = None, reuse_keys: bool | None = None) -> Iterator[dict[int, int]]:
    """Yield, at every step, ``{prompt index: new token}`` for the prompts still generating, until each
    has ``max_new_tokens`` tokens or has drawn a stop token. ``reuse_keys``: extend the open segment
    (None: where ``model.supports_extend``); False: re-run it for every token."""
    check_options(max_new_tokens, temperature, top_k, top_p)
    prompts = [list(map(int, p)) for p in prompts]
    if not prompts or any(not p for p in prompts):
        raise InputError("generate needs at least one prompt, and every prompt needs at least one token")
    stop = {int(t) for t in stop_tokens}
    model.eval()
    device = next(model.parameters()).device
    length = model.segment_length
    n = len(prompts)
    states = model.initial_state(1)
    states = [states] * n
    opened: list[list[int]] = [[] for _ in range(n)]  # tokens of each prompt's open segment
    logits = [None] * n  # next-token logits [V] after a commit that left the open segment empty
    extended: list[OpenSegment | None] = [None] * n  # the open segment's reused keys and values

    def run(indices: list[int], commit: bool) -> None:
        """One ``model.step`` for prompts whose open segments have one length and state shape."""
        ids = torch.tensor([opened[i] for i in indices], device=device)  # [G, T]
        out, new_state = model.step(ids, _stack([states[i] for i in indices]))
        for row, i in enumerate(indices):
            logits[i] = out.logits[row, -1]
        if commit:
            for i, state in zip(indices, _unstack(new_state), strict=True):
                states[i], opened[i], extended[i] = state, [], None

    def extend(indices: list[int]) -> None:
        """The open segments' new tokens, the only positions computed (same length, done and state shape)."""
        state = states[indices[0]]  # only its cache length is read: the group shares it
        for i in indices:
            if extended[i] is None:
                extended[i] = model.open_segment(states[i])
        done = extended[indices[0]].n_tokens
        ids = torch.tensor([opened[i][done:] for i in indices], device=device)  # [G, n]
        out, open_ = model.extend_segment(ids, state, _stack_open([extended[i] for i in indices]))
        for row, (i, one) in enumerate(zip(indices, _unstack_open(open_, len(indices)), strict=True)):
            logits[i], extended[i] = out[row, -1], one

    if reuse_keys is None:
        reuse_keys = model.supports_extend(states[0])
    step_open = extend if reuse_keys else (lambda indices: run(indices, commit=False))

    def grouped(indices):
        groups = defaultdict(list)
        for i in indices:
            done = -1 if extended[i] is None else extended[i].n_tokens
            groups[len(opened[i]), done, states[i].n_segments].append(i)
        return groups.values()

    # the prompts' whole segments, batched segment by segment
    for start in range(0, max(map(len, prompts)) - length + 1, length):
        full = [i for i in range(n) if len(prompts[i]) >= start + length]
        for i in full:
            opened[i] = prompts[i][start : start + length]
        run(full, commit=True)
    for i in range(n):
        opened[i] = prompts[i][len(prompts[i]) // length * length :]

    active = list(range(n))
    for _ in range(max_new_tokens):
        for group in grouped(i for i in active if opened[i]):
            step_open(group)
        tokens = _pick(torch.stack([logits[i] for i in active]), temperature, top_k, top_p, generator)
        step = {}
        for i, token in zip(active, tokens, strict=True):
            if token in stop:
                continue
            step[i] = token
            opened[i].append(token)
        active = list(step)
        if not active:
            return
        yield step
        for group in grouped(i for i in active if len(opened[i]) == length):
            run(group, commit=True)


def generate(model, prompt_ids: Sequence[int], max_new_tokens: int, *, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, stop_tokens: Collection[int] = (),
             generator: torch.Generator | None = None) -> Iterator[int]:
    """Yield new token ids one at a time for one prompt (a list of ids), memory carried across
    segments; see the module docstring for the options."""
    for step in stream_batch(model, [prompt_ids], max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             stop_tokens=stop_tokens, generator=generator):
        yield step[0]


def generate_batch(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, **options) -> list[list[int]]:
    """The new tokens of every prompt (prompts may differ in length), as :func:`generate` gives them for
    each prompt alone under greedy decoding; sampled rows draw from one ``generator`` in prompt order."""
    out: list[list[int]] = [[] for _ in prompts]
    for step in stream_batch(model, prompts, max_new_tokens, **options):
        for i, token in step.items():
            out[i].append(token)
    return out
