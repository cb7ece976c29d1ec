"""`inspect`'s core: read whatever the user pointed at and report architecture, counts and problems.

Returns a plain report value; the command renders it as tables or JSON and picks the exit code.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bertctl import archive, modelref
from bertctl.bertconfig import (
    TRAINING_NAMES,
    TRAINING_SUFFIXES,
    BertConfig,
    LoadedConfig,
    Problem,
    check_config,
    compare_shapes,
    count_parameters,
    load_config,
    parse_config_bytes,
)
from bertctl.errors import BertctlError
from bertctl.tokenization import Vocab


@dataclass
class TensorInfo:
    name: str
    dtype: str
    shape: list[int]
    nbytes: int


@dataclass
class CheckpointInfo:
    """What a checkpoint holds, summarised."""

    path: str
    format: str
    tensors: int
    model_tensors: int
    bytes: int
    dtypes: dict[str, int]
    has_pretraining_heads: bool
    has_optimizer_slots: bool
    has_global_step: bool
    classifier_labels: int | None
    tensor_list: list[TensorInfo] = field(default_factory=list)


@dataclass
class VocabInfo:
    source: str
    size: int
    lowercase: bool | None
    casing_reason: str


@dataclass
class Report:
    """Everything `inspect` found. `problems` lists errors and warnings in the order found."""

    target: str
    kind: str
    config_source: str | None = None
    config: dict[str, Any] | None = None
    defaults_applied: list[str] = field(default_factory=list)
    parameters: int | None = None
    parameters_with_heads: int | None = None
    fp32_bytes: int | None = None
    fp32_bytes_with_heads: int | None = None
    vocab: VocabInfo | None = None
    checkpoint: CheckpointInfo | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.level == "error" for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _add_config(report: Report, loaded: LoadedConfig) -> BertConfig | None:
    report.config_source = loaded.source
    report.problems.extend(loaded.problems)
    report.defaults_applied = list(loaded.defaults_applied)
    config = loaded.config
    if config is not None:
        report.config = config.to_dict()
        report.parameters = count_parameters(config)
        report.parameters_with_heads = count_parameters(config, heads=True)
        report.fp32_bytes = 4 * report.parameters
        report.fp32_bytes_with_heads = 4 * report.parameters_with_heads
    return config


def _add_vocab(report: Report, ref: modelref.ModelRef, vocab: Vocab | None) -> None:
    if vocab is None:
        return
    lower, why = modelref.model_casing(ref, vocab)
    report.vocab = VocabInfo(vocab.source, len(vocab), lower, why)
    report.problems.extend(Problem("warning", w) for w in vocab.warnings)
    if report.config and report.config["vocab_size"] != len(vocab):
        report.problems.append(
            Problem(
                "error",
                f"vocab_size is {report.config['vocab_size']} in {report.config_source} but "
                f"{vocab.source} has {len(vocab)} lines; use the vocab.txt that came with the model",
            )
        )
    if ref.release is not None and vocab.looks_cased == ref.release.lowercase:
        word = "cased" if vocab.looks_cased else "uncased"
        report.problems.append(
            Problem(
                "warning",
                f"{vocab.source} looks {word}, but {ref.release.folder} is not; "
                "is this the model's own vocab.txt?",
            )
        )


def _checkpoint_info(
    ckpt, path: str, config: BertConfig | None, tensors: bool
) -> tuple[CheckpointInfo, list[Problem]]:
    """Summarise a tfcheckpoint.Checkpoint and compare it with what the config implies."""
    entries = ckpt.entries
    problems: list[Problem] = []
    dtypes: dict[str, int] = {}
    model: dict[str, tuple[int, ...]] = {}
    total = 0
    slots = False
    for name, entry in entries.items():
        dtypes[entry.dtype] = dtypes.get(entry.dtype, 0) + 1
        total += entry.size
        if name.endswith(TRAINING_SUFFIXES) or name.startswith("AdamWeightDecayOptimizer"):
            slots = True
        elif name not in TRAINING_NAMES:
            model[name] = tuple(entry.shape)
    heads = any(n.startswith("cls/") for n in model)
    labels = None
    if "output_weights" in model and len(model["output_weights"]) == 2:
        labels = model["output_weights"][0]
    info = CheckpointInfo(
        path=path,
        format="TensorFlow checkpoint (tensor bundle)",
        tensors=len(entries),
        model_tensors=len(model),
        bytes=total,
        dtypes=dtypes,
        has_pretraining_heads=heads,
        has_optimizer_slots=slots,
        has_global_step="global_step" in entries,
        classifier_labels=labels,
    )
    if tensors:
        info.tensor_list = [
            TensorInfo(e.name, e.dtype, list(e.shape), e.size) for e in entries.values()
        ]
    if config is not None:
        problems.extend(compare_shapes(model, config, path))
    return info, problems


def _safetensors_info(path: Path, tensors: bool) -> CheckpointInfo:
    """Tensor names, dtypes and shapes from a safetensors header (8-byte length + JSON)."""
    from bertctl.verify import safetensors_header

    header = safetensors_header(path)
    items = []
    dtypes: dict[str, int] = {}
    total = 0
    for name, meta in sorted(header.items()):
        start, end = meta["data_offsets"]
        items.append(TensorInfo(name, meta["dtype"].lower(), list(meta["shape"]), end - start))
        dtypes[meta["dtype"].lower()] = dtypes.get(meta["dtype"].lower(), 0) + 1
        total += end - start
    return CheckpointInfo(
        path=str(path),
        format="safetensors",
        tensors=len(items),
        model_tensors=len(items),
        bytes=total,
        dtypes=dtypes,
        has_pretraining_heads=any(i.name.startswith("cls.") for i in items),
        has_optimizer_slots=False,
        has_global_step=False,
        classifier_labels=next(
            (i.shape[0] for i in items if i.name == "classifier.weight" and len(i.shape) == 2), None
        ),
        tensor_list=items if tensors else [],
    )


def inspect_target(target: str, tensors: bool = False) -> Report:
    """Inspect a catalogue name, config file, release/HF folder, release zip or checkpoint."""
    from bertctl import tfcheckpoint

    ref = modelref.resolve(target)
    report = Report(target=target, kind=ref.kind)
    if ref.kind == "catalog":
        assert ref.release is not None
        config = _add_config(
            report, check_config(ref.release.bert_config(), f"{ref.release.name} (catalogue)")
        )
        _add_vocab(report, ref, modelref.read_vocab(ref))
        return report
    if ref.kind == "config-file":
        assert ref.path is not None
        _add_config(report, load_config(ref.path))
        return report
    if ref.kind == "release-zip":
        return _inspect_zip(report, ref, tensors)
    if ref.kind == "checkpoint":
        assert ref.path is not None
        prefix = tfcheckpoint.resolve_prefix(ref.path)
        config = None
        cfg = prefix.parent / "bert_config.json"
        if cfg.is_file():
            config = _add_config(report, load_config(cfg))
            _add_vocab(report, ref, modelref.read_vocab(ref))
        info, problems = _checkpoint_info(
            tfcheckpoint.Checkpoint(prefix), str(prefix), config, tensors
        )
        report.checkpoint = info
        report.problems.extend(problems)
        return report
    assert ref.path is not None
    folder = ref.path
    if ref.kind == "release-folder":
        config = _add_config(report, load_config(folder / "bert_config.json"))
        _add_vocab(report, ref, _vocab_or_problem(report, ref, folder))
        indexes = sorted(folder.glob("*.index"))
        if not indexes:
            report.problems.append(
                Problem("error", f"{folder}: no checkpoint (*.index); re-extract the release zip")
            )
            return report
        prefix = tfcheckpoint.resolve_prefix(folder)
        info, problems = _checkpoint_info(
            tfcheckpoint.Checkpoint(prefix), str(prefix), config, tensors
        )
        report.checkpoint = info
        report.problems.extend(problems)
        return report
    # HF-format folder
    _add_config(report, load_config(folder / "config.json"))
    _add_vocab(report, ref, _vocab_or_problem(report, ref, folder))
    weights = folder / "model.safetensors"
    if weights.is_file():
        report.checkpoint = _safetensors_info(weights, tensors)
    elif (folder / "pytorch_model.bin").is_file():
        report.problems.append(
            Problem(
                "warning",
                f"{folder}: weights only as pytorch_model.bin (a pickle, not opened); "
                "prefer model.safetensors",
            )
        )
    else:
        report.problems.append(Problem("warning", f"{folder}: no weights file (model.safetensors)"))
    return report


def _vocab_or_problem(report: Report, ref: modelref.ModelRef, folder: Path) -> Vocab | None:
    if not (folder / "vocab.txt").is_file():
        report.problems.append(Problem("error", f"{folder}: vocab.txt is missing"))
        return None
    return modelref.read_vocab(ref)


def _inspect_zip(report: Report, ref: modelref.ModelRef, tensors: bool) -> Report:
    """Read config, vocab and checkpoint index straight from a release zip, extracting nothing."""
    from bertctl import tfcheckpoint

    assert ref.path is not None
    folder = f"{ref.zip_folder}/" if ref.zip_folder else ""
    with archive.open_zip(ref.path) as zf:
        members = {i.filename: i for i in zf.infolist()}
        config_name = f"{folder}bert_config.json"
        config = _add_config(
            report,
            parse_config_bytes(
                archive.read_member(zf, config_name, str(ref.path), modelref.CONFIG_LIMIT),
                f"{ref.path}:{config_name}",
            ),
        )
        if f"{folder}vocab.txt" in members:
            _add_vocab(report, ref, modelref.read_vocab(ref))
        else:
            report.problems.append(Problem("error", f"{ref.path}: no {folder}vocab.txt in the zip"))
        index = [
            n
            for n in members
            if n.startswith(folder) and n.endswith(".index") and "/" not in n[len(folder) :]
        ]
        if not index:
            report.problems.append(
                Problem("error", f"{ref.path}: no checkpoint .index in {folder or 'the zip root'}")
            )
            return report
        with tempfile.TemporaryDirectory(prefix="bertctl-inspect-") as tmp:
            local = Path(tmp) / Path(index[0]).name
            local.write_bytes(archive.read_member(zf, index[0], str(ref.path)))
            try:
                ckpt = tfcheckpoint.Checkpoint(Path(tmp) / local.name[: -len(".index")])
            except BertctlError as exc:  # name the member, not the temporary copy
                message = exc.message.replace(str(local), f"{ref.path}:{index[0]}")
                raise type(exc)(message, exc.hint) from None
            info, problems = _checkpoint_info(
                ckpt, f"{ref.path}:{index[0][: -len('.index')]}", config, tensors
            )
    report.checkpoint = info
    report.problems.extend(problems)
    return report
