"""Where a command writes: checked before any work, locked while written, replaced whole.

Three rules keep the user's files safe, for every command that writes a folder:

- an output folder is never one of the command's inputs: it may not be one, hold one, or lie
  inside an input folder (replacing it would delete the input, or part of it);
- `--overwrite` replaces only a folder bertctl made: its marker file is there (a converted
  model's or a model store's `bertctl.json`, the shards' `manifest.json`, a run's `run.json`)
  and it holds nothing but the names bertctl writes there. Anything else is named, and refused;
- one process at a time writes an output: a lock file beside it makes a second process fail at
  once, naming the first (a silent wait looks like a hang; two writers means the last one wins).

And one rule for every file and folder bertctl publishes: it is built aside and renamed into
place complete (`write_atomic`, `write_json_atomic`, `building`), so a crash, a full disk or
Ctrl-C leaves what was there before, never half of the new one.

Light core: no torch, no Rich.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
import threading
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
    check_name_lengths(out, flag)
    where = out.resolve()
    for given in inputs:
        if given is None:
            continue
        path = Path(given).expanduser()
        check_name_lengths(path)  # the system refuses it; exists() would raise ENAMETOOLONG
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
    check_writable(out, flag)
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
# A location that can be written at all
# --------------------------------------------------------------------------------------------

# Filesystems the kernel makes up: their names are views of the kernel, never the user's data,
# and writing there fails in ways that say nothing about the cause (ENOENT for a new name in
# /proc, EACCES in /sys even for root).
PSEUDO_FILESYSTEMS = frozenset(
    {
        "proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "configfs",
        "bpf", "pstore", "efivarfs", "devpts", "fusectl", "binfmt_misc", "mqueue", "nsfs",
        "rpc_pipefs",
    }
)  # fmt: skip

# Beside an output bertctl makes `.NAME.partial-PID` (and `.NAME.old-PID`, `.NAME.lock`,
# `.NAME.XXXXXXXX.tmp`): the longest is NAME plus this many bytes (a Linux pid has at most
# 7 digits). A name that fits but leaves no room for it would fail after the work.
ASIDE_BYTES = len("..partial-") + 7
# Inside an output folder, room for the longest path bertctl writes there (a checkpoint's
# `checkpoints/.step-0000001.partial/optimizer.safetensors`, a release member).
INSIDE_BYTES = 128


def shown_path(path: Path | str) -> str:
    """A path short enough for one error line: a path too long for the system is thousands of
    bytes, and the line must still be read."""
    text = str(path)
    return text if len(text) <= 160 else f"{text[:80]}…{text[-60:]}"


def _limit(folder: str, name: str, default: int) -> int:
    """os.pathconf of the nearest existing folder (the filesystem the output lands on)."""
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError):
        return default


def _existing_ancestor(path: str) -> str:
    """The nearest folder above `path` that exists (`/` at worst), without following `..`."""
    parent = os.path.dirname(path)
    while parent != os.path.dirname(parent) and not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    return parent


def check_name_lengths(path: Path, flag: str | None = None, *, aside: int = 0) -> None:
    """Refuse a path with a name longer than its filesystem's NAME_MAX, or longer in all than
    PATH_MAX: the system would refuse it (ENAMETOOLONG) at the first write, after the work.

    Args:
        aside: bytes the last name grows by where bertctl builds the output beside it.

    Raises:
        BertctlError: naming the name or the path that is too long, and its limit.
    """
    full = os.path.abspath(os.fspath(path))
    folder = _existing_ancestor(full)
    name_max = _limit(folder, "PC_NAME_MAX", 255)
    parts = [part for part in full.split(os.sep) if part]
    for index, part in enumerate(parts):
        size = len(os.fsencode(part))
        grows = aside if index == len(parts) - 1 else 0
        if size + grows <= name_max:
            continue
        why = f"longer than the {name_max} this filesystem allows"
        if size <= name_max:  # it fits, but the copy built beside it would not
            why = f"and the copy bertctl builds beside it adds {grows}: {why}"
        raise BertctlError(
            f"{_label(path, flag)}: the name {shown_path(part[:40] + '…')} is {size} bytes, {why}",
            f"pass a shorter name{_for(flag)}",
        )
    path_max = _limit(folder, "PC_PATH_MAX", 4096) - 1  # PATH_MAX counts the final NUL
    room = path_max - (INSIDE_BYTES + aside if aside else 0)
    size = len(os.fsencode(full))
    if size > room:
        why = " with room for the files bertctl writes inside" if aside else ""
        raise BertctlError(
            f"{_label(path, flag)}: the path is {size:,} bytes long; this system takes paths "
            f"of at most {room:,} bytes{why} (PATH_MAX {path_max + 1:,})",
            f"pass a shorter path{_for(flag)}",
        )


def _label(path: Path, flag: str | None) -> str:
    return f"{flag} {shown_path(path)}" if flag else shown_path(path)


def _for(flag: str | None) -> str:
    return f" for {flag}" if flag else ""


def check_writable(path: Path, flag: str | None = None, *, folder: bool = True) -> None:
    """Refuse an output location the system would refuse, before any work starts.

    `path` (a folder, or a file when not `folder`) may be absent: then its nearest existing
    parent must be a folder it can be created in. Checked: name lengths against the
    filesystem's limits, a file where a folder must be, a filesystem the kernel makes up
    (/proc, /sys), a read-only filesystem, a folder without write permission. An output under
    the home folder that fails at or above that folder blames BERTCTL_HOME.

    Args:
        flag: the option that named `path` ("--out"), for the message; None: bertctl chose it.

    Raises:
        BertctlError: which path, what is wrong with it, and what to do.
    """
    path = Path(path)
    check_name_lengths(path, flag, aside=ASIDE_BYTES)
    problem = _problem(os.path.abspath(os.fspath(path)), folder)
    if problem is None:
        return
    blocker, what, fix = problem
    home = _home_blamed(path, blocker, flag)
    if home is not None:
        raise BertctlError(
            f"{home}: cannot write {shown_path(path)}{what}",
            "point BERTCTL_HOME at a folder you can write to",
        )
    label = (
        _label(path, flag)
        if flag or not what.startswith(":")
        else f"cannot write {shown_path(path)}"
    )
    raise BertctlError(f"{label}{what}", f"{fix}{_for(flag)}")


def _problem(full: str, folder: bool) -> tuple[str, str, str] | None:
    """What stops `full` being written: (the path at fault, what is wrong as a clause that
    follows the path, what to pass instead)."""
    try:
        st = os.stat(full)
    except (FileNotFoundError, NotADirectoryError):
        return _parent_problem(full)
    except OSError as exc:
        return full, f": it cannot be looked up ({exc.strerror})", "pass another location"
    if folder and not stat.S_ISDIR(st.st_mode):
        kind = "a file" if stat.S_ISREG(st.st_mode) else "not a folder"
        return full, f" exists and is {kind}", "pass a folder"
    return _folder_problem(full if stat.S_ISDIR(st.st_mode) else os.path.dirname(full))


def _parent_problem(full: str) -> tuple[str, str, str] | None:
    """The nearest existing path above an absent `full`: a folder to create it in, or a file in
    the way of the folders to create."""
    parent = os.path.dirname(full)
    while parent != os.path.dirname(parent):
        try:
            st = os.stat(parent)
        except (FileNotFoundError, NotADirectoryError):
            parent = os.path.dirname(parent)
            continue
        except OSError as exc:
            why = f": {shown_path(parent)} cannot be looked into ({exc.strerror})"
            return parent, why, "pass another location"
        if not stat.S_ISDIR(st.st_mode):
            return (
                parent,
                f": {shown_path(parent)} is a file, not a folder (ENOTDIR)",
                f"move {shown_path(parent)} out of the way, or pass another location",
            )
        break
    return _folder_problem(parent)


def _folder_problem(folder: str) -> tuple[str, str, str] | None:
    """Whether new names can be made in the existing `folder`."""
    fstype, mount = filesystem_of(folder)
    if fstype in PSEUDO_FILESYSTEMS:
        return (
            mount,
            f": it lies in {mount}, a {fstype} filesystem the kernel makes up, where nothing "
            "can be stored",
            "pass a folder on a disk",
        )
    read_only = False
    with contextlib.suppress(OSError):
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    if read_only:
        why = f": {shown_path(folder)} is on a read-only filesystem (EROFS)"
        return folder, why, "pass a folder on a writable disk"
    # access() answers for this user (root passes mode bits; a read-only mount fails above).
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            folder,
            f": {shown_path(folder)} is not writable by this user (EACCES)",
            f"change the permissions of {shown_path(folder)}, or pass a folder you can write to",
        )
    return None


def filesystem_of(folder: str) -> tuple[str | None, str]:
    """(type, mount point) of the filesystem holding the existing `folder`, from
    /proc/self/mountinfo; (None, "") where that cannot be read (not Linux)."""
    real = os.path.realpath(folder)
    best: tuple[str | None, str] = (None, "")
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
    except OSError:
        return best
    for line in lines:
        fields = line.split()
        if "-" not in fields:
            continue
        mount = _unescape(fields[4])
        fstype = fields[fields.index("-") + 1]
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[1]):
            best = (fstype, mount)
    return best


def _unescape(field: str) -> str:
    """mountinfo writes a space, tab, newline and backslash in a mount point as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _home_blamed(path: Path, blocker: str, flag: str | None) -> str | None:
    """`BERTCTL_HOME=…` when the output lies under the home folder and what is wrong lies at
    or above it (the home itself is unusable, not the output's name); else None."""
    from bertctl import paths

    if flag is not None and flag.startswith("-"):  # the user named the path with an option
        return None
    home = os.path.abspath(paths.home())
    full = os.path.abspath(os.fspath(path))
    under = full == home or full.startswith(home.rstrip("/") + "/")
    if not under or not (home == blocker or home.startswith(blocker.rstrip("/") + "/")):
        return None
    return paths.home_setting()


# --------------------------------------------------------------------------------------------
# One writer at a time
# --------------------------------------------------------------------------------------------

# Locks this process holds, by (lock file, thread), with how many times each was taken: a
# library call inside a command that already locked its output (convert inside `bertctl
# convert`) passes. Another thread is another writer: it takes the lock like another process.
_held: dict[tuple[Path, int], int] = {}


def lock_path(target: Path) -> Path:
    """The lock file of an output: beside it, so it exists before the output and outlives a
    rename into place."""
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def exclusive_lock(
    target: Path,
    busy: str,
    *,
    lock: Path | None = None,
    error: type[BertctlError] = BertctlError,
    unwritable_hint: str = "check that its folder exists and is writable, or write somewhere else",
) -> Iterator[None]:
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
        lock: the lock file, when not `lock_path(target)` (a download's is `NAME.lock`).
        error: the error raised (a download raises its DownloadError).
        unwritable_hint: what to do when the lock file cannot be made.

    Raises:
        BertctlError: another process holds the lock, or the lock file cannot be made.
    """
    path = (lock or lock_path(target)).absolute()
    key = (path, threading.get_ident())
    if fcntl is None or key in _held:  # pragma: no cover - no flock on this platform
        _held[key] = _held.get(key, 0) + 1
        try:
            yield
        finally:
            _release_count(key)
        return
    try:
        fd = _acquire(path, busy, error, unwritable_hint)
    except _Unwritable as exc:
        raise _lock_failure(target, path, exc.__cause__, error, unwritable_hint) from None
    _held[key] = 1
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        del _held[key]
        path.unlink(missing_ok=True)
        os.close(fd)


def _release_count(key: tuple[Path, int]) -> None:
    _held[key] -= 1
    if not _held[key]:
        del _held[key]


def _acquire(path: Path, busy: str, error: type[BertctlError], unwritable_hint: str) -> int:
    """Open and flock `path` (created if need be); the descriptor of the file now at `path`."""
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _Unwritable() from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise error(
                    f"cannot lock {path}: {exc.strerror}", "check the folder's permissions"
                ) from exc
            who = f"process {owner}" if owner.isdigit() else "another process"
            raise error(
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


class _Unwritable(Exception):
    """The lock file could not be made; its OSError is the cause."""


def _lock_failure(
    target: Path, lock: Path, exc: OSError, error: type[BertctlError], hint: str
) -> BertctlError:
    """Why the lock file beside `target` cannot be made. It is made before anything else, so it
    is often the first thing a bad location hits: the error says what is wrong with the
    location (check_writable), else the system's reason for the lock file."""
    try:
        check_writable(target, folder=False)
    except BertctlError as found:
        return error(found.message, found.hint)
    reason = errno.errorcode.get(exc.errno or 0, "")
    return error(
        f"cannot write {shown_path(target)}: its lock file {shown_path(lock)} cannot be created "
        f"({exc.strerror or exc}{', ' + reason if reason else ''})",
        hint,
    )


def untouched(out: Path) -> str:
    """What a stopped command tells the user about an output it builds aside and renames."""
    return f"{out} was left as it was" if out.exists() else f"nothing was written to {out}"


@contextlib.contextmanager
def writing(out: Path, what: str = "written") -> Iterator[None]:
    """Lock the output folder `out` for the body: `{out} is being {what} by process N`."""
    with exclusive_lock(out, f"{out} is being {what}"):
        yield


# --------------------------------------------------------------------------------------------
# Writing a file whole
# --------------------------------------------------------------------------------------------


def write_atomic(
    path: Path, data: bytes | str | Iterable[str], *, temp: Path | None = None
) -> Path:
    """Write `data` to `path` so that readers see the old file or the new one, never half of one.

    The bytes go to a temp file beside `path` (the same filesystem, so the rename is atomic),
    are fsynced, and `os.replace` puts the file in place; the rename is then made durable. Any
    failure removes the temp file and leaves `path` as it was. Text is UTF-8 with "\n" line
    ends; an iterable of str pieces is written as it comes, never held whole. The file gets the
    umask's permissions, as `open` gives (mkstemp's would make it private).

    Args:
        path: the file to write (its folder is made if need be).
        data: bytes, a str, or str pieces.
        temp: a fixed temp file, for a writer that holds a lock: a kill mid-write then leaves a
            file the next write replaces, not one more stray temp file (a download's sidecar).
            By default a fresh, randomly named hidden file.

    Returns:
        `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temp(path) if temp is None else (_open_fixed(temp), temp)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                for piece in [data] if isinstance(data, str) else data:
                    handle.write(piece.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_json_atomic(
    path: Path, data: object, *, sort_keys: bool = False, temp: Path | None = None
) -> Path:
    """`data` as JSON (indented by 2, non-ASCII kept, a final newline), by `write_atomic`."""
    text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n"
    return write_atomic(path, text, temp=temp)


def _open_temp(path: Path) -> tuple[int, Path]:
    """A new hidden file beside `path`, opened for writing (never an existing one)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _open_fixed(temp: Path) -> int:
    return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)


# --------------------------------------------------------------------------------------------
# Replacing a folder whole
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def building(target: Path) -> Iterator[Path]:
    """A fresh folder beside `target` to build it in; put in place whole when the body ends.

    On a normal exit `replace_folder` swaps the folder in; on any exception (a full disk,
    Ctrl-C) it is removed and `target` is as it was. Call it with the output locked: the name,
    `.NAME.partial-PID`, is this process's own, and a leftover of a killed run is cleared.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
