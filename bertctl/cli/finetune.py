"""`bertctl finetune`: Google's run_classifier.py recipe on any GLUE-format task, faster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bertctl import ui
from bertctl.cli import options

TASK_HELP = "cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte, wnli, xnli, or custom."


def finetune(
    task: Annotated[
        str | None,
        typer.Argument(help=TASK_HELP + " Default: the task of --config.", show_default=False),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", metavar="DIR", help="Task folder; default $GLUE_DIR/<task>."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="NAME|DIR",
            help="Catalogue name, hub:ORG/NAME, release or HF-format folder, or a run; "
            "default $BERT_BASE_DIR, else base-uncased.",
        ),
    ] = None,
    out: options.Out = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file of settings (flags win over it).")
    ] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Google: 3.")] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Stop after N steps.")
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Google: 32.")] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", help="Peak learning rate; Google: 2e-5.")
    ] = None,
    max_seq_length: Annotated[
        int | None, typer.Option("--max-seq-length", help="Google: 128.")
    ] = None,
    seed: options.Seed = None,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", help="Comma-separated seeds: one run each, then mean ± std."),
    ] = None,
    warmup: Annotated[
        float | None, typer.Option("--warmup", help="Warmup fraction; Google: 0.1.")
    ] = None,
    precision: options.Precision = None,
    grad_accum: options.GradAccum = None,
    grad_checkpointing: options.GradCheckpointing = None,
    optimizer: Annotated[
        str | None,
        typer.Option(
            "--optimizer", help="google (exact, no bias correction) or adamw (torch, fused on GPU)."
        ),
    ] = None,
    gpu: options.Gpu = None,
    gpu_memory: options.GpuMemory = None,
    auto_fit: options.TrainAutoFit = None,
    force: options.TrainForce = None,
    cpu: options.Cpu = False,
    cased: Annotated[
        bool | None,
        typer.Option(
            "--cased/--uncased", help="Default: follow the model.", show_default=False, metavar=""
        ),
    ] = None,
    eval_every: options.EvalEvery = None,
    save_every: options.SaveEvery = None,
    resume: options.Resume = False,
    threads: options.Threads = None,
    skip_bad_rows: Annotated[
        bool | None,
        typer.Option("--skip-bad-rows", help="Skip and count malformed TSV rows.", metavar=""),
    ] = None,
    language: Annotated[
        str | None, typer.Option("--language", help="XNLI language (Google: zh).")
    ] = None,
    text_a: Annotated[
        str | None, typer.Option("--text-a", help="custom: text column (name or index).")
    ] = None,
    text_b: Annotated[
        str | None, typer.Option("--text-b", help="custom: second text column.")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="custom: label column (name or index).")
    ] = None,
    regression: Annotated[
        bool | None,
        typer.Option("--regression", help="custom: the label is a number to predict.", metavar=""),
    ] = None,
    nproc_per_node: options.NprocPerNode = None,
    nnodes: options.Nnodes = 1,
    node_rank: options.NodeRank = 0,
    master_addr: options.MasterAddr = None,
    master_port: options.MasterPort = None,
    as_json: options.Json = False,
) -> None:
    """Fine-tune and evaluate on a GLUE-format task with Google's recipe.

    Dynamic padding with length-grouped batches, SDPA attention and autocast make it fast;
    the run folder holds the settings, logs, metrics, resumable checkpoints, a final HF-format
    model, a plot, and Google's eval_results.txt.

    On a GPU (or with --gpu-memory SIZE) the memory a run needs is estimated before anything is
    loaded; a run that would not fit stops and names settings that do (--auto-fit applies them).

    [bold]Examples[/]

      [cyan]bertctl finetune mrpc --gpu 0[/]
      [cyan]bertctl finetune sst-2 --model base-cased --cased --epochs 2 --out runs/sst2[/]
      [cyan]bertctl finetune mrpc --model path/to/minilm --seeds 1,2,3[/]
      [cyan]bertctl finetune mrpc --model large-uncased --gpu 0 --auto-fit[/]
      [cyan]bertctl finetune custom --data my_task --text-a review --label-column stars[/]
      [cyan]bertctl finetune --config runs/mrpc/config.yaml --out runs/mrpc-again[/]
      [cyan]bertctl finetune --out runs/mrpc --resume[/]
      [cyan]bertctl finetune mnli --model large-uncased --nproc-per-node 8 --out runs/mnli[/]

    --nproc-per-node N trains in N processes through torchrun (DDP), each on its share of every
    batch; the command also joins a torchrun (or a scheduler) that started it. Only rank 0
    writes the run folder.
    """
    from bertctl.errors import UsageError
    from bertctl.train.config import resolve

    if gpu is not None and cpu:
        raise UsageError("--gpu and --cpu both given", "pass one of them")
    if resume and config is None:
        config = _run_settings(out, task)
    flags = {
        "task": task,
        "data": data,
        "model": model,
        "out": out,
        "epochs": epochs,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "lr": lr,
        "max_seq_length": max_seq_length,
        "seed": seed,
        "warmup": warmup,
        "precision": precision,
        "grad_accum": grad_accum,
        "grad_checkpointing": grad_checkpointing,
        "optimizer": optimizer,
        "device": "cpu" if cpu else (f"cuda:{gpu}" if gpu is not None else None),
        "gpu_memory": gpu_memory,
        "auto_fit": auto_fit,
        "force": force,
        "lowercase": None if cased is None else not cased,
        "eval_every": eval_every,
        "save_every": save_every,
        "skip_bad_rows": skip_bad_rows,
        "language": language,
        "text_a": text_a,
        "text_b": text_b,
        "label_column": label_column,
        "regression": regression,
        "threads": threads,
    }
    cfg, explicit = resolve(config, flags)
    if "task" not in explicit:
        raise UsageError(
            "no task given",
            "name one (e.g. bertctl finetune mrpc), or pass a --config that sets task",
        )
    if nproc_per_node is not None:
        if seeds:
            parse_seeds(seeds)  # refused here, before any process starts
        _launch(cfg, as_json, (nproc_per_node, nnodes, node_rank, master_addr, master_port))
        return
    if seeds:
        run_seeds(cfg, explicit, seeds, as_json, resume)
        return
    summary = run_one(cfg, explicit, resume)
    if summary.main:
        report([summary], as_json)


def _launch(cfg, as_json: bool, scale: tuple) -> None:
    """Run this same command line in torchrun's processes and wait; their exit code is ours.

    The processes get the command line as typed, less the scale-out flags (so each resolves the
    same settings), and the --out they must all share.
    """
    import sys

    from bertctl.errors import UsageError
    from bertctl.train import distributed
    from bertctl.train.runs import default_out

    if distributed.launched():
        raise UsageError(
            "--nproc-per-node given to a process that torchrun (or a scheduler) started",
            "leave out the scale-out flags when launching with torchrun yourself",
        )
    processes = scale[0] * scale[1]  # per machine x machines
    if cfg.batch_size % (processes * cfg.grad_accum):  # refused here, not in every process
        raise UsageError(
            f"--batch-size {cfg.batch_size} does not split into {processes} process(es) x "
            f"{cfg.grad_accum} micro-batch(es)",
            f"pass a multiple of {processes * cfg.grad_accum}",
        )
    args = distributed.without_launch_flags(sys.argv[1:])
    if cfg.out is None:  # every process must write to (rank 0) and read from the same folder
        args += ["--out", str(default_out(cfg.task, Path(cfg.model or "model").name))]
    argv = distributed.torchrun_argv(args, *scale)
    if not as_json:
        ui.info(f"Launching {scale[0]} process(es) per machine through torchrun")
    code = distributed.run_torchrun(argv)
    if code:
        raise typer.Exit(code if code > 0 else 1)


def _run_settings(out: str | None, task: str | None) -> Path | None:
    """--resume: the config.yaml the run in --out was started with (None when it has none)."""
    from bertctl.errors import UsageError
    from bertctl.train.config import load_mapping

    if out is None:
        raise UsageError("--resume needs --out", "pass the folder of the run to continue")
    path = Path(out) / "config.yaml"
    if not path.is_file():
        return None
    saved = load_mapping(path, "pass the --out folder of a `bertctl finetune` run").get("task")
    if task is not None and saved is not None:
        from bertctl.glue import get_task

        def name(text: str) -> str:
            return "custom" if text.lower() == "custom" else get_task(text).name

        if name(task) != name(str(saved)):
            raise UsageError(
                f"--resume: {out} is a {saved} run, not {task}",
                f"resume it as {saved}, or pass a new --out for {task}",
            )
    return path


def run_one(cfg, explicit: set[str], resume: bool):
    from bertctl.train.finetune import finetune as run

    summary = run(cfg, explicit, ui.Reporter(), resume=resume)
    return summary


def run_seeds(cfg, explicit: set[str], seeds: str, as_json: bool, resume: bool) -> None:
    """One run per seed in <out>/seed-N, then a mean ± std table."""
    from dataclasses import replace

    from bertctl.train import distributed
    from bertctl.train.runs import default_out

    values = parse_seeds(seeds)
    base = Path(cfg.out) if cfg.out else default_out(cfg.task, Path(cfg.model or "model").name)
    summaries = []
    for value in values:
        if distributed.world_from_env().main:
            ui.info(f"Seed {value}")
        summaries.append(
            run_one(
                replace(cfg, seed=value, out=str(base / f"seed-{value}")),
                explicit | {"seed"},
                resume,
            )
        )
    if summaries[0].main:
        report(summaries, as_json, seeds=values, base=base)


def parse_seeds(seeds: str) -> list[int]:
    """--seeds as integers, refused before any run: each seed's run goes to <out>/seed-N, so a
    seed given twice would train twice and then find its folder taken."""
    from bertctl.errors import UsageError

    try:
        values = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise UsageError(
            f"--seeds {seeds!r} is not a list of integers", "e.g. --seeds 1,2,3"
        ) from None
    if not values:
        raise UsageError(f"--seeds {seeds!r} names no seed", "e.g. --seeds 1,2,3")
    seen: set[int] = set()
    for value in values:
        if value in seen:
            raise UsageError(
                f"--seeds {seeds}: seed {value} is given twice",
                "pass each seed once, e.g. --seeds 1,2,3",
            )
        seen.add(value)
    return values


def report(
    summaries, as_json: bool, seeds: list[int] | None = None, base: Path | None = None
) -> None:
    import statistics

    from bertctl.store import write_json_atomic

    keys = list(summaries[0].metrics)
    stats = {}
    for key in keys:
        values = [s.metrics[key] for s in summaries]
        stats[key] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "median": statistics.median(values),
            "values": values,
        }
    result = {
        "runs": [
            {
                "out": str(s.out),
                "final": str(s.final),
                "metrics": s.metrics,
                "steps": s.steps,
                "train_seconds": round(s.train_seconds, 1),
                "examples_per_second": round(s.examples_per_second, 1),
            }
            for s in summaries
        ],
    }
    if seeds:
        result.update(seeds=seeds, summary=stats)
        if base is not None:
            write_json_atomic(base / "seeds.json", result)
    if as_json:
        ui.print_json(result)
        return
    title = "Dev metrics" + (f" over seeds {', '.join(map(str, seeds))}" if seeds else "")
    columns = [
        "metric",
        *([f"seed {s}" for s in seeds] if seeds else []),
        "mean ± std" if seeds else "value",
    ]
    t = ui.table(*columns, title=title)
    for key in keys:
        row = [key]
        if seeds:
            row += [f"{v:.4f}" for v in stats[key]["values"]]
            row.append(f"{stats[key]['mean']:.4f} ± {stats[key]['std']:.4f}")
        else:
            row.append(f"{stats[key]['mean']:.4f}")
        t.add_row(*row)
    ui.out.print(t)
    for s in summaries:
        ui.out.print(
            f"[bold]run[/] {s.out}  [dim]{s.steps} steps, {s.train_seconds:.0f} s, "
            f"{s.examples_per_second:.1f} examples/s[/]"
        )
