"""Streaming generation for any length: memory and cache are carried across segments."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from rmtzoo._errors import InputError


@torch.no_grad()
def generate(model, prompt_ids: list[int], max_new_tokens: int, *, temperature: float = 0.0,
             generator: torch.Generator | None = None) -> Iterator[int]:
    """Yield new token ids one at a time. The open segment is re-run from the state it started with for
    each new token; once it holds ``segment_length`` tokens it is committed and its memory (and cache)
    carry to the next segment, so the context is not limited to one segment."""
    if not prompt_ids:
        raise InputError("generate needs a non-empty prompt")
    model.eval()
    device = next(model.parameters()).device
    length = model.segment_length
    state = model.initial_state(1)
    current: list[int] = []
    last_logits = None

    def commit(tokens):
        out, new_state = model.step(torch.tensor([tokens], device=device), state)
        return out.logits[0, -1], new_state

    for token in prompt_ids:
        current.append(token)
        if len(current) == length:
            last_logits, state = commit(current)
            current = []
    for _ in range(max_new_tokens):
        if current:
            out, _ = model.step(torch.tensor([current], device=device), state)
            logits = out.logits[0, -1]
        else:
            logits = last_logits
        if temperature > 0:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
        else:
            token = int(logits.argmax())
        yield token
        current.append(token)
        if len(current) == length:
            last_logits, state = commit(current)
            current = []
