"""download -> verify -> extract -> convert, as one plain function callable from Python.

The command layer only renders what happens here; `Reporter` is how this module tells it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import urllib.parse
import zipfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bertctl import catalog, outputs, paths, store
from bertctl.catalog import Release
from bertctl.errors import BertctlError, UsageError

MIRROR_ENV = "BERTCTL_MIRROR"


class Bar(Protocol):
    def advance(self, amount: float = 1.0, postfix: str | None = None) -> None: ...

    def set_total(self, total: float | None) -> None: ...


class Reporter(Protocol):
    """What install tells the user about: steps, and progress of long ones."""

    def step(self, message: str) -> None: ...

    def progress(
        self, description: str, total: float | None, unit: str
    ) -> AbstractContextManager[Bar]: ...


@dataclass(frozen=True)
class Source:
    """Where a model comes from: a catalogue name, or any URL of a zip in release layout."""

    name: str
    url: str
    release: Release | None


@dataclass(frozen=True)
class InstallResult:
    name: str
    source: str
    folder: Path
    release_folder: Path | None
    already: bool
    manifest: dict[str, Any]


def resolve_source(spec: str, mirror: str | None = None) -> Source:
    """A catalogue name or URL -> where to fetch it. `mirror` (or BERTCTL_MIRROR) swaps the base URL.

    >>> resolve_source("tiny", "https://mirror.example/bert/").url
    'https://mirror.example/bert/2020_02_20/uncased_L-2_H-128_A-2.zip'
    """
    if "://" in spec:
        parsed = urllib.parse.urlparse(spec)
        base = Path(urllib.parse.unquote(parsed.path)).name
        if not base.endswith(".zip"):
            raise UsageError(f"{spec} does not name a .zip", "pass the URL of a release zip")
        stem = base[: -len(".zip")]
        release = catalog.find(stem)
        return Source(release.name if release else stem, spec, release)
    release = catalog.find(spec)
    if release is None:
        import difflib

        close = difflib.get_close_matches(spec.lower(), catalog.names(), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise BertctlError(
            f"{spec}: no such model",
            f"{hint}see `bertctl models` for names, or pass the URL of a release zip",
        )
    if release.bundle:
        raise UsageError(
            f"{spec} is a zip of all 24 compact models",
            "download the one you need by name (tiny, mini, small, medium, uncased-L-6-H-512, ...)",
        )
    base = mirror or os.environ.get(MIRROR_ENV) or catalog.BASE_URL
    return Source(release.name, base.rstrip("/") + "/" + release.path, release)


def is_complete(folder: Path) -> dict[str, Any] | None:
    """The manifest of a finished, verified model folder whose files are all still there."""
    manifest = store.read_manifest(folder)
    if not manifest or not manifest.get("verified"):
        return None
    needed = ("config.json", "vocab.txt", "model.safetensors")
    return manifest if all((folder / n).is_file() for n in needed) else None


def _check_room(zip_file: Path, folder: Path) -> None:
    """Extraction and conversion need about twice the unpacked size; fail before starting."""
    from bertctl import archive

    with archive.open_zip(zip_file) as zf:
        unpacked = sum(i.file_size for i in zf.infolist())
    folder.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder.parent).free
    need = 2 * unpacked + (64 << 20)
    if free < need:
        from bertctl.ui import human_bytes

        raise BertctlError(
            f"extracting and converting {zip_file.name} needs {human_bytes(need)}, "
            f"{human_bytes(free)} free on {folder.parent}",
            "free some space, or pass --dir on a larger disk",
        )


def install(
    spec: str,
    reporter: Reporter,
    *,
    dest: Path | None = None,
    mirror: str | None = None,
    allow_http: bool = False,
    keep_zip: bool = False,
) -> InstallResult:
    """Download, verify, extract and convert a release; a no-op when it is already done."""
    from bertctl import fetch

    source = resolve_source(spec, mirror)
    folder = Path(dest) if dest else store.model_dir(source.name)
    done = is_complete(folder)
    if done is not None:
        return InstallResult(
            source.name,
            done.get("source", fetch.redact(source.url)),
            folder,
            folder / "release",
            True,
            done,
        )
    fetch.check_url_allowed(source.url, allow_http)
    with outputs.writing(folder, "installed"):
        # A folder bertctl made but did not finish is redone; one holding anything else is not
        # ours to replace (a --dir pointing at the user's own files).
        where = "--dir" if dest else "the store folder"
        outputs.check_folder(folder, outputs.MODEL, overwrite=True, flag=where)
        return _install(source, folder, reporter, allow_http=allow_http, keep_zip=keep_zip)


def _install(
    source: Source, folder: Path, reporter: Reporter, *, allow_http: bool, keep_zip: bool
) -> InstallResult:
    """Download, verify, extract and convert `source` into `folder` (locked by the caller)."""
    from bertctl import archive, fetch
    from bertctl.convert import convert
    from bertctl.modelref import ModelRef, model_casing
    from bertctl.tokenization import load_vocab
    from bertctl.verify import verify_hf_folder, verify_zip

    zip_file = paths.downloads_dir() / Path(urllib.parse.urlparse(source.url).path).name
    zip_file.parent.mkdir(parents=True, exist_ok=True)
    reporter.step(f"Downloading {fetch.redact(source.url)}")
    with reporter.progress("Downloading", None, "B") as bar:
        seen = [0]

        def on_bytes(done: int, total: int | None) -> None:
            if total is not None:
                bar.set_total(total)
            bar.advance(done - seen[0])
            seen[0] = done

        result = fetch.download(source.url, zip_file, on_progress=on_bytes, allow_http=allow_http)
    if result.already_complete:
        reporter.step(f"Using the zip downloaded earlier: {zip_file}")

    reporter.step("Verifying the zip: member CRCs, published hashes, every tensor's CRC32C")
    with reporter.progress("Verifying", zip_file.stat().st_size, "B") as bar:
        seen = [0]

        def on_verify(done: int, total: int) -> None:
            bar.advance(done - seen[0])
            seen[0] = done

        report = verify_zip(zip_file, source.release, on_progress=on_verify)
    if not report.ok:
        first = report.failures[0]
        zip_file.unlink(missing_ok=True)  # bad bytes: the next run must fetch them again
        raise BertctlError(
            f"{zip_file.name} failed verification: {first.name} {first.target}: {first.detail}",
            "the zip was deleted; run the command again to download it afresh",
        )

    _check_room(zip_file, folder)
    staging = folder.with_name(f".{folder.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        reporter.step("Extracting")
        with archive.open_zip(zip_file) as zf:
            inner = archive.find_model_folder(zf, str(zip_file))
        release_dir = staging / "release"
        with _members_named(release_dir, f"{zip_file}:{inner + '/' if inner else ''}"):
            archive.safe_extract(zip_file, release_dir)
            vocab = load_vocab(release_dir / "vocab.txt")
            lowercase = source.release.lowercase if source.release else None
            if lowercase is None:
                ref = ModelRef("release-folder", str(release_dir), release_dir)
                lowercase = bool(model_casing(ref, vocab)[0])
            reporter.step("Converting to an HF-format folder (model.safetensors)")
            converted = convert(
                release_dir / "bert_model.ckpt",
                staging / "hf",
                config_path=release_dir / "bert_config.json",
                vocab_path=release_dir / "vocab.txt",
                lowercase=lowercase,
            )
        (staging / "release").rename(converted.out_dir / "release")
        hf_report = verify_hf_folder(converted.out_dir, source.release)
        if not hf_report.ok:
            first = hf_report.failures[0]
            raise BertctlError(f"converted model failed its {first.name} check: {first.detail}")
        manifest = {
            "name": source.name,
            "source": fetch.redact(source.url),  # a password never lands on disk
            "release": source.release.name if source.release else None,
            "lowercase": lowercase,
            "verified": True,
            "checks": sorted({c.name for c in report.checks + hf_report.checks if c.ok}),
            "tensors": converted.tensors,
            "pretraining_heads": converted.heads,
        }
        store.write_json_atomic(converted.out_dir / store.MANIFEST, manifest)
        store.replace_folder(converted.out_dir, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not keep_zip:
        zip_file.unlink(missing_ok=True)
    shown = fetch.redact(source.url)
    return InstallResult(source.name, shown, folder, folder / "release", False, manifest)


def noop_reporter() -> Reporter:
    """A reporter that says nothing (for library use and tests)."""
    from contextlib import nullcontext

    class _Quiet:
        def step(self, message: str) -> None:
            pass

        def progress(self, description: str, total: float | None, unit: str) -> Any:
            class _Bar:
                def advance(self, amount: float = 1.0, postfix: str | None = None) -> None:
                    pass

                def set_total(self, total: float | None) -> None:
                    pass

            return nullcontext(_Bar())

    return _Quiet()


def convert_source(
    source: str,
    out: Path,
    *,
    config: Path | None,
    vocab: Path | None,
    lowercase: bool | None,
    heads: bool,
    labels: list[str] | None,
    overwrite: bool,
    reporter: Reporter,
) -> Any:
    """`bertctl convert`: a zip, release folder or checkpoint prefix -> HF-format folder.

    `out` is checked and locked before anything is extracted: it may not be, hold or lie in an
    input, and `overwrite` replaces only a folder bertctl converted. A zip is extracted (safely)
    into a temporary folder beside `out`; messages about its files name them as `ZIP:member`.
    Config and vocab default to the files beside the checkpoint; casing defaults to what the
    model name or vocab says.
    """
    import tempfile

    from bertctl import archive, tfcheckpoint

    path = paths.expand(source)
    inputs = [path, Path(f"{path}.index"), config, vocab]
    with outputs.writing(out, "converted into"):
        outputs.check_folder(out, outputs.MODEL, overwrite=overwrite, inputs=inputs)
        settings = dict(config=config, vocab=vocab, lowercase=lowercase, heads=heads)
        # A .zip that zipfile cannot recognise (cut short) gets the zip's own error, not
        # "no checkpoint".
        if path.is_file() and (zipfile.is_zipfile(path) or path.suffix.lower() == ".zip"):
            reporter.step(f"Extracting {path.name}")
            with archive.open_zip(path) as zf:
                inner = archive.find_model_folder(zf, str(path))
            release = catalog.find(inner.rsplit("/", 1)[-1]) if inner else catalog.find(path.stem)
            with tempfile.TemporaryDirectory(
                prefix=f".{out.name}.extract-", dir=_beside(out)
            ) as tmp:
                folder = Path(tmp) / "release"
                with _members_named(folder, f"{path}:{inner + '/' if inner else ''}"):
                    archive.safe_extract(path, folder)
                    prefix = tfcheckpoint.resolve_prefix(folder)
                    return _convert_prefix(
                        prefix, folder, release, out, labels, overwrite, reporter, **settings
                    )
        if not path.exists() and not Path(f"{path}.index").is_file():
            raise BertctlError(
                f"{source}: no such file or folder",
                "pass a release zip, a release folder or a checkpoint prefix",
            )
        prefix = tfcheckpoint.resolve_prefix(path)
        found = catalog.casing_from_name(str(prefix.parent))
        release = catalog.find(found[1]) if found else None
        return _convert_prefix(
            prefix, prefix.parent, release, out, labels, overwrite, reporter, **settings
        )


def _beside(out: Path) -> Path | None:
    """Where to extract: beside `out` when its parent exists (same disk as the result)."""
    return out.parent if out.parent.is_dir() else None


def _convert_prefix(
    prefix: Path,
    folder: Path,
    release: Release | None,
    out: Path,
    labels: list[str] | None,
    overwrite: bool,
    reporter: Reporter,
    *,
    config: Path | None,
    vocab: Path | None,
    lowercase: bool | None,
    heads: bool,
) -> Any:
    """Convert the checkpoint `prefix` whose release files lie in `folder`."""
    from bertctl.convert import convert
    from bertctl.modelref import ModelRef, model_casing, settle_casing
    from bertctl.tokenization import load_vocab

    config_path = config or folder / "bert_config.json"
    vocab_path = vocab or folder / "vocab.txt"
    for flag, p in (("--config", config_path), ("--vocab", vocab_path)):
        if not Path(p).is_file():
            raise BertctlError(f"{p}: no such file", f"pass {flag} FILE")
    ref = ModelRef("release-folder", str(folder), folder, release)
    model_lower, _ = model_casing(ref, load_vocab(vocab_path))
    lower = settle_casing(ref, lowercase, model_lower)
    reporter.step(f"Converting {prefix}")
    return convert(
        prefix,
        out,
        config_path=config_path,
        vocab_path=vocab_path,
        lowercase=lower,
        heads=heads,
        labels=labels,
        overwrite=overwrite,
    )


@contextlib.contextmanager
def _members_named(folder: Path, label: str) -> Iterator[None]:
    """Name files extracted into the temporary `folder` as the zip members they came from.

    A message about `/tmp/.x.extract-1234/release/bert_config.json` points at a file that is
    gone by the time the user reads it; `release.zip:uncased_L-12_H-768_A-12/bert_config.json`
    is the one they can open.
    """
    try:
        yield
    except BertctlError as exc:
        for where in (f"{folder.resolve()}{os.sep}", f"{folder}{os.sep}"):
            exc.message = exc.message.replace(where, label)
            exc.hint = exc.hint.replace(where, label) if exc.hint else exc.hint
        for where in (str(folder.resolve()), str(folder)):
            exc.message = exc.message.replace(where, label.rstrip("/:") or label)
            exc.hint = exc.hint.replace(where, label.rstrip("/:")) if exc.hint else exc.hint
        exc.args = (exc.message,)
        raise
