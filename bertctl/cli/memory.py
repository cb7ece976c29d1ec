"""`bertctl gpus` and `bertctl plan`: the GPUs here, and what a model needs on a GPU of any size."""

from __future__ import annotations

from typing import Annotated

import typer

from bertctl import ui


def gpus(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the GPUs as JSON.", metavar="")
    ] = False,
) -> None:
    """Visible GPUs: name, memory (total, free, other processes'), capability, bf16.

    Memory used by other processes needs NVML (pip install nvidia-ml-py); without it that column
    says unknown.

    [bold]Examples[/]

      [cyan]bertctl gpus[/]
      [cyan]bertctl gpus --json[/]
    """
    from bertctl import gpus as G

    found = G.visible()
    if as_json:
        ui.print_json([g.to_dict() for g in found])
    if not found:
        ui.info(_no_gpu())
        return
    if as_json:
        return
    fmt = _fmt
    t = ui.table("gpu", "name", "total", "free", "used by others", "capability", "bf16")
    for g in found:
        others = fmt(g.used_by_others) if g.used_by_others is not None else "unknown (no NVML)"
        t.add_row(
            str(g.index),
            g.name,
            fmt(g.total),
            fmt(g.free),
            others,
            f"{g.capability[0]}.{g.capability[1]}",
            "yes" if g.bf16 else "no",
        )
    ui.out.print(t)


def _no_gpu() -> str:
    import torch

    built = "" if torch.version.cuda else " (this torch is built without CUDA)"
    return (
        f"No CUDA GPU is visible{built}. Plan for one anyway: "
        "bertctl plan base-uncased --gpu-memory 12GiB"
    )


def plan(
    model: Annotated[
        str,
        typer.Argument(
            metavar="NAME|PATH",
            help="Catalogue name (nothing is downloaded), model folder, release zip or config file.",
        ),
    ],
    gpu_memory: Annotated[
        str | None,
        typer.Option(
            "--gpu-memory",
            metavar="SIZE",
            help="The card to plan for: 12GiB, 11.5G, 24GB, 80000MB (the CUDA context is set aside).",
        ),
    ] = None,
    gpu: Annotated[
        int | None, typer.Option("--gpu", help="Plan for the free memory of this GPU.")
    ] = None,
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, bf16 or fp16 (autocast).")
    ] = "fp32",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Effective batch.")] = 32,
    max_seq_length: Annotated[int, typer.Option("--max-seq-length")] = 128,
    grad_accum: Annotated[
        int, typer.Option("--grad-accum", help="Micro-batches per optimizer step.")
    ] = 1,
    grad_checkpointing: Annotated[bool, typer.Option("--grad-checkpointing", metavar="")] = False,
    optimizer: Annotated[
        str, typer.Option("--optimizer", help="google (bertctl's default) or adamw (fused).")
    ] = "google",
    attention: Annotated[
        str,
        typer.Option(
            "--attention",
            help="sdpa (what bertctl runs), flash, or eager (attention scores kept, as in "
            "Google's TensorFlow code).",
        ),
    ] = "sdpa",
    task: Annotated[
        str, typer.Option("--task", help="classify (fine-tuning) or pretrain (MLM + NSP).")
    ] = "classify",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the plan as JSON.", metavar="")
    ] = False,
) -> None:
    """Estimate GPU memory for training MODEL, and the largest batch per sequence length.

    The estimate (weights, gradients, optimizer state, activations, temporaries, workspace) is
    for the given settings; the table gives the largest batch at sequence lengths 64 to 512 in
    fp32 and bf16, with and without gradient checkpointing. For BERT-Base and BERT-Large shapes
    it adds Google's published maxima (TensorFlow 1.11 on a 12 GB Titan X, fp32) for comparison.

    [bold]Examples[/]

      [cyan]bertctl plan base-uncased --gpu-memory 12GiB[/]
      [cyan]bertctl plan large-uncased --gpu-memory 24GiB --precision bf16 --batch-size 32[/]
      [cyan]bertctl plan base-uncased --gpu-memory 12GiB --attention eager --json[/]
      [cyan]bertctl plan path/to/model --gpu 0 --max-seq-length 512[/]
    """
    from bertctl import memory as M

    settings = M.Settings(
        batch_size, max_seq_length, precision, grad_accum, grad_checkpointing, optimizer
    )
    result = M.plan(model, settings, gpu_memory=gpu_memory, gpu=gpu, attention=attention, task=task)
    if as_json:
        ui.print_json(result.to_dict())
        return
    _render(result)


def _fmt(n: int | None) -> str:
    from bertctl.memory import format_bytes

    return "-" if n is None else format_bytes(n)


def _render(plan) -> None:
    out, config, est, s = ui.out, plan.config, plan.estimate, plan.settings
    out.print(
        f"[bold]{plan.model}[/]  [dim]{config.num_hidden_layers} layers, hidden "
        f"{config.hidden_size}, {est.params:,} parameters; {plan.task}, {plan.attention} "
        f"attention, {s.optimizer} optimizer[/]"
    )
    out.print(f"Budget: {_fmt(plan.budget)} [dim]({plan.source})[/]")
    accum = f" (micro-batch {s.micro_batch} x {s.grad_accum})" if s.grad_accum > 1 else ""
    ckpt = ", gradient checkpointing" if s.grad_checkpointing else ""
    t = ui.table(
        "component",
        "bytes",
        title=f"Estimate: batch {s.batch_size}{accum} x {s.max_seq_length} tokens, "
        f"{s.precision}{ckpt}",
    )
    for name, value in est.breakdown():
        t.add_row(name, _fmt(value))
    verdict = "[green]fits[/]" if plan.fits else "[red]does not fit[/]"
    t.add_row(f"[bold]peak[/] [dim]({est.phase})[/]", f"[bold]{_fmt(est.total)}[/]  {verdict}")
    t.add_row("[dim]CUDA context (apart)[/]", f"[dim]{_fmt(est.context)}[/]")
    out.print(t)
    if plan.suggestions:
        st = ui.table("flags", "peak", "trade-off", title="Settings that fit, best first")
        for sug in plan.suggestions:
            st.add_row(sug.flags, _fmt(sug.estimate.total), sug.why)
        out.print(st)
    elif not plan.fits:
        out.print("[red]No settings fit this budget.[/]")
    lengths = list(next(iter(plan.max_batch.values())))
    mt = ui.table(
        "precision", "checkpointing", *map(str, lengths), title="Largest batch per sequence length"
    )
    for key, row in plan.max_batch.items():
        prec, _, ck = key.partition("+")
        mt.add_row(prec, "yes" if ck else "no", *(str(row[n]) for n in lengths))
    google = plan.google_2018
    if google:
        mt.add_row(
            "[dim]Google 2018[/]",
            "[dim]TF 1.11, 12 GB[/]",
            *(f"[dim]{google.get(n, '-')}[/]" for n in lengths),
        )
    out.print(mt)
    if google:
        out.print(
            "[dim]Google's row: its README's maxima on a 12 GB Titan X (fp32, Adam, TensorFlow "
            "1.11); PyTorch today saves fewer bytes per token (BENCHMARKS.md, Memory planning).[/]"
        )
