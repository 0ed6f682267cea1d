"""The trainer: one loop for sample tasks (memory starts fresh per sample, full BPTT inside a sample),
classification tasks (the same, with the loss on the last segment's class logits) and stream tasks
(Transformer-XL's ordered iterator; memory and cache carried across steps, truncated BPTT of depth k
through the model's replay window).

The best checkpoint is the one with the lowest validation loss, except for classification, where it is
the highest validation score of the task's metric (F1 for Hyperpartisan, as the paper kept the best
validation F1, docs/paper-settings.md 4).

Runs the same under ``torchrun`` (DDP, gloo on CPU, NCCL on GPU): each process takes its rows of the
global batch, and a rank-0-only side writes logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
from pathlib import Path

import torch
import torch.nn.functional as F

from rmtzoo._build import build_model
from rmtzoo._components import RunInfo
from rmtzoo._config import ExperimentConfig
from rmtzoo._errors import CheckpointError, ConfigError, RmtzooError, UnavailableError
from rmtzoo._io import atomic_write_text, check_folder
from rmtzoo._registry import Registry
from rmtzoo._runtime import resolve_device, set_threads
from rmtzoo.train import _checkpoint as ckpt
from rmtzoo.train._checkpoint import find_checkpoint, save_checkpoint
from rmtzoo.train._eval import IGNORE_INDEX, carried_cache, evaluate_task
from rmtzoo.train._progress import Progress


class TrainingDiverged(RmtzooError, RuntimeError):
    """The loss or the weights became NaN or infinite; the last good checkpoint is left as it was.
    A user-facing error: the CLI prints it as one line and exits 2."""

# Fields a run may change when it is continued explicitly (``train(..., continue_run=True)``).
CONTINUABLE = ("steps", "stop_at")


def build_task(config: ExperimentConfig, registry: Registry):
    if config.task is None:
        raise ConfigError("task: a task block is required to train or evaluate (e.g. [task] kind = \"copy\")")
    return registry.get("tasks", config.task.kind).build(config.task.params)


def prepare_model(config: ExperimentConfig, task, registry: Registry, *, n_segments: int | None = None):
    """Build the model and fit it to the task: vocabulary and segment length checked before training."""
    model = build_model(config, registry=registry)
    if model.vocab_size < task.vocab_size:
        raise ConfigError(f"backbone.vocab_size: {model.vocab_size} is smaller than task {task.name!r}'s {task.vocab_size}")
    if task.kind == "classification":
        if not model.capabilities.per_sample_mask:
            raise ConfigError(
                f"backbone.kind: {config.backbone.kind!r} cannot run classification task {task.name!r}: it needs the "
                "per_sample_mask capability (a per-sample padding mask), which this backbone does not declare"
            )
        from rmtzoo.heads import build_classifier

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            model.classifier = build_classifier(model, task.num_labels)
    if task.kind == "samples":
        length = task.sequence_length // n_segments if n_segments else config.segment.length
        try:
            model.segment_length = task.segment_length_for(length)
        except ValueError as exc:
            divisors = [d for d in range(1, task.sequence_length + 1) if task.sequence_length % d == 0]
            raise ConfigError(
                f"segment.length: {exc}; {task.name} samples have {task.sequence_length} tokens, use one of "
                f"{divisors} or task.segmenting = 'lm_rmt_chunk'"
            ) from None
    return model


def set_segment_count(model, task, n_segments: int) -> None:
    """Run a sample task's samples as ``n_segments`` segments (a curriculum stage)."""
    model.segment_length = task.segment_length_for(task.sequence_length // n_segments)


def make_autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def _lr_lambda(cfg):
    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        progress = min(1.0, step / cfg.steps)
        if cfg.schedule == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * progress))
        if cfg.schedule == "linear":
            return warm * (1 - progress)
        return warm

    return factor


def check_trainable(model, registry: Registry, device: torch.device) -> None:
    """One line, before the first step, where the model's attention kernel has no backward on ``device``."""
    name = getattr(model, "attention_name", None)
    if name is None or name not in registry.names("attention_backends"):
        return
    if device.type in registry.get("attention_backends", name).inference_only_on:
        raise UnavailableError(
            f"attention.kind: {name!r} runs forward only on {device.type} (no backward there); "
            "train with attention.kind 'auto', 'eager' or 'sdpa' and evaluate or generate with it"
        )


class Trainer:
    def __init__(self, config: ExperimentConfig, run_dir, *, registry: Registry | None = None, log=print,
                 device: str | None = "auto") -> None:
        self.config, self.run_dir, self.log = config, Path(run_dir), log
        self.registry = registry if registry is not None else Registry()
        self.task = build_task(config, self.registry)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if config.train.batch_size % self.world:
            raise ConfigError(f"train.batch_size: {config.train.batch_size} must divide evenly over {self.world} processes")
        self.curriculum_index = 0
        curriculum = config.train.curriculum
        if curriculum is not None and self.task.kind != "samples":
            raise ConfigError("train.curriculum: only sample tasks grow their number of segments")
        if curriculum is not None:
            n = self.task.sequence_length
            allowed = [d for d in range(1, n + 1) if n % d == 0]
            bad = [s for s in curriculum.segments if s not in allowed]
            if bad:
                raise ConfigError(f"train.curriculum.segments: {bad[0]} segments do not tile {self.task.name}'s "
                                  f"{n}-token samples; use counts from {allowed}")
        self.model = prepare_model(config, self.task, self.registry, n_segments=self._curriculum_segments())
        self.device = resolve_device(device)
        self.model.to(self.device)
        if config.train.compile:
            self.model.compile_segments()
        self.autocast = make_autocast(config.train.precision, self.device)
        self.run = RunInfo(str(self.run_dir), config, config.content_hash())
        t = config.train
        opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(t))
        self.plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=t.plateau_factor, patience=t.plateau_patience, min_lr=t.min_lr
            )
            if t.schedule == "plateau"
            else None
        )
        self.scaler = torch.amp.GradScaler(enabled=t.precision == "fp16" and self.device.type == "cuda")
        self.step = 0
        self.best = math.inf
        self.finished = False  # the last checkpoint ended the run (train.steps or train.stop_at reached)
        self.stream_state = None  # carried memory/cache for stream tasks
        self.sample_state = None  # the last batch's state, for a cache carried across samples
        self.stream_pos = 0
        self.ddp = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # In a stream, once BPTT-k's window has slid past the first segment the learned initial memory
            # gets no gradient, so DDP must look for unused parameters there.
            # (Classification never uses the LM head.)
            self.ddp = DistributedDataParallel(self.model, find_unused_parameters=self.task.kind != "samples")

    # -- helpers ----------------------------------------------------------------------------------
    def _curriculum_segments(self) -> int | None:
        c = self.config.train.curriculum
        return None if c is None else c.segments[self.curriculum_index]

    def _forward(self, ids, state=None, **kwargs):
        module = self.ddp if self.ddp is not None else self.model
        return module(ids, state, **kwargs)

    def _rows(self, tensor):
        """This process's rows of a global batch."""
        per = tensor.shape[0] // self.world
        return tensor[self.rank * per : (self.rank + 1) * per]

    def _sample_batch(self, step: int):
        """This process's rows of step ``step``'s batch of every train tensor (a new permutation per epoch)."""
        tensors = self.train_tensors
        b = self.config.train.batch_size
        per_epoch = max(1, len(tensors[0]) // b)
        epoch, i = divmod(step, per_epoch)
        if getattr(self, "_epoch", None) != epoch:
            g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(len(tensors[0]), generator=g), epoch
        idx = self._perm[i * b : (i + 1) * b]
        return tuple(self._rows(t[idx]).to(self.device) for t in tensors)

    def _stream_batch(self):
        from rmtzoo.tasks.lm import ordered_streams

        if not hasattr(self, "_streams"):
            self._streams = self._rows(ordered_streams(self.task.tokens("train"), self.config.train.batch_size))
        length = self.model.segment_length
        if self.stream_pos + length + 1 > self._streams.shape[1]:
            self.stream_pos, self.stream_state = 0, None  # a new pass over the corpus starts fresh
        chunk = self._streams[:, self.stream_pos : self.stream_pos + length + 1].to(self.device)
        self.stream_pos += length
        return chunk[:, :-1], chunk[:, 1:]

    def _loss(self):
        if self.task.kind == "samples":
            x, y = self._sample_batch(self.step)
            with self.autocast():
                out = self._forward(x, carried_cache(self.model, x.shape[0], self.sample_state))
                logits = out.logits  # [B, T, V]
            if self.model.policy.cache_scope == "across_samples":
                self.sample_state = out.state  # its cache (stop-gradient) opens the next batch
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)
            return loss, x.numel()
        if self.task.kind == "classification":
            x, padding_mask, y = self._sample_batch(self.step)
            with self.autocast():
                logits = self._forward(x, padding_mask=padding_mask, classify=True)  # [B, num_labels]
            return F.cross_entropy(logits.float(), y), int(padding_mask.sum())
        x, y = self._stream_batch()
        state = self.stream_state or self.model.initial_state(x.shape[0])
        with self.autocast():
            out, state = self._forward(x, state, step=True, return_logits=False, targets=y)
            loss = out.nll.mean()
            weight = self.model.policy.aux_loss_weight
            if weight and out.written is not None:  # Tr-XL + RMT's auxiliary memory-token loss (A.5)
                loss = loss + weight * self.model.aux_nll(out.written)
        self.stream_state = state.detach()  # BPTT-k reaches further back only through the replay window
        return loss, x.numel()

    def evaluate(self, split: str, *, whole: bool = False) -> dict:
        """Metrics on ``split``: its first ``eval.max_batches`` batches, or all of it with ``whole``; the
        test split takes ``eval.test_max_batches`` instead when that is set, ``whole`` or not."""
        ev = self.config.eval
        if split == "test" and ev.test_max_batches is not None:
            cap = ev.test_max_batches
        else:
            cap = None if whole else ev.max_batches
        metrics = evaluate_task(self.model, self.task, split, batch_size=ev.batch_size, max_batches=cap,
                                autocast=self.autocast)
        self.model.train()
        return metrics

    # -- checkpoints ------------------------------------------------------------------------------
    def _trainer_state(self) -> dict:
        return {
            "step": self.step,
            "best": self.best,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "plateau": self.plateau.state_dict() if self.plateau else None,
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "stream_pos": self.stream_pos,
            "stream_state": self.stream_state,
            "sample_state": self.sample_state,
            "curriculum_index": self.curriculum_index,
            "config_hash": self.run.config_hash,
            "finished": self.finished,
        }

    def save(self, *, best: bool = False) -> None:
        if self.rank != 0:
            return
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            good = find_checkpoint(self.run_dir) if (self.run_dir / "checkpoints").is_dir() else None
            where = f"the last good checkpoint {good} is intact and loads" if good else "no checkpoint was written"
            raise TrainingDiverged(f"the weights became NaN or infinite at step {self.step} (its loss was finite); "
                                   f"stopped before checkpointing them, {where} (try a lower train.lr or "
                                   "train.grad_clip)")
        save_checkpoint(self.run_dir, self.step, model=self.model, trainer_state=self._trainer_state(),
                        config_json=json.dumps(self.config.model_dump(mode="json"), indent=2), best=best)

    def _resume_folder(self) -> Path | None:
        """The latest checkpoint, or the newest intact one before it when it is damaged (saying so)."""
        folder = find_checkpoint(self.run_dir)
        if folder is None:
            return None
        problem = ckpt.damage(folder)
        if problem is None:
            return folder
        previous = ckpt.newest_intact(folder.parent, before=folder.name)
        if previous is None:
            raise CheckpointError(f"cannot resume: {problem}, and no earlier intact checkpoint is left in "
                                  f"{folder.parent}; start over with --no-resume or another --run-dir")
        self.log(f"checkpoint {folder.name} is damaged ({problem}); resuming from {previous.name} instead")
        return previous

    def _check_same_run(self, folder: Path, state: dict, continue_run: bool) -> None:
        if state["config_hash"] == self.run.config_hash:
            return
        try:
            saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = None
        ours = self.config.model_dump(mode="json")
        strip = lambda c: {**c, "train": {k: v for k, v in c["train"].items() if k not in CONTINUABLE}}  # noqa: E731
        same_but_length = isinstance(saved, dict) and "train" in saved and strip(saved) == strip(ours)
        if same_but_length and continue_run:
            return
        hint = ("; only train.steps / train.stop_at differ: pass --continue (continue_run=True) to train it on"
                if same_but_length else "; use a new --run-dir")
        raise CheckpointError(f"run folder {str(self.run_dir)!r} holds a run of another config "
                              f"({state['config_hash']}, this is {self.run.config_hash}){hint}")

    def resume(self, *, continue_run: bool = False) -> bool:
        folder = self._resume_folder()
        if folder is None:
            return False
        state = ckpt.read_trainer_state(folder)
        self._check_same_run(folder, state, continue_run)
        ckpt.load_weights(folder, self.model, map_location=self.device)
        if state["curriculum_index"] != self.curriculum_index:
            self.curriculum_index = state["curriculum_index"]
            set_segment_count(self.model, self.task, self._curriculum_segments())
        self.step, self.best = state["step"], state["best"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.stream_pos, self.stream_state = state["stream_pos"], _to_device(state["stream_state"], self.device)
        self.sample_state = _to_device(state.get("sample_state"), self.device)
        if "finished" in state:
            self.finished = state["finished"]
        else:  # a checkpoint of an older rmtzoo: finished when results.json was written at its step
            self.finished = self._results().get("step") == self.step
        self.log(f"resumed from {folder} at step {self.step}")
        return True

    def _results(self) -> dict:
        try:
            results = json.loads((self.run_dir / "results.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return results if isinstance(results, dict) else {}

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self, *, resume: bool = True, continue_run: bool = False) -> dict:
        """Train to ``train.steps`` (or ``train.stop_at``), resuming from the run folder's latest
        checkpoint. A finished run is not trained again (its results are returned) unless ``continue_run``;
        then ``train.steps`` and ``train.stop_at`` may differ from the run's."""
        check_folder(self.run_dir, "--run-dir")
        ckpt.checkpoints_folder(self.run_dir)
        check_trainable(self.model, self.registry, self.device)
        if self.rank != 0:
            return self._fit(resume, continue_run)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with ckpt.exclusive_run_dir(self.run_dir):
            removed = ckpt.remove_temporaries(self.run_dir)
            if removed:
                self.log(f"removed {len(removed)} temporaries of killed checkpoint writes: {', '.join(removed)}")
            return self._fit(resume, continue_run)

    def _fit(self, resume: bool, continue_run: bool) -> dict:
        cfg = self.config.train
        if self.task.kind == "samples":
            self.train_tensors = self.task.tensors("train")
        elif self.task.kind == "classification":
            self.train_tensors = self.task.tensors("train", self.model.segment_length)
        torch.manual_seed(self.config.seed + self.rank)
        random.seed(self.config.seed)
        resumed = resume and self.resume(continue_run=continue_run)
        if resumed and self.finished and not continue_run:
            results = self._results()
            if results:
                self.log(f"run folder {self.run_dir} holds a finished run (step {self.step}; test results in "
                         f"{self.run_dir / 'results.json'}); nothing to do. To train it further pass --continue "
                         "(with a higher train.steps, or train.stop_at=null)")
                return results
        elif resumed and continue_run:
            if self.step >= cfg.steps:
                raise ConfigError(f"train.steps: the run in {str(self.run_dir)!r} is at step {self.step} already; "
                                  f"--continue needs a higher train.steps (now {cfg.steps})")
            self.finished = False
        if self.rank == 0:
            if resumed:
                self.registry.hook.rmtzoo_run_resumed(run=self.run, step=self.step)
            else:
                self.registry.hook.rmtzoo_run_started(run=self.run)
        progress = Progress(cfg.steps, every=cfg.log_every, start_step=self.step)
        every = cfg.checkpoint_every or self.config.eval.every
        self.model.train()
        status, results = "failed", {}
        try:
            while self.step < cfg.steps and not self.finished:
                loss, n = self._loss()
                if not torch.isfinite(loss):
                    good = find_checkpoint(self.run_dir) if (self.run_dir / "checkpoints").is_dir() else None
                    where = f"the last good checkpoint {good} is intact and loads" if good else "no checkpoint was written"
                    raise TrainingDiverged(f"loss became {loss.item()} at step {self.step + 1}; stopped, {where} "
                                           "(try a lower train.lr or train.grad_clip)")
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if cfg.grad_clip:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if self.plateau is None or self.step < cfg.warmup_steps:
                    # LambdaLR sets lr = base * factor, which would undo the plateau's reductions:
                    # under the plateau schedule it only runs the warmup.
                    self.schedule.step()
                self.step += 1
                if self.rank == 0:  # loss: the mean since the last log line; tokens/s: training steps only
                    progress.update(self.step, loss.item(), n * self.world)
                    if self.step % cfg.log_every == 0:
                        self.registry.hook.rmtzoo_metrics_logged(run=self.run, step=self.step, metrics={
                            "train/loss": progress.window_loss(), "train/lr": self.optimizer.param_groups[0]["lr"],
                            "train/tokens_per_s": progress.tokens_per_s})
                if self.step % self.config.eval.every == 0 or self.step == cfg.steps:
                    with progress.paused():
                        stop = self._validate(progress)
                    if stop:
                        break
                elif self.step % every == 0:
                    with progress.paused():
                        self.save()
            progress.close()
            if self.ddp is not None:  # rank 0's last checkpoint (and pruning) is done before any rank reads one
                torch.distributed.barrier()
            results = self._test()
            status = "completed"
            return results
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if self.rank == 0:
                self.registry.hook.rmtzoo_run_finished(run=self.run, status=status, metrics=results)

    def _validate(self, progress) -> bool:
        """Evaluate, keep the best checkpoint, step the plateau schedule; True to stop early."""
        metrics = self.evaluate("valid")
        key = "accuracy" if self.task.kind == "samples" else self.task.metric
        score = -metrics[key] if self.task.kind == "classification" else metrics["loss"]  # lower is better
        improved = score < self.best
        if improved:
            self.best = score
        if self.plateau is not None:
            self.plateau.step(metrics["loss"])
        c = self.config.train.curriculum
        advance = c is not None and metrics["accuracy"] >= c.advance_at and self.curriculum_index + 1 < len(c.segments)
        if advance:  # before saving, so that a run resumed from this checkpoint goes on at the new stage
            self.curriculum_index += 1
            set_segment_count(self.model, self.task, self._curriculum_segments())
            self.best = math.inf  # a new segment count is a new problem
        at_last_stage = c is None or self.curriculum_index + 1 == len(c.segments)
        stop = self.config.train.stop_at
        reached = metrics.get(key if self.task.kind == "classification" else "accuracy", 0.0)
        stopping = bool(not advance and stop is not None and at_last_stage and reached >= stop)
        self.finished = stopping or self.step >= self.config.train.steps  # saved with the checkpoint
        self.save(best=improved)
        if self.rank == 0:
            progress.message(f"step {self.step}: valid loss {metrics['loss']:.4f}  {key} {metrics[key]:.4f}")
            self.registry.hook.rmtzoo_metrics_logged(
                run=self.run, step=self.step, metrics={f"valid/{k}": v for k, v in metrics.items() if isinstance(v, float)})
        if advance and self.rank == 0:
            progress.message(f"curriculum: now {self._curriculum_segments()} segments")
        return stopping

    def _test(self) -> dict:
        folder = find_checkpoint(self.run_dir, which="best") or find_checkpoint(self.run_dir)
        if folder is not None:
            ckpt.load_weights(folder, self.model, map_location=self.device)
        metrics = {f"test/{k}": v for k, v in self.evaluate("test", whole=True).items()}  # never eval.max_batches
        if self.config.train.curriculum is not None:  # the test runs at the stage training ended on
            metrics["test/segments"] = self._curriculum_segments()
        metrics["step"] = self.step
        if self.rank == 0:
            atomic_write_text(self.run_dir / "results.json", json.dumps(metrics, indent=2) + "\n")
            self.log("test: " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
        return metrics


def train(config: ExperimentConfig, run_dir, *, registry: Registry | None = None, resume: bool = True, log=print,
          device: str | None = "auto", threads: int | None = None, continue_run: bool = False) -> dict:
    """Train ``config`` in ``run_dir`` (resuming from its latest checkpoint) and return test metrics.
    A finished run returns its results without training; ``continue_run`` trains it on (see ``Trainer.fit``).

    device: ``auto`` (CUDA, else MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    threads: PyTorch's CPU thread count for the run; ``None`` leaves it as it is (the CLI passes
    :func:`rmtzoo.default_threads`)."""
    if threads is not None:
        set_threads(threads)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        return Trainer(config, run_dir, registry=registry, log=log, device=device).fit(resume=resume,
                                                                                 continue_run=continue_run)
    finally:
        if distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _to_device(state, device):
    """A carried recurrent state (or None) with its tensors on ``device``."""
    if state is None:
        return None
    from rmtzoo.train import _state_io

    tensors = {}
    data = _state_io.encode(state, tensors)
    return _state_io.decode(data, {k: v.to(device) for k, v in tensors.items()})
