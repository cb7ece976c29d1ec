"""Release zips: find the model folder, check every member's CRC-32, extract safely.

Google's zips come in two layouts (REFERENCE §1): the 2018/2019 releases put their files in one
folder named like the zip, the 2020 compact models put them at the zip root (and have no
``.meta``). ``2020_02_20/all_bert_models.zip`` is a zip of the 24 compact-model zips.

A zip is hostile input until checked. :func:`safe_extract` refuses the whole archive, before it
writes a single byte, when any member could escape the destination or is not a plain file
(absolute paths, drive letters, ``..``, backslashes, NUL bytes, symlinks, devices, duplicates,
encryption). It writes into a temporary folder beside the destination, checks every CRC, and only
then renames the folder into place, so the destination either holds a complete model or does not
exist.

Standard library only; every failure of :mod:`zipfile` or :mod:`zlib` becomes an
:class:`ArchiveError` or a failed :class:`MemberCheck` that names the zip and the member.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bertctl.errors import BertctlError
from bertctl.tokenization import MAX_VOCAB_BYTES

CHUNK = 1 << 20  # members are streamed in 1 MiB pieces
CONFIG_NAME = "bert_config.json"
# The most a small model file holds; the size a zip records is checked against these before a
# byte is decompressed, by `read_member` (inspect, plan) and by extraction (convert, download).
CONFIG_BYTES = 1 << 20  # Google's configs are about 300 bytes
INDEX_BYTES = 64 << 20  # a checkpoint index: about 9 kB for BERT-Base, 20 kB for BERT-Large

_REDOWNLOAD = "delete the zip and download it again"
_SUPPORTED_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
# What zipfile and the decompressors raise on damaged or truncated data. RuntimeError covers an
# encrypted member, NotImplementedError an unknown compression method, ValueError a closed file.
READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    zlib.error,
    OSError,
    RuntimeError,
    NotImplementedError,
    ValueError,
)
try:  # both decompressors are optional builds of CPython
    import lzma

    READ_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    pass

_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveError(BertctlError):
    """A zip that cannot be read, or that bertctl refuses to extract."""


@dataclass(frozen=True)
class MemberCheck:
    """The result of reading one zip member to its end.

    Attributes:
        name: the member's name in the zip.
        ok: True when it decompressed completely and its CRC-32 equals the zip's record.
        detail: one line: what was found and, on failure, what to do.
        size: the uncompressed size the zip records.
        read: how many bytes were read before the end or the error (``read == size`` and not
            ``ok`` means every byte came out but the CRC-32 is wrong).
    """

    name: str
    ok: bool
    detail: str
    size: int
    read: int = 0


# --------------------------------------------------------------------------------------------
# Opening and reading
# --------------------------------------------------------------------------------------------


def open_zip(path: str | Path, label: str | None = None) -> zipfile.ZipFile:
    """Open a zip for reading, turning every way that fails into an :class:`ArchiveError`.

    A download cut short loses the central directory at the end of the file, so a truncated zip
    fails here rather than half-way through a member.
    """
    label = label or str(path)
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ArchiveError(f"{label}: no such file", "pass the path of a release zip") from None
    except IsADirectoryError:
        raise ArchiveError(
            f"{label} is a folder, not a zip", "pass the .zip file, or verify the folder"
        ) from None
    except READ_ERRORS as exc:
        raise ArchiveError(
            f"{label}: not a readable zip ({_reason(exc)}); it is probably truncated or damaged",
            _REDOWNLOAD,
        ) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


def stream_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    label: str,
    sink: Callable[[bytes], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> MemberCheck:
    """Read one member to its end, compare its CRC-32 with the zip's, and report the result.

    Every decompressed chunk goes to ``sink`` (to hash it or to write it out) and its length to
    ``on_bytes`` (for progress). Never raises for damaged data: a decompression error, a
    truncated member or a wrong size or CRC comes back as a failed check.
    """
    if info.flag_bits & 0x1:
        return MemberCheck(
            info.filename,
            False,
            f"{label}: {info.filename} is encrypted; release zips are not, so {_REDOWNLOAD}",
            info.file_size,
        )
    crc = 0
    done = 0

    def failed(exc: BaseException) -> MemberCheck:
        return MemberCheck(
            info.filename,
            False,
            f"{label}: {info.filename} cannot be read past byte {done:,} ({_reason(exc)}); "
            f"{_REDOWNLOAD}",
            info.file_size,
            done,
        )

    try:
        member = zf.open(info)
    except READ_ERRORS as exc:
        return failed(exc)
    with member:
        # zipfile raises on a CRC mismatch while returning the member's last bytes, which would
        # hide them from `sink` (the tensor checks need every byte). The CRC is computed here
        # instead; if a future Python renames this attribute, zipfile's own check stays on and
        # a mismatch still ends as a failed check.
        if getattr(member, "_expected_crc", None) is not None:
            member._expected_crc = None  # type: ignore[attr-defined]
        while True:
            try:
                chunk = member.read(CHUNK)
            except READ_ERRORS as exc:
                return failed(exc)
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            done += len(chunk)
            # Errors of the sink (a full disk, say) are the caller's, not the zip's: not caught.
            if sink is not None:
                sink(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    if done != info.file_size:
        return MemberCheck(
            info.filename,
            False,
            f"{label}: {info.filename} holds {done:,} bytes, the zip records {info.file_size:,}; "
            f"{_REDOWNLOAD}",
            info.file_size,
            done,
        )
    if crc != info.CRC:
        return MemberCheck(
            info.filename,
            False,
            f"{label}: {info.filename} has CRC-32 {crc:08x}, the zip records {info.CRC:08x}; "
            f"the member is corrupt, {_REDOWNLOAD}",
            info.file_size,
            done,
        )
    return MemberCheck(
        info.filename, True, f"CRC-32 {crc:08x} matches ({done:,} bytes)", info.file_size, done
    )


def read_member(zf: zipfile.ZipFile, name: str, label: str, limit: int = INDEX_BYTES) -> bytes:
    """The bytes of a small member (a config, a vocab, a checkpoint index), checked.

    The size the zip records is checked against ``limit`` before anything is decompressed, so a
    member that claims gigabytes is refused instead of filling memory; damaged data or a wrong
    CRC-32 is an :class:`ArchiveError` naming the zip and the member.

    Raises:
        KeyError: the zip has no member ``name``.
        ArchiveError: the member is too large or cannot be read intact.
    """
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise ArchiveError(
            f"{label}: {name} claims {info.file_size:,} bytes, far more than such a file holds",
            "this is not an intact release zip; " + _REDOWNLOAD,
        )
    parts: list[bytes] = []
    check = stream_member(zf, info, label, sink=parts.append)
    if not check.ok:
        raise ArchiveError(check.detail)
    return b"".join(parts)


def file_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Every member that is not a folder entry, in the order they lie in the file."""
    return sorted((i for i in zf.infolist() if not i.is_dir()), key=lambda i: i.header_offset)


def check_members(
    path: str | Path, on_progress: Callable[[int, int], None] | None = None
) -> list[MemberCheck]:
    """Read every member of a zip fully and compare its CRC-32 with the zip's record.

    Args:
        path: the zip.
        on_progress: called as ``(bytes_done, bytes_total)`` over the uncompressed sizes.

    Returns:
        One :class:`MemberCheck` per file member, in file order.

    Raises:
        ArchiveError: the file is missing or not a readable zip (e.g. truncated).
    """
    label = str(path)
    with open_zip(path) as zf:
        members = file_members(zf)
        advance = byte_counter(sum(i.file_size for i in members), on_progress)
        return [stream_member(zf, info, label, on_bytes=advance) for info in members]


def byte_counter(
    total: int, on_progress: Callable[[int, int], None] | None
) -> Callable[[int], None]:
    """An `on_bytes` callback that keeps the running count of bytes read and reports it as
    ``on_progress(bytes_done, total)`` (nothing without `on_progress`)."""
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(done, total)

    return advance


# --------------------------------------------------------------------------------------------
# The model folder
# --------------------------------------------------------------------------------------------


def find_model_folder(zf: zipfile.ZipFile, label: str | None = None) -> str:
    """The member folder that holds ``bert_config.json`` ("" when it lies at the zip root).

    Both of Google's layouts are found by the config alone; ``.meta`` is never required. macOS
    ``__MACOSX/`` shadows are ignored. When several folders hold a config the shallowest wins;
    two at the same depth are ambiguous.

    Raises:
        ArchiveError: no member is a ``bert_config.json``, or the choice is ambiguous.
    """
    label = label or str(zf.filename or "zip")
    folders = sorted(
        {
            name.rpartition("/")[0]
            for name in zf.namelist()
            if name.rpartition("/")[2] == CONFIG_NAME and not name.startswith("__MACOSX/")
        },
        key=lambda f: (f.count("/") + bool(f), f),
    )
    if not folders:
        nested = [n for n in zf.namelist() if n.lower().endswith(".zip")]
        hint = (
            f"it is a zip of {len(nested)} zips: name one of them"
            if nested
            else "pass a BERT release zip (bert_config.json, vocab.txt and bert_model.ckpt.*)"
        )
        raise ArchiveError(f"{label}: no {CONFIG_NAME} in the zip", hint)
    depth = folders[0].count("/") + bool(folders[0])
    tied = [f for f in folders if f.count("/") + bool(f) == depth]
    if len(tied) > 1:
        shown = ", ".join(repr(f or ".") for f in tied[:3])
        raise ArchiveError(
            f"{label}: {len(tied)} folders hold a {CONFIG_NAME} ({shown})",
            "extract the zip yourself and pass the model folder you want",
        )
    return folders[0]


def folder_members(zf: zipfile.ZipFile, folder: str) -> dict[str, zipfile.ZipInfo]:
    """The files directly inside member folder ``folder`` ("" for the root), by base name."""
    prefix = f"{folder}/" if folder else ""
    out: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        name = info.filename
        if info.is_dir() or not name.startswith(prefix) or "/" in name[len(prefix) :]:
            continue
        out[name[len(prefix) :]] = info
    return out


# --------------------------------------------------------------------------------------------
# Safety checks
# --------------------------------------------------------------------------------------------


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why extracting this member could be unsafe, or None when it is a plain, well-named entry."""
    raw = info.orig_filename
    name = info.filename
    if "\x00" in raw:
        return "its name holds a NUL byte (a trick to hide the real name)"
    if "\\" in raw:
        return "its name holds a backslash, a folder separator on Windows"
    if any(ord(c) < 0x20 or c == "\x7f" for c in raw):
        return "its name holds control characters"
    if not name:
        return "it has an empty name"
    if name.startswith("/"):
        return "it has an absolute path"
    if _DRIVE.match(name) or ":" in name:
        return "its name holds a drive letter or a colon"
    parts = name.rstrip("/").split("/") if info.is_dir() else name.split("/")
    if ".." in parts:
        return "its path climbs out of the destination with '..'"
    if any(p in ("", ".") for p in parts):
        return "its path has an empty or '.' component"
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return "it is a symbolic link"
    if kind == stat.S_IFDIR and not info.is_dir():
        return "it claims to be a folder but its name does not end in '/'"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return f"it is a special file (mode {mode:o}), not a regular file"
    if info.flag_bits & 0x1:
        return "it is encrypted"
    if info.compress_type not in _SUPPORTED_METHODS:
        return f"it uses compression method {info.compress_type}, which Python cannot read"
    return None


def audit(zf: zipfile.ZipFile, label: str) -> None:
    """Refuse the whole zip if any member is unsafe or two members share a name.

    Raises:
        ArchiveError: naming the zip and the first offending member.
    """
    seen: dict[str, str] = {}
    for info in zf.infolist():
        why = member_problem(info)
        if why:
            raise ArchiveError(
                f"{label}: refusing member {info.orig_filename!r}: {why}",
                "this is not an intact Google release zip; nothing was extracted",
            )
        key = info.filename.rstrip("/").casefold()
        if key in seen:
            raise ArchiveError(
                f"{label}: refusing member {info.filename!r}: the zip holds it twice"
                + (f" (also as {seen[key]!r})" if seen[key] != info.filename else ""),
                "this is not an intact Google release zip; nothing was extracted",
            )
        seen[key] = info.filename


def member_limit(base: str) -> int | None:
    """The most bytes a model file named `base` may hold (None: no bound of its own, as for
    the checkpoint data, which free disk space bounds)."""
    if base == CONFIG_NAME:
        return CONFIG_BYTES
    if base == "vocab.txt":
        return MAX_VOCAB_BYTES
    if base.endswith(".index"):
        return INDEX_BYTES
    return None


def check_sizes(members: dict[str, zipfile.ZipInfo], label: str) -> None:
    """Refuse, before anything is written, a model file whose recorded size is past its bound
    (zipfile never decompresses a member past that size, so the record is the bound)."""
    for base, info in members.items():
        limit = member_limit(base)
        if limit is not None and info.file_size > limit:
            raise ArchiveError(
                f"{label}: refusing member {info.filename!r}: it holds {info.file_size:,} bytes, "
                f"more than the {limit:,} a {base} may hold",
                "this is not an intact Google release zip; nothing was extracted",
            )


def _check_room(members: list[zipfile.ZipInfo], dest: Path, label: str) -> None:
    """Refuse an extraction whose files cannot fit on the disk under `dest`, before writing."""
    need = sum(info.file_size for info in members)
    existing = dest
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if need > free:
        # `dest` is often a temporary folder beside the output: the message names the zip only.
        raise ArchiveError(
            f"cannot extract {label}: its files take {need:,} bytes, and the disk they would go "
            f"to has {free:,} free",
            "free some space or choose a destination on a larger disk; nothing was extracted",
        )


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def list_nested(path: str | Path) -> list[str]:
    """The names of the zips inside a zip of zips (``all_bert_models.zip``), sorted.

    Raises:
        ArchiveError: the file is not a readable zip or holds no zip.
    """
    with open_zip(path) as zf:
        names = sorted(
            i.filename for i in zf.infolist() if not i.is_dir() and i.filename.endswith(".zip")
        )
    if not names:
        raise ArchiveError(f"{path}: holds no inner zips", "pass a zip of zips (all_bert_models)")
    return names


def _pick_inner(zf: zipfile.ZipFile, inner: str, label: str) -> zipfile.ZipInfo:
    """The inner-zip member named exactly ``inner``, or the one whose base name (with or without
    ``.zip``) is ``inner``."""
    zips = [i for i in zf.infolist() if not i.is_dir() and i.filename.endswith(".zip")]
    want = inner if inner.endswith(".zip") else f"{inner}.zip"
    exact = [i for i in zips if i.filename == inner]
    if exact:
        return exact[0]
    by_base = [i for i in zips if i.filename.rpartition("/")[2] == want]
    if len(by_base) == 1:
        return by_base[0]
    names = ", ".join(i.filename for i in zips[:4]) or "none"
    raise ArchiveError(
        f"{label}: no inner zip named {inner!r}" + (" (several match)" if by_base else ""),
        f"name one of: {names}{' …' if len(zips) > 4 else ''}",
    )


def _prepare_dest(dest: Path, label: str) -> list[Path]:
    """Refuse a destination that already holds something; make its parent folders.

    Returns the folders it created, deepest first, so a failure can remove them again.
    """
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise ArchiveError(
            f"cannot extract {label} to {dest}: it exists and is not a folder",
            "choose another destination",
        )
    if dest.is_dir() and any(dest.iterdir()):
        raise ArchiveError(
            f"cannot extract {label} to {dest}: the folder is not empty",
            "remove it or choose another destination",
        )
    created = []
    parent = dest.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    dest.parent.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this module created, deepest first, where they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def safe_extract(zip_path: str | Path, dest: str | Path, inner: str | None = None) -> Path:
    """Extract the model folder of a release zip into ``dest``, flattened, all or nothing.

    ``dest`` receives ``bert_config.json``, ``vocab.txt`` and ``bert_model.ckpt.*`` directly,
    whatever the zip's layout; subfolders of the model folder are not extracted. ``dest`` must
    not exist or be an empty folder.

    Args:
        zip_path: a release zip, or a zip of zips when ``inner`` is given.
        dest: the folder to create.
        inner: for ``all_bert_models.zip``, which inner zip to extract (its member name, or its
            base name with or without ``.zip``); it is copied to a temporary file beside
            ``dest`` first and gets the same checks.

    Returns:
        ``dest``.

    Raises:
        ArchiveError: the zip is unreadable, holds an unsafe or duplicate member (refused before
            anything is written), has no model folder, or a member fails its CRC; ``dest`` is then
            left as it was.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    if inner is None:
        return _extract(zip_path, dest, str(zip_path))
    label = str(zip_path)
    with open_zip(zip_path) as zf:
        audit(zf, label)
        info = _pick_inner(zf, inner, label)
        inner_label = f"{label}:{info.filename}"
        _check_room([info], dest, inner_label)
        created = _prepare_dest(dest, inner_label)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".zip", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            try:
                with os.fdopen(fd, "wb") as out:
                    check = stream_member(zf, info, label, sink=out.write)
            except OSError as exc:
                raise _write_failed(tmp, inner_label, exc) from None
            _check_streamed(check)
            return _extract(tmp, dest, inner_label)
        except BaseException:
            tmp.unlink(missing_ok=True)
            _remove_empty(created)
            raise
        finally:
            tmp.unlink(missing_ok=True)


def _extract(zip_path: Path, dest: Path, label: str) -> Path:
    """Audit, then write the model folder's files to a temp folder and rename it to ``dest``."""
    with open_zip(zip_path, label) as zf:
        audit(zf, label)
        folder = find_model_folder(zf, label)
        members = folder_members(zf, folder)
        check_sizes(members, label)
        _check_room(list(members.values()), dest, label)
        created = _prepare_dest(dest, label)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
        try:
            for base, info in sorted(members.items(), key=lambda kv: kv[1].header_offset):
                _write_member(zf, info, tmp / base, label)
            tmp.chmod(0o755)
            emptied = dest.is_dir()
            if emptied:
                dest.rmdir()  # empty, checked above; renaming onto a folder fails on Windows
            try:
                tmp.rename(dest)
            except OSError as exc:
                if emptied:
                    dest.mkdir(exist_ok=True)
                raise ArchiveError(
                    f"cannot move the extracted files to {dest}: {exc.strerror or exc}",
                    "choose another destination",
                ) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            _remove_empty(created)
            raise
    return dest


def _write_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, label: str) -> None:
    """Stream one member to a new file (never following or replacing anything), synced to disk."""
    try:
        with target.open("xb") as out:
            check = stream_member(zf, info, label, sink=out.write)
            if check.ok:
                out.flush()
                os.fsync(out.fileno())
    except OSError as exc:
        raise _write_failed(target, label, exc) from None
    _check_streamed(check)


def _write_failed(target: Path, label: str, exc: OSError) -> ArchiveError:
    return ArchiveError(
        f"cannot write {target} while extracting {label}: {exc.strerror or exc}",
        "free some disk space or choose another destination",
    )


def _check_streamed(check: MemberCheck) -> None:
    """Refuse a member whose bytes failed their CRC (what was written is then removed)."""
    if not check.ok:
        raise ArchiveError(check.detail, "nothing was extracted")
