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
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the checks as JSON.", metavar="")
    ] = False,
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
    ui.out.print(summary(report))


def summary(report) -> str:
    """The verdict line: how many checks passed, failed and were skipped (a skipped check is
    not a passed one: "all 7 passed" with 2 skipped would claim checks never made)."""
    failed = len(report.failures)
    skipped = sum(1 for c in report.checks if c.ok is None)
    passed = len(report.checks) - failed - skipped
    also = f", {skipped} skipped (see why above)" if skipped else ""
    if failed:
        return f"[bold red]{failed} check(s) failed[/], {passed} passed{also}"
    if skipped:
        return f"[green]{passed} checks passed[/]{also}"
    return f"[green]All {passed} checks passed.[/]"
