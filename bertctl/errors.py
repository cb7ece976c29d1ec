"""Domain errors. Each carries a message that says what went wrong and what to do instead.

Library code raises these; only the CLI layer turns them into one red line and an exit code
(1 for a user error, 2 for a usage error). Set BERTCTL_DEBUG=1 to see the traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class BertctlError(Exception):
    """A problem the user can fix: bad input, a missing file, a mismatched flag."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def one_line(self) -> str:
        """The message and the fix on one line: every line break flattened (a file name can hold
        a carriage return or U+2028 as well as a newline)."""
        text = self.message if not self.hint else f"{self.message}; {self.hint}"
        return " ".join(text.splitlines())


class UsageError(BertctlError):
    """Flags that contradict each other or an argument of the wrong form (exit code 2)."""

    exit_code = 2


class VocabError(BertctlError):
    """A vocab.txt that cannot be used."""


class ConfigError(BertctlError):
    """A bert_config.json / config.json that cannot be read."""


class CheckpointError(BertctlError):
    """A TensorFlow checkpoint that cannot be read or fails its own checks."""


class CasingError(BertctlError):
    """Lowercasing that does not match the model the user named."""


class Interrupted(BertctlError):
    """Ctrl-C during a command: exit 130 (128 + SIGINT, as a shell reports it), saying what
    was kept and how to continue."""

    exit_code = 130


@contextlib.contextmanager
def on_interrupt(kept: str, again: str) -> Iterator[None]:
    """Turn Ctrl-C inside the body into `error: interrupted; KEPT; AGAIN`.

    Caught here, inside the command: left to Typer, it becomes a bare exit 130 that says
    nothing about what is on disk.
    """
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {kept}", again) from None
