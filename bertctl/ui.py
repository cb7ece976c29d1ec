"""The one place Rich is used: consoles, tables, progress and --json printing.

Data goes to stdout; messages, warnings and progress go to stderr. NO_COLOR and a stderr that is
not a terminal turn colour and live bars off; long work then reports progress as plain lines.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table


class OutputLost(Exception):
    """stdout refused a write (a full disk under `> file`, /dev/full, a closed pipe): what the
    command prints is lost, so the command stops and says so. `error` is the system's."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _Stream:
    """stdout or stderr as bertctl writes to them: looked up at each write (a test swaps them),
    and never an AttributeError or a traceback when the system refuses a write.

    A refused write to stdout raises OutputLost: the command's results are lost, and the user
    must know. A refused write to stderr (messages, progress) is dropped, so the work goes on;
    `lost` remembers it and the exit code says so. Either way the descriptor is pointed at
    /dev/null, so that Python's flush at exit does not fail a second time.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lost: OSError | None = None

    def target(self):
        stream = getattr(sys, self.name)
        # A live progress bar proxies the stream; write where it writes, as Rich itself does.
        return getattr(stream, "rich_proxied_file", stream)

    def write(self, text: str) -> int:
        return self._call("write", text) or len(text)

    def flush(self) -> None:
        self._call("flush")

    def _call(self, method: str, *args):
        stream = self.target()
        if stream is None:  # no such stream at all (closed when Python started)
            return None
        if self.lost is not None and self.name == "stderr":
            return None
        try:
            return getattr(stream, method)(*args)
        except OSError as exc:
            self.lost = self.lost or exc
            _to_devnull(stream)
            if self.name == "stdout":
                raise OutputLost(exc) from None
            return None

    def isatty(self) -> bool:
        stream = self.target()
        try:
            return bool(stream is not None and stream.isatty())
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        stream = self.target()
        if stream is None:
            raise OSError(errno.EBADF, f"{self.name} is closed")
        return stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.target(), "encoding", None) or "utf-8"


def _to_devnull(stream) -> None:
    """Point a broken stream's descriptor at /dev/null: the bytes Python still holds for it
    then go nowhere at exit, instead of failing with 'Exception ignored … OSError'."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


def stdout_refuses() -> bool:
    """Whether stdout refuses what is buffered for it (a write outside bertctl's consoles, such
    as Typer's help, failed); if so it is pointed at /dev/null."""
    stream = sys.stdout
    try:
        if stream is not None:
            stream.flush()
    except OSError:
        _to_devnull(stream)
        return True
    return False


def raised_writing_stdout(exc: BaseException) -> bool:
    """Whether `exc` came from a write to stdout outside bertctl's consoles: Typer's help is
    printed by a Rich console of its own, straight to sys.stdout, and the OSError carries no
    file name; the frame that raised it is asked what it was writing to."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    owner = tb.tb_frame.f_locals.get("self")
    streams = {id(sys.stdout), id(getattr(sys.stdout, "buffer", None))}
    return id(owner) in streams or id(getattr(owner, "file", None)) in streams


stdout = _Stream("stdout")
stderr = _Stream("stderr")


def _width(stream: _Stream) -> int | None:
    """Rich wraps at 80 columns when output is not a terminal; pipes and logs read better wide."""
    if os.environ.get("COLUMNS") or stream.isatty():
        return None
    return 200


out = Console(file=stdout, highlight=False, soft_wrap=True, width=_width(stdout))
err = Console(file=stderr, highlight=False, soft_wrap=True, width=_width(stderr))


# --------------------------------------------------------------------------------------------
# Standard streams closed when bertctl starts (`>&-`, `2>&-`, `<&-`)
# --------------------------------------------------------------------------------------------

STREAMS = {0: "stdin", 1: "stdout", 2: "stderr"}
SHELL = {0: "<&-", 1: ">&-", 2: "2>&-"}


def reopen_closed_streams() -> list[int]:
    """The standard descriptors (0, 1, 2) that were closed, each now open on /dev/null.

    A closed one is reopened at once: otherwise the next file bertctl opens takes its number,
    and what a library or a worker process prints would land in that file (a lock file, a
    checkpoint). stdin then reads as empty; the caller refuses to run without stdout or stderr.
    """
    closed = []
    for fd, name in STREAMS.items():
        try:
            os.fstat(fd)
            if getattr(sys, name) is not None:
                continue
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        closed.append(fd)
    return closed


def closed_stream_line(closed: list[int]) -> str:
    """The refusal, to print on a stream that is still open."""
    names = " and ".join(f"{STREAMS[fd]} ({SHELL[fd]})" for fd in closed)
    return (
        f"error: {names} {'is' if len(closed) == 1 else 'are'} closed, so what bertctl prints "
        "there would be lost; nothing was done; redirect it to a file or to /dev/null instead"
    )


def write_line(fd: int, line: str) -> None:
    """One line straight to a descriptor (best effort: it may be broken too)."""
    with contextlib.suppress(OSError):
        os.write(fd, (line + "\n").encode("utf-8", "replace"))


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
    stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    stdout.flush()


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
