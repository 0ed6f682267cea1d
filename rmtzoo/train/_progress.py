"""The training progress display: a ``tqdm`` bar on a terminal, plain lines otherwise.

What it shows and what the trainer logs from it:

* loss: the mean over the steps since the last log line (``log_every``), not one batch; the bar shows an
  exponential moving average (weight 0.1 on the newest batch), which moves steadily between log lines.
* tokens/s: training steps only. Time spent in validation and checkpoint writes (``paused()``) is left
  out, so the rate does not drop every ``eval.every`` steps.
* elapsed and ETA: ``tqdm``'s on a terminal; on plain lines the ETA is the remaining steps at the mean
  wall time per step so far (validation included, as the remaining steps will include it).
* A run that ends early (``train.stop_at`` reached) closes the bar at its last step, as complete.
"""

from __future__ import annotations

import contextlib
import sys
import time


def _clock_text(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, total: int, *, every: int, stream=None, start_step: int = 0, clock=time.perf_counter) -> None:
        self.total, self.every, self.clock = total, every, clock
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start_step = self.step = start_step
        self.started = clock()
        self.paused_s = 0.0
        self.tokens = 0
        self.ema = None
        self._window: list[float] = []
        self.bar = None
        if self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start_step, file=self.stream, unit="step", dynamic_ncols=True,
                            smoothing=0.1, leave=True)

    # -- what the trainer logs ------------------------------------------------------------------------
    @property
    def train_seconds(self) -> float:
        return max(1e-9, self.clock() - self.started - self.paused_s)

    @property
    def tokens_per_s(self) -> float:
        """Tokens per second of training steps (validation and checkpointing left out)."""
        return self.tokens / self.train_seconds

    def window_loss(self) -> float:
        """The mean loss since the previous call (the steps one log line covers), then a new window."""
        window, self._window = self._window, []
        return sum(window) / len(window) if window else float("nan")

    # -- updates ---------------------------------------------------------------------------------------
    def update(self, step: int, loss: float, tokens: int) -> None:
        self.step, self.tokens = step, self.tokens + tokens
        self.ema = loss if self.ema is None else 0.9 * self.ema + 0.1 * loss
        self._window.append(loss)
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(f"loss {self.ema:.4f}  tokens/s {self.tokens_per_s:,.0f}", refresh=False)
        elif step % self.every == 0 or step == self.total:
            done = step - self.start_step
            wall = self.clock() - self.started
            eta = wall / done * (self.total - step) if done else 0.0
            mean = sum(self._window[-self.every:]) / len(self._window[-self.every:])
            print(f"step {step}/{self.total}  loss {mean:.4f}  tokens/s {self.tokens_per_s:,.0f}  "
                  f"elapsed {_clock_text(wall)}  ETA {_clock_text(eta)}", file=self.stream, flush=True)

    @contextlib.contextmanager
    def paused(self):
        """Time inside is not training time (validation, checkpoints)."""
        began = self.clock()
        try:
            yield
        finally:
            self.paused_s += self.clock() - began

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            if self.step < self.total:  # stopped early: the run is complete at this step
                self.bar.total = self.step
                self.bar.refresh()
            self.bar.close()
