"""`bertctl evaluate` and `bertctl predict`: score a fine-tuned model, or write GLUE submissions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bertctl import ui
from bertctl.cli.options import AutoFit, Force, GpuMemory

MODEL_HELP = (
    "A run folder (its final/ model, task and settings), an HF-format model folder, or a "
    "catalogue name."
)

Model = Annotated[str, typer.Argument(metavar="MODEL_OR_RUN", help=MODEL_HELP, show_default=False)]
Task = Annotated[
    str | None,
    typer.Option(
        "--task",
        "-t",
        help="cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte, wnli, xnli; default: the run's.",
    ),
]
Data = Annotated[
    str | None,
    typer.Option(
        "--data",
        metavar="DIR",
        help="Task folder; default the run's own, else $GLUE_DIR/<task>.",
    ),
]
BatchSize = Annotated[
    int | None, typer.Option("--batch-size", help="Examples per batch; default the run's, else 64.")
]
SeqLength = Annotated[
    int | None,
    typer.Option("--max-seq-length", help="Default the run's, else 128."),
]
Gpu = Annotated[int | None, typer.Option("--gpu", help="GPU index.")]
Cpu = Annotated[
    bool, typer.Option("--cpu", help="Run on the CPU even if a GPU is present.", metavar="")
]
Precision = Annotated[
    str, typer.Option("--precision", help="auto, fp32, bf16, fp16 (autocast on GPU).")
]
SkipBadRows = Annotated[
    bool, typer.Option("--skip-bad-rows", help="Skip and count malformed TSV rows.", metavar="")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.", metavar="")]


def _load(model, task, data, batch_size, max_seq_length, gpu, cpu, precision, **check):
    """The model for the task; `check`: gpu_memory, auto_fit, force and what (the memory check)."""
    from bertctl.errors import UsageError
    from bertctl.train.evaluate import load

    if gpu is not None and cpu:
        raise UsageError("--gpu and --cpu both given", "pass one of them")
    return load(
        model,
        task=task,
        data=data,
        batch_size=batch_size,
        max_seq_length=max_seq_length,
        device="cpu" if cpu else (f"cuda:{gpu}" if gpu is not None else None),
        precision=precision,
        reporter=ui.Reporter(),
        **check,
    )


def evaluate(
    model: Model,
    task: Task = None,
    data: Data = None,
    split: Annotated[
        str,
        typer.Option(
            "--split", help="dev (MNLI: both dev sets), train, or another labelled split."
        ),
    ] = "dev",
    batch_size: BatchSize = None,
    max_seq_length: SeqLength = None,
    gpu: Gpu = None,
    cpu: Cpu = False,
    precision: Precision = "auto",
    gpu_memory: GpuMemory = None,
    auto_fit: AutoFit = False,
    force: Force = False,
    skip_bad_rows: SkipBadRows = False,
    as_json: AsJson = False,
) -> None:
    """Score a fine-tuned model on a task's dev set with the task's GLUE metrics.

    A run folder brings its task, data folder, sequence length and batch size, so
    `bertctl evaluate RUN` reproduces the run's last metrics.json entry.

    On a GPU (or with --gpu-memory SIZE) the memory a batch needs is estimated before anything is
    loaded; if it would not fit, the command stops and names settings that do (--auto-fit
    applies them).

    [bold]Examples[/]

      [cyan]bertctl evaluate runs/mrpc[/]
      [cyan]bertctl evaluate runs/mnli --json[/]                  accuracy and accuracy_mm
      [cyan]bertctl evaluate my-model --task sst-2 --data glue_data/SST-2 --gpu 0[/]
      [cyan]bertctl evaluate runs/mrpc-large --gpu 0 --auto-fit[/]
    """
    from bertctl.train.evaluate import evaluate as run

    target = _load(
        model, task, data, batch_size, max_seq_length, gpu, cpu, precision,
        gpu_memory=gpu_memory, auto_fit=auto_fit, force=force, what="evaluation",
    )  # fmt: skip
    report = run(target, split, skip_bad_rows=skip_bad_rows, reporter=ui.Reporter())
    if report.skipped:
        ui.warn(f"skipped malformed rows (--skip-bad-rows): {report.skipped}")
    if as_json:
        ui.print_json(report.to_dict())
        return
    splits = ", ".join(f"{name} {n:,}" for name, n in report.examples.items())
    t = ui.table("metric", "value", title=f"{target.task.display} ({splits} examples)")
    for key, value in report.metrics.items():
        t.add_row(f"[bold]{key}[/]" if key == report.main_metric else key, f"{value:.4f}")
    for name, loss in report.losses.items():
        if loss is not None:
            t.add_row("loss" if len(report.losses) == 1 else f"loss ({name})", f"{loss:.4f}")
    ui.out.print(t)
    ui.out.print(f"[bold]model[/] {report.model}")


def predict(
    model: Model,
    task: Task = None,
    data: Data = None,
    split: Annotated[
        str, typer.Option("--split", help="test (MNLI: both test sets), or any other split.")
    ] = "test",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Default: the run's predictions/, else ./predictions.",
        ),
    ] = None,
    batch_size: BatchSize = None,
    max_seq_length: SeqLength = None,
    gpu: Gpu = None,
    cpu: Cpu = False,
    precision: Precision = "auto",
    gpu_memory: GpuMemory = None,
    auto_fit: AutoFit = False,
    force: Force = False,
    skip_bad_rows: SkipBadRows = False,
    as_json: AsJson = False,
) -> None:
    """Write GLUE's submission file (MRPC.tsv, MNLI-m.tsv, …) and Google's test_results.tsv.

    The submission holds `index<TAB>prediction`, labels spelt as GLUE spells them; Google's
    test_results.tsv holds each example's class probabilities (STS-B: the score).

    On a GPU (or with --gpu-memory SIZE) the memory a batch needs is checked first, as in
    `bertctl evaluate`.

    [bold]Examples[/]

      [cyan]bertctl predict runs/mrpc[/]                  runs/mrpc/predictions/MRPC.tsv
      [cyan]bertctl predict runs/mnli --out glue[/]       MNLI-m.tsv, MNLI-mm.tsv
      [cyan]bertctl predict my-model --task rte --data glue_data/RTE[/]
      [cyan]bertctl predict runs/mrpc --gpu-memory 8GiB --auto-fit[/]
    """
    from bertctl.outputs import check_writable
    from bertctl.train.evaluate import default_out
    from bertctl.train.evaluate import predict as run

    if out is not None:  # before the model is loaded
        check_writable(out, "--out")
    target = _load(
        model, task, data, batch_size, max_seq_length, gpu, cpu, precision,
        gpu_memory=gpu_memory, auto_fit=auto_fit, force=force, what="prediction",
    )  # fmt: skip
    if out is None:  # the run's predictions/ folder: known once the run is read
        check_writable(default_out(target))
    report = run(target, split, out, skip_bad_rows=skip_bad_rows, reporter=ui.Reporter())
    if report.skipped:
        ui.warn(f"skipped malformed rows (--skip-bad-rows): {report.skipped}")
    if as_json:
        ui.print_json(report.to_dict())
        return
    for path in report.files:
        ui.out.print(f"[bold]wrote[/] {path}")
