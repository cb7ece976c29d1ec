"""Results that used to come out wrong with exit 0: a diverged run published NaN weights, an
encoder tensor of the wrong shape was silently re-initialised, `--seeds 1,1` trained before
failing, and `predict` wrote a submission with one id twice.

The model is the `tiny_release` fixture converted as a user would (2 layers, hidden 32, 99
tokens); the data are the tiny GLUE fixtures and a small corpus prepared by
`bertctl pretrain prepare`. Commands run in this process (`cli`), each a few CPU steps.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from clirun import Result, one_error_line
from clirun import in_process as cli

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_thread")
safetensors_torch = pytest.importorskip("safetensors.torch")

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GLUE = FIXTURES / "glue"
MRPC = GLUE / "MRPC"
FINETUNE_FAST = ("--cpu", "--threads", "1", "--batch-size", "4")
PRETRAIN_FAST = ("--cpu", "--threads", "1", "--batch-size", "4", "--eval-batches", "1")
QUERY = "bert.encoder.layer.0.attention.self.query.weight"


def ok(result: Result) -> Result:
    assert result.code == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def corpus_data(tmp_path_factory, tiny) -> Path:
    """A small corpus of the tiny vocab's words, prepared as Google's recipe does."""
    words = [w for w in (tiny / "vocab.txt").read_text().split() if w.isalpha()]
    rng = random.Random(5)
    docs = [
        "\n".join(" ".join(rng.choices(words, k=rng.randint(4, 12))) + " ." for _ in range(6))
        for _ in range(12)
    ]
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "corpus.txt").write_text("\n\n".join(docs) + "\n")
    out = folder / "data"
    prepare = ["pretrain", "prepare", folder / "corpus.txt", "--out", out, "--model", tiny]
    ok(cli(*prepare, "--dupe-factor", 2, "--max-seq-length", 32, "--max-predictions", 5))
    return out


@pytest.fixture(scope="module")
def mrpc_run(tmp_path_factory, tiny) -> Path:
    out = tmp_path_factory.mktemp("runs") / "mrpc"
    ok(cli("finetune", "mrpc", "--data", MRPC, "--model", tiny, "--out", out, "--max-steps", 2,
           *FINETUNE_FAST))  # fmt: skip
    return out


def train_args(workflow: str, tiny: Path, corpus_data: Path) -> list[object]:
    if workflow == "finetune":
        return ["finetune", "mrpc", "--data", MRPC, "--model", tiny, "--max-steps", 6,
                *FINETUNE_FAST]  # fmt: skip
    return ["pretrain", "run", corpus_data, "--model", tiny, "--steps", 6, *PRETRAIN_FAST]


def all_finite(folder: Path) -> bool:
    weights = safetensors_torch.load_file(str(folder / "model.safetensors"))
    return all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())


# --------------------------------------------------------------------------------------------
# A run that diverges


@pytest.mark.parametrize("workflow", ["finetune", "pretrain"])
def test_lr_1e308_stops_at_its_first_step_with_nothing_saved_or_published(
    workflow, tiny, corpus_data, tmp_path
):
    """The first update makes every weight infinite or NaN: the checkpoint due after it is
    refused, the error names the step and what to try, and final/ never appears."""
    out = tmp_path / "run"
    args = [*train_args(workflow, tiny, corpus_data), "--out", out]
    result = cli(*args, "--lr", "1e308", "--save-every", 1)
    assert result.code == 1, result.stderr
    line = one_error_line(result)
    assert line.startswith("error: training diverged at step 1: "), line
    assert "NaN or infinite values" in line and "no checkpoint was saved" in line, line
    assert "lower --lr" in line and "check the training data" in line, line
    assert not (out / "final").exists() and not (out / "checkpoints").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    assert not (out / "eval_results.txt").exists()


@pytest.mark.parametrize("workflow", ["finetune", "pretrain"])
def test_a_nan_loss_stops_before_its_update_and_keeps_the_checkpoint_before_it(
    workflow, tiny, corpus_data, tmp_path
):
    """lr 1e10: step 1 leaves huge but finite weights (saved), step 2's loss is NaN. The run
    stops before step 2's update: step 1's checkpoint is kept, finite, and is the last one;
    the log holds no step with a NaN loss."""
    out = tmp_path / "run"
    args = [*train_args(workflow, tiny, corpus_data), "--out", out]
    result = cli(*args, "--lr", "1e10", "--save-every", 1)
    assert result.code == 1, result.stderr
    line = one_error_line(result)
    assert line.startswith("error: training diverged at step 2: the training loss is nan"), line
    assert f"the last good checkpoint, step-0000001, is kept in {out}" in line, line
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == ["step-0000001"]
    assert all_finite(out / "checkpoints" / "step-0000001")
    assert not (out / "final").exists()
    logged = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "step" in r] == [1]


def test_a_model_that_is_not_finite_is_never_published(mrpc_run, tmp_path):
    """The last guard: save_final checks the weights itself (a run resumed from a checkpoint
    an older bertctl saved with NaN weights reaches it without a step to train)."""
    from transformers import AutoModelForSequenceClassification

    from bertctl.errors import BertctlError
    from bertctl.train import runs
    from bertctl.train.modeling import prepare

    model = AutoModelForSequenceClassification.from_pretrained(mrpc_run / "final")
    with torch.no_grad():
        model.classifier.bias[0] = float("inf")
    prepared = prepare(str(mrpc_run / "final"), None, reporter=None)
    final = tmp_path / "final"
    with pytest.raises(BertctlError, match=r"at step 7: classifier\.bias holds NaN or infinite"):
        runs.save_final(final, model, prepared, None, step=7)
    assert not final.exists() and not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# Weights that do not fit the config


def altered(tiny: Path, folder: Path, change) -> Path:
    """A copy of the tiny model folder whose model.safetensors `change` has edited."""
    shutil.copytree(tiny, folder)
    weights = safetensors_torch.load_file(str(tiny / "model.safetensors"))
    change(weights)
    safetensors_torch.save_file(weights, str(folder / "model.safetensors"))
    return folder


ALTERATIONS = {
    "wrong shape": (
        lambda w: w.__setitem__(QUERY, torch.zeros(32, 16)),
        f"model.safetensors: {QUERY} has shape [32, 16], config.json implies [32, 32]",
    ),
    "missing": (
        lambda w: w.pop(QUERY),
        f"model.safetensors has no {QUERY}; config.json implies one of shape [32, 32]",
    ),
    "a layer too many": (
        lambda w: w.__setitem__("bert.encoder.layer.2.output.dense.weight", torch.zeros(32, 37)),
        "model.safetensors holds bert.encoder.layer.2.output.dense.weight of shape [32, 37], "
        "which config.json has no place for",
    ),
}


@pytest.mark.parametrize("alteration", list(ALTERATIONS))
def test_finetune_refuses_an_encoder_tensor_that_does_not_load(alteration, tiny, tmp_path):
    change, expected = ALTERATIONS[alteration]
    model = altered(tiny, tmp_path / "model", change)
    out = tmp_path / "run"
    result = cli("finetune", "mrpc", "--data", MRPC, "--model", model, "--out", out,
                 "--max-steps", 2, *FINETUNE_FAST)  # fmt: skip
    assert result.code == 1, result.stderr
    line = one_error_line(result)
    assert f"{model / expected}" in line, line
    assert f"bertctl verify {model}" in line, line
    assert not out.exists()  # refused before the run folder is made


def test_pretrain_refuses_an_encoder_tensor_of_another_shape(tiny, corpus_data, tmp_path):
    change, expected = ALTERATIONS["wrong shape"]
    model = altered(tiny, tmp_path / "model", change)
    out = tmp_path / "run"
    result = cli("pretrain", "run", corpus_data, "--model", model, "--steps", 2, "--out", out,
                 *PRETRAIN_FAST)  # fmt: skip
    assert result.code == 1, result.stderr
    assert f"{model / expected}" in one_error_line(result)
    assert not out.exists()


def test_evaluate_refuses_an_encoder_tensor_of_another_shape(mrpc_run, tmp_path):
    change, expected = ALTERATIONS["wrong shape"]
    folder = altered(mrpc_run / "final", tmp_path / "model", change)
    result = cli("evaluate", folder, "--cpu", "--task", "mrpc", "--data", MRPC)
    assert result.code == 1, result.stderr
    assert f"{folder / expected}" in one_error_line(result)


def test_only_the_classifier_is_new_when_a_run_is_tuned_for_another_label_count(mrpc_run):
    """MRPC's two-label classifier gives way to STS-B's single output; every encoder tensor
    is the MRPC run's own."""
    from bertctl import glue
    from bertctl.train.modeling import load_for_task, prepare

    model = load_for_task(prepare(str(mrpc_run), None, None), glue.get_task("sts-b"))
    loaded = model.state_dict()
    saved = safetensors_torch.load_file(str(mrpc_run / "final" / "model.safetensors"))
    encoder = [k for k in saved if k.startswith("bert.")]
    assert len(encoder) == 39 and all(torch.equal(saved[k], loaded[k]) for k in encoder)
    assert loaded["classifier.weight"].shape == (1, 32)


# --------------------------------------------------------------------------------------------
# --seeds


@pytest.mark.parametrize(
    ("seeds", "named"),
    [("1,1", "seed 1 is given twice"), ("3,1,2,01", "seed 1 is given twice"), (",", "no seed")],
)
def test_seeds_given_twice_or_none_are_refused_before_any_run(seeds, named, tiny, tmp_path):
    out = tmp_path / "seeds"
    result = cli("finetune", "mrpc", "--data", MRPC, "--model", tiny, "--out", out,
                 "--max-steps", 1, "--seeds", seeds, *FINETUNE_FAST)  # fmt: skip
    assert result.code == 2, result.stderr
    line = one_error_line(result)
    assert "--seeds" in line and named in line, line
    assert not out.exists()  # nothing trained


# --------------------------------------------------------------------------------------------
# predict


def test_the_real_glue_test_sets_hold_each_id_once(shared_data):
    """Refusing a repeated id is safe: no GLUE test set here repeats one."""
    from bertctl import glue
    from bertctl.train.evaluate import submission_ids

    found = list((shared_data / "glue").glob("*/test.tsv"))
    if not found:
        pytest.skip("no GLUE test.tsv in the shared data")
    for path in found:
        task = glue.get_task(path.parent.name)
        rows = glue.read_split(task, path.parent, "test")
        assert len(set(submission_ids(rows))) == len(rows) > 0


def test_predict_refuses_a_test_file_with_a_repeated_id(mrpc_run, tmp_path):
    data = tmp_path / "MRPC"
    shutil.copytree(MRPC, data)
    lines = (data / "test.tsv").read_text(encoding="utf-8-sig").splitlines()
    first_id = lines[1].split("\t")[0]
    lines.append(lines[1])  # the first row again, at the end
    (data / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "predictions"
    result = cli("predict", mrpc_run, "--cpu", "--data", data, "--out", out)
    assert result.code == 1, result.stderr
    line = one_error_line(result)
    assert line.startswith(f"error: {data / 'test.tsv'}: id '{first_id}' is on line 2 and "
                           f"again on line {len(lines)}"), line  # fmt: skip
    assert not out.exists()


def test_predict_writes_neither_mnli_submission_when_one_test_set_repeats_an_id(tiny, tmp_path):
    run = tmp_path / "mnli"
    ok(cli("finetune", "mnli", "--data", GLUE / "MNLI", "--model", tiny, "--out", run,
           "--max-steps", 1, *FINETUNE_FAST))  # fmt: skip
    data = tmp_path / "MNLI"
    shutil.copytree(GLUE / "MNLI", data)
    path = data / "test_mismatched.tsv"
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    lines.append(lines[-1])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "predictions"
    result = cli("predict", run, "--cpu", "--data", data, "--out", out)
    assert result.code == 1, result.stderr
    assert f"{path}: id " in one_error_line(result)
    assert not out.exists()  # not even the matched set's files
