"""bench/gpu_check.py's dry run: the GPU acceptance check's plumbing, on the CPU, in CI.

The real check runs only where a GPU is lent; this runs the same command with tiny sizes, so
the script is known to work before it ever meets one: every part records a status and figures,
and the Markdown table for BENCHMARKS.md is written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PARTS = ("finetune", "throughput", "memory", "oom", "evaluate", "parity")
# Parts that need CUDA report their CPU stand-in as skipped; the others must pass.
NEEDS_GPU = {"memory", "parity"}

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    return proc, out


def test_the_dry_run_passes(dry_run):
    proc, _ = dry_run
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_part_records_a_status_and_figures(dry_run):
    _, out = dry_run
    results = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    assert results["dry_run"] is True
    assert set(results["parts"]) == set(PARTS)
    for name, part in results["parts"].items():
        expected = "skipped: no GPU" if name in NEEDS_GPU else "pass"
        assert part["status"] == expected, (name, part)
        assert part["figures"], name
        assert part["summary"], name


def test_the_figures_are_the_ones_each_part_measures(dry_run):
    _, out = dry_run
    parts = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))["parts"]
    ran = [r for r in parts["finetune"]["rows"] if r["status"] == "ran"]
    assert {r["contender"].split()[0] for r in ran} >= {"bertctl"}
    assert all(r["examples/s"] > 0 and 0 <= r["dev accuracy"] <= 1 for r in ran)
    steps = {(r["step"], r["seq"]) for r in parts["throughput"]["rows"]}
    assert {kind for kind, _ in steps} == {"finetune", "pretrain"} and len(steps) == 4
    cells = parts["memory"]["rows"]
    assert len(cells) == 8 and all(c["estimate MiB"] > 0 for c in cells)
    assert {(c["precision"], c["checkpointing"]) for c in cells} == {
        (p, ck) for p in ("fp32", "bf16") for ck in (False, True)
    }
    oom = parts["oom"]["figures"]
    assert oom["one_error_line"] and oom["resume_completed"]
    assert oom["checkpoint_named"] in oom["checkpoints_on_disk"]
    assert parts["evaluate"]["figures"]["same"]
    assert parts["parity"]["figures"]["last_hidden_state"] == 0.0


def test_the_markdown_table_is_written_and_printed(dry_run):
    proc, out = dry_run
    table = (out / "gpu_check.md").read_text(encoding="utf-8")
    assert "| part | status | figures | note |" in table
    for name in PARTS:
        assert f"| {name} | " in table
    assert "| part | status | figures | note |" in proc.stdout
    assert str(out) not in table  # no machine paths in a table meant for the docs
