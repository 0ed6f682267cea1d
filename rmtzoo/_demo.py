"""``rmtzoo demo``: the configured model trained by the trainer on a small copy task, in a temporary run
folder that is removed afterwards.

Copy as in the paper (docs/paper-settings.md 2.1): ``x1..xn 1 x1..xn x1..xn``, symbols 2..11, loss on the 2n target
positions; n = segment length, so a sample spans three segments and the answer can only be produced
through memory (or a cache). A config without a task block gets this copy task, with as many training
samples as ``train.steps x train.batch_size`` (each seen once) and 256 held-out test samples, scored
greedily without teacher forcing.
"""

from __future__ import annotations

import tempfile

from rmtzoo._errors import ConfigError


def demo_config(config, *, registry=None):
    """``config`` with the copy task when it has no task block, validated once more."""
    from rmtzoo._config import load_config

    vocab = getattr(config.backbone.params, "vocab_size", None)
    if vocab is not None and vocab < 12:
        raise ConfigError(f"backbone.vocab_size: the demo's copy task needs at least 12, got {vocab}")
    if config.task is not None:
        return config
    n, t = config.segment.length, config.train
    distinct = 10**n if n < 8 else 10**8
    held = min(256, distinct // 10)
    data = config.model_dump(mode="json")
    data["task"] = {"kind": "copy", "src_len": n, "train_size": max(1, min(t.steps * t.batch_size, distinct - 2 * held)),
                    "valid_size": max(1, held), "test_size": max(1, held)}
    data["eval"] = {**data["eval"], "every": t.steps, "batch_size": 256}
    data["train"] = {**data["train"], "log_every": min(50, t.steps)}
    return load_config(data, registry=registry)


def run_demo(config, *, registry=None, log=print, device="auto") -> dict:
    from rmtzoo._build import build_model
    from rmtzoo.train import train

    config = demo_config(config, registry=registry)
    model = build_model(config, registry=registry)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"model: backbone={config.backbone.kind} memory={config.memory.kind} recurrence={config.recurrence.kind} "
        f"attention={model.attention_name} params={n_params:,} config={config.content_hash()}"
    )
    if config.task.kind == "copy":
        n = config.task.params.src_len
        log(f"task: copy {n} -> {2 * n} symbols, {3 * n} tokens in {3 * n // config.segment.length} segments "
            f"of {config.segment.length}")
    with tempfile.TemporaryDirectory(prefix="rmtzoo-demo-") as run_dir:
        results = train(config, run_dir, registry=registry, log=log, device=str(device))
    if "test/accuracy" in results:
        log(f"held-out greedy target accuracy: {results['test/accuracy']:.3f} (chance 0.10)")
    return results
