"""The memory check of `bertctl evaluate` and `predict`: refuse, fit, or force, on the CPU.

Driven through the documented planning input, `--gpu-memory SIZE` (a card of SIZE, less the CUDA
context), in real `python -m bertctl` processes, on a 2-step MRPC run of the tiny converted
release (2 layers, hidden 32, 64 positions) and the tiny GLUE fixtures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from clirun import Result, bertctl, one_error_line
from clirun import in_process as cli

from bertctl import memory

torch = pytest.importorskip("torch")

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MRPC = FIXTURES / "glue" / "MRPC"


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny) -> Path:
    """A 2-step MRPC run (eval batch 64, sequences of up to 64 tokens: the model's positions)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs") / "mrpc"
    try:
        r = cli(
            "finetune", "mrpc", "--model", tiny, "--data", MRPC, "--out", out,
            "--cpu", "--threads", "1", "--batch-size", "4", "--max-steps", "2",
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert r.code == 0, r.stderr
    return out


def last_metrics(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())[-1]["metrics"]


def card_for(tiny: Path, batch: int) -> int:
    """A card (bytes) that just holds an evaluation batch of `batch` x 64 tokens, fp32."""
    from bertctl import modelref

    config = modelref.bert_config(modelref.resolve(str(tiny)))
    return memory.estimate_inference(config, batch, 64).total + memory.CONTEXT_BYTES


def evaluate(*args: object) -> Result:
    return bertctl("evaluate", *map(str, args), "--cpu")


# --------------------------------------------------------------------------------------------
# Refuse


def test_evaluate_refuses_before_loading_weights_or_reading_data(run, tmp_path):
    """A run whose weights are gone and a data folder with no files: refused for memory all the
    same, so neither was touched; with --force the missing weights are what stops it."""
    broken = tmp_path / "run"
    shutil.copytree(run, broken)
    (broken / "final" / "model.safetensors").unlink()
    empty = tmp_path / "no-data"
    empty.mkdir()

    r = evaluate(broken, "--data", empty, "--gpu-memory", "1MiB")
    assert r.code == 1
    line = one_error_line(r)
    assert "evaluation needs about" in line and "(batch 64 x 64 tokens, fp32)" in line
    assert "available (--gpu-memory 1MiB less 512 MiB for the CUDA context)" in line
    assert "no settings fit" in line and "--force" in line
    # the breakdown is printed before the error, as finetune prints it
    assert "Memory estimate (peak at the attention): weights" in r.stderr
    assert "Available: 0 B" in r.stderr
    assert "Evaluating" not in r.stderr

    forced = evaluate(broken, "--data", empty, "--gpu-memory", "1MiB", "--force")
    assert forced.code == 1 and "cannot load the model" in one_error_line(forced)


def test_predict_refuses_and_writes_nothing(run, tmp_path):
    out = tmp_path / "predictions"
    r = bertctl("predict", str(run), "--cpu", "--gpu-memory", "1MiB", "--out", str(out))
    assert r.code == 1
    assert "prediction needs about" in one_error_line(r)
    assert "Predicting" not in r.stderr
    assert not out.exists()


def test_evaluate_refuses_a_catalogue_model_before_downloading_it(tmp_path):
    home = tmp_path / "home"
    r = bertctl(
        "evaluate", "large-uncased", "--task", "mrpc", "--data", str(MRPC), "--cpu",
        "--gpu-memory", "1GiB",
        env={"BERTCTL_HOME": str(home), "BERTCTL_MIRROR": "http://127.0.0.1:9/"},
    )  # fmt: skip
    assert r.code == 1
    line = one_error_line(r)
    assert "evaluation needs about" in line and "(batch 64 x 128 tokens, fp32)" in line
    assert "no settings fit: even a batch of 1 needs about" in line
    assert "weights alone 1.25 GiB" in line
    assert not home.exists() or not any(home.rglob("*.zip"))


def test_evaluate_refuses_with_the_batch_that_fits(run, tiny):
    r = evaluate(run, "--batch-size", 4, "--gpu-memory", card_for(tiny, 2))
    assert r.code == 1
    line = one_error_line(r)
    assert "(batch 4 x 64 tokens, fp32)" in line
    assert "pass --batch-size 2 (about" in line and "--auto-fit" in line and "--force" in line
    assert "Settings that fit, best first:" in r.stderr
    assert "--batch-size 2" in r.stderr and "the same predictions" in r.stderr


# --------------------------------------------------------------------------------------------
# Fit, pass, force


def test_evaluate_auto_fit_applies_a_smaller_batch_and_scores(run, tiny):
    r = evaluate(run, "--batch-size", 4, "--gpu-memory", card_for(tiny, 2), "--auto-fit", "--json")
    assert r.code == 0, r.stderr
    assert "--auto-fit: --batch-size 2 (" in r.stderr
    report = json.loads(r.stdout)
    assert report["examples"] == {"dev": 3}
    assert report["metrics"] == pytest.approx(last_metrics(run))


def test_evaluate_that_fits_says_so_and_reproduces_the_run(run):
    r = evaluate(run, "--gpu-memory", "24GiB", "--auto-fit", "--json")
    assert r.code == 0, r.stderr
    assert "Memory: " in r.stderr and "needed of 23.50 GiB (--gpu-memory 24GiB" in r.stderr
    assert "--auto-fit:" not in r.stderr
    assert json.loads(r.stdout)["metrics"] == last_metrics(run)


def test_force_skips_the_check(run, tmp_path):
    r = evaluate(run, "--gpu-memory", "1MiB", "--force", "--json")
    assert r.code == 0, r.stderr
    assert "Memory check skipped (--force)" in r.stderr
    assert json.loads(r.stdout)["metrics"] == last_metrics(run)

    out = tmp_path / "predictions"
    r = bertctl("predict", str(run), "--cpu", "--gpu-memory", "1MiB", "--force", "--out", str(out))
    assert r.code == 0, r.stderr
    assert "Memory check skipped (--force)" in r.stderr
    assert (out / "MRPC.tsv").is_file() and (out / "test_results.tsv").is_file()


def test_on_the_cpu_without_gpu_memory_there_is_no_check(run):
    r = cli("evaluate", run, "--cpu")
    assert r.code == 0, r.stderr
    assert "Memory" not in r.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--gpu-memory", "lots"], "is not a size"),
        (["--gpu-memory", "12GiB", "--auto-fit", "--force"], "--auto-fit and --force"),
    ],
)
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_memory_flag_errors_are_usage_errors(run, command, args, needle):
    r = cli(command, run, "--cpu", *args)
    assert r.code == 2
    assert needle in one_error_line(r)
