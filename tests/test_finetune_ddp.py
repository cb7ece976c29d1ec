"""`finetune --nproc-per-node N`: the same run in N processes (torchrun, DDP with gloo on the CPU).

The model is the converted `tiny_release` fixture with its dropout turned off: each process
draws its own dropout masks, so with dropout on, 2 processes drop other units than 1 does and
the runs differ by design. The data are the tiny MRPC fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import bertctl, one_error_line
from clirun import in_process as cli

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MRPC = FIXTURES / "glue" / "MRPC"
ATOL = 1e-5  # two processes sum the gradients in another order than one
RUN = ("--cpu", "--threads", "1", "--batch-size", "4", "--max-steps", "4")
RUN += ("--lr", "1e-3", "--warmup", "0", "--eval-every", "2")


@pytest.fixture
def model(tmp_path) -> Path:
    out = tmp_path / "micro-bert"
    assert cli("convert", FIXTURES / "tf" / "tiny_release", "--out", out).code == 0
    config = json.loads((out / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (out / "config.json").write_text(json.dumps(config))
    return out


def weights(folder: Path) -> dict:
    return safetensors_torch.load_file(str(folder / "model.safetensors"))


def test_two_processes_train_the_same_weights_as_one(model, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = ("finetune", "mrpc", "--data", MRPC, "--model", model, *RUN)
    first = cli(*args, "--out", one)
    assert first.code == 0, first.stderr
    result = bertctl(*map(str, args), "--out", str(two), "--nproc-per-node", "2", "--json")
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr

    a, b = weights(one / "final"), weights(two / "final")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= ATOL, f"1 and 2 processes differ by {worst}"
    start = weights(model)
    moved = max(float((a[k] - start[k]).abs().max()) for k in a if k in start)
    assert moved > 100 * ATOL  # the comparison has teeth: training moved the weights far more

    # Only rank 0 wrote: the same files, the same evaluations and log steps.
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    history = [json.loads((run / "metrics.json").read_text()) for run in (one, two)]
    assert [h["step"] for h in history[0]] == [h["step"] for h in history[1]] == [2, 4]
    for left, right in zip(*history, strict=True):
        for key, value in left["metrics"].items():
            assert right["metrics"][key] == pytest.approx(value, abs=1e-4)
    logged = [
        [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()
         if '"step"' in line and '"eval"' not in line]
        for run in (one, two)
    ]  # fmt: skip
    assert logged[0] == logged[1] == [1, 2, 3, 4]
    summary = json.loads(result.stdout)  # one JSON document: printed once, by rank 0
    assert [(r["out"], r["steps"]) for r in summary["runs"]] == [(str(two), 4)]


def test_a_batch_that_does_not_split_over_the_processes_is_refused(model, tmp_path):
    args = ("finetune", "mrpc", "--data", MRPC, "--model", model, "--cpu", "--max-steps", "1")
    r = bertctl(*map(str, args), "--batch-size", "5", "--nproc-per-node", "2")
    assert r.code == 2
    assert "--batch-size 5 does not split into 2 process(es)" in one_error_line(r)
    assert not (tmp_path / "runs").exists()


def test_launch_flags_inside_torchrun_are_refused(model, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    r = cli("finetune", "mrpc", "--data", MRPC, "--model", model, "--nproc-per-node", "2")
    assert r.code == 2
    assert "--nproc-per-node given to a process that torchrun" in one_error_line(r)
