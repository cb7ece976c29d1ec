"""The training loop on its own: a new task is its `forward` and `evaluate`, and nothing else.

The task here is a least-squares fit of a linear model, small enough to read whole; it gets,
without a line of its own for them, what GLUE fine-tuning and pretraining get: the schedule,
evaluations and checkpoints when due, the log, Ctrl-C with a checkpoint, and a resume that ends
on the weights of a run that never stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from bertctl.errors import BertctlError  # noqa: E402
from bertctl.install import noop_reporter  # noqa: E402
from bertctl.train import loop  # noqa: E402

STEPS, BATCH = 40, 8


class Fit:
    """The task: y = x·w for a w to find, 64 examples in batches of 8, one pass every 8 steps."""

    def __init__(self, out: Path, stop_at: int | None = None) -> None:
        torch.manual_seed(0)
        self.x = torch.randn(64, 4)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        self.model = torch.nn.Linear(4, 1)
        self.stop_at = stop_at
        optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05)
        self.loop = loop.Loop(
            out=out,
            model=self.model,
            optimizer=optimizer,
            scaler=torch.amp.GradScaler("cpu", enabled=False),
            schedule=loop.Schedule(
                steps=STEPS,
                warmup=4,
                lr=0.05,
                eval_every=20,
                save_every=10,
                keep_checkpoints=2,
                max_grad_norm=10.0,
            ),
            forward=self.forward,
            evaluate=self.evaluate,
            epoch=lambda step: step * BATCH / 64,
            title="Fitting",
            resume_command=f"fit --out {out} --resume",
            out_of_memory=lambda step: RuntimeError(f"out of memory at {step}"),
        )
        out.mkdir(parents=True, exist_ok=True)

    def forward(self, step: int) -> loop.Step:
        if step == self.stop_at:
            raise KeyboardInterrupt  # the user's Ctrl-C, in the middle of a step
        rows = slice(step * BATCH % 64, step * BATCH % 64 + BATCH)
        loss = torch.nn.functional.mse_loss(self.model(self.x[rows]).squeeze(1), self.y[rows])
        loss.backward()
        return loop.Step(float(loss.detach()), BATCH, postfix="lr {lr:.2e}")

    def evaluate(self, step: int) -> dict:
        with torch.no_grad():
            error = torch.nn.functional.mse_loss(self.model(self.x).squeeze(1), self.y)
        return {"step": step, "metrics": {"mse": float(error)}}


def weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_task_of_two_functions_gets_the_whole_run(tmp_path):
    fit = Fit(tmp_path / "run")
    before = fit.evaluate(0)["metrics"]["mse"]
    trained = loop.train(fit.loop, noop_reporter())
    assert trained.step == STEPS and trained.examples == STEPS * BATCH
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["step"] for h in history] == [20, 40]
    assert history[-1]["metrics"]["mse"] < before / 10  # it learned
    logged = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").open()]
    steps = [r["step"] for r in logged if "step" in r and "eval" not in r]
    assert steps == list(range(1, STEPS + 1))
    assert [r["lr"] for r in logged[:4]] == pytest.approx([0.0, 0.0125, 0.025, 0.0375])
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == ["step-0000030", "step-0000040"]  # every 10 steps, the last 2 kept


def test_ctrl_c_leaves_a_checkpoint_that_resumes_to_the_straight_runs_weights(tmp_path):
    straight = Fit(tmp_path / "straight")
    loop.train(straight.loop, noop_reporter())

    stopped = Fit(tmp_path / "stopped", stop_at=25)
    with pytest.raises(BertctlError) as info:
        loop.train(stopped.loop, noop_reporter())
    assert str(info.value) == (
        f"interrupted at step 25; the checkpoint step-0000025 is in {tmp_path / 'stopped'} "
        f"(resume with: fit --out {tmp_path / 'stopped'} --resume)"
    )

    again = Fit(tmp_path / "stopped")  # a new process: fresh weights, then the checkpoint's
    start = loop.resume(again.loop, torch.device("cpu"), noop_reporter())
    assert start[0] == 25
    loop.train(again.loop, noop_reporter(), start, resumed=True)
    a, b = weights(straight.model), weights(again.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((tmp_path / "stopped" / "metrics.json").read_text())
    assert history == json.loads((tmp_path / "straight" / "metrics.json").read_text())


def test_a_loss_that_is_not_finite_stops_the_run_before_its_update(tmp_path):
    fit = Fit(tmp_path / "run")
    real = fit.forward
    fit.loop = loop.Loop(
        **{
            **fit.loop.__dict__,
            "forward": lambda step: loop.Step(float("nan"), BATCH) if step == 12 else real(step),
        }
    )
    with pytest.raises(BertctlError, match="training diverged at step 13"):
        loop.train(fit.loop, noop_reporter())
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-0000010"]
