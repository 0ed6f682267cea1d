"""Evaluation: per-character accuracy with greedy decoding (no teacher forcing) when the answer spans
segments, exact-answer accuracy, perplexity / bits per character over a whole evaluation stream, and
accuracy and F1 of sequence classification."""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


@torch.no_grad()
def greedy_predictions(model, input_ids: torch.Tensor, answer_start: int, *, reuse_keys: bool | None = None) -> torch.Tensor:
    """Predictions ``[B, T]`` where every input after ``answer_start`` is the model's own previous
    prediction (docs/paper-settings.md 2, metric): segments before the answer run as given; inside an answer segment
    tokens are generated one by one from the state the segment started with; the memory and cache are
    updated once the whole generated segment exists. Each generated position is the only one computed
    (the segment's keys and values reused, ``model.extend_segment``) where ``model.supports_extend``,
    unless ``reuse_keys=False``; otherwise the segment so far is re-run for every position."""
    ids = input_ids.clone()
    b, t = ids.shape
    preds = torch.full((b, t), IGNORE_INDEX, dtype=torch.long, device=ids.device)
    state = model.initial_state(b)
    for start in range(0, t, model.segment_length):
        end = min(start + model.segment_length, t)
        if end > answer_start:
            extend = getattr(model, "supports_extend", lambda state: False)(state) if reuse_keys is None else reuse_keys
            open_, done = (model.open_segment(state), start) if extend else (None, start)
            for p in range(max(start, answer_start), end):
                if extend:
                    logits, open_ = model.extend_segment(ids[:, done : p + 1], state, open_)  # [B, n, V]
                    done = p + 1
                else:
                    logits = model.step(ids[:, start : p + 1], state)[0].logits
                preds[:, p] = logits[:, -1].argmax(-1)
                if p + 1 < t:
                    ids[:, p + 1] = preds[:, p]  # feed the prediction back
        out, state = model.step(ids[:, start:end], state)
        if start < answer_start:  # positions before the answer: teacher-forced argmax
            stop = min(end, answer_start)
            preds[:, start:stop] = out.logits[:, : stop - start].argmax(-1)
    return preds


def carried_cache(model, batch_size: int, previous):
    """The state a batch of samples starts from: None (the initial state) unless
    ``recurrence.cache_scope = "across_samples"``; then the initial state with the cache ``previous``
    ended with (a first batch, or one of another size, starts empty). Memory always starts fresh."""
    scope = getattr(getattr(model, "policy", None), "cache_scope", "per_sample")
    if scope != "across_samples" or previous is None or previous.cache is None or previous.batch_size != batch_size:
        return None
    return replace(model.initial_state(batch_size), cache=previous.cache, cache_valid=previous.cache_valid)


@torch.no_grad()
def evaluate_samples(model, task, split: str, *, batch_size: int, max_batches: int | None, autocast) -> dict:
    """Teacher-forced loss and the task's accuracy over (the first ``max_batches`` batches of) a split."""
    model.eval()
    inputs, labels = task.tensors(split)
    device = next(model.parameters()).device
    decoding = getattr(task, "decoding", "by_length")
    greedy = decoding == "greedy" or task.answer_length >= model.segment_length
    # by_length keeps the answer-slot start; greedy generates the whole target
    start = getattr(task, "target_start", task.answer_start) if decoding == "greedy" else task.answer_start
    total_loss = total_tokens = correct = counted = exact = samples = 0
    n_batches = math.ceil(len(inputs) / batch_size)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    carry = getattr(getattr(model, "policy", None), "cache_scope", "per_sample") == "across_samples"
    previous = None
    for i in range(n_batches):
        x = inputs[i * batch_size : (i + 1) * batch_size].to(device)
        y = labels[i * batch_size : (i + 1) * batch_size].to(device)
        with autocast():
            if carry:  # the loss pass carries the cache from batch to batch; the accuracy pass does not
                out = model.forward_sequence(x, carried_cache(model, len(x), previous))
                logits, previous = out.logits.float(), out.state  # [B, T, V]
                fresh = None if greedy else model.forward_sequence(x).logits.float()
            else:
                logits = fresh = model.forward_sequence(x).logits.float()  # [B, T, V]
            pred = greedy_predictions(model, x, start) if greedy else fresh.argmax(-1)
        mask = y != IGNORE_INDEX
        total_loss += F.cross_entropy(logits[mask], y[mask], reduction="sum").item()
        total_tokens += int(mask.sum())
        answer = mask.clone()
        answer[:, : task.answer_start] = False
        hit = (pred == y) & answer
        correct += int(hit.sum())
        counted += int(answer.sum())
        exact += int((hit == answer).all(dim=1).sum())
        samples += len(x)
    accuracy = exact / samples if task.metric == "exact_match" else correct / max(counted, 1)
    return {"loss": total_loss / max(total_tokens, 1), "accuracy": accuracy, "samples": samples,
            "decoding": "greedy" if greedy else "teacher_forced", "decoded_from": start if greedy else None}


@torch.no_grad()
def evaluate_stream(model, task, split: str, *, batch_size: int, max_batches: int | None, autocast) -> dict:
    """Mean NLL over the whole split cut into ``batch_size`` ordered streams; state carried throughout."""
    from rmtzoo.tasks.lm import ordered_streams, stream_metric, stream_segments

    model.eval()
    device = next(model.parameters()).device
    streams = ordered_streams(task.tokens(split), batch_size).to(device)
    state = model.initial_state(streams.shape[0])
    total_nll, total_tokens = 0.0, 0
    for i, (x, y) in enumerate(stream_segments(streams, model.segment_length)):
        if max_batches is not None and i >= max_batches:
            break
        with autocast():
            out, state = model.step(x, state, return_logits=False)
            nll = model.backbone.nll(out.hidden, y)  # [B, T]
        total_nll += float(nll.sum())
        total_tokens += nll.numel()
    mean = total_nll / max(total_tokens, 1)
    return {"loss": mean, task.metric: stream_metric(total_nll, total_tokens, task.metric), "tokens": total_tokens}


@torch.no_grad()
def evaluate_classification(model, task, split: str, *, batch_size: int, max_batches: int | None, autocast) -> dict:
    """Cross-entropy, accuracy and positive-class F1 (plus precision, recall) over a split."""
    from rmtzoo.tasks.classification import classification_metrics

    model.eval()
    ids, padding_mask, labels = task.tensors(split, model.segment_length)
    device = next(model.parameters()).device
    n_batches = math.ceil(len(ids) / batch_size)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    total_loss, predictions, seen = 0.0, [], []
    for i in range(n_batches):
        rows = slice(i * batch_size, (i + 1) * batch_size)
        y = labels[rows].to(device)
        with autocast():
            logits = model.classify(ids[rows].to(device), padding_mask[rows].to(device)).float()  # [B, K]
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        predictions.append(logits.argmax(-1).cpu())
        seen.append(y.cpu())
    predictions, seen = torch.cat(predictions), torch.cat(seen)
    metrics = classification_metrics(predictions, seen)
    return {"loss": total_loss / max(len(seen), 1), **metrics, "samples": len(seen)}


def evaluate_task(model, task, split: str, **kwargs) -> dict:
    """The evaluation that fits ``task.kind``: samples, stream or classification."""
    fn = {"samples": evaluate_samples, "stream": evaluate_stream, "classification": evaluate_classification}[task.kind]
    return fn(model, task, split, **kwargs)
