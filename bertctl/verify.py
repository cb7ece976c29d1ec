"""Verify a release zip or model folder; the results are values, never printed here.

Checks, each a :class:`Check` in a :class:`VerifyReport`:

* ``zip``, ``zip safety``, ``zip crc`` (zips only): the zip opens; no member is unsafe to extract;
  every member decompresses to its end with the CRC-32 the zip records.
* ``files``: bert_config.json, vocab.txt, the checkpoint's ``.index`` and every ``.data-*`` shard
  are present (``.meta`` is never required).
* ``sha256``: each file against the hash published for the release (REFERENCE §1), skipped with
  the reason where none is published.
* ``config``: bert_config.json is valid and, for a known release, describes its architecture.
* ``vocab size``: vocab.txt's line count equals the config's (and the release's) vocab_size.
* ``casing``: the vocab is cased exactly when the release is.
* ``shapes``: the checkpoint's model tensors have the shapes the config implies.
* ``tensor crc32c``: every tensor's bytes against the masked CRC32C its index entry records;
  one failed check per damaged tensor, naming it.

Every file is read once: a single streaming pass (1 MiB chunks) feeds the SHA-256, the zip
CRC-32 and the per-tensor CRC32Cs together, so a 440 MB data file, in a folder or inside a zip,
is never read twice or extracted to disk. Only the small ``.index`` of a zip goes to a temporary
folder, so that :class:`~bertctl.tfcheckpoint.Checkpoint` can parse it.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bertctl import archive, catalog, paths
from bertctl.bertconfig import (
    BertConfig,
    LoadedConfig,
    compare_shapes,
    expected_tensor_shapes,
    load_config,
    parse_config_bytes,
)
from bertctl.catalog import Release
from bertctl.errors import BertctlError
from bertctl.tfcheckpoint import Checkpoint, TensorEntry, masked_crc
from bertctl.tokenization import Vocab, parse_vocab

Progress = Callable[[int, int], None]

CHUNK = 1 << 20
CONFIG = "bert_config.json"
VOCAB = "vocab.txt"
# Small members of a zip are read into memory; anything beyond this is not a real one.
_SMALL_LIMIT = 64 << 20
_REDOWNLOAD = "re-download the release"


@dataclass(frozen=True)
class Check:
    """One verification step.

    Attributes:
        name: the kind of check: "zip", "zip safety", "zip crc", "files", "sha256", "config",
            "vocab size", "casing", "shapes" or "tensor crc32c".
        target: the exact file, zip member or tensor checked.
        ok: True passed, False failed, None skipped (``detail`` says why).
        detail: one line: what was found and, on failure, what to do.
    """

    name: str
    target: str
    ok: bool | None
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    """Every check run on one zip or folder.

    Attributes:
        target: the zip or folder verified.
        checks: in the order they were run.
        release: the catalogue name of the release compared against, if any.
    """

    target: str
    checks: tuple[Check, ...]
    release: str | None = None

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not count as failures)."""
        return not any(c.ok is False for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.ok is False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "release": self.release,
            "ok": self.ok,
            "checks": [asdict(c) for c in self.checks],
        }


# --------------------------------------------------------------------------------------------
# Tensor CRC32Cs from one sequential pass over a data file
# --------------------------------------------------------------------------------------------


@dataclass
class _Span:
    entry: TensorEntry
    crc: int = 0


class TensorStream:
    """Masked CRC32C of every tensor of one data shard, from the shard's bytes fed in order.

    Tensors lie in the data file by offset, so sorting the entries by offset lets one pass hash
    each span as the bytes go by: no seeking, so it works on a zip member stream as well as on a
    file. Overlapping spans (only a crafted index has them) are handled too.

    >>> stream = TensorStream(ckpt.entries.values())  # doctest: +SKIP
    >>> for chunk in chunks: stream.feed(chunk)       # doctest: +SKIP
    >>> stream.finish()                               # doctest: +SKIP
    """

    def __init__(self, entries: Iterable[TensorEntry]) -> None:
        self._pending = sorted(entries, key=lambda e: (e.offset, e.size, e.name))
        self._next = 0
        self._active: list[_Span] = []
        self.position = 0
        #: (entry, masked CRC32C of its bytes), in the order each finished.
        self.done: list[tuple[TensorEntry, int]] = []

    def feed(self, chunk: bytes) -> None:
        import google_crc32c

        start, end = self.position, self.position + len(chunk)
        while self._next < len(self._pending) and self._pending[self._next].offset < end:
            self._active.append(_Span(self._pending[self._next]))
            self._next += 1
        still: list[_Span] = []
        for span in self._active:
            lo = max(span.entry.offset, start)
            hi = min(span.entry.offset + span.entry.size, end)
            if hi > lo:
                span.crc = google_crc32c.extend(span.crc, chunk[lo - start : hi - start])
            if span.entry.offset + span.entry.size <= end:
                self.done.append((span.entry, masked_crc(span.crc)))
            else:
                still.append(span)
        self._active = still
        self.position = end

    def finish(self) -> list[TensorEntry]:
        """Close the stream: finish empty tensors at its end; return those it did not reach."""
        left = [s.entry for s in self._active] + self._pending[self._next :]
        self._active, self._next = [], len(self._pending)
        unfinished = []
        for entry in left:
            if entry.size == 0 and entry.offset <= self.position:
                self.done.append((entry, masked_crc(0)))
            else:
                unfinished.append(entry)
        return unfinished


# --------------------------------------------------------------------------------------------
# What a verification gathers, whatever the container
# --------------------------------------------------------------------------------------------


@dataclass
class _Facts:
    """Everything read from a folder or zip, before it is judged."""

    target: str
    release: Release | None
    inferred: bool
    where: Callable[[str], str]  # base name -> how to name that file in messages
    folder_label: str
    names: set[str] = field(default_factory=set)
    checks: list[Check] = field(default_factory=list)
    config: LoadedConfig | None = None
    config_error: str | None = None
    vocab: Vocab | None = None
    vocab_error: str | None = None
    vocab_sha: str | None = None
    ckpt: Checkpoint | None = None
    ckpt_error: str | None = None
    index_name: str | None = None
    digests: dict[str, str] = field(default_factory=dict)
    unread: dict[str, str] = field(default_factory=dict)  # base name -> why not read fully
    streams: dict[str, TensorStream] = field(default_factory=dict)  # data file -> its tensors

    def data_names(self) -> list[str]:
        if self.ckpt is None or self.index_name is None:
            return []
        prefix = self.index_name[: -len(".index")]
        n = self.ckpt.num_shards
        return [f"{prefix}.data-{i:05d}-of-{n:05d}" for i in range(n)]

    def hashed_names(self) -> set[str]:
        return set(self.release.sha256) if self.release is not None else set()

    def add_streams(self) -> None:
        """A TensorStream for each data shard, once the checkpoint index is parsed."""
        if self.ckpt is None:
            return
        for shard, name in enumerate(self.data_names()):
            self.streams[name] = TensorStream(
                e for e in self.ckpt.entries.values() if e.shard_id == shard
            )


def _infer_release(candidates: Iterable[str], has_meta: bool) -> Release | None:
    """The release a folder or zip name designates, as catalog.casing_from_name reads names."""
    release = None
    for name in candidates:
        found = catalog.casing_from_name(name) if name else None
        release = catalog.find(found[1]) if found else None
        if release is not None:
            break
    if release is None:
        return None
    if release.sha256 and not has_meta:
        # The 2020 compact set re-released uncased_L-12_H-768_A-12 under the same folder name,
        # without .meta; its files are not the 2018 ones, whose published hashes would all fail.
        twin = next(
            (r for r in catalog.RELEASES if r.folder == release.folder and r != release), None
        )
        if twin is not None:
            return twin
    return release


def _pick_index(names: Iterable[str]) -> tuple[str | None, str | None]:
    """(index file name, None) or (None, why there is no single one), as resolve_prefix picks."""
    indexes = sorted(n for n in names if n.endswith(".index"))
    if len(indexes) == 1:
        return indexes[0], None
    if "bert_model.ckpt.index" in indexes:
        return "bert_model.ckpt.index", None
    if not indexes:
        return None, "no checkpoint .index file"
    return None, f"{len(indexes)} checkpoints ({', '.join(indexes[:3])}); keep only the model's"


def _read_vocab(facts: _Facts, data: bytes) -> None:
    facts.vocab_sha = hashlib.sha256(data).hexdigest()
    try:
        facts.vocab = parse_vocab(data, source=facts.where(VOCAB))
    except BertctlError as exc:
        facts.vocab_error = exc.one_line()


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------


def verify_folder(
    folder: str | Path, release: Release | None = None, on_progress: Progress | None = None
) -> VerifyReport:
    """Verify an extracted release folder (or a folder holding exactly one).

    Args:
        folder: the model folder.
        release: the release to compare with; by default the one the folder's name designates.
        on_progress: called as ``(bytes_done, bytes_total)`` while files are read.

    Raises:
        BertctlError: ``folder`` does not exist or is not a folder.
    """
    from bertctl.modelref import find_model_folder

    folder = Path(folder)
    if not folder.exists():
        raise BertctlError(f"{folder}: no such folder", "pass the folder a release extracted to")
    if not folder.is_dir():
        raise BertctlError(
            f"{folder} is not a folder", "pass a model folder (verify a .zip as a zip)"
        )
    model = find_model_folder(folder) or folder
    names = {p.name for p in model.iterdir() if p.is_file()}
    inferred = release is None
    if release is None:
        release = _infer_release([str(model)], any(n.endswith(".meta") for n in names))
    facts = _Facts(
        target=str(folder),
        release=release,
        inferred=inferred,
        where=lambda base: str(model / base),
        folder_label=str(model),
        names=names,
    )
    if CONFIG in names:
        try:
            facts.config = load_config(model / CONFIG)
        except BertctlError as exc:
            facts.config_error = exc.one_line()
    if VOCAB in names:
        try:
            _read_vocab(facts, (model / VOCAB).read_bytes())
        except OSError as exc:
            facts.vocab_error = f"{model / VOCAB}: cannot read ({exc.strerror or exc})"
    facts.index_name, why = _pick_index(names)
    if facts.index_name is None:
        facts.ckpt_error = f"{model}: {why}"
    else:
        try:
            facts.ckpt = Checkpoint(model / facts.index_name[: -len(".index")])
        except BertctlError as exc:
            facts.ckpt_error = exc.one_line()
    facts.add_streams()

    to_read = sorted((facts.hashed_names() | set(facts.streams)) & names)
    total = sum((model / n).stat().st_size for n in to_read)
    done = 0
    for name in to_read:
        hasher = hashlib.sha256() if name in facts.hashed_names() else None
        stream = facts.streams.get(name)
        try:
            with (model / name).open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    if hasher is not None:
                        hasher.update(chunk)
                    if stream is not None:
                        stream.feed(chunk)
                    done += len(chunk)
                    if on_progress is not None:
                        on_progress(done, total)
        except OSError as exc:
            facts.unread[name] = f"cannot read it ({exc.strerror or exc})"
            continue
        if hasher is not None:
            facts.digests[name] = hasher.hexdigest()
    return _judge(facts)


# --------------------------------------------------------------------------------------------
# Zips
# --------------------------------------------------------------------------------------------


def _read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> tuple[bytes | None, str]:
    """A small member's bytes, or (None, why) when it is too large or damaged."""
    if info.file_size > _SMALL_LIMIT:
        return None, f"{label}:{info.filename} claims {info.file_size:,} bytes, far too many"
    parts: list[bytes] = []
    check = archive.stream_member(zf, info, label, sink=parts.append)
    return (b"".join(parts), "") if check.ok else (None, check.detail)


def verify_zip(
    path: str | Path, release: Release | None = None, on_progress: Progress | None = None
) -> VerifyReport:
    """Verify a release zip in place, extracting nothing but the small checkpoint index.

    Every member is read once, in file order: its CRC-32, the SHA-256 of the model files and
    the CRC32C of each tensor in the data member are computed from the same stream.

    Args:
        path: the zip.
        release: the release to compare with; by default the one the zip's model folder or
            file name designates.
        on_progress: called as ``(bytes_done, bytes_total)`` over the members' uncompressed size.

    Raises:
        BertctlError: ``path`` does not exist or is a folder.
    """
    path = Path(path)
    label = str(path)
    if not path.exists():
        raise BertctlError(f"{path}: no such file", "pass the path of a release zip")
    if path.is_dir():
        raise BertctlError(f"{path} is a folder", "verify it as a folder, or pass the .zip")
    try:
        zf = archive.open_zip(path)
    except archive.ArchiveError as exc:
        return VerifyReport(label, (Check("zip", label, False, exc.one_line()),))
    with zf:
        return _verify_open_zip(zf, path, release, on_progress)


def _verify_open_zip(
    zf: zipfile.ZipFile, path: Path, release: Release | None, on_progress: Progress | None
) -> VerifyReport:
    label = str(path)
    checks: list[Check] = []
    try:
        archive.audit(zf, label)
        checks.append(Check("zip safety", label, True, "no unsafe or duplicate member names"))
    except archive.ArchiveError as exc:
        checks.append(Check("zip safety", label, False, exc.one_line()))
    try:
        folder: str | None = archive.find_model_folder(zf, label)
    except archive.ArchiveError as exc:
        folder = None
        checks.append(Check("files", label, False, exc.one_line()))
    members = archive.folder_members(zf, folder) if folder is not None else {}
    inferred = release is None
    if release is None and folder is not None:
        candidates = [folder.rpartition("/")[2], path.stem]
        release = _infer_release(candidates, any(n.endswith(".meta") for n in members))
    prefix = f"{folder}/" if folder else ""
    facts = _Facts(
        target=label,
        release=release,
        inferred=inferred,
        where=lambda base: f"{label}:{prefix}{base}",
        folder_label=f"{label}:{prefix or '(zip root)'}",
        names=set(members),
    )
    if folder is not None:
        with tempfile.TemporaryDirectory(prefix="bertctl-verify-") as tmp:
            _read_zip_model_files(zf, label, members, facts, Path(tmp))
        facts.add_streams()

    # One pass over every member in file order: zip CRC-32, SHA-256 and tensor CRC32Cs at once.
    base_of = {info.filename: base for base, info in members.items()}
    infos = archive.file_members(zf)
    advance = archive.byte_counter(sum(i.file_size for i in infos), on_progress)

    for info in infos:
        base = base_of.get(info.filename)
        hasher = hashlib.sha256() if base in facts.hashed_names() else None
        stream = facts.streams.get(base) if base is not None else None
        result = archive.stream_member(
            zf, info, label, sink=_fan_out(hasher, stream), on_bytes=advance
        )
        checks.append(Check("zip crc", f"{label}:{info.filename}", result.ok, result.detail))
        if base is None:
            continue
        if result.read != result.size:
            facts.unread[base] = "the zip member cannot be read to its end"
        elif hasher is not None:
            facts.digests[base] = hasher.hexdigest()
    if folder is None:
        return VerifyReport(label, tuple(checks))
    facts.checks = checks
    return _judge(facts)


def _fan_out(hasher: Any, stream: TensorStream | None) -> Callable[[bytes], None] | None:
    """One sink feeding a chunk to the hash and the tensor stream that want it."""
    feeds = [f for f in (hasher and hasher.update, stream and stream.feed) if f]
    if not feeds:
        return None
    if len(feeds) == 1:
        return feeds[0]

    def sink(chunk: bytes) -> None:
        for feed in feeds:
            feed(chunk)

    return sink


def _read_zip_model_files(
    zf: zipfile.ZipFile,
    label: str,
    members: dict[str, zipfile.ZipInfo],
    facts: _Facts,
    tmp: Path,
) -> None:
    """Config, vocab and checkpoint index from the zip (small: read into memory)."""
    if CONFIG in members:
        data, why = _read_small(zf, members[CONFIG], label)
        if data is None:
            facts.config_error = why
        else:
            try:
                facts.config = parse_config_bytes(data, facts.where(CONFIG))
            except BertctlError as exc:
                facts.config_error = exc.one_line()
    if VOCAB in members:
        data, why = _read_small(zf, members[VOCAB], label)
        if data is None:
            facts.vocab_error = why
        else:
            _read_vocab(facts, data)
    facts.index_name, why = _pick_index(members)
    if facts.index_name is None:
        facts.ckpt_error = f"{facts.folder_label}: {why}"
        return
    data, why = _read_small(zf, members[facts.index_name], label)
    if data is None:
        facts.ckpt_error = why
        return
    (tmp / facts.index_name).write_bytes(data)
    try:
        facts.ckpt = Checkpoint(tmp / facts.index_name[: -len(".index")])
    except BertctlError as exc:
        # Name the member, not the temporary copy.
        text = exc.one_line().replace(str(tmp / facts.index_name), facts.where(facts.index_name))
        facts.ckpt_error = text


# --------------------------------------------------------------------------------------------
# Judging what was read
# --------------------------------------------------------------------------------------------


def _judge(f: _Facts) -> VerifyReport:
    checks = f.checks
    checks.append(_files_check(f))
    checks.extend(_sha_checks(f))
    config = f.config.config if f.config is not None else None
    checks.append(_config_check(f))
    checks.append(_vocab_size_check(f, config))
    checks.append(_casing_check(f))
    checks.extend(_shape_checks(f, config))
    checks.extend(_tensor_checks(f))
    return VerifyReport(f.target, tuple(checks), f.release.name if f.release else None)


def _files_check(f: _Facts) -> Check:
    required = [CONFIG, VOCAB]
    required.append(f.index_name or "bert_model.ckpt.index")
    data = f.data_names() or (
        [n for n in f.names if ".data-" in n] or ["bert_model.ckpt.data-00000-of-00001"]
    )
    required.extend(data)
    missing = [n for n in required if n not in f.names]
    if missing:
        return Check(
            "files",
            f.folder_label,
            False,
            f"missing {', '.join(missing)}; re-extract or {_REDOWNLOAD}",
        )
    extra = "" if any(n.endswith(".meta") for n in f.names) else " (no .meta, which is not needed)"
    return Check("files", f.folder_label, True, f"{', '.join(required)} present{extra}")


def _sha_checks(f: _Facts) -> list[Check]:
    rel = f.release
    if rel is None:
        return [
            Check(
                "sha256",
                f.folder_label,
                None,
                "skipped: the name is not one of Google's releases, so there is no published hash "
                "to compare with; name the release to compare",
            )
        ]
    if not rel.sha256:
        return [
            Check(
                "sha256",
                f.folder_label,
                None,
                f"skipped: no SHA-256 is published for {rel.name} ({rel.folder}); the tensor "
                "CRC32Cs below are its integrity check",
            )
        ]
    out = []
    guess = (
        f" (the release was taken from the name {rel.folder}; name it explicitly if this is "
        "another model)"
        if f.inferred
        else ""
    )
    for name, want in sorted(rel.sha256.items()):
        target = f.where(name)
        if name not in f.names:
            why = "not needed by bertctl" if name.endswith(".meta") else "see the files check"
            out.append(Check("sha256", target, None, f"skipped: the file is absent ({why})"))
        elif name in f.unread:
            out.append(Check("sha256", target, False, f"not hashed: {f.unread[name]}"))
        elif f.digests.get(name) == want:
            out.append(Check("sha256", target, True, f"{want} as published for {rel.folder}"))
        else:
            out.append(
                Check(
                    "sha256",
                    target,
                    False,
                    f"{f.digests.get(name)} but {rel.folder} publishes {want}: the file is not "
                    f"Google's; {_REDOWNLOAD}{guess}",
                )
            )
    return out


_ARCH = (
    ("num_hidden_layers", "layers"),
    ("hidden_size", "hidden"),
    ("num_attention_heads", "heads"),
    ("intermediate_size", "intermediate"),
    ("vocab_size", "vocab_size"),
)


def _config_check(f: _Facts) -> Check:
    target = f.where(CONFIG)
    if f.config_error:
        return Check("config", target, False, f.config_error)
    if f.config is None:
        return Check("config", target, None, "skipped: no bert_config.json")
    loaded = f.config
    if loaded.config is None:
        errors = loaded.errors
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return Check("config", target, False, f"{errors[0].message}{more}")
    c = loaded.config
    if f.release is not None:
        wrong = [
            f"{key} {getattr(c, key)} (the release has {getattr(f.release, attr)})"
            for key, attr in _ARCH
            if getattr(c, key) != getattr(f.release, attr)
        ]
        if wrong:
            return Check(
                "config",
                target,
                False,
                f"says {', '.join(wrong)}: not the config of {f.release.folder}; restore the "
                "release's bert_config.json",
            )
    warnings = [p.message for p in loaded.problems if p.level == "warning"]
    note = f"; {len(warnings)} warning(s), first: {warnings[0]}" if warnings else ""
    return Check(
        "config",
        target,
        True,
        f"{c.num_hidden_layers} layers, hidden {c.hidden_size}, {c.num_attention_heads} heads, "
        f"intermediate {c.intermediate_size}, vocab {c.vocab_size}{note}",
    )


def _vocab_size_check(f: _Facts, config: BertConfig | None) -> Check:
    target = f.where(VOCAB)
    if f.vocab_error:
        return Check("vocab size", target, False, f.vocab_error)
    if f.vocab is None:
        return Check("vocab size", target, None, "skipped: no vocab.txt")
    lines = len(f.vocab)
    if config is None:
        return Check(
            "vocab size", target, None, f"skipped: {lines} lines, but no valid config to compare"
        )
    if lines != config.vocab_size:
        return Check(
            "vocab size",
            target,
            False,
            f"{lines} lines but bert_config.json says vocab_size {config.vocab_size}; use the "
            "vocab.txt that came with the model",
        )
    return Check("vocab size", target, True, f"{lines} lines, as vocab_size says")


def _casing_check(f: _Facts) -> Check:
    target = f.where(VOCAB)
    if f.vocab is None:
        return Check("casing", target, None, "skipped: no readable vocab.txt")
    looks = "holds upper-case tokens" if f.vocab.looks_cased else "holds no upper-case tokens"
    rel = f.release
    if rel is None:
        return Check("casing", target, None, f"skipped: the release is unknown; the vocab {looks}")
    kind = "uncased" if rel.lowercase else "cased"
    if f.vocab_sha is not None and f.vocab_sha == rel.sha256.get(VOCAB):
        return Check("casing", target, True, f"the published {kind} vocab of {rel.folder}")
    if f.vocab.looks_cased == (not rel.lowercase):
        return Check("casing", target, True, f"the vocab {looks}, as {rel.folder} is {kind}")
    return Check(
        "casing",
        target,
        False,
        f"the vocab {looks}, but {rel.folder} is {kind}: this is not the release's own "
        "vocab.txt; restore it from the release",
    )


def _shape_checks(f: _Facts, config: BertConfig | None) -> list[Check]:
    target = f.where(f.index_name or "bert_model.ckpt.index")
    if f.ckpt is None:
        return [Check("shapes", target, None, "skipped: the checkpoint index is unreadable")]
    if config is None:
        return [Check("shapes", target, None, "skipped: no valid bert_config.json to compare")]
    where = f.where(f.index_name[: -len(".index")]) if f.index_name else target
    found = {name: e.shape for name, e in f.ckpt.entries.items()}
    problems = compare_shapes(found, config, where)
    errors = [p for p in problems if p.level == "error"]
    if errors:
        return [Check("shapes", target, False, p.message) for p in errors]
    notes = "; ".join(p.message for p in problems)
    return [
        Check(
            "shapes",
            target,
            True,
            "every model tensor has the shape bert_config.json implies"
            + (f"; {notes}" if notes else ""),
        )
    ]


def _tensor_checks(f: _Facts) -> list[Check]:
    if f.ckpt is None:
        target = f.where(f.index_name) if f.index_name else f.folder_label
        return [Check("tensor crc32c", target, False, f.ckpt_error or "no checkpoint")]
    out: list[Check] = []
    for name, stream in f.streams.items():
        data = f.where(name)
        unfinished = stream.finish()
        for entry, got in stream.done:
            if got != entry.crc32c:
                out.append(
                    Check(
                        "tensor crc32c",
                        entry.name,
                        False,
                        f"masked CRC32C {got:08x}, the index records {entry.crc32c:08x}: bytes "
                        f"{entry.offset:,}-{entry.offset + entry.size - 1:,} of {data} are "
                        f"damaged; {_REDOWNLOAD}",
                    )
                )
        if unfinished:
            if name not in f.names:
                why = "the file is missing"
            elif name in f.unread:
                why = f.unread[name]
            else:
                why = f"the file ends at byte {stream.position:,}: it is truncated"
            out.append(
                Check(
                    "tensor crc32c",
                    data,
                    False,
                    f"{len(unfinished)} tensor(s) not checked, the first {unfinished[0].name}: "
                    f"{why}; {_REDOWNLOAD}",
                )
            )
    if not out:
        total = len(f.ckpt.entries)
        strings = len(f.ckpt.string_tensors)
        note = (
            f" ({strings} string tensor(s) hold no numbers and are not checked)" if strings else ""
        )
        names = list(f.streams)
        target = f.where(names[0] if len(names) == 1 else f.index_name or "")
        out.append(
            Check(
                "tensor crc32c",
                target,
                True,
                f"all {total} tensors match the masked CRC32C in the index{note}",
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# HF-format folders (a converted release, a Hub download, a fine-tuned run)
# --------------------------------------------------------------------------------------------

HF_CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """Tensor name -> {"dtype", "shape", "data_offsets"} from a safetensors file's JSON header.

    Only the header is read (8-byte little-endian length, then JSON), so this is cheap and never
    touches the weights. Raises BertctlError for a file that is not safetensors.
    """
    import json
    import struct

    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise BertctlError(f"{path}: too short for a safetensors file", "download it again")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, 100 << 20):
            raise BertctlError(
                f"{path}: safetensors header length {length} runs past the file",
                "download it again",
            )
        try:
            header = json.loads(fh.read(length))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BertctlError(
                f"{path}: safetensors header is not JSON", "download it again"
            ) from None
    if not isinstance(header, dict):
        raise BertctlError(f"{path}: safetensors header is not an object", "download it again")
    header.pop("__metadata__", None)
    data_size = size - 8 - length
    for name, meta in header.items():
        if not _tensor_entry_ok(meta, data_size):
            raise BertctlError(
                f"{path}: tensor {name!r} has a malformed entry in the safetensors header",
                "download it again",
            )
    problem = _layout_problem(header)
    if problem:
        raise BertctlError(f"{path}: {problem}", "download or convert it again")
    return header


# Bytes per element of each safetensors dtype.
_DTYPE_BYTES = {
    **dict.fromkeys(("F64", "I64", "U64"), 8),
    **dict.fromkeys(("F32", "I32", "U32"), 4),
    **dict.fromkeys(("F16", "BF16", "I16", "U16"), 2),
    **dict.fromkeys(("I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2"), 1),
}


def _layout_problem(header: dict[str, dict[str, Any]]) -> str | None:
    """What is wrong with where the header puts the tensors, or None: each tensor's byte span
    must be its shape times its dtype's size, and the spans must follow one another from byte
    0 with no gap and no overlap, as safetensors writes them. A loader would otherwise fail
    deep inside (or read one tensor's bytes as another's)."""
    spans = []
    for name, meta in header.items():
        begin, end = meta["data_offsets"]
        itemsize = _DTYPE_BYTES.get(meta["dtype"])
        if itemsize is not None:
            count = 1
            for size in meta["shape"]:
                count *= size
            if count * itemsize != end - begin:
                return (
                    f"tensor {name!r} of shape {meta['shape']} ({meta['dtype']}) needs "
                    f"{count * itemsize:,} bytes, but its offsets span {end - begin:,}"
                )
        spans.append((begin, end, name))
    position, previous = 0, None
    for begin, end, name in sorted(spans):
        if begin != position:
            where = "a gap" if begin > position else "an overlap"
            after = f" after {previous!r}" if previous else " at the start"
            return f"tensor {name!r} starts at byte {begin:,}: {where} in the data{after}"
        position, previous = end, name
    return None


def _tensor_entry_ok(meta: Any, data_size: int) -> bool:
    """A header entry as safetensors writes it: a dtype name, a shape of sizes, and byte
    offsets that lie inside the data."""
    if not isinstance(meta, dict) or not isinstance(meta.get("dtype"), str):
        return False
    shape, offsets = meta.get("shape"), meta.get("data_offsets")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        return False
    if not isinstance(offsets, list) or len(offsets) != 2:
        return False
    if not all(type(o) is int for o in offsets):
        return False
    return 0 <= offsets[0] <= offsets[1] <= data_size


def hf_expected_shapes(config: BertConfig, heads: bool) -> dict[str, tuple[int, ...]]:
    """transformers key (without the `bert.` prefix) -> shape, for every model tensor."""
    from bertctl.convert import hf_name, needs_transpose

    out = {}
    for tf_name, shape in expected_tensor_shapes(config, heads=heads).items():
        key = hf_name(tf_name)
        assert key is not None
        out[key.removeprefix("bert.")] = (
            tuple(reversed(shape)) if needs_transpose(tf_name) else shape
        )
    return out


def _normalise_hf_key(key: str) -> str:
    """Strip the `bert.` prefix and map old LayerNorm names (gamma/beta) to weight/bias."""
    key = key.removeprefix("bert.")
    if key.endswith("LayerNorm.gamma"):
        key = key[: -len("gamma")] + "weight"
    elif key.endswith("LayerNorm.beta"):
        key = key[: -len("beta")] + "bias"
    return key


def verify_hf_folder(folder: Path, release: Release | None = None) -> VerifyReport:
    """Files, config, vocab size, casing and tensor shapes of an HF-format BERT folder."""
    import json

    from bertctl.bertconfig import check_config
    from bertctl.modelref import ModelRef, model_casing

    folder = Path(folder)
    if not folder.is_dir():
        raise BertctlError(f"{folder}: no such folder", "pass an HF-format model folder")
    checks: list[Check] = []
    missing = [n for n in (HF_CONFIG, VOCAB, WEIGHTS) if not (folder / n).is_file()]
    checks.append(
        Check(
            "files",
            str(folder),
            not missing,
            f"missing {', '.join(missing)}"
            if missing
            else f"{HF_CONFIG}, {VOCAB} and {WEIGHTS} present",
        )
    )
    config: BertConfig | None = None
    if (folder / HF_CONFIG).is_file():
        try:
            raw = json.loads((folder / HF_CONFIG).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            checks.append(Check("config", str(folder / HF_CONFIG), False, f"not JSON ({exc})"))
        else:
            model_type = raw.get("model_type") if isinstance(raw, dict) else None
            if model_type != "bert":
                checks.append(
                    Check(
                        "config",
                        str(folder / HF_CONFIG),
                        False,
                        f"model_type is {model_type!r}, not 'bert': this is not a BERT model",
                    )
                )
            else:
                loaded = check_config(raw, str(folder / HF_CONFIG))
                config = loaded.config
                errors = loaded.errors
                checks.append(
                    Check(
                        "config",
                        str(folder / HF_CONFIG),
                        not errors,
                        errors[0].message if errors else "a valid BERT config",
                    )
                )
    vocab = None
    if (folder / VOCAB).is_file():
        from bertctl.tokenization import load_vocab

        try:
            vocab = load_vocab(folder / VOCAB)
        except BertctlError as exc:
            checks.append(Check("vocab size", str(folder / VOCAB), False, exc.one_line()))
    if vocab is not None and config is not None:
        same = len(vocab) == config.vocab_size
        checks.append(
            Check(
                "vocab size",
                str(folder / VOCAB),
                same,
                f"{len(vocab)} lines, as vocab_size says"
                if same
                else f"{len(vocab)} lines but config.json says vocab_size {config.vocab_size}",
            )
        )
    if vocab is not None:
        lower, why = model_casing(ModelRef("hf-folder", str(folder), folder), vocab)
        if release is not None and lower is not None and lower != release.lowercase:
            kind = "uncased" if release.lowercase else "cased"
            checks.append(
                Check("casing", str(folder), False, f"{why}, but {release.folder} is {kind}")
            )
        elif vocab.looks_cased and lower is True:
            checks.append(
                Check(
                    "casing",
                    str(folder),
                    False,
                    f"{why}, but the vocab holds upper-case tokens that lowercased text never "
                    "reaches; fix do_lower_case in tokenizer_config.json",
                )
            )
        else:
            checks.append(Check("casing", str(folder), True, why))
    if config is not None and (folder / WEIGHTS).is_file():
        header = safetensors_header(folder / WEIGHTS)
        found = {_normalise_hf_key(k): tuple(v.get("shape", ())) for k, v in header.items()}
        heads = any(k.startswith("cls.") for k in found)
        expected = hf_expected_shapes(config, heads)
        bad = [
            f"{k} has shape {list(found[k])}, config implies {list(s)}"
            for k, s in expected.items()
            if k in found and found[k] != s
        ]
        absent = [k for k in expected if k not in found]
        if absent:
            bad.insert(
                0, f"{absent[0]}{f' and {len(absent) - 1} more' if len(absent) > 1 else ''} missing"
            )
        checks.extend(Check("shapes", str(folder / WEIGHTS), False, b) for b in bad)
        if not bad:
            checks.append(
                Check(
                    "shapes",
                    str(folder / WEIGHTS),
                    True,
                    f"all {len(expected)} model tensors have the shapes config.json implies",
                )
            )
    return VerifyReport(str(folder), tuple(checks), release.name if release else None)


def verify_target(target: str, reporter: Any = None) -> list[VerifyReport]:
    """Verify what the user named: a downloaded model, a zip, a release or HF-format folder.

    A downloaded catalogue model gives two reports: Google's files (release/) and the converted
    HF-format folder.
    """
    from bertctl import store

    def run(
        fn: Callable[..., VerifyReport], path: Path, release: Release | None, size: int
    ) -> VerifyReport:
        if reporter is None or size < (64 << 20):
            return fn(path, release)
        with reporter.progress("Verifying", size, "B") as bar:
            seen = [0]

            def on_progress(done: int, total: int) -> None:
                bar.advance(done - seen[0])
                seen[0] = done

            return fn(path, release, on_progress=on_progress)

    if target.startswith(store.HUB_PREFIX):
        folder = store.hub_folder(store.parse_hub(target))
        if not folder.is_dir():
            raise BertctlError(f"{target} is not downloaded", f"run `bertctl download {target}`")
        return [verify_hf_folder(folder)]
    path = paths.expand(target)
    if path.is_file() and zipfile.is_zipfile(path):
        return [run(verify_zip, path, None, path.stat().st_size)]
    if path.is_dir() or Path(str(path) + ".index").is_file():
        folder = path if path.is_dir() else path.parent
        if (folder / CONFIG).is_file():
            return [run(verify_folder, folder, None, _folder_bytes(folder))]
        if (folder / HF_CONFIG).is_file():
            reports = [verify_hf_folder(folder)]
            if (folder / "release" / CONFIG).is_file():
                release_dir = folder / "release"
                reports.insert(0, run(verify_folder, release_dir, None, _folder_bytes(release_dir)))
            return reports
        raise BertctlError(
            f"{folder} holds no bert_config.json or config.json",
            "pass a release zip, a release folder or an HF-format folder",
        )
    if path.exists():
        raise BertctlError(f"{path} is not a zip or a model folder", "pass a release zip or folder")
    release = catalog.find(target)
    local = store.find_local(release.name if release else target)
    if release is None and local is not None:
        return verify_target(str(local), reporter)
    if release is None:
        raise BertctlError(
            f"{target}: no such file, folder or model name",
            "pass a path, or a name from `bertctl models`",
        )
    folder = store.model_dir(release.name)
    if not folder.is_dir():
        raise BertctlError(
            f"{release.name} is not downloaded", f"run `bertctl download {release.name}`"
        )
    reports = []
    if (folder / "release").is_dir():
        release_dir = folder / "release"
        reports.append(run(verify_folder, release_dir, release, _folder_bytes(release_dir)))
    reports.append(verify_hf_folder(folder, release))
    return reports


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
