"""``rmtzoo demo``: train the configured model for a few steps on an in-memory copy task.

Copy as in the paper (PAPER.md 2.1): ``x1..xn 1 x1..xn x1..xn``, symbols 2..11, loss and accuracy on
the 2n target positions; n = segment length, so a sample spans three segments and the answer can only
be produced through memory (or a cache). This is a demonstration; the trainer (``rmtzoo train``) and
the task registry replace it.
"""

from __future__ import annotations

import time

import torch

from rmtzoo._build import build_model


def copy_batch(batch_size: int, n: int, generator: torch.Generator):
    """inputs [B, 3n] and targets [B, 3n] (targets -100 on the source part)."""
    src = torch.randint(2, 12, (batch_size, n), generator=generator)
    start = torch.ones(batch_size, 1, dtype=torch.long)
    full = torch.cat([src, start, src, src], dim=1)  # [B, 3n+1]
    inputs, targets = full[:, :-1], full[:, 1:].clone()  # [B, 3n]
    targets[:, : n] = -100
    return inputs, targets


def run_demo(config, *, registry=None, log=print, device="cpu") -> dict[str, float]:
    torch.manual_seed(config.seed)
    model = build_model(config, registry=registry, device=device)
    n = config.segment.length
    if model.vocab_size < 12:
        from rmtzoo._errors import ConfigError

        raise ConfigError(f"backbone.vocab_size: the demo's copy task needs at least 12, got {model.vocab_size}")
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"model: backbone={config.backbone.kind} memory={config.memory.kind} recurrence={config.recurrence.kind} "
        f"attention={model.attention_name} params={n_params:,} config={config.content_hash()}"
    )
    log(f"task: copy {n} -> {2 * n} symbols, {3 * n} tokens in 3 segments of {n}")
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    bsz = config.train.batch_size
    start, tokens, metrics = time.perf_counter(), 0, {}
    for step in range(1, config.train.steps + 1):
        model.train()
        inputs, targets = (t.to(device) for t in copy_batch(bsz, n, gen))
        logits = model.forward_sequence(inputs).logits  # [B, 3n, V]
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        opt.step()
        tokens += inputs.numel()
        if step % 50 == 0 or step == config.train.steps:
            rate = tokens / (time.perf_counter() - start)
            log(f"step {step:>5}  loss {loss.item():.4f}  tokens/s {rate:,.0f}")
    model.eval()
    with torch.no_grad():
        inputs, targets = (t.to(device) for t in copy_batch(256, n, torch.Generator().manual_seed(config.seed + 1)))
        pred = model.forward_sequence(inputs).logits.argmax(-1)
        on_target = targets != -100
        acc = (pred[on_target] == targets[on_target]).float().mean().item()
    metrics = {"loss": loss.item(), "target_accuracy": acc}
    log(f"held-out teacher-forced target accuracy: {acc:.3f} (chance 0.10)")
    return metrics
