"""Where a command writes: checked before any work, locked while written, replaced whole.

Three rules keep the user's files safe, for every command that writes a folder:

- an output folder is never one of the command's inputs: it may not be one, hold one, or lie
  inside an input folder (replacing it would delete the input, or part of it);
- `--overwrite` replaces only a folder bertctl made: its marker file is there (a converted
  model's or a model store's `bertctl.json`, the shards' `manifest.json`, a run's `run.json`)
  and it holds nothing but the names bertctl writes there. Anything else is named, and refused;
- one process at a time writes an output: a lock file beside it makes a second process fail at
  once, naming the first (a silent wait looks like a hang; two writers means the last one wins).

Light core: no torch, no Rich.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bertctl.errors import BertctlError

try:  # POSIX; elsewhere outputs are written unlocked (see exclusive_lock)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class FolderKind:
    """What bertctl writes into one kind of output folder.

    Attributes:
        what: how a message names such a folder ("a converted model").
        marker: the file that says bertctl made the folder.
        names: a regular expression matching every top-level name bertctl writes there.
    """

    what: str
    marker: str
    names: str

    def holds(self, name: str) -> bool:
        return re.fullmatch(self.names, name) is not None


# The HF-format files `convert` writes; a model store folder adds Google's files in release/.
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "bertctl.json",
)
MODEL = FolderKind(
    "a model bertctl converted",
    "bertctl.json",
    "|".join(re.escape(name) for name in MODEL_FILES) + "|release",
)
SHARDS = FolderKind("pretraining shards", "manifest.json", r"manifest\.json|shard-\d{5}")
RUN = FolderKind(
    "a training run",
    "run.json",
    r"run\.json|config\.yaml|metrics\.json|train_log\.jsonl|eval_results\.txt|curves\.png"
    r"|vocab\.txt|tb|checkpoints|final|\.final\.partial|\.final\.old",
)


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it (both resolved, so links and `..` count)."""
    return path == folder or path.is_relative_to(folder)


def check_inputs(out: Path, inputs: Iterable[Path | None], flag: str = "--out") -> None:
    """Refuse an output location that is, holds or lies inside one of the command's inputs.

    Raises:
        BertctlError: naming the input and the flag to change.
    """
    where = out.resolve()
    for given in inputs:
        if given is None:
            continue
        path = Path(given).expanduser()
        if not path.exists():
            continue
        source = path.resolve()
        if _inside(source, where):
            held = "is" if source == where else "holds"
            raise BertctlError(
                f"{flag} {out} {held} the input {path}; bertctl never writes over its inputs",
                f"pass a new folder for {flag}",
            )
        if source.is_dir() and _inside(where, source):
            raise BertctlError(
                f"{flag} {out} lies inside the input folder {path}",
                f"pass a folder for {flag} outside {path}",
            )


def foreign_names(folder: Path, kind: FolderKind) -> list[str]:
    """The top-level names in `folder` that bertctl does not write into `kind` folders."""
    return sorted(entry.name for entry in folder.iterdir() if not kind.holds(entry.name))


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_replaceable(out: Path, kind: FolderKind, flag: str = "--out") -> None:
    """Refuse to replace `out` unless bertctl made it as a `kind` folder and nothing else is in it.

    Raises:
        BertctlError: the marker is missing, or other files are there (named).
    """
    if not (out / kind.marker).is_file():
        raise BertctlError(
            f"{flag} {out} was not made by bertctl (no {kind.marker}), so bertctl will not "
            "replace it",
            f"pass a new folder for {flag}, or empty {out} yourself",
        )
    others = foreign_names(out, kind)
    if others:
        raise BertctlError(
            f"{flag} {out} holds files bertctl did not write there ({_listing(others)}), so "
            "bertctl will not replace it",
            f"move them out of {out}, or pass a new folder for {flag}",
        )


def check_folder(
    out: Path,
    kind: FolderKind,
    *,
    overwrite: bool,
    inputs: Iterable[Path | None] = (),
    flag: str = "--out",
) -> None:
    """Everything about an output folder that can be checked before any work starts.

    An absent or empty folder is fine; a non-empty one needs `overwrite` and must be a `kind`
    folder bertctl made with nothing else in it; no input may be, or lie in, the folder.

    Raises:
        BertctlError: what is in the way, and what to pass instead.
    """
    check_inputs(out, inputs, flag)
    if out.exists() and not out.is_dir():
        raise BertctlError(f"{flag} {out} exists and is a file", f"pass a folder for {flag}")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise BertctlError(
            f"{flag} {out} exists and is not empty",
            f"pass --overwrite to replace it, or a new folder for {flag}",
        )
    check_replaceable(out, kind, flag)


# --------------------------------------------------------------------------------------------
# One writer at a time
# --------------------------------------------------------------------------------------------

# Locks this process holds, by lock file, with how many times each was taken: a library call
# inside a command that already locked its output (convert inside `bertctl convert`) passes.
_held: dict[Path, int] = {}


def lock_path(target: Path) -> Path:
    """The lock file of an output: beside it, so it exists before the output and outlives a
    rename into place."""
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def exclusive_lock(target: Path, busy: str) -> Iterator[None]:
    """Hold the lock of `target` while the body runs; fail at once if another process holds it.

    Failing beats waiting: a silent wait looks like a hang, and the first writer's result is
    usually what the second wanted. The lock file holds the owner's pid for the message. It is
    removed on release, while still locked; a process that opened the old file just before that
    notices it is gone and opens the new one (the inode check), so two processes never both
    believe they hold the lock.

    Args:
        target: the file or folder being written.
        busy: what the second process is told, e.g. "runs/mrpc is being written"; the owner
            and what to do are added.

    Raises:
        BertctlError: another process holds the lock, or the lock file cannot be made.
    """
    path = lock_path(target).absolute()
    if fcntl is None or path in _held:  # pragma: no cover - no flock on this platform
        _held[path] = _held.get(path, 0) + 1
        try:
            yield
        finally:
            _release_count(path)
        return
    fd = _acquire(path, busy)
    _held[path] = 1
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        del _held[path]
        path.unlink(missing_ok=True)
        os.close(fd)


def _release_count(path: Path) -> None:
    _held[path] -= 1
    if not _held[path]:
        del _held[path]


def _acquire(path: Path, busy: str) -> int:
    """Open and flock `path` (created if need be); the descriptor of the file now at `path`."""
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BertctlError(
                f"cannot create the lock file {path}: {exc.strerror}",
                "check that its folder exists and is writable, or write somewhere else",
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise BertctlError(
                    f"cannot lock {path}: {exc.strerror}", "check the folder's permissions"
                ) from exc
            who = f"process {owner}" if owner.isdigit() else "another process"
            raise BertctlError(
                f"{busy} by {who}",
                f"wait for it to finish, or stop it and run again (lock file {path})",
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def untouched(out: Path) -> str:
    """What a stopped command tells the user about an output it builds aside and renames."""
    return f"{out} was left as it was" if out.exists() else f"nothing was written to {out}"


@contextlib.contextmanager
def writing(out: Path, what: str = "written") -> Iterator[None]:
    """Lock the output folder `out` for the body: `{out} is being {what} by process N`."""
    with exclusive_lock(out, f"{out} is being {what}"):
        yield


# --------------------------------------------------------------------------------------------
# Replacing a folder whole
# --------------------------------------------------------------------------------------------


def replace_folder(new: Path, target: Path) -> None:
    """Put the finished folder `new` at `target`, replacing what was there.

    The old folder is moved aside first and removed only once the new one is in place, so a
    crash leaves either the old or the new folder at `target`, never a mix, and a failed rename
    puts the old one back. The renames are made durable before returning.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
        try:
            os.replace(new, target)
        except OSError:
            if not target.exists():
                os.replace(old, target)  # put the old folder back rather than leave none
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
    fsync_dir(target.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every platform opens a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
