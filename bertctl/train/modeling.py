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
from typing import Any

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


def quiet_transformers() -> None:
    """No warnings or progress bars of transformers' own: bertctl reports what matters itself."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def default_model_spec() -> str:
    """Google's recipe reads $BERT_BASE_DIR; without it, BERT-Base uncased.

    Raises:
        BertctlError: BERT_BASE_DIR names neither a file or folder nor a catalogue model; the
            message names the variable, which the user may have set long ago and forgotten.
    """
    value = os.environ.get("BERT_BASE_DIR")
    if not value:
        return "base-uncased"
    if not paths.expand(value).exists() and catalog.find(value) is None and ":" not in value:
        raise BertctlError(
            f"BERT_BASE_DIR={value}: no such folder (finetune takes its model from it when "
            "--model is not given)",
            "point BERT_BASE_DIR at an unzipped release folder, or pass --model",
        )
    return value


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
    from bertctl.verify import safetensors_header

    safetensors_header(folder / "model.safetensors")  # the header verify checks, before a load
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


# --------------------------------------------------------------------------------------------
# Loading for a task: only the task's head may be new

ENCODER_PARTS = ("embeddings", "encoder", "pooler")


def load_for_task(prepared: PreparedModel, task) -> Any:
    """The model with a sequence-classification head for `task`, every encoder tensor from the
    folder's file.

    The head (`classifier.*`) is new when the folder has none or one for another label count
    (an MNLI run fine-tuned again on STS-B); any encoder tensor that did not load is refused,
    as transformers would otherwise initialise it at random and train on.
    """
    from transformers import AutoModelForSequenceClassification

    # transformers 5 takes id2label=None literally (num_labels becomes None): regression
    # passes one output and lets the config name it.
    labels = task.labels or ()
    head: dict[str, Any] = (
        {"num_labels": 1, "id2label": {0: "LABEL_0"}, "label2id": {"LABEL_0": 0}}
        if task.is_regression
        else {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)},
        }
    )
    model, info = AutoModelForSequenceClassification.from_pretrained(
        prepared.folder,
        **head,
        problem_type="regression" if task.is_regression else "single_label_classification",
        attn_implementation="sdpa",
        ignore_mismatched_sizes=True,  # for the head only: the encoder is checked below
        use_safetensors=True,
        output_loading_info=True,
    )
    refuse_unloaded(prepared.folder, model, info, new=("classifier.",))
    # A new head starts as Google's create_initializer starts it: a normal cut at 2σ
    # (transformers' normal_ leaves 4.4% of its weights beyond), and a zero bias.
    fresh = set(info.get("missing_keys") or ())
    fresh |= {entry[0] for entry in info.get("mismatched_keys") or ()}
    google_init_(model, model.config.initializer_range, {k for k in fresh if "classifier." in k})
    return model


def google_init_(model, std: float, names: set[str] | None = None) -> None:
    """Google's initialisation, in place: truncated normal (σ = `std`, cut at ±2σ, as TF's
    truncated_normal_initializer) for matrices and embeddings, zeros for biases, ones for
    LayerNorm scales. `names`: only these parameters (e.g. the heads a checkpoint lacks)."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if names is not None and name not in names:
                continue
            if name.endswith("LayerNorm.weight"):
                param.fill_(1.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                torch.nn.init.trunc_normal_(param, std=std, a=-2 * std, b=2 * std)


def refuse_unloaded(
    folder: Path, model, info: dict[str, Any], new: tuple[str, ...], missing: bool = True
) -> None:
    """Refuse a model whose weights did not all come from `folder`'s model.safetensors.

    `info`: transformers' loading report. Tensors under a `new` prefix may be missing or of
    another shape (they are the task's head); a tensor of another task's head in the file is
    ignored. Anything else (an encoder tensor of the wrong shape, missing, or one the config
    has no place for) is one error naming the tensor and both shapes, as `bertctl verify` does.
    `missing`: whether missing tensors count (pretraining initialises them as Google does).
    """
    weights = folder / "model.safetensors"
    config = folder / "config.json"
    hint = f"the weights do not fit {config}; `bertctl verify {folder}` checks each tensor"

    def ours(name: str) -> bool:
        return not name.startswith(new)

    for name, in_file, expected in sorted(info.get("mismatched_keys") or (), key=str):
        if ours(name):
            raise BertctlError(
                f"{weights}: {name} has shape {list(in_file)}, config.json implies "
                f"{list(expected)}",
                hint,
            )
    absent = sorted(k for k in info.get("missing_keys") or () if ours(k)) if missing else []
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        shape = list(model.state_dict()[absent[0]].shape)
        raise BertctlError(
            f"{weights} has no {absent[0]}{more}; config.json implies one of shape {shape}",
            hint,
        )
    extra = sorted(k for k in info.get("unexpected_keys") or () if _is_encoder(k))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise BertctlError(
            f"{weights} holds {extra[0]}{more} of shape {_shape_in_file(weights, extra[0])}, "
            "which config.json has no place for",
            hint,
        )


def _is_encoder(name: str) -> bool:
    """Whether a tensor name is part of BERT's encoder (not a head: cls.*, classifier.*, ...).

    position_ids is an index buffer the model builds from its config; older files store it."""
    if name.endswith("position_ids"):
        return False
    return name.removeprefix("bert.").split(".")[0] in ENCODER_PARTS


def _shape_in_file(weights: Path, name: str) -> list[int] | str:
    """A tensor's shape from the safetensors header (under its name, or without `bert.`)."""
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        names = set(f.keys())
        for key in (name, name.removeprefix("bert.")):
            if key in names:
                return list(f.get_slice(key).get_shape())
    return "unknown"
