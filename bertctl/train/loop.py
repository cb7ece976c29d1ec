"""The training loop every task shares, written once.

A task (GLUE fine-tuning, MLM+NSP pretraining, ...) hands the loop two functions: `forward`,
which runs the forward and backward passes of one optimizer step and says what its loss was,
and `evaluate`, which scores the model. The loop owns the rest, the same for every task: the
learning-rate schedule, gradient clipping, the update (with Ctrl-C and SIGTERM held until it and
its log line are done), the loss and weight checks, evaluation and checkpoint due-times, the
log and progress bar, the checkpoint a Ctrl-C, SIGTERM or out-of-memory exit leaves, and exact
`--resume`.

Under torchrun every process runs the loop; only the main one logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bertctl.errors import BertctlError
from bertctl.train import runs
from bertctl.train.optim import linear_warmup_decay


@dataclass(frozen=True)
class Schedule:
    """When things happen: `steps` optimizer steps, warmup then linear decay from `lr`, an
    evaluation every `eval_every` steps (and at the end), a checkpoint every `save_every`."""

    steps: int
    warmup: int
    lr: float
    eval_every: int
    save_every: int
    keep_checkpoints: int
    max_grad_norm: float


@dataclass
class Step:
    """What one step's forward and backward passes report.

    Attributes:
        loss: the step's training loss, as a float the task has already read (for the log;
            reading it is the one device sync a step makes).
        examples: training examples in the step (every process's).
        log: further fields for the step's log line (e.g. masked_lm_loss, tokens).
        postfix: the progress bar's text after the step.
    """

    loss: float
    examples: int
    log: dict[str, float] = field(default_factory=dict)
    postfix: str = ""


@dataclass
class Trained:
    """Where the loop ended: the step, every evaluation, the last loss, seconds spent training
    (evaluations not counted) and the examples and tokens trained on."""

    step: int
    history: list[dict[str, Any]]
    last_loss: float
    train_seconds: float
    examples: int
    tokens: float


@dataclass
class Loop:
    """One run's loop: the model being trained and the parts that are the task's own.

    Attributes:
        out: the run folder.
        model: the model whose weights are checked and saved.
        optimizer, scaler: the optimizer and fp16 grad scaler.
        schedule: steps, learning rate, evaluation and checkpoint times.
        forward: `forward(step)` runs the forward and backward passes of step `step` (0-based).
        evaluate: `evaluate(step)` returns one record for metrics.json, or None where the task
            has nothing to score on.
        epoch: `epoch(step)`, the epochs trained after `step` steps (for the log).
        title: the progress bar's title ("Fine-tuning").
        resume_command: the command line that continues the run (for the Ctrl-C message).
        out_of_memory: `out_of_memory(step)`, the error to raise when the GPU runs out of memory.
        main: whether this process logs and writes (rank 0).
    """

    out: Path
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: Schedule
    forward: Callable[[int], Step]
    evaluate: Callable[[int], dict[str, Any] | None]
    epoch: Callable[[int], float]
    title: str
    resume_command: str
    out_of_memory: Callable[[int], BaseException]
    main: bool = True


def resume(loop: Loop, device: torch.device, reporter) -> tuple[int, list[dict[str, Any]], float]:
    """The step, evaluations and last loss of the run's latest checkpoint, loaded into the model
    and optimizer; (0, [], nan) when it has none."""
    state = runs.load_latest(loop.out, loop.model, loop.optimizer, device)
    if state is None:
        return 0, [], float("nan")
    reporter.step(f"Resuming from step {state['step']:,} of {loop.schedule.steps:,}")
    return state["step"], state["history"], state.get("loss", float("nan"))


START: tuple[int, list[dict[str, Any]], float] = (0, [], float("nan"))


def train(loop: Loop, reporter, start=START, resumed: bool = False) -> Trained:
    """Train from `start` (step, history, last loss; from `resume`) to the last step.

    Raises:
        BertctlError: the run diverged, the disk filled, or it was stopped (Ctrl-C, SIGTERM) or
            ran out of GPU memory; each leaves the last whole step's checkpoint and names the
            command that continues it.
    """
    step, history, last_loss = start[0], list(start[1]), start[2]
    schedule = loop.schedule
    # The log drops what a killed run wrote after its last checkpoint: every step is logged once.
    log = runs.TrainLog(loop.out, resume_step=step if resumed else None) if loop.main else None
    state = _State(loop, log, step, history, last_loss)
    if resumed and runs.evaluation_missing(step, schedule.eval_every, schedule.steps, history):
        state.evaluate()  # stopped during this evaluation: make it now, as a straight run did
    previous_sigint = signal.getsignal(signal.SIGINT)
    previous_sigterm = _sigterm_as_interrupt()
    try:
        with reporter.progress(loop.title, schedule.steps, "steps") as bar:
            bar.advance(state.step)
            while state.step < schedule.steps:
                postfix = state.train_step()
                bar.advance(1, postfix=postfix)
                if runs.evaluation_due(state.step, schedule.eval_every, schedule.steps):
                    state.evaluate()
                if state.step % schedule.save_every == 0 or state.step == schedule.steps:
                    state.checkpoint()
    except torch.cuda.OutOfMemoryError:
        state.out_of_memory = True  # handled below, once the exception has let go of the step
    except BertctlError:
        state.close()  # diverged, or the disk is full: the TensorBoard writer's thread ends too
        raise
    except KeyboardInterrupt:
        # A second signal (torchrun sends SIGTERM after the terminal's SIGINT) must not cut the
        # checkpoint short.
        for number in (signal.SIGINT, signal.SIGTERM):
            _restore_signal(number, signal.SIG_IGN)
        state.close()
        state.checkpoint(rng=state.rng_at_step)
        latest = runs.latest_checkpoint(loop.out)
        saved = f"the checkpoint {latest.name} is in {loop.out}" if latest else "no checkpoint yet"
        raise BertctlError(
            f"interrupted at step {state.step}; {saved}", f"resume with: {loop.resume_command}"
        ) from None
    finally:
        _restore_signal(signal.SIGTERM, previous_sigterm)
        _restore_signal(signal.SIGINT, previous_sigint)
    if state.out_of_memory:
        # Keep the last finished step (not one an update left half-changed), and say what to
        # resume with.
        loop.optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        state.close()
        if not state.updating:
            state.checkpoint(rng=state.rng_at_step)
        raise loop.out_of_memory(state.step)
    state.close()
    return Trained(
        state.step,
        state.history,
        state.last_loss,
        state.train_seconds,
        state.examples,
        state.tokens,
    )


class _State:
    """What changes as the loop runs, and the three things it does: a step, an evaluation, a
    checkpoint."""

    def __init__(self, loop: Loop, log, step: int, history: list, last_loss: float) -> None:
        self.loop, self.log = loop, log
        self.step, self.history, self.last_loss = step, history, last_loss
        self.train_seconds = 0.0
        self.examples = 0
        self.tokens = 0.0
        # Ctrl-C can land mid-step: its checkpoint must hold the RNG state of the last finished
        # step (a partial forward pass has drawn dropout masks).
        self.rng_at_step = runs.rng_state()
        self.updating = self.out_of_memory = False

    def train_step(self) -> str:
        """One optimizer step: forward and backward (the task's), the loss check, clipping, the
        update and its log line. Returns the progress bar's text."""
        loop, schedule = self.loop, self.loop.schedule
        started = time.monotonic()
        lr = schedule.lr * linear_warmup_decay(self.step, schedule.steps, schedule.warmup)
        for group in loop.optimizer.param_groups:
            group["lr"] = lr
        result = loop.forward(self.step)
        runs.check_loss(result.loss, self.step + 1, loop.out)  # the same on every process
        loop.scaler.unscale_(loop.optimizer)
        torch.nn.utils.clip_grad_norm_(loop.model.parameters(), schedule.max_grad_norm)
        # Signals wait for the update and its log line, so an interrupted run stops between two
        # whole, logged steps; out of memory inside the update cannot, and leaves no checkpoint
        # of it. (No collective inside, so a held signal cannot wait on another process.)
        with runs.signals_held():
            self.updating = True
            loop.scaler.step(loop.optimizer)
            loop.scaler.update()
            loop.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.rng_at_step = runs.rng_state()
            self.updating = False
            self.last_loss = result.loss
            self.train_seconds += time.monotonic() - started
            self.examples += result.examples
            self.tokens += result.log.get("tokens", 0.0)
            rates = {"examples_per_second": self.examples / max(self.train_seconds, 1e-9)}
            if "tokens" in result.log:
                rates["tokens_per_second"] = self.tokens / max(self.train_seconds, 1e-9)
            if self.log is not None:
                self.log.write(
                    step=self.step,
                    epoch=loop.epoch(self.step),
                    loss=result.loss,
                    **result.log,
                    lr=lr,
                    **rates,
                )
        return result.postfix.format(lr=lr, **rates)

    def evaluate(self) -> None:
        """Score the model after this step, into the history (every process) and metrics.json
        and the log (the main one)."""
        runs.check_weights(self.loop.model, self.step, self.loop.out)  # NaN would score too
        record = self.loop.evaluate(self.step)
        if record is None:
            return
        self.history.append(record)
        if self.log is not None:
            self.log.eval(record)
            runs.save_metrics(self.loop.out, self.history)

    def checkpoint(self, rng: dict[str, Any] | None = None) -> None:
        """Everything --resume needs after this step (written by the main process; every
        process checks the weights first, so all of them stop together on a bad one)."""
        loop = self.loop
        runs.check_weights(loop.model, self.step, loop.out)
        if loop.main:
            runs.save_checkpoint(
                loop.out,
                loop.model,
                loop.optimizer,
                self.step,
                self.history,
                loop.schedule.keep_checkpoints,
                rng=rng,
                loss=self.last_loss,
            )

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None


def _sigterm_as_interrupt():
    """SIGTERM (a scheduler's pre-emption, torchrun stopping its workers) stops the run as
    Ctrl-C does: with a checkpoint. Returns the handler to restore."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM alone
        return signal.getsignal(signal.SIGTERM)


def _restore_signal(number, handler) -> None:
    with contextlib.suppress(ValueError, TypeError):  # not the main thread; no Python handler
        signal.signal(number, handler)
