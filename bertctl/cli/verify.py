"""`bertctl verify`: every integrity check on a release zip, a folder or a downloaded model."""

from __future__ import annotations

from typing import Annotated

import typer

from bertctl import ui


def verify(
    target: Annotated[
        str,
        typer.Argument(
            metavar="NAME|PATH",
            help="A downloaded catalogue name or hub:ORG/NAME, a release zip, a release folder, "
            "or an HF-format folder.",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Zip CRCs, published SHA-256s, every tensor's CRC32C, config/vocab/shape consistency, casing.

    Exits with code 1 when any check fails, naming the exact file or tensor.

    [bold]Examples[/]

      [cyan]bertctl verify base-uncased[/]
      [cyan]bertctl verify uncased_L-12_H-768_A-12.zip[/]
      [cyan]bertctl verify path/to/uncased_L-12_H-768_A-12 --json[/]
    """
    from bertctl.verify import verify_target

    reports = verify_target(target, ui.Reporter())
    if as_json:
        ui.print_json(
            {
                "target": target,
                "ok": all(r.ok for r in reports),
                "reports": [r.to_dict() for r in reports],
            }
        )
    else:
        for report in reports:
            render(report)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def render(report) -> None:
    t = ui.table("check", "target", "result", "detail", title=f"{report.target}")
    for c in report.checks:
        result = {True: "[green]ok[/]", False: "[bold red]FAILED[/]", None: "[dim]skipped[/]"}[c.ok]
        t.add_row(c.name, c.target, result, c.detail)
    ui.out.print(t)
    failed = len(report.failures)
    if failed:
        ui.out.print(f"[bold red]{failed} check(s) failed[/]")
    else:
        ui.out.print(f"[green]All {len(report.checks)} checks passed.[/]")
