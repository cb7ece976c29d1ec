"""Run the real `bertctl` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def bertctl(*args: str, stdin: bytes | None = None, env: dict | None = None) -> Result:
    """`python -m bertctl ARGS` with a wide, colourless, non-terminal output."""
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    full_env.pop("BERTCTL_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bertctl", *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=300,
        check=False,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def one_error_line(result: Result) -> str:
    """The single error line a user error must print, with no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def in_process(*args: object, stdin: str = "") -> Result:
    """`bertctl ARGS` in this process: the real entry point and its error handling, without
    the second or more a new interpreter (and torch) takes to start. stdin reads `stdin`."""
    import contextlib
    import io

    from bertctl.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv, sys.stdin
    sys.argv = ["bertctl", *map(str, args)]
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.argv, sys.stdin = saved
    return Result(code, out.getvalue(), err.getvalue())
