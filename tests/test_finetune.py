"""Fine-tuning end to end on the CPU with a tiny random BERT (2 layers, hidden 32, 99 tokens).

The model is the converted `tiny_release` fixture; the data are the tiny GLUE fixtures. Most
commands run in this process (`cli`), which saves the seconds torch and transformers take to
import; the resume test kills a real `bertctl` subprocess. Every run is a few optimizer steps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from clirun import Result, bertctl, one_error_line
from clirun import in_process as cli

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
pytestmark = pytest.mark.usefixtures("one_thread")  # one_thread, home, tiny: conftest.py

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GLUE = FIXTURES / "glue"
MRPC = GLUE / "MRPC"
FAST = ("--cpu", "--threads", "1", "--batch-size", "4")


def ok(result: Result) -> Result:
    assert result.code == 0, result.stderr
    return result


def train(task: str, data: Path, model: Path, out: Path, *extra: object) -> Result:
    """A short fine-tuning run on the CPU, which must succeed."""
    return ok(cli("finetune", task, "--data", data, "--model", model, "--out", out, *FAST, *extra))


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny, home) -> Path:
    """One MRPC run of 6 steps (evaluated at the end of each of its 3 epochs)."""
    out = tmp_path_factory.mktemp("runs") / "mrpc"
    train("mrpc", MRPC, tiny, out, "--max-steps", 6)
    return out


def weights(folder: Path) -> dict:
    return safetensors_torch.load_file(str(folder / "model.safetensors"))


def log_records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------------------------
# The run folder


def test_run_folder_holds_every_file_and_each_loads(run, tiny):
    from bertctl.glue import get_task
    from bertctl.train.config import resolve

    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["task"] == "mrpc" and info["steps"] == 6

    # config.yaml: the resolved settings, accepted by `resolve` as a --config file
    settings = yaml.safe_load((run / "config.yaml").read_text())
    assert settings["task"] == "mrpc" and settings["max_steps"] == 6 and settings["batch_size"] == 4
    cfg, explicit = resolve(run / "config.yaml", {})
    assert cfg.to_dict() == settings and "task" in explicit
    assert Path(cfg.model) == tiny.resolve() and Path(cfg.data) == MRPC.resolve()

    # metrics.json: one record per evaluation (end of each epoch of 2 steps)
    history = json.loads((run / "metrics.json").read_text())
    assert [h["step"] for h in history] == [2, 4, 6]
    assert [h["epoch"] for h in history] == [1.0, 2.0, 3.0]
    for record in history:
        assert tuple(record["metrics"]) == get_task("mrpc").metrics
        assert record["examples"] == {"dev": 3}
        assert isinstance(record["loss"], float)

    # train_log.jsonl: one line per step and per evaluation, each JSON
    records = log_records(run)
    assert [r["step"] for r in records if "step" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["eval"]["step"] for r in records if "eval" in r] == [2, 4, 6]
    assert all(r["lr"] >= 0 and r["loss"] > 0 for r in records if "step" in r)

    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())

    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert checkpoints == ["step-0000004", "step-0000006"]  # keep_checkpoints 2
    for name in checkpoints:
        files = {p.name for p in (run / "checkpoints" / name).iterdir()}
        assert files == {"model.safetensors", "optimizer.pt", "rng.pt", "state.json"}
    state = json.loads((run / "checkpoints" / "step-0000006" / "state.json").read_text())
    assert state["step"] == 6 and state["history"] == history

    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    results = dict(
        line.split(" = ") for line in (run / "eval_results.txt").read_text().splitlines()
    )
    assert {"eval_accuracy", "eval_f1", "eval_loss", "global_step", "loss"} <= set(results)
    assert int(results["global_step"]) == 6
    assert float(results["eval_accuracy"]) == history[-1]["metrics"]["accuracy"]
    assert float(results["eval_loss"]) == history[-1]["loss"]


def test_final_model_loads_offline_in_transformers_with_every_weight(run, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, info = AutoModelForSequenceClassification.from_pretrained(
        run / "final", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    assert model.config.id2label == {0: "0", 1: "1"}
    last = weights(run / "checkpoints" / "step-0000006")
    final = weights(run / "final")
    assert all(torch.equal(final[k], last[k]) for k in final)


def test_transformers_alone_reproduces_the_reported_metric_and_loss(run, monkeypatch):
    """A user's own route: AutoTokenizer + AutoModelForSequenceClassification on final/, no
    bertctl code, gives the dev accuracy, F1 and loss that the run reported."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertctl import glue, metrics

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(run / "final")
    model = AutoModelForSequenceClassification.from_pretrained(run / "final").eval()
    task = glue.get_task("mrpc")
    dev = glue.read_split(task, MRPC, "dev").examples
    labels = torch.tensor([task.label_id(e.label) for e in dev])
    batch = tokenizer(
        [e.text_a for e in dev],
        [e.text_b for e in dev],
        truncation=True,
        max_length=128,
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        logits = model(**batch).logits
    last = json.loads((run / "metrics.json").read_text())[-1]
    assert metrics.compute(task, labels.tolist(), logits.argmax(-1).tolist()) == last["metrics"]
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert loss == pytest.approx(last["loss"], abs=1e-5)


def test_config_yaml_of_a_run_reruns_it(run, tmp_path):
    again = tmp_path / "again"
    ok(cli("finetune", "--config", run / "config.yaml", "--out", again, "--max-steps", 2))
    first = yaml.safe_load((run / "config.yaml").read_text())
    second = yaml.safe_load((again / "config.yaml").read_text())
    assert second.pop("out") == str(again) and second.pop("max_steps") == 2
    first.pop("out"), first.pop("max_steps")
    assert second == first


# --------------------------------------------------------------------------------------------
# evaluate and predict


def test_evaluate_reproduces_the_runs_last_metrics_exactly(run):
    last = json.loads((run / "metrics.json").read_text())[-1]
    report = json.loads(ok(cli("evaluate", run, "--cpu", "--json")).stdout)
    assert report["task"] == "mrpc" and report["splits"] == ["dev"]
    assert report["metrics"] == last["metrics"]
    assert report["losses"] == {"dev": last["loss"]}
    assert report["examples"] == last["examples"]

    table = ok(cli("evaluate", run / "final", "--cpu", "--task", "mrpc", "--data", MRPC)).stdout
    for key in ("accuracy", "f1", "acc_and_f1", "loss"):
        assert key in table
    assert "dev 3" in table


def test_predict_writes_the_glue_submission_and_googles_test_results(run):
    ok(cli("predict", run, "--cpu"))
    out = run / "predictions"
    lines = (out / "MRPC.tsv").read_text().splitlines()
    test_rows = (MRPC / "test.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]
    assert lines[0] == "index\tprediction"
    assert [line.split("\t")[0] for line in lines[1:]] == [r.split("\t")[0] for r in test_rows]
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}

    probabilities = [
        [float(v) for v in line.split("\t")]
        for line in (out / "test_results.tsv").read_text().splitlines()
    ]
    assert len(probabilities) == len(test_rows)
    for row, line in zip(probabilities, lines[1:], strict=True):
        assert len(row) == 2 and sum(row) == pytest.approx(1.0, abs=1e-6)
        assert str(row.index(max(row))) == line.split("\t")[1]


def test_predict_into_a_chosen_folder(run, tmp_path):
    result = ok(cli("predict", run, "--cpu", "--out", tmp_path / "sub", "--json"))
    result = json.loads(result.stdout)
    assert sorted(Path(f).name for f in result["files"]) == ["MRPC.tsv", "test_results.tsv"]
    assert result["examples"] == {"test": 3}
    assert (tmp_path / "sub" / "MRPC.tsv").is_file()


def test_evaluate_refuses_a_model_whose_labels_do_not_fit_the_task(run):
    line = one_error_line(cli("evaluate", run, "--cpu", "--task", "mnli", "--data", GLUE / "MNLI"))
    assert "0, 1" in line and "contradiction, entailment, neutral" in line


def test_evaluate_refuses_a_model_with_an_untrained_classifier(tiny):
    line = one_error_line(cli("evaluate", tiny, "--cpu", "--task", "mrpc", "--data", MRPC))
    assert "classifier" in line and "bertctl finetune" in line


def test_evaluate_needs_a_task_for_a_plain_model(tiny):
    result = cli("evaluate", tiny, "--cpu")
    assert result.code == 2 and "--task" in one_error_line(result)


@pytest.mark.parametrize(
    ("names", "order"),
    [
        (["contradiction", "entailment", "neutral"], None),
        (["LABEL_0", "LABEL_1", "LABEL_2"], None),
        (["CONTRADICTION", "NEUTRAL", "ENTAILMENT"], (0, 2, 1)),  # roberta-large-mnli's order
    ],
)
def test_model_labels_are_matched_to_the_task_by_name_or_count(names, order):
    from types import SimpleNamespace

    from bertctl.glue import get_task
    from bertctl.train.evaluate import label_order

    config = SimpleNamespace(num_labels=len(names), id2label=dict(enumerate(names)))
    assert label_order(config, get_task("mnli"), "m") == order


def test_a_model_with_other_labels_is_refused():
    from types import SimpleNamespace

    from bertctl.errors import BertctlError
    from bertctl.glue import get_task
    from bertctl.train.evaluate import label_order

    config = SimpleNamespace(num_labels=2, id2label={0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(BertctlError, match="regression"):
        label_order(config, get_task("sts-b"), "m")
    with pytest.raises(BertctlError, match="LABEL_0, LABEL_1"):
        label_order(config, get_task("mnli"), "m")


# --------------------------------------------------------------------------------------------
# Resume


def test_a_killed_and_resumed_run_ends_with_exactly_the_weights_of_a_straight_run(
    tiny, tmp_path, home
):
    args = ["mrpc", "--data", MRPC, "--model", tiny, "--max-steps", 30, "--save-every", 3]
    args += ["--eval-every", 10, *FAST]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    ok(cli("finetune", *args, "--out", straight))

    env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1", "BERTCTL_HOME": str(home)}
    stderr = tmp_path / "killed.stderr"
    with stderr.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bertctl", "finetune", *map(str, args), "--out", str(killed)],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=env,
        )
        first = killed / "checkpoints" / "step-0000003"
        deadline = time.monotonic() + 240
        try:
            while not first.is_dir() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
    assert first.is_dir(), f"the run never wrote its first checkpoint: {stderr.read_text()}"
    assert proc.returncode == -signal.SIGKILL and not (killed / "final").exists()

    # the run's own settings come back from its config.yaml: only --out and --resume are needed
    ok(cli("finetune", "--out", killed, "--resume"))

    a, b = weights(straight / "final"), weights(killed / "final")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ after resume: {different}"
    assert json.loads((killed / "metrics.json").read_text()) == json.loads(
        (straight / "metrics.json").read_text()
    )
    steps = [r["step"] for r in log_records(killed) if "step" in r]
    assert steps == list(range(1, 31))  # each step logged once, none lost to the kill


def test_resume_refuses_another_task(run):
    result = cli("finetune", "sst-2", "--out", run, "--resume")
    assert result.code == 2 and "mrpc" in one_error_line(result)


# --------------------------------------------------------------------------------------------
# Seeds, other tasks


def test_seeds_make_one_run_each_and_a_summary(tiny, tmp_path):
    base = tmp_path / "seeds"
    result = train("mrpc", MRPC, tiny, base, "--max-steps", 2, "--seeds", "1,2", "--json")
    assert (base / "seed-1" / "final" / "model.safetensors").is_file()
    assert (base / "seed-2" / "final" / "model.safetensors").is_file()
    assert yaml.safe_load((base / "seed-2" / "config.yaml").read_text())["seed"] == 2
    summary = json.loads((base / "seeds.json").read_text())
    assert summary["seeds"] == [1, 2] and len(summary["runs"]) == 2
    for key in ("accuracy", "f1", "acc_and_f1"):
        stats = summary["summary"][key]
        assert {"mean", "std", "values"} <= set(stats) and len(stats["values"]) == 2
        assert stats["mean"] == pytest.approx(sum(stats["values"]) / 2)
    assert json.loads(result.stdout) == summary


def test_regression_task_sts_b_from_a_classification_run(run, tmp_path):
    """STS-B's single output replaces the MRPC run's two-label classifier."""
    out = tmp_path / "stsb"
    train("sts-b", GLUE / "STS-B", run, out, "--max-steps", 2)
    last = json.loads((out / "metrics.json").read_text())[-1]
    assert set(last["metrics"]) == {"pearson", "spearman", "corr"}
    config = json.loads((out / "final" / "config.json").read_text())
    assert len(config["id2label"]) == 1
    assert config["problem_type"] == "regression"

    report = json.loads(ok(cli("evaluate", out, "--cpu", "--json")).stdout)
    assert report["metrics"] == last["metrics"]

    ok(cli("predict", out, "--cpu"))
    rows = (out / "predictions" / "STS-B.tsv").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 1 + 3
    for row in rows[1:]:
        score = row.split("\t")[1]
        assert 0.0 <= float(score) <= 5.0 and len(score.split(".")[1]) == 3
    results = (out / "predictions" / "test_results.tsv").read_text().splitlines()
    assert len(results) == 3 and all(len(r.split("\t")) == 1 for r in results)


def test_mnli_is_scored_on_both_dev_sets(tiny, tmp_path):
    out = tmp_path / "mnli"
    train("mnli", GLUE / "MNLI", tiny, out, "--max-steps", 2)
    last = json.loads((out / "metrics.json").read_text())[-1]
    assert set(last["metrics"]) == {"accuracy", "accuracy_mm"}
    assert set(last["examples"]) == {"dev_matched", "dev_mismatched"}
    results = dict(
        line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines()
    )
    assert {"eval_accuracy", "eval_accuracy_mm"} <= set(results)

    report = json.loads(ok(cli("evaluate", out, "--cpu", "--json")).stdout)
    assert report["metrics"] == last["metrics"]
    assert report["splits"] == ["dev_matched", "dev_mismatched"]

    ok(cli("predict", out, "--cpu"))
    labels = {"contradiction", "entailment", "neutral"}
    for name, probs in (("MNLI-m.tsv", "test_results.tsv"), ("MNLI-mm.tsv", "test_results_mm.tsv")):
        rows = (out / "predictions" / name).read_text().splitlines()
        assert rows[0] == "index\tprediction" and len(rows) > 1
        assert {r.split("\t")[1] for r in rows[1:]} <= labels
        lines = (out / "predictions" / probs).read_text().splitlines()
        assert len(lines) == len(rows) - 1 and all(len(x.split("\t")) == 3 for x in lines)


def test_cola_files_without_a_header(tiny, tmp_path):
    out = tmp_path / "cola"
    train("cola", GLUE / "CoLA", tiny, out, "--max-steps", 2)
    last = json.loads((out / "metrics.json").read_text())[-1]
    dev_rows = len((GLUE / "CoLA" / "dev.tsv").read_text().splitlines())
    assert set(last["metrics"]) == {"matthews_corr", "accuracy"}
    assert last["examples"] == {"dev": dev_rows}


# --------------------------------------------------------------------------------------------
# YAML settings


def test_yaml_settings_with_flags_on_top(tiny, tmp_path):
    config = tmp_path / "mrpc.yaml"
    config.write_text(
        f"task: mrpc\ndata: {MRPC}\nmodel: {tiny}\nlr: 2e-5\nepochs: 2\nmax-steps: 2\n",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    ok(cli("finetune", "--config", config, "--epochs", 3, "--out", out, *FAST))
    settings = yaml.safe_load((out / "config.yaml").read_text())
    assert settings["epochs"] == 3.0  # the flag wins over the file
    # the file wins over the defaults (and over the compact-model lr 1e-4)
    assert settings["lr"] == 2e-5 and isinstance(settings["lr"], float)
    assert settings["max_steps"] == 2 and settings["task"] == "mrpc"


def test_yaml_lr_written_as_2e_5_is_a_float(tmp_path):
    from bertctl.train.config import resolve

    config = tmp_path / "c.yaml"
    config.write_text("lr: 2e-5\nepochs: 3\n", encoding="utf-8")
    assert isinstance(yaml.safe_load(config.read_text())["lr"], str)  # PyYAML's reading
    cfg, explicit = resolve(config, {"task": "mrpc"})
    assert cfg.lr == 2e-5 and isinstance(cfg.lr, float) and cfg.epochs == 3.0
    assert {"lr", "epochs", "task"} <= explicit


def test_an_unknown_yaml_key_is_one_clear_error(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("task: mrpc\nlearning_rate: 2e-5\n", encoding="utf-8")
    result = bertctl("finetune", "--config", str(config))  # the real command, in a subprocess
    assert result.code == 1
    line = one_error_line(result)
    assert "learning_rate" in line and str(config) in line


# --------------------------------------------------------------------------------------------
# Errors


def test_no_data_folder_names_data_and_glue_dir(tiny, monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    result = cli("finetune", "mrpc", "--model", tiny, *FAST)
    assert result.code == 1
    line = one_error_line(result)
    assert "--data" in line and "GLUE_DIR" in line


def test_cased_flag_with_a_google_uncased_model_names_the_flag(tiny, tmp_path):
    google = tmp_path / "uncased_L-2_H-128_A-2"  # the folder name of Google's BERT-Tiny
    shutil.copytree(tiny, google)
    result = cli("finetune", "mrpc", "--data", MRPC, "--model", google, "--cased", *FAST)
    assert result.code == 1
    line = one_error_line(result)
    assert "--cased" in line and "--uncased" in line


def test_out_of_an_existing_run_needs_resume(run, tiny):
    result = cli("finetune", "mrpc", "--data", MRPC, "--model", tiny, "--out", run, *FAST)
    assert result.code == 1
    line = one_error_line(result)
    assert str(run) in line and "--resume" in line


def test_a_sequence_length_beyond_the_models_positions_is_refused(tiny, tmp_path):
    result = cli(
        "finetune", "mrpc", "--data", MRPC, "--model", tiny, "--max-seq-length", 128, *FAST
    )
    assert result.code == 1
    line = one_error_line(result)
    assert "--max-seq-length 128" in line and "64" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_gpu_without_cuda_is_one_clear_line(tiny):
    result = cli("finetune", "mrpc", "--data", MRPC, "--model", tiny, "--gpu", 0)
    assert result.code == 1
    line = one_error_line(result)
    assert "--gpu" in line and "--cpu" in line


def test_eval_results_loss_is_the_evaluation_loss_as_googles_estimator_writes(run):
    """Google's eval_results.txt `loss` is the mean evaluation loss (as `eval_loss`); the last
    training step's loss is kept under its own name in run.json."""
    results = dict(
        line.split(" = ") for line in (run / "eval_results.txt").read_text().splitlines()
    )
    history = json.loads((run / "metrics.json").read_text())
    assert float(results["loss"]) == float(results["eval_loss"]) == history[-1]["loss"]
    logged = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    last_step = [r for r in logged if "step" in r and "eval" not in r][-1]
    assert json.loads((run / "run.json").read_text())["train_loss"] == last_step["loss"]


def test_a_new_classifier_starts_as_googles_truncated_normal(tiny):
    """Google's create_initializer: a normal cut at 2σ (transformers' normal_ leaves about 4.4%
    of the weights beyond) and a zero bias, for a head the checkpoint lacks."""
    from bertctl.glue import get_task
    from bertctl.train.modeling import load_for_task, prepare
    from bertctl.ui import Reporter

    torch.manual_seed(42)
    model = load_for_task(prepare(str(tiny), None, Reporter()), get_task("mnli"))
    std = model.config.initializer_range
    weight, bias = model.classifier.weight.detach(), model.classifier.bias.detach()
    assert weight.shape == (3, 32)
    assert float(weight.abs().max()) <= 2 * std
    assert float(weight.abs().max()) > std  # drawn, not zeroed
    assert torch.equal(bias, torch.zeros_like(bias))
