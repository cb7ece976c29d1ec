"""Turn `--model` into an HF-format folder and a Google-exact tokenizer for training.

A catalogue name or hub repo is downloaded and converted on first use; a release folder, zip or
checkpoint is converted once into the cache; an HF-format folder (or a previous run) is used as
it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from bertctl import catalog, modelref, paths, store
from bertctl.errors import BertctlError
from bertctl.tokenization import Tokenizer, load_vocab

RUN_MARKER = "run.json"


@dataclass(frozen=True)
class PreparedModel:
    """An HF-format folder ready for from_pretrained, and how to tokenize for it.

    Attributes:
        folder: holds config.json, model.safetensors, vocab.txt.
        label: how to name the model in messages and run records.
        tokenizer: Google's tokenizer with the model's vocab and casing.
        release: the catalogue entry, when the model is one of Google's.
    """

    folder: Path
    label: str
    tokenizer: Tokenizer
    release: catalog.Release | None


def default_model_spec() -> str:
    """Google's recipe reads $BERT_BASE_DIR; without it, BERT-Base uncased."""
    return os.environ.get("BERT_BASE_DIR") or "base-uncased"


def _converted_cache(source: Path) -> Path:
    """Where a converted copy of a local release folder or checkpoint lives, keyed by its files."""
    h = hashlib.sha256()
    for p in (
        sorted(source.parent.glob(source.name + "*"))
        if not source.is_dir()
        else sorted(source.iterdir())
    ):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return paths.home() / "converted" / f"{source.name}-{h.hexdigest()[:12]}"


def _hf_folder(spec: str, reporter) -> tuple[Path, catalog.Release | None, str]:
    """(HF-format folder, release, label) for any model spec, downloading or converting as needed."""
    from bertctl import hub

    run = paths.expand(spec)
    if (run / RUN_MARKER).is_file():
        if not (run / "final" / "config.json").is_file():
            raise BertctlError(
                f"{run} is a run that has not finished",
                "resume it with --resume, or pass its final/ folder",
            )
        try:
            info = json.loads((run / RUN_MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}  # the record is damaged; the model in final/ does not need it
        release = catalog.find(str(info.get("release") or "")) if isinstance(info, dict) else None
        return run / "final", release, f"{run}/final"
    if spec.startswith(hub.PREFIX):
        model = hub.parse(spec)
        folder = hub.local_folder(model)
        if store.read_manifest(folder) is None:
            reporter.step(f"{spec} is not here yet: downloading it (first use)")
            folder, _ = hub.install(model)
        return folder, None, spec
    ref = modelref.resolve(spec)
    if ref.kind == "catalog":
        assert ref.release is not None
        from bertctl.install import install

        reporter.step(
            f"{ref.release.name} is not downloaded yet: downloading and converting it (first use)"
        )
        result = install(ref.release.name, reporter)
        return result.folder, ref.release, ref.release.name
    if ref.kind == "hf-folder":
        assert ref.path is not None
        return ref.path, ref.release, ref.label
    if ref.kind in ("release-folder", "release-zip", "checkpoint"):
        assert ref.path is not None
        cache = _converted_cache(ref.path)
        if not (cache / "model.safetensors").is_file():
            from bertctl.install import convert_source

            reporter.step(f"Converting {ref.path} for PyTorch (once; cached in {cache})")
            convert_source(
                str(ref.path),
                cache,
                config=None,
                vocab=None,
                lowercase=None,
                heads=True,
                labels=None,
                overwrite=True,
                reporter=reporter,
            )
        return cache, ref.release, ref.label
    raise BertctlError(
        f"{spec} is a {ref.kind}, not a model", "pass a model folder, a release or a catalogue name"
    )


def _check_loadable(folder: Path) -> None:
    """Refuse, before transformers sees the folder, what bertctl never loads: weights that
    exist only as a pickle (pytorch_model.bin), and a config.json that is not a BERT's (without
    model_type bert, transformers would look for custom code to run)."""
    if not (folder / "model.safetensors").is_file():
        pickled = (folder / "pytorch_model.bin").is_file()
        raise BertctlError(
            f"cannot load the model in {folder}: it has no model.safetensors"
            + (" (only pytorch_model.bin, a pickle, which bertctl never opens)" if pickled else ""),
            "pass a model folder with model.safetensors (bertctl convert makes one)",
        )
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BertctlError(
            f"{folder / 'config.json'} cannot be read ({exc})", "pass an HF-format BERT folder"
        ) from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "bert":
        raise BertctlError(
            f"cannot load the model in {folder}: {folder / 'config.json'} says model_type "
            f"{model_type!r}, not 'bert'",
            "bertctl trains BERT models and never runs a model's own code; pass a BERT folder",
        )


def prepare(spec: str | None, lowercase: bool | None, reporter) -> PreparedModel:
    """Resolve `--model` (default $BERT_BASE_DIR, else base-uncased) and build its tokenizer.

    Applies Google's casing check: `--cased`/`--uncased` contradicting a Google model is an error.
    """
    spec = spec or default_model_spec()
    folder, release, label = _hf_folder(spec, reporter)
    _check_loadable(folder)
    if not (folder / "vocab.txt").is_file():
        raise BertctlError(
            f"{folder} has no vocab.txt", "pass a model folder that ships its vocabulary"
        )
    vocab = load_vocab(folder / "vocab.txt")
    ref = modelref.ModelRef("hf-folder", label, folder, release)
    model_lower, _why = modelref.model_casing(ref, vocab)
    if release is None:
        # A converted folder remembers its casing in tokenizer_config.json; Google names win.
        found = catalog.casing_from_name(spec)
        if found is not None:
            release = catalog.find(found[1])
            ref = modelref.ModelRef("hf-folder", label, folder, release)
            model_lower = release.lowercase if release else model_lower
    lower = modelref.settle_casing(ref, lowercase, model_lower)
    return PreparedModel(folder, label, Tokenizer(vocab, lower), release)
