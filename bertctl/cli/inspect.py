"""`bertctl inspect`: architecture, exact parameter counts, vocab, checkpoint and every problem."""

from __future__ import annotations

from typing import Annotated

import typer

from bertctl import ui


def inspect(
    target: Annotated[
        str,
        typer.Argument(
            metavar="PATH|NAME",
            help="bert_config.json, release folder or zip, checkpoint prefix, HF-format folder, "
            "or a catalogue name.",
        ),
    ],
    tensors: Annotated[
        bool, typer.Option("--tensors", help="List every tensor.", metavar="")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON.", metavar="")
    ] = False,
) -> None:
    """Architecture, exact parameter counts, vocab and casing, checkpoint contents, problems.

    Exits with code 1 when an error is found (a warning alone exits 0).

    [bold]Examples[/]

      [cyan]bertctl inspect base-uncased[/]
      [cyan]bertctl inspect uncased_L-12_H-768_A-12/bert_config.json[/]
      [cyan]bertctl inspect uncased_L-12_H-768_A-12.zip[/]
      [cyan]bertctl inspect uncased_L-12_H-768_A-12/bert_model.ckpt --tensors[/]
    """
    from bertctl.inspection import inspect_target

    report = inspect_target(target, tensors=tensors)
    if as_json:
        ui.print_json(report.to_dict())
    else:
        render(report)
    if not report.ok:
        raise typer.Exit(1)


_KIND = {
    "catalog": "catalogue entry (not downloaded)",
    "config-file": "config file",
    "release-folder": "release folder",
    "release-zip": "release zip",
    "hf-folder": "HF-format folder",
    "checkpoint": "TensorFlow checkpoint",
}


def render(report) -> None:
    """Human-readable report on stdout."""
    out = ui.out
    out.print(f"[bold]{report.target}[/]  [dim]{_KIND.get(report.kind, report.kind)}[/]")
    grid = ui.table("", "")
    grid.show_header = False
    cfg = report.config
    if cfg:
        grid.add_row(
            "Architecture",
            f"{cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, "
            f"{cfg['num_attention_heads']} heads, intermediate {cfg['intermediate_size']}, "
            f"{cfg['hidden_act']}, {cfg['max_position_embeddings']} positions, "
            f"{cfg['type_vocab_size']} segment types",
        )
        grid.add_row(
            "Parameters",
            f"{report.parameters:,} encoder + pooler; "
            f"{report.parameters_with_heads:,} with pretraining heads",
        )
        grid.add_row(
            "fp32 size",
            f"{ui.human_bytes(report.fp32_bytes)}; {ui.human_bytes(report.fp32_bytes_with_heads)} with heads",
        )
        grid.add_row("Vocab size", f"{cfg['vocab_size']:,} (config)")
    if report.vocab:
        v = report.vocab
        casing = {True: "lowercase", False: "cased", None: "unknown casing"}[v.lowercase]
        grid.add_row("Vocab", f"{v.size:,} tokens, {casing} ({v.casing_reason}); {v.source}")
    ck = report.checkpoint
    if ck:
        parts = [
            f"{ck.tensors} tensors",
            ", ".join(f"{n} {d}" for d, n in sorted(ck.dtypes.items())),
        ]
        parts.append(ui.human_bytes(ck.bytes))
        parts.append("pretraining heads" if ck.has_pretraining_heads else "no pretraining heads")
        if ck.has_optimizer_slots:
            parts.append("Adam slots")
        if ck.has_global_step:
            parts.append("global_step")
        if ck.classifier_labels:
            parts.append(f"classifier with {ck.classifier_labels} labels")
        grid.add_row("Checkpoint", f"{'; '.join(parts)}  [dim]{ck.path}[/]")
    if report.defaults_applied:
        grid.add_row(
            "Defaults", "Google's default for absent " + ", ".join(report.defaults_applied)
        )
    out.print(grid)
    if ck and ck.tensor_list:
        t = ui.table("tensor", "dtype", "shape", "bytes")
        for item in ck.tensor_list:
            t.add_row(item.name, item.dtype, str(item.shape), f"{item.nbytes:,}")
        out.print(t)
    if report.problems:
        for p in report.problems:
            style = "bold red" if p.level == "error" else "yellow"
            out.print(f"[{style}]{p.level}:[/] ", end="")
            out.print(p.message, markup=False)
    else:
        out.print("[green]No problems found.[/]")
