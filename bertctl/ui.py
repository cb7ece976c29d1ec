"""The one place Rich is used: consoles, tables, progress and --json printing.

Data goes to stdout; messages, warnings and progress go to stderr. NO_COLOR and a stderr that is
not a terminal turn colour and live bars off; long work then reports progress as plain lines.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table


def _width(stream) -> int | None:
    """Rich wraps at 80 columns when output is not a terminal; pipes and logs read better wide."""
    if os.environ.get("COLUMNS") or stream.isatty():
        return None
    return 200


out = Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))


def error(message: str) -> None:
    """One red line on stderr."""
    err.print(f"[bold red]error:[/] {_escape(message)}")


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {_escape(message)}")


def info(message: str) -> None:
    err.print(_escape(message), style="dim" if err.is_terminal else None)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout: plain JSON, never styled."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def table(*columns: str, title: str | None = None) -> Table:
    """A plain table in bertctl's style."""
    t = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    return t


class _PlainProgress:
    """Progress for a non-terminal stderr: one line every `every` seconds, and one at the end."""

    def __init__(self, description: str, total: float | None, unit: str, every: float) -> None:
        self.description, self.total, self.unit, self.every = description, total, unit, every
        self.done = 0.0
        self.start = self.last = time.monotonic()
        self.postfix = ""

    def set_total(self, total: float | None) -> None:
        self.total = total

    def advance(self, amount: float = 1.0, postfix: str | None = None) -> None:
        self.done += amount
        if postfix is not None:
            self.postfix = postfix
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.description}: {_human(self.done, self.unit)}"]
        if self.total:
            parts[0] += f" / {_human(self.total, self.unit)} ({100 * self.done / self.total:.0f}%)"
            if rate > 0:
                parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        parts.append(_rate(rate, self.unit))
        if self.postfix:
            parts.append(self.postfix)
        err.print(", ".join(parts), highlight=False)

    def finish(self) -> None:
        if time.monotonic() - self.start >= self.every:
            self._line(time.monotonic())


class _RichProgress:
    def __init__(self, description: str, total: float | None, unit: str) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.unit = unit
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[postfix]}"),
            console=err,
            transient=False,
        )
        self.start = time.monotonic()
        self.task = self.progress.add_task(description, total=total, count="", rate="", postfix="")
        self.done = 0.0
        self.progress.start()

    def set_total(self, total: float | None) -> None:
        self.progress.update(self.task, total=total)

    def advance(self, amount: float = 1.0, postfix: str | None = None) -> None:
        self.done += amount
        rate = self.done / max(time.monotonic() - self.start, 1e-9)
        fields = {"count": _human(self.done, self.unit), "rate": _rate(rate, self.unit)}
        if postfix is not None:
            fields["postfix"] = postfix
        self.progress.update(self.task, advance=amount, **fields)

    def finish(self) -> None:
        self.progress.stop()


@contextmanager
def progress(
    description: str, total: float | None = None, unit: str = "", every: float = 10.0
) -> Iterator[_PlainProgress | _RichProgress]:
    """A progress reporter with `.advance(n, postfix=...)`: a live bar on a terminal, else lines."""
    bar: _PlainProgress | _RichProgress
    if err.is_terminal:
        bar = _RichProgress(description, total, unit)
    else:
        bar = _PlainProgress(description, total, unit, every)
    try:
        yield bar
    finally:
        bar.finish()


def _human(value: float, unit: str) -> str:
    """1234567 bytes -> '1.2 MB'; other units get k/M suffixes."""
    if unit == "B":
        for suffix in ("B", "kB", "MB", "GB", "TB"):
            if abs(value) < 1000 or suffix == "TB":
                return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
            value /= 1000
    for suffix in ("", "k", "M", "G"):
        if abs(value) < 1000 or suffix == "G":
            text = f"{value:.0f}" if suffix == "" else f"{value:.1f}{suffix}"
            return f"{text} {unit}".rstrip()
        value /= 1000
    return str(value)


def _rate(rate: float, unit: str) -> str:
    """A speed with its significant digits: on a CPU a step can take seconds, and "0 steps/s"
    says nothing.

    >>> _rate(0.4, "steps"), _rate(2.345, "steps"), _rate(25.7, "steps"), _rate(2e6, "B")
    ('2.5 s/step', '2.3 steps/s', '26 steps/s', '2.0 MB/s')
    """
    if unit != "B" and 0 < rate < 1:
        return f"{1 / rate:.1f} s/{unit.removesuffix('s') or unit}"
    if unit != "B" and rate < 10:
        return f"{rate:.1f} {unit}/s"
    return f"{_human(rate, unit)}/s"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def human_bytes(n: float) -> str:
    return _human(n, "B")


class Reporter:
    """Tells the user about the steps of long work: a line per step, a bar per long one."""

    def step(self, message: str) -> None:
        info(message)

    def progress(self, description: str, total: float | None, unit: str):
        return progress(description, total=total, unit=unit)
