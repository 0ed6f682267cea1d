"""The trainer on tiny models: kill-and-resume equality, DDP equals one process, divergence, checkpoint
atomicity, greedy evaluation without teacher forcing, curriculum, loggers and early stopping."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import TINY_COPY, KillAt, builtin_registry, quiet
from safetensors.torch import load_file
from torch import nn

import rmtzoo
from rmtzoo.train import (
    Trainer,
    TrainingDiverged,
    _loop,
    build_task,
    find_checkpoint,
    prepare_model,
    save_checkpoint,
    train,
)
from rmtzoo.train._checkpoint import read_trainer_state
from rmtzoo.train._eval import IGNORE_INDEX, carried_cache, evaluate_samples, greedy_predictions

REPO = Path(__file__).resolve().parents[1]

BASE = TINY_COPY  # copy with src_len 8: 24 input tokens, answer from position 8; 3 segments of 8


def make_config(*overrides: str, registry=None, base=BASE):
    return rmtzoo.load_config(copy.deepcopy(base), list(overrides), registry=registry or builtin_registry())


@pytest.fixture(autouse=True)
def _isolated(isolated_trainer):
    pass


def weights(run_dir, *, step: int | None = None) -> dict[str, torch.Tensor]:
    folder = find_checkpoint(run_dir)
    assert folder is not None, f"no checkpoint in {run_dir}"
    if step is not None:
        assert folder.name == f"step-{step:08d}"
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different}"


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def interrupted_run(config, run_dir, kill_at: int) -> None:
    registry = builtin_registry()
    registry.add_plugin(KillAt(kill_at), "killer")
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, run_dir, registry=registry, log=quiet).fit()
    latest = find_checkpoint(run_dir)
    assert latest is not None and int(latest.name.split("-")[1]) < kill_at  # steps after it are lost
    assert records(run_dir)[-1]["status"] == "interrupted"


# -- 1. kill and resume -----------------------------------------------------------------------------
def test_kill_and_resume_gives_the_same_weights(tmp_path, monkeypatch):
    config = make_config()
    assert config.backbone.params.dropout > 0  # so the restored RNG state matters
    full = train(config, tmp_path / "full", registry=builtin_registry(), log=quiet)
    reference = weights(tmp_path / "full", step=16)

    interrupted_run(config, tmp_path / "killed", kill_at=11)  # checkpoints at 3, 6, 8, 9: resumes from 9
    assert find_checkpoint(tmp_path / "killed").name == "step-00000009"
    resumed = train(config, tmp_path / "killed", registry=builtin_registry(), log=quiet)
    assert_same_weights(weights(tmp_path / "killed", step=16), reference)
    assert resumed == full

    # Without restoring the RNG state the dropout masks differ, and so do the weights.
    interrupted_run(config, tmp_path / "no-rng", kill_at=11)
    with monkeypatch.context() as m:
        m.setattr(_loop.torch, "set_rng_state", lambda state: None)
        train(config, tmp_path / "no-rng", registry=builtin_registry(), log=quiet)
    no_rng = weights(tmp_path / "no-rng", step=16)
    assert any(not torch.equal(no_rng[k], reference[k]) for k in reference)


def test_kill_and_resume_with_the_plateau_schedule(tmp_path):
    config = make_config("train.schedule=plateau", "train.plateau_patience=0", "train.lr=0.05",
                         "train.steps=14", "eval.every=2")
    train(config, tmp_path / "full", registry=builtin_registry(), log=quiet)
    reference = weights(tmp_path / "full", step=14)
    lrs = [r["train/lr"] for r in records(tmp_path / "full") if "train/lr" in r]
    assert lrs[0] == 0.05 and min(lrs) < 0.05  # the plateau schedule halved the lr at least once...
    first_cut = next(i for i, lr in enumerate(lrs) if lr < 0.05)
    assert lrs[first_cut:] == sorted(lrs[first_cut:], reverse=True)  # ...and a cut lasts
    assert first_cut < 10  # the cut happens before the checkpoint the resumed run starts from

    interrupted_run(config, tmp_path / "killed", kill_at=11)  # resumes from step 10
    state = read_trainer_state(find_checkpoint(tmp_path / "killed"))
    assert state["step"] == 10 and state["plateau"]["num_bad_epochs"] is not None
    assert state["optimizer"]["param_groups"][0]["lr"] < 0.05
    train(config, tmp_path / "killed", registry=builtin_registry(), log=quiet)
    assert_same_weights(weights(tmp_path / "killed", step=14), reference)
    resumed_lrs = [r["train/lr"] for r in records(tmp_path / "killed") if "train/lr" in r]
    assert resumed_lrs[-3:] == lrs[-3:]


def test_warmup_runs_under_the_plateau_schedule(tmp_path):
    config = make_config("train.schedule=plateau", "train.warmup_steps=3", "train.lr=0.03", "train.steps=6",
                         "eval.every=100", "backbone.dropout=0.0")
    train(config, tmp_path, registry=builtin_registry(), log=quiet)
    lrs = [r["train/lr"] for r in records(tmp_path) if "train/lr" in r]  # the lr of the next step
    assert lrs == pytest.approx([0.02, 0.03, 0.03, 0.03, 0.03, 0.03])


# -- 2. DDP -----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_all(procs, *, timeout: float) -> None:
    """Wait for every process; fail as soon as one fails (its peers are killed by the caller)."""
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        failed = [p for p in procs if p.poll() not in (None, 0)]
        if failed or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for rank, p in enumerate(procs):
        if p.poll() is None:
            p.kill()
        out, err = p.communicate()
        assert p.returncode == 0, f"rank {rank} exited with {p.returncode}:\n{err[-3000:]}"


def test_two_process_ddp_equals_one_process(tmp_path, task_cache):
    overrides = ("backbone.dropout=0.0", "train.batch_size=8", "train.lr=0.002", "train.steps=10",
                 "train.checkpoint_every=3", "eval.every=5")
    config = make_config(*overrides)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config.model_dump(mode="json")))
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",  # gloo
               "RMTZOO_CACHE": str(tmp_path / "cache"),  # fresh: both ranks generate the data at once
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "_ddp_worker.py"), str(config_path), str(tmp_path / f"rank{rank}")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        single = train(config, tmp_path / "single", registry=builtin_registry(), log=quiet)
        _wait_all(procs, timeout=240)
    finally:
        for p in procs:  # a rank left waiting on a dead peer would otherwise hang in gloo
            if p.poll() is None:
                p.kill()
                p.wait()

    one = weights(tmp_path / "single", step=10)
    two = weights(tmp_path / "rank0", step=10)
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-6, msg=k)
    init = prepare_model(config, build_task(config, builtin_registry()), builtin_registry()).state_dict()
    assert max((one[k] - init[k]).abs().max().item() for k in one) > 1e-3  # training moved the weights

    rank0 = json.loads((tmp_path / "rank0" / "results.json").read_text())
    assert rank0["step"] == 10 and rank0["test/accuracy"] == pytest.approx(single["test/accuracy"], abs=1e-6)
    # Only rank 0 writes checkpoints, results and logs.
    assert sorted(p.name for p in (tmp_path / "rank1").iterdir()) == ["worker.json"]
    assert json.loads((tmp_path / "rank1" / "worker.json").read_text())["world_size"] == 2


# -- 3. divergence ----------------------------------------------------------------------------------
def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    config = make_config("train.checkpoint_every=2", "eval.every=100")
    original = Trainer._loss
    before = {}

    def loss_goes_nan(self):
        loss, n = original(self)
        if self.step == 5:  # the 6th step's loss
            before.update(_tree_bytes(self.run_dir / "checkpoints"))
            return loss * float("nan"), n
        return loss, n

    monkeypatch.setattr(Trainer, "_loss", loss_goes_nan)
    with pytest.raises(TrainingDiverged) as info:
        train(config, tmp_path, registry=builtin_registry(), log=quiet)
    message = str(info.value)
    assert "nan" in message and "step 6" in message and "last good checkpoint" in message and "intact" in message
    checkpoints = tmp_path / "checkpoints"
    assert json.loads((checkpoints / "latest.json").read_text())["path"] == "step-00000004"
    assert _tree_bytes(checkpoints) == before  # nothing written or removed since
    assert not list(checkpoints.glob(".tmp-*"))
    assert records(tmp_path)[-1]["status"] == "failed"
    assert not (tmp_path / "results.json").exists()


def test_a_huge_learning_rate_diverges(tmp_path):
    config = make_config("train.lr=1e6", "train.grad_clip=null", "backbone.dropout=0.0",
                         "train.checkpoint_every=1", "eval.every=100")
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf|-inf) at step 2;.*is intact"):
        train(config, tmp_path, registry=builtin_registry(), log=quiet)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest.json", "step-00000001"]


# -- 4. checkpoint atomicity and pruning ------------------------------------------------------------
def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)

    def save(step, best=False):
        with torch.no_grad():
            model.weight.fill_(step)
        return save_checkpoint(tmp_path, step, model=model, trainer_state={"step": step}, config_json="{}",
                               best=best)

    for step in range(1, 6):
        save(step, best=step == 2)
    checkpoints = tmp_path / "checkpoints"
    # keep=2: the two newest, plus the best.
    assert sorted(p.name for p in checkpoints.glob("step-*")) == ["step-00000002", "step-00000004", "step-00000005"]
    assert json.loads((checkpoints / "best.json").read_text())["path"] == "step-00000002"
    assert find_checkpoint(tmp_path, which="best").name == "step-00000002"
    assert load_file(str(find_checkpoint(tmp_path, which="best") / "model.safetensors"))["weight"].eq(2).all()

    before = _tree_bytes(checkpoints)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(safetensors.torch, "save_file", disk_full)
        with pytest.raises(rmtzoo.CheckpointError, match="No space left.*the previous checkpoint step-00000005 is intact"):
            save(6, best=True)
    assert _tree_bytes(checkpoints) == before
    assert not list(checkpoints.glob(".tmp-*"))
    assert find_checkpoint(tmp_path).name == "step-00000005"

    # A later save goes through; pruning then drops step 4 but keeps the best (2) and the latest.
    save(6)
    assert sorted(p.name for p in checkpoints.glob("step-*")) == ["step-00000002", "step-00000005", "step-00000006"]
    save(7, best=True)
    assert sorted(p.name for p in checkpoints.glob("step-*")) == ["step-00000006", "step-00000007"]


# -- 5. greedy evaluation ---------------------------------------------------------------------------
def _teacher_forced(model, ids):
    with torch.no_grad():
        return model.forward_sequence(ids).logits.argmax(-1)


@pytest.mark.parametrize("segment", [8, 6, 12])  # answer_start 8: on a boundary, and inside a segment
def test_greedy_predictions_never_see_the_answer(segment):
    registry = builtin_registry()
    config = make_config(f"segment.length={segment}", "backbone.dropout=0.0", "backbone.init_std=0.5",
                         registry=registry)
    task = build_task(config, registry)
    model = prepare_model(config, task, registry).eval()
    ids, labels = task.tensors("valid")
    ids = ids[:6]
    a = task.answer_start
    preds = greedy_predictions(model, ids, a)

    teacher = _teacher_forced(model, ids)
    assert torch.equal(preds[:, :a], teacher[:, :a])
    # Answer inputs after answer_start are never read: replacing them changes nothing.
    scrambled = ids.clone()
    scrambled[:, a + 1 :] = torch.randint(2, 12, scrambled[:, a + 1 :].shape, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(scrambled, ids)
    assert torch.equal(greedy_predictions(model, scrambled, a), preds)
    # Greedy predictions are the teacher-forced argmax of the sequence that feeds them back.
    fed = ids.clone()
    fed[:, a + 1 :] = preds[:, a:-1]
    assert torch.equal(preds[:, a:], _teacher_forced(model, fed)[:, a:])
    # ... and differ from teacher forcing on the true answer (the model is not a copier).
    assert not torch.equal(preds[:, a:], teacher[:, a:])


class _Recorder(nn.Module):
    """A stub model: predicts (input + 1) mod (V - 1) at every position, so never V - 1, and records
    every input it sees."""

    def __init__(self, vocab: int, segment_length: int) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.vocab_size, self.segment_length = vocab, segment_length
        self.seen: list[torch.Tensor] = []

    def initial_state(self, batch_size):
        return 0

    def step(self, ids, state, *, return_logits=True):
        self.seen.append(ids.clone())
        logits = nn.functional.one_hot((ids + 1) % (self.vocab_size - 1), self.vocab_size).float()
        return type("Out", (), {"logits": logits})(), state + ids.shape[1]


@pytest.mark.parametrize("recurrence", ["rmt", "rmt_xl"])
@pytest.mark.parametrize("segment", [8, 6])
def test_greedy_predictions_reuse_the_segments_keys_and_compute_one_position_each(segment, recurrence):
    """The answer positions are extended one at a time (issue 14): the predictions the re-run path
    gives, and the first layer projects one position per generated token instead of the segment so far."""
    registry = builtin_registry()
    extra = ["recurrence.kind=rmt_xl", "recurrence.cache_len=5"] if recurrence == "rmt_xl" else []
    config = make_config(f"segment.length={segment}", "backbone.dropout=0.0", "backbone.init_std=0.5", *extra,
                         registry=registry)
    task = build_task(config, registry)
    model = prepare_model(config, task, registry).eval()
    ids = task.tensors("valid")[0][:4]
    a = task.answer_start
    rows = []
    hook = model.backbone.layers[0].qkv_net.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[1]))
    try:
        fast = greedy_predictions(model, ids, a)
        fast_rows, rows_fast = sum(rows), list(rows)
        rows.clear()
        slow = greedy_predictions(model, ids, a, reuse_keys=False)
        slow_rows = sum(rows)
    finally:
        hook.remove()
    assert torch.equal(fast, slow)
    assert fast_rows < slow_rows
    m, t, c = model.placement.n_read, ids.shape[1], 5 if recurrence == "rmt_xl" else 0
    # every segment committed once: memory + tokens + memory (the cache's keys come with the state); each
    # segment with answer positions also opens (its read memory, the cache projected once) and then
    # projects each of its positions once: the given ones before the answer in one call, then one a call
    answer = [s for s in range(0, t, segment) if min(s + segment, t) > a]
    commits = sum(2 * m + min(segment, t - s) for s in range(0, t, segment))
    opens = sum(m + min(c, s // segment * (2 * m + segment)) for s in answer)
    extended = sum(min(s + segment, t) - s for s in answer)
    assert fast_rows == commits + opens + extended, str(rows_fast)
    assert rows_fast.count(1) >= t - a - len(answer)


def test_greedy_predictions_by_hand():
    sentinel = 9  # the stub never predicts it
    ids = torch.tensor([[0, 2, 4, 1, sentinel, sentinel, sentinel, sentinel, sentinel, sentinel],
                        [3, 3, 3, 5, sentinel, sentinel, sentinel, sentinel, sentinel, sentinel]])
    model = _Recorder(vocab=10, segment_length=4)
    preds = greedy_predictions(model, ids, answer_start=3)
    # Before the answer: teacher-forced (input + 1); from position 3 on each prediction is fed back.
    assert preds.tolist() == [[1, 3, 5, 2, 3, 4, 5, 6, 7, 8], [4, 4, 4, 6, 7, 8, 0, 1, 2, 3]]
    assert all(not (seen == sentinel).any() for seen in model.seen)


class _Oracle(nn.Module):
    """A stub model that knows a split's answers: it reads the question (the first ``answer_start + 1``
    inputs, carried in its state) and predicts the label at each position; for the samples in ``wrong``
    it gets one answer position wrong (feeding back a wrong token does not derail it)."""

    def __init__(self, inputs, labels, answer_start, vocab, segment_length, wrong):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.vocab_size, self.segment_length, self.a = vocab, segment_length, answer_start
        self.answers = {tuple(x[: answer_start + 1].tolist()): (i, y) for i, (x, y) in enumerate(zip(inputs, labels, strict=True))}
        self.wrong = wrong  # sample index -> position predicted wrongly

    def initial_state(self, batch_size):
        return torch.zeros(batch_size, 0, dtype=torch.long)

    def step(self, ids, state, *, return_logits=True):
        seen = torch.cat([state, ids], dim=1)
        logits = torch.zeros(*ids.shape, self.vocab_size)
        for b in range(ids.shape[0]):
            if seen.shape[1] <= self.a:
                continue  # no answer position in here yet
            i, y = self.answers[tuple(seen[b, : self.a + 1].tolist())]
            for t in range(ids.shape[1]):
                pos = state.shape[1] + t
                token = int(y[pos]) if y[pos] != IGNORE_INDEX else 0
                if self.wrong.get(i) == pos:
                    token = (token + 1) % self.vocab_size
                logits[b, t, token] = 5.0
        return type("Out", (), {"logits": logits})(), seen

    def forward_sequence(self, ids):
        logits = []
        state = self.initial_state(ids.shape[0])
        for segment in ids.split(self.segment_length, dim=1):
            out, state = self.step(segment, state)
            logits.append(out.logits)
        return type("Seq", (), {"logits": torch.cat(logits, dim=1)})()


@pytest.mark.parametrize(("kind", "segment"), [("quadratic_equations", 30), ("copy", 6)])
def test_evaluate_samples_counts_by_hand(kind, segment):
    registry = builtin_registry()
    task_block = {"kind": kind, "train_size": 16, "valid_size": 4, "test_size": 10}
    config = make_config("backbone.vocab_size=24", base={**BASE, "task": task_block}, registry=registry)
    task = build_task(config, registry)
    inputs, labels = task.tensors("test")
    a = task.answer_start
    assert task.answer_length >= segment  # greedy decoding
    wrong = {1: a + 2, 4: a, 7: task.sequence_length - 1, 8: a + 5}
    model = _Oracle(inputs, labels, a, task.vocab_size, segment, wrong)

    preds = greedy_predictions(model, inputs, a)
    answer = labels != IGNORE_INDEX
    answer[:, :a] = False
    hits = (preds == labels) & answer
    per_char = hits.sum().item() / answer.sum().item()
    exact = (hits == answer).all(dim=1).sum().item() / len(hits)
    assert exact == (10 - len(wrong)) / 10
    assert per_char == 1 - len(wrong) / answer.sum().item()

    metrics = evaluate_samples(model, task, "test", batch_size=3, max_batches=None, autocast=contextlib.nullcontext)
    assert metrics["samples"] == 10 and metrics["decoding"] == "greedy"
    assert task.metric == ("exact_match" if kind == "quadratic_equations" else "accuracy")
    assert metrics["accuracy"] == pytest.approx(exact if task.metric == "exact_match" else per_char, abs=1e-12)
    # max_batches cuts the split: the first 2 batches of 3 hold samples 0-5, one of them (1) wrong in
    # one place and one (4) wrong in another.
    capped = evaluate_samples(model, task, "test", batch_size=3, max_batches=2, autocast=contextlib.nullcontext)
    assert capped["samples"] == 6
    if task.metric == "exact_match":
        assert capped["accuracy"] == pytest.approx(4 / 6)
    else:
        assert capped["accuracy"] == pytest.approx(1 - 2 / answer[:6].sum().item())


class _Follower(nn.Module):
    """A stub that continues a quadratic-equation layout correctly while every input it has read is the
    true layout, except that it gets position ``wrong_at`` wrong; once it has read a wrong token it
    derails (every later prediction is off by one), as a model that generates its own solution would."""

    def __init__(self, inputs, segment_length, wrong_at):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.vocab_size, self.segment_length, self.wrong_at = 24, segment_length, wrong_at
        self.layouts = {tuple(x[:30].tolist()): x for x in inputs}  # the equation slot names the sample

    def initial_state(self, batch_size):
        return torch.zeros(batch_size, 0, dtype=torch.long)

    def step(self, ids, state, *, return_logits=True):
        seen = torch.cat([state, ids], dim=1)
        logits = torch.zeros(*ids.shape, self.vocab_size)
        for b in range(ids.shape[0]):
            true = self.layouts[tuple(seen[b, :30].tolist())] if seen.shape[1] >= 30 else None
            for t in range(ids.shape[1]):
                pos = state.shape[1] + t
                if true is None:
                    continue
                token = int(true[pos + 1]) if pos + 1 < len(true) else 0
                if pos == self.wrong_at or not torch.equal(seen[b, : pos + 1], true[: pos + 1]):
                    token = (token + 1) % self.vocab_size
                logits[b, t, token] = 5.0
        return type("Out", (), {"logits": logits})(), seen

    def forward_sequence(self, ids):
        logits, state = [], self.initial_state(ids.shape[0])
        for segment in ids.split(self.segment_length, dim=1):
            out, state = self.step(segment, state)
            logits.append(out.logits)
        return type("Seq", (), {"logits": torch.cat(logits, dim=1)})()


@pytest.mark.parametrize("segment", [30, 180])  # Tr-XL/RMT's 6 x 30 and the Baseline's 1 x 180 (Table 1)
def test_quadratic_greedy_decoding_generates_the_solution_lines(segment):
    """Table 1's metric (docs/paper-settings.md 2.6): every target position from 30 on is generated; one wrong token
    in a solution line derails the answer. ``by_length`` (the old rule) fed the true solution lines in
    (teacher forcing for the Baseline, greedy only from the answer slot for 30-token segments), so the
    same model scored 1.0 there."""
    registry = builtin_registry()
    scores = {}
    for decoding in ("by_length", "greedy"):
        block = {"kind": "quadratic_equations", "train_size": 16, "valid_size": 4, "test_size": 6, "decoding": decoding}
        config = make_config("backbone.vocab_size=24", base={**BASE, "task": block}, registry=registry)
        task = build_task(config, registry)
        inputs, _ = task.tensors("test")
        for wrong_at in (None, 40):  # 40 predicts a token of the canonical-equation line
            model = _Follower(inputs, segment, wrong_at)
            metrics = evaluate_samples(model, task, "test", batch_size=4, max_batches=None,
                                       autocast=contextlib.nullcontext)
            scores[decoding, wrong_at] = metrics["accuracy"]
            if decoding == "greedy":
                assert metrics["decoding"] == "greedy" and metrics["decoded_from"] == 29
    assert scores["greedy", None] == scores["by_length", None] == 1.0
    assert scores["by_length", 40] == 1.0  # the old metric never saw the wrong solution token
    assert scores["greedy", 40] == 0.0
    assert "decoding" not in make_config(base=BASE, registry=registry).model_dump()["task"]  # not in the hash


def test_table1_cells_decode_greedily_from_the_equation():
    from rmtzoo_benchmarks import table1

    for preset in ("paper", "small", "smoke"):
        cells = table1.cells(preset)
        assert {c.labels["model"] for c in cells} == {"Baseline", "Tr-XL", "RMT"}
        assert all(c.config["task"]["decoding"] == "greedy" for c in cells)


def test_a_cache_carried_across_samples_changes_the_next_samples(tmp_path):
    """``recurrence.cache_scope = "across_samples"`` (the authors' synthetic code): the second batch's
    first segment attends to the first batch's last states, so its loss changes; the evaluation-loss
    pass carries it too, the greedy accuracy pass does not; ``per_sample`` is the old behaviour and
    stays out of the config hash."""
    xl = ("train.checkpoint_every=null", "eval.batch_size=8", "backbone.init_std=0.5")  # weights that tell
    base = {**BASE, "memory": {"kind": "none"}, "recurrence": {"kind": "xl", "cache_len": 8}}
    losses, evals = {}, {}
    for scope in ("per_sample", "across_samples"):
        config = make_config(*xl, f"recurrence.cache_scope={scope}", base=base)
        trainer = Trainer(config, tmp_path / scope, registry=builtin_registry(), log=quiet)
        trainer.train_tensors = trainer.task.tensors("train")
        trainer.model.eval()  # no dropout: the two trainers start from the same weights
        with torch.no_grad():
            first = float(trainer._loss()[0])
            trainer.step = 1
            second = float(trainer._loss()[0])
            x, _ = trainer._sample_batch(1)
            carried = carried_cache(trainer.model, len(x), trainer.sample_state)
            if scope == "across_samples":  # the second sample's logits, with and without the first's cache
                fresh = trainer.model.forward_sequence(x).logits[:, :8]  # [B, 8, V]
                assert (trainer.model.forward_sequence(x, carried).logits[:, :8] - fresh).abs().max() > 1e-2
            else:
                assert carried is None
        losses[scope] = (first, second)
        evals[scope] = trainer.evaluate("valid")
    assert losses["per_sample"][0] == losses["across_samples"][0]  # nothing to carry into the first batch
    assert losses["per_sample"][1] != losses["across_samples"][1]
    assert evals["per_sample"]["loss"] != evals["across_samples"]["loss"]
    assert evals["per_sample"]["accuracy"] == evals["across_samples"]["accuracy"]
    per_sample = make_config(*xl, "recurrence.cache_scope=per_sample", base=base)
    assert per_sample.content_hash() == make_config(*xl, base=base).content_hash()
    assert "cache_scope" not in per_sample.model_dump()["recurrence"]


# -- 6. curriculum ----------------------------------------------------------------------------------
def test_curriculum_advances_and_survives_a_resume(tmp_path):
    config = make_config("train.curriculum.segments=[1, 3]", "train.curriculum.advance_at=0.0001",
                         "train.lr=0.05", "train.steps=12", "train.checkpoint_every=null", "eval.every=4")
    registry = builtin_registry()
    fresh = Trainer(config, tmp_path / "full", registry=registry, log=quiet)
    assert fresh.model.segment_length == 24  # one segment per sample to start with
    fresh.fit()
    assert fresh.model.segment_length == 8 and fresh.curriculum_index == 1
    reference = weights(tmp_path / "full", step=12)

    again = Trainer(config, tmp_path / "full", registry=builtin_registry(), log=quiet)
    assert again.model.segment_length == 24
    assert again.resume()
    assert again.model.segment_length == 8 and again.curriculum_index == 1 and again.step == 12

    # Killed after the stage changed at step 4 (checkpointed there): the resumed run is at 3 segments.
    interrupted_run(config, tmp_path / "killed", kill_at=6)
    state = read_trainer_state(find_checkpoint(tmp_path / "killed"))
    assert state["step"] == 4 and state["curriculum_index"] == 1
    train(config, tmp_path / "killed", registry=builtin_registry(), log=quiet)
    assert_same_weights(weights(tmp_path / "killed", step=12), reference)


# -- 7. loggers, early stop, results ----------------------------------------------------------------
def test_metrics_log_early_stop_and_results(tmp_path):
    config = make_config("train.lr=0.05", "train.steps=40", "train.log_every=2", "eval.every=4",
                         "train.stop_at=0.01")
    registry = builtin_registry()
    results = train(config, tmp_path, registry=registry, log=quiet)
    log = records(tmp_path)
    assert log[0]["event"] == "started" and log[0]["config_hash"] == config.content_hash()
    assert log[-1]["event"] == "finished" and log[-1]["status"] == "completed"
    valid = [r for r in log if "valid/accuracy" in r]
    assert valid and valid[-1]["valid/accuracy"] >= 0.01  # stopped at the first evaluation that reached it
    assert all(r["valid/accuracy"] < 0.01 for r in valid[:-1])
    stopped = valid[-1]["step"]
    assert stopped < 40 and results["step"] == stopped
    train_steps = [r["step"] for r in log if "train/loss" in r]
    assert train_steps == list(range(2, stopped + 1, 2))
    assert all(isinstance(r["train/loss"], float) and r["train/lr"] == 0.05 for r in log if "train/loss" in r)

    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == results
    assert set(on_disk) >= {"test/loss", "test/accuracy", "test/samples", "step"} and on_disk["test/samples"] == 16
    # results.json holds the test metrics of the best checkpoint.
    task = build_task(config, registry)
    model = prepare_model(config, task, registry)
    rmtzoo.train.load_checkpoint(find_checkpoint(tmp_path, which="best"), model)
    again = evaluate_samples(model, task, "test", batch_size=16, max_batches=None, autocast=contextlib.nullcontext)
    assert again["accuracy"] == on_disk["test/accuracy"] and again["loss"] == pytest.approx(on_disk["test/loss"])
