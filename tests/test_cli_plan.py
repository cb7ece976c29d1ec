"""`bertctl plan`, `bertctl gpus`, and the memory check of `bertctl finetune`, on the CPU.

The fine-tuning check is driven through its documented planning input, `--gpu-memory SIZE`: a
card of SIZE, less the CUDA context. Runs use the tiny converted release (2 layers, hidden 32)
and stop after 2 steps.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from clirun import Result, bertctl, one_error_line
from clirun import in_process as cli

from bertctl import memory

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MRPC = FIXTURES / "glue" / "MRPC"
GOOGLE_BASE = {"64": 64, "128": 32, "256": 16, "320": 14, "384": 12, "512": 6}


# --------------------------------------------------------------------------------------------
# plan


def test_plan_base_uncased_12gib_json_in_googles_range():
    r = bertctl("plan", "base-uncased", "--gpu-memory", "12GiB", "--json")
    assert r.code == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["budget"]["bytes"] == 12 * memory.GiB - memory.CONTEXT_BYTES
    assert plan["params"] == 109_483_778
    assert plan["google_2018"] == GOOGLE_BASE
    assert plan["fits"] is True and plan["suggestions"] == []
    est = plan["estimate"]
    assert est["model_state"] == 16 * est["params"]
    parts = ("weights", "gradients", "optimizer_state", "activations", "temporaries", "workspace")
    assert sum(est[k] for k in parts) == est["total"]
    grid = plan["max_batch"]
    assert set(grid) == {"fp32", "fp32+checkpointing", "bf16", "bf16+checkpointing"}
    for seq, google in GOOGLE_BASE.items():
        # what TensorFlow 1.11 fit, PyTorch fits; SDPA (bertctl's) fits no fewer than eager
        assert google <= grid["fp32"][seq] <= 5 * google
        assert grid["fp32"][seq] < grid["bf16"][seq] < grid["bf16+checkpointing"][seq]


def test_plan_eager_attention_like_for_like_with_googles_table():
    r = bertctl("plan", "base-uncased", "--gpu-memory", "12GiB", "--attention", "eager", "--json")
    assert r.code == 0, r.stderr
    fp32 = json.loads(r.stdout)["max_batch"]["fp32"]
    assert fp32 == {"64": 213, "128": 95, "256": 39, "320": 29, "384": 22, "512": 14}
    for seq, google in GOOGLE_BASE.items():
        assert google <= fp32[seq] <= 3.5 * google


def test_plan_table_for_a_card_that_does_not_fit_lists_settings_that_do():
    r = bertctl("plan", "large-uncased", "--gpu-memory", "12GiB", "--max-seq-length", "512")
    assert r.code == 0, r.stderr
    for text in (
        "does not fit",
        "Settings that fit, best first",
        "--batch-size 32 --grad-accum 8",
        "--grad-checkpointing",
        "Largest batch per sequence length",
        "Google 2018",
        "CUDA context",
    ):
        assert text in r.stdout, text


def test_plan_reads_a_config_file_and_a_release_folder():
    release = FIXTURES / "tf" / "tiny_release"
    for target in (release, release / "bert_config.json"):
        r = bertctl("plan", str(target), "--gpu-memory", "4GB", "--max-seq-length", "64", "--json")
        assert r.code == 0, r.stderr
        plan = json.loads(r.stdout)
        assert plan["google_2018"] is None
        assert list(plan["max_batch"]["fp32"]) == ["64"]  # 64 positions only


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "--gpu-memory"),
        (["--gpu-memory", "12 XB"], "is not a size"),
        (["--gpu-memory", "12GiB", "--gpu", "0"], "pass one of"),
        (["--gpu-memory", "12GiB", "--precision", "fp8"], "--precision"),
        (["--gpu-memory", "12GiB", "--batch-size", "30", "--grad-accum", "4"], "multiple"),
        (["--gpu-memory", "12GiB", "--max-seq-length", "1024"], "positions"),
    ],
)
def test_plan_usage_errors(args, needle):
    r = cli("plan", "base-uncased", *args)
    assert r.code == 2
    assert needle in one_error_line(r)


PROBE = """
import sys
sys.argv = ["bertctl", "plan", "base-uncased", "--gpu-memory", "12GiB", "--json"]
from bertctl.cli import main
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
"""


def test_plan_never_imports_torch():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=False
    )
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY=")] == ["HEAVY="]


# --------------------------------------------------------------------------------------------
# gpus


def test_gpus_without_a_gpu_says_so_and_exits_0():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    r = bertctl("gpus")
    assert r.code == 0 and r.stdout == ""
    assert "No CUDA GPU is visible" in r.stderr and "--gpu-memory" in r.stderr
    r = bertctl("gpus", "--json")
    assert r.code == 0 and json.loads(r.stdout) == []


# --------------------------------------------------------------------------------------------
# finetune: refuse, fit, force


def finetune(tiny: Path, out: Path, *extra: object) -> Result:
    return cli(
        "finetune", "mrpc", "--model", tiny, "--data", MRPC, "--out", out,
        "--cpu", "--threads", "1", "--batch-size", "4", "--max-steps", "2", *extra,
    )  # fmt: skip


def card_for(tiny: Path, grad_accum: int) -> int:
    """A card (bytes) that just holds the tiny model's run at batch 4 with this accumulation."""
    from bertctl import modelref

    config = modelref.bert_config(modelref.resolve(str(tiny)))
    settings = memory.Settings(
        batch_size=4, max_seq_length=64, precision="fp32", grad_accum=grad_accum
    )
    return memory.estimate_settings(config, settings).total + memory.CONTEXT_BYTES


def test_finetune_refuses_when_nothing_fits_and_writes_nothing(tiny, tmp_path):
    out = tmp_path / "run"
    r = finetune(tiny, out, "--gpu-memory", "1MiB")
    assert r.code == 1
    line = one_error_line(r)
    assert "training needs about" in line and "available (--gpu-memory 1MiB" in line
    assert "--gpu-memory" in line and "--force" in line  # what to do instead
    assert not out.exists()
    assert "Tokenizing" not in r.stderr  # no data read


def test_finetune_refuses_with_the_flags_that_fit(tiny, tmp_path):
    out = tmp_path / "run"
    r = finetune(tiny, out, "--gpu-memory", card_for(tiny, 2))
    assert r.code == 1
    line = one_error_line(r)
    assert "needs about" in line and "is available" in line
    assert "pass --batch-size 4 --grad-accum 2" in line and "--auto-fit" in line
    # the breakdown and every suggestion are printed before the error
    assert "Memory estimate (peak at the backward (start)): weights" in r.stderr
    assert "Settings that fit, best first:" in r.stderr
    assert not out.exists()


def test_finetune_auto_fit_applies_accumulation_and_records_it(tiny, tmp_path):
    out = tmp_path / "run"
    r = finetune(tiny, out, "--gpu-memory", card_for(tiny, 2), "--auto-fit")
    assert r.code == 0, r.stderr
    assert "--auto-fit: --batch-size 4 --grad-accum 2" in r.stderr
    settings = yaml.safe_load((out / "config.yaml").read_text())
    assert settings["batch_size"] == 4 and settings["grad_accum"] == 2
    assert settings["auto_fit"] is True
    assert json.loads((out / "run.json").read_text())["status"] == "done"


def test_finetune_that_fits_says_so_and_keeps_its_settings(tiny, tmp_path):
    out = tmp_path / "run"
    r = finetune(tiny, out, "--gpu-memory", "24GiB", "--auto-fit")
    assert r.code == 0, r.stderr
    assert "Memory: " in r.stderr and "needed of" in r.stderr
    assert yaml.safe_load((out / "config.yaml").read_text())["grad_accum"] == 1


def test_finetune_force_skips_the_check(tiny, tmp_path):
    out = tmp_path / "run"
    r = finetune(tiny, out, "--gpu-memory", "1MiB", "--force")
    assert r.code == 0, r.stderr
    assert "Memory check skipped (--force)" in r.stderr
    assert (out / "final" / "config.json").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--gpu-memory", "lots"], "is not a size"),
        (["--gpu-memory", "12GiB", "--auto-fit", "--force"], "--auto-fit and --force"),
    ],
)
def test_finetune_memory_flag_errors(tiny, tmp_path, args, needle):
    r = finetune(tiny, tmp_path / "run", *args)
    assert r.code == 2
    assert needle in one_error_line(r)
    assert not (tmp_path / "run").exists()
