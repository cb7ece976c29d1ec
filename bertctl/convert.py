"""Convert a Google TF checkpoint into a folder that ``transformers`` loads with ``from_pretrained``.

The output folder holds::

    model.safetensors        every model tensor under transformers' BERT key names (REFERENCE §2)
    config.json              model_type "bert", architectures, the bert_config values
    vocab.txt                the model's vocab, byte for byte
    tokenizer_config.json    BertTokenizer, do_lower_case, model_max_length, special tokens
    special_tokens_map.json

What the checkpoint holds decides the architecture written into config.json:

* ``bert/*`` plus the pretraining heads ``cls/*`` (a release) -> ``BertForPreTraining``;
* ``bert/*`` plus top-level ``output_weights``/``output_bias`` (run_classifier.py) ->
  ``BertForSequenceClassification`` (``classifier.weight``/``classifier.bias``);
* ``bert/*`` alone -> ``BertModel``.

Training variables (``*/adam_m``, ``*/adam_v``, ``AdamWeightDecayOptimizer*``, ``global_step``)
are skipped and reported. Any other name is an error: a converter that silently drops a tensor it
does not understand produces a model that loads and quietly computes the wrong thing.

Only the standard library and numpy (plus google_crc32c, a bertctl dependency) are used: no
torch, no TensorFlow. The safetensors file is written by hand, streaming, so peak memory stays
near the size of the largest kernel rather than the size of the model, and every source tensor's
bytes are checked against the CRC32C TensorFlow stored for it while they are being copied.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from bertctl import outputs
from bertctl.bertconfig import BertConfig, expected_tensor_shapes, load_config, require_config
from bertctl.errors import BertctlError
from bertctl.tfcheckpoint import Checkpoint, TensorEntry
from bertctl.tokenization import Vocab, load_vocab

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ConvertError", "ConvertResult", "convert", "hf_name"]

SAFETENSORS_NAME = "model.safetensors"

# Special tokens of Google's vocabularies, under the names transformers' tokenizers use.
SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}

# Google's modeling.py computes "gelu" with the tanh approximation
# (0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))); transformers' "gelu" is the exact erf form and
# its tanh form is called "gelu_new". The two differ by ~1e-3 in BERT's outputs, so the name is
# translated rather than copied. Every other activation keeps its name.
_HF_ACTIVATION = {"gelu": "gelu_new"}

_COPY_CHUNK = 8 << 20  # non-transposed tensors are copied in 8 MiB pieces
_BAND = 64  # output rows per write when transposing a kernel
_CRC_MASK_DELTA = 0xA282EAD8


class ConvertError(BertctlError):
    """A checkpoint that cannot be converted, or an output folder that cannot be written."""


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert` wrote.

    Attributes:
        out_dir: the finished folder.
        tensors: tensors written to model.safetensors.
        skipped: checkpoint variables left out (optimizer slots, global_step, and the ``cls/``
            heads when ``heads=False``), sorted.
        heads: whether the pretraining heads (``cls.*``) were written.
        classifier_labels: number of classes of a run_classifier.py checkpoint, else None.
        bytes: size of model.safetensors (header included).
    """

    out_dir: Path
    tensors: int
    skipped: tuple[str, ...]
    heads: bool
    classifier_labels: int | None
    bytes: int


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

_LAYER = r"bert/encoder/layer_(?:0|[1-9]\d*)/"
# Every variable name of Google's BertModel and pretraining heads (REFERENCE §2), as patterns.
_MODEL_NAME = re.compile(
    "|".join(
        [
            r"bert/embeddings/(?:word|position|token_type)_embeddings",
            r"bert/embeddings/LayerNorm/(?:gamma|beta)",
            _LAYER + r"attention/self/(?:query|key|value)/(?:kernel|bias)",
            _LAYER + r"(?:attention/output|intermediate|output)/dense/(?:kernel|bias)",
            _LAYER + r"(?:attention/output|output)/LayerNorm/(?:gamma|beta)",
            r"bert/pooler/dense/(?:kernel|bias)",
            r"cls/predictions/transform/dense/(?:kernel|bias)",
            r"cls/predictions/transform/LayerNorm/(?:gamma|beta)",
        ]
    )
)
# Names whose HF key is not a component-by-component rewrite.
_SPECIAL_NAMES = {
    "cls/predictions/output_bias": "cls.predictions.bias",
    "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",  # already [out, in]
    "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
    "output_weights": "classifier.weight",  # run_classifier.py: [labels, H], already [out, in]
    "output_bias": "classifier.bias",
}
_COMPONENT = {"kernel": "weight", "gamma": "weight", "beta": "bias"}


def is_training_variable(tf_name: str) -> bool:
    """Whether ``tf_name`` is optimizer or step state rather than part of the model.

    >>> is_training_variable("bert/pooler/dense/kernel/adam_m"), is_training_variable("global_step")
    (True, True)
    """
    parts = tf_name.split("/")
    return (
        tf_name == "global_step"
        or parts[-1] in ("adam_m", "adam_v")
        or any(part.startswith("AdamWeightDecayOptimizer") for part in parts)
    )


def hf_name(tf_name: str) -> str | None:
    """The transformers key of a Google checkpoint variable; None for a training variable.

    ``/`` becomes ``.``, ``layer_N`` becomes ``layer.N``, ``kernel`` and ``gamma`` become
    ``weight``, ``beta`` becomes ``bias``, an embedding table gains ``.weight``.

    >>> hf_name("bert/encoder/layer_3/attention/self/query/kernel")
    'bert.encoder.layer.3.attention.self.query.weight'
    >>> hf_name("cls/predictions/output_bias")
    'cls.predictions.bias'
    >>> hf_name("bert/embeddings/word_embeddings/adam_v") is None
    True

    Raises:
        ConvertError: a name that is neither a BERT variable nor a training variable.
    """
    if is_training_variable(tf_name):
        return None
    special = _SPECIAL_NAMES.get(tf_name)
    if special is not None:
        return special
    if not _MODEL_NAME.fullmatch(tf_name):
        raise ConvertError(
            f"checkpoint tensor {tf_name!r} is not a variable of Google's BERT",
            "bertctl converts BertModel variables (bert/...), the pretraining heads (cls/...), "
            "a run_classifier.py head (output_weights, output_bias) and skips optimizer state",
        )
    parts = []
    for part in tf_name.split("/"):
        if part.startswith("layer_"):
            part = "layer." + part[len("layer_") :]
        elif part.endswith("_embeddings"):
            part += ".weight"
        parts.append(_COMPONENT.get(part, part))
    return ".".join(parts)


def needs_transpose(tf_name: str) -> bool:
    """Dense kernels are [in, out] in TensorFlow and [out, in] in torch; nothing else flips."""
    return tf_name.endswith("/kernel")


# --------------------------------------------------------------------------------------------
# Planning: what goes where, checked before a byte is written
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """One tensor to write: its source entry, its key and shape in the output, where it goes."""

    entry: TensorEntry
    key: str
    shape: tuple[int, ...]
    transpose: bool
    begin: int  # offset in the safetensors byte buffer (after the header)

    @property
    def end(self) -> int:
        return self.begin + self.entry.size


@dataclass(frozen=True)
class _Plan:
    items: tuple[_Item, ...]
    skipped: tuple[str, ...]
    heads: bool
    labels: int | None


def _plan(ckpt: Checkpoint, config: BertConfig, keep_heads: bool) -> _Plan:
    """Map every checkpoint tensor, check names, shapes and dtypes against the config."""
    model: dict[str, str] = {}  # tf name -> hf key
    skipped: list[str] = [*ckpt.string_tensors]
    for name in ckpt.entries:
        key = hf_name(name)
        if key is None or (not keep_heads and name.startswith("cls/")):
            skipped.append(name)
        else:
            model[name] = key

    has_heads = any(name.startswith("cls/") for name in model)
    has_classifier = "output_weights" in model or "output_bias" in model
    if has_heads and has_classifier:
        raise ConvertError(
            f"{ckpt.prefix} holds both the pretraining heads (cls/...) and a classifier "
            "(output_weights), which no single transformers class loads",
            "pass heads=False to drop the pretraining heads",
        )
    expected = expected_tensor_shapes(config, heads=has_heads)
    if has_classifier:
        for name in ("output_weights", "output_bias"):
            if name not in model:
                raise ConvertError(
                    f"{ckpt.prefix} has a classifier head without {name!r}",
                    "pass a complete run_classifier.py checkpoint",
                )
        weights = ckpt.entries["output_weights"]
        if len(weights.shape) != 2 or weights.shape[0] < 1:
            raise ConvertError(
                f"classifier tensor 'output_weights' is {list(weights.shape)}; "
                f"run_classifier.py writes [labels, {config.hidden_size}]"
            )
        labels = weights.shape[0]
        expected["output_weights"] = (labels, config.hidden_size)
        expected["output_bias"] = (labels,)
    else:
        labels = None

    for name, shape in expected.items():
        if name not in model:
            raise ConvertError(
                f"checkpoint {ckpt.prefix} has no tensor {name!r} (expected {list(shape)})",
                "the checkpoint and bert_config.json do not belong together, or the checkpoint "
                "is incomplete",
            )
        entry = ckpt.entries[name]
        if entry.shape != shape:
            raise ConvertError(
                f"tensor {name!r} is {list(entry.shape)} in the checkpoint but bert_config.json "
                f"implies {list(shape)}",
                "pass the bert_config.json that came with this checkpoint",
            )
        if entry.dtype != "float32":
            raise ConvertError(
                f"tensor {name!r} is {entry.dtype}; bertctl converts float32 checkpoints only",
                "re-save the checkpoint in float32 (Google's releases are float32)",
            )
    extra = sorted(set(model) - set(expected))
    if extra:
        raise ConvertError(
            f"checkpoint tensor {extra[0]!r} is not part of the model bert_config.json describes "
            f"({config.num_hidden_layers} layers)"
            + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""),
            "pass the bert_config.json that came with this checkpoint",
        )

    # Lay the output out in the order the bytes sit in the checkpoint, so both files are read
    # and written front to back (safetensors only needs offsets that tile the buffer).
    order = sorted(model, key=lambda n: (ckpt.entries[n].shard_id, ckpt.entries[n].offset, n))
    items: list[_Item] = []
    begin = 0
    for name in order:
        entry = ckpt.entries[name]
        flip = needs_transpose(name)
        shape = tuple(reversed(entry.shape)) if flip else entry.shape
        items.append(_Item(entry, model[name], shape, flip, begin))
        begin += entry.size
    return _Plan(tuple(items), tuple(sorted(skipped)), has_heads, labels)


def _check_data_files(ckpt: Checkpoint, items: Sequence[_Item]) -> None:
    """Every data file exists and is long enough for the tensors read from it."""
    needed: dict[int, tuple[int, str]] = {}
    for item in items:
        end = item.entry.offset + item.entry.size
        if end > needed.get(item.entry.shard_id, (0, ""))[0]:
            needed[item.entry.shard_id] = (end, item.entry.name)
    for shard, (end, name) in sorted(needed.items()):
        path = ckpt.data_path(shard)
        try:
            length = path.stat().st_size
        except FileNotFoundError:
            raise ConvertError(
                f"missing data file {path}",
                "the .index and every .data-NNNNN-of-NNNNN file must sit side by side",
            ) from None
        if length < end:
            raise ConvertError(
                f"data file {path} is truncated: tensor {name!r} needs bytes up to {end}, "
                f"the file has {length}",
                "re-download or re-extract the checkpoint",
            )


# --------------------------------------------------------------------------------------------
# safetensors, written by hand
# --------------------------------------------------------------------------------------------
#
# Why not safetensors.numpy.save_file: it takes a dict of every tensor, already converted, so the
# whole model (440 MB for BERT-Base, 1.3 GB for BERT-Large) would sit in memory at once on top
# of whatever the reader maps. The format is simple enough to stream instead: an 8-byte
# little-endian header length, a JSON header giving each tensor's dtype, shape and
# [begin, end) offsets into the byte buffer that follows, then that buffer. Every name, shape
# and size is known from the checkpoint index before any data is read, so the header is
# written first and the tensors after it one at a time: at any moment memory holds one 8 MiB
# copy buffer, or one memory-mapped kernel and one band of its transpose.


def _safetensors_header(items: Sequence[_Item]) -> bytes:
    """The length-prefixed JSON header; padded with spaces so tensor data starts 8-aligned."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}  # transformers requires "pt"
    for item in items:
        header[item.key] = {
            "dtype": "F32",
            "shape": list(item.shape),
            "data_offsets": [item.begin, item.end],
        }
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _masked(crc: int) -> int:
    """TensorFlow's masked CRC32C (REFERENCE §3): rotate right by 15, add a constant."""
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def _read_into(src: BinaryIO, buffer: np.ndarray, item: _Item) -> None:
    """Fill ``buffer`` (a uint8 array) from ``src`` or fail naming the tensor."""
    view = memoryview(buffer).cast("B")
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise ConvertError(f"data file ended inside tensor {item.entry.name!r}")
        got += n


def _copy_tensor(
    ckpt: Checkpoint, src: BinaryIO, dst: BinaryIO, item: _Item, chunk: np.ndarray
) -> None:
    """Copy one tensor's bytes from the checkpoint to the output, transposing kernels.

    Plain tensors go through ``chunk`` (a reused uint8 buffer) piece by piece. A kernel is
    memory-mapped and written out in bands of output rows, so neither it nor its transpose is
    ever copied whole. The bytes are checksummed as they pass: a mismatch with the CRC
    TensorFlow stored means the data file is corrupt, and nothing of the conversion is kept.
    """
    import google_crc32c
    import numpy as np

    entry = item.entry
    if item.transpose:
        matrix = ckpt.read(entry.name)  # [in, out], "<f4": the output stays little-endian
        crc = google_crc32c.value(matrix.reshape(-1).view(np.uint8))
        for start in range(0, matrix.shape[1], _BAND):
            # Output rows start..start+_BAND are input columns start..start+_BAND. Gathering
            # the columns first (runs of _BAND floats) and transposing that small block uses
            # every cache line whole: about twice as fast as numpy's strided copy of matrix.T.
            band = np.ascontiguousarray(matrix[:, start : start + _BAND])
            dst.write(memoryview(np.ascontiguousarray(band.T)).cast("B"))
        del matrix
    else:
        src.seek(entry.offset)
        crc = 0
        remaining = entry.size
        while remaining:
            piece = chunk[: min(remaining, len(chunk))]
            _read_into(src, piece, item)
            crc = google_crc32c.extend(crc, piece)
            dst.write(memoryview(piece))
            remaining -= len(piece)
    if _masked(crc) != entry.crc32c:
        raise ConvertError(
            f"tensor {entry.name!r} fails its CRC32C check: the data file is corrupt",
            "re-download or re-extract the checkpoint",
        )


def _write_safetensors(
    path: Path,
    ckpt: Checkpoint,
    items: Sequence[_Item],
    on_progress: Callable[[int, int, str], None] | None,
) -> int:
    """Stream every tensor into ``path``; return the file size."""
    import numpy as np

    chunk = np.empty(_COPY_CHUNK, np.uint8)
    header = _safetensors_header(items)
    total = items[-1].end if items else 0
    done = 0
    sources: dict[int, BinaryIO] = {}
    try:
        with path.open("wb") as dst:
            dst.write(header)
            for item in items:
                src = sources.get(item.entry.shard_id)
                if src is None:
                    src = sources[item.entry.shard_id] = ckpt.data_path(item.entry.shard_id).open(
                        "rb"
                    )
                    _read_ahead(src)
                _copy_tensor(ckpt, src, dst, item, chunk)
                done += item.entry.size
                if on_progress is not None:
                    on_progress(done, total, item.key)
            size = dst.tell()
            _fsync(dst)
    finally:
        for src in sources.values():
            src.close()
    if size != len(header) + total:
        raise ConvertError(f"{path}: wrote {size} bytes, expected {len(header) + total}")
    return size


def _read_ahead(handle: BinaryIO) -> None:
    """Ask the kernel to start reading the whole data file now, so disk reads overlap the
    transposing and writing instead of waiting for each tensor (a no-op where unsupported)."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):
            advise(handle.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)


def _fsync(handle: IO[Any]) -> None:
    """Push a file to disk, so the rename that publishes the folder never precedes its data."""
    handle.flush()
    os.fsync(handle.fileno())


# --------------------------------------------------------------------------------------------
# config.json and tokenizer files
# --------------------------------------------------------------------------------------------


def hf_config(
    config: BertConfig,
    *,
    heads: bool,
    labels: Sequence[str] | None,
    pad_token_id: int = 0,
) -> dict[str, Any]:
    """config.json for transformers' BertConfig: the bert_config values plus HF's keys.

    ``labels`` (a classifier's label names, in id order) makes it a sequence classifier.
    """
    if labels is not None:
        architecture = "BertForSequenceClassification"
    elif heads:
        architecture = "BertForPreTraining"
    else:
        architecture = "BertModel"
    out: dict[str, Any] = {
        "architectures": [architecture],
        "model_type": "bert",
        "attention_probs_dropout_prob": config.attention_probs_dropout_prob,
        "hidden_act": _HF_ACTIVATION.get(config.hidden_act, config.hidden_act),
        "hidden_dropout_prob": config.hidden_dropout_prob,
        "hidden_size": config.hidden_size,
        "initializer_range": config.initializer_range,
        "intermediate_size": config.intermediate_size,
        # Google's bert_config.json has no epsilon: TensorFlow's layer_norm used 1e-12.
        "layer_norm_eps": config.layer_norm_eps,
        "max_position_embeddings": config.max_position_embeddings,
        "num_attention_heads": config.num_attention_heads,
        "num_hidden_layers": config.num_hidden_layers,
        "pad_token_id": pad_token_id,
        "position_embedding_type": "absolute",
        "type_vocab_size": config.type_vocab_size,
        "vocab_size": config.vocab_size,
    }
    if labels is not None:
        out["num_labels"] = len(labels)
        out["id2label"] = {str(i): label for i, label in enumerate(labels)}
        out["label2id"] = {label: i for i, label in enumerate(labels)}
    return out


def tokenizer_files(
    vocab_tokens: set[str], *, lowercase: bool, max_length: int
) -> dict[str, dict[str, Any]]:
    """tokenizer_config.json and special_tokens_map.json for transformers' BertTokenizer.

    Only special tokens the vocab holds are named, so the tokenizer never appends new ids past
    the embedding table. (transformers' tokenizer differs from Google's in rare edge cases,
    REFERENCE §4; bertctl's own Tokenizer is Google's exactly.)
    """
    specials = {k: v for k, v in SPECIAL_TOKENS.items() if v in vocab_tokens}
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": lowercase,
        "do_basic_tokenize": True,
        "tokenize_chinese_chars": True,
        # None: strip accents exactly when lowercasing, as Google's BasicTokenizer does.
        "strip_accents": None,
        "model_max_length": max_length,
        **specials,
    }
    return {"tokenizer_config.json": config, "special_tokens_map.json": specials}


def _write_json(path: Path, value: Any) -> None:
    """The folder's JSON files, keys sorted (so two conversions give the same bytes)."""
    outputs.write_json_atomic(path, value, sort_keys=True)


# --------------------------------------------------------------------------------------------
# The output folder
# --------------------------------------------------------------------------------------------


def convert(
    prefix: str | Path,
    out_dir: str | Path,
    *,
    config_path: str | Path,
    vocab_path: str | Path,
    lowercase: bool,
    on_progress: Callable[[int, int, str], None] | None = None,
    overwrite: bool = False,
    heads: bool = True,
    labels: Sequence[str] | None = None,
) -> ConvertResult:
    """Convert a Google TF checkpoint into an HF-format folder (see the module docstring).

    Everything is checked before anything is written: every tensor the config implies is present
    with its shape and float32, no unknown tensor is present, the data files are long enough. The
    folder is built beside ``out_dir`` and renamed into place only when complete, so ``out_dir``
    is never half-written; any failure (a CRC mismatch, a full disk, an exception raised by
    ``on_progress``) removes the partial folder.

    Args:
        prefix: the checkpoint (prefix, .index, .data-* or the folder holding it).
        out_dir: the folder to create.
        config_path: the model's bert_config.json.
        vocab_path: the model's vocab.txt (copied byte for byte).
        lowercase: whether the model is uncased; becomes the tokenizer's do_lower_case.
        on_progress: called after each tensor as ``on_progress(bytes_done, bytes_total, key)``.
        overwrite: replace an existing non-empty ``out_dir``.
        heads: keep the pretraining heads (cls/...) when the checkpoint has them; False drops
            them (they are then listed in ``skipped``) and writes a BertModel folder.
        labels: label names of a classifier checkpoint in id order (default LABEL_0, LABEL_1, ...).

    Returns:
        What was written.

    Raises:
        ConvertError: the checkpoint does not match the config, holds unknown tensors or corrupt
            data, or ``out_dir`` cannot be written.
        CheckpointError, ConfigError, VocabError: unreadable inputs.

    Example::

        convert("uncased_L-12_H-768_A-12/bert_model.ckpt", "bert-base-uncased-hf",
                config_path="uncased_L-12_H-768_A-12/bert_config.json",
                vocab_path="uncased_L-12_H-768_A-12/vocab.txt", lowercase=True)
    """
    out_dir = Path(out_dir)
    config_path, vocab_path = Path(config_path), Path(vocab_path)
    ckpt = Checkpoint(prefix)
    config = require_config(load_config(config_path))
    vocab = load_vocab(vocab_path)
    if len(vocab) > config.vocab_size:
        raise ConvertError(
            f"{vocab_path} lists {len(vocab)} tokens but the model has {config.vocab_size} "
            "embeddings",
            "pass the vocab.txt that came with this checkpoint",
        )
    plan = _plan(ckpt, config, keep_heads=heads)
    if plan.labels is None and labels is not None:
        raise ConvertError("labels were given but the checkpoint has no classifier head")
    label_names: list[str] | None = None
    if plan.labels is not None:
        label_names = [f"LABEL_{i}" for i in range(plan.labels)] if labels is None else list(labels)
        if len(label_names) != plan.labels or len(set(label_names)) != len(label_names):
            raise ConvertError(
                f"{len(label_names)} label names given for a {plan.labels}-class classifier",
                f"pass {plan.labels} distinct names in id order",
            )
    _check_data_files(ckpt, plan.items)
    inputs = [ckpt.index_path, config_path, vocab_path]  # the data files lie beside the index
    with outputs.writing(out_dir, "converted into"):
        outputs.check_folder(out_dir, outputs.MODEL, overwrite=overwrite, inputs=inputs)
        return _write_folder(
            ckpt,
            plan,
            config,
            vocab,
            vocab_path,
            out_dir,
            lowercase,
            labels=label_names,
            on_progress=on_progress,
        )


def _write_folder(
    ckpt: Checkpoint,
    plan: _Plan,
    config: BertConfig,
    vocab: Vocab,
    vocab_path: Path,
    out_dir: Path,
    lowercase: bool,
    *,
    labels: list[str] | None,
    on_progress: Callable[[int, int, str], None] | None,
) -> ConvertResult:
    """Build the folder beside `out_dir` and rename it into place once it is complete."""
    try:
        with outputs.building(out_dir) as temp:
            size = _write_safetensors(temp / SAFETENSORS_NAME, ckpt, plan.items, on_progress)
            pad_id = vocab.ids.get(SPECIAL_TOKENS["pad_token"], 0)
            _write_json(
                temp / "config.json",
                hf_config(config, heads=plan.heads, labels=labels, pad_token_id=pad_id),
            )
            # byte for byte: never re-encoded
            outputs.write_atomic(temp / "vocab.txt", vocab_path.read_bytes())
            files = tokenizer_files(
                set(vocab.tokens), lowercase=lowercase, max_length=config.max_position_embeddings
            )
            for name, value in files.items():
                _write_json(temp / name, value)
            # The marker that lets a later --overwrite replace this folder (and nothing else).
            _write_json(temp / outputs.MODEL.marker, {"written_by": "bertctl convert"})
    except OSError as exc:  # most often a full disk; the folder being built is dropped
        need = sum(item.entry.size for item in plan.items)
        raise ConvertError(
            f"cannot write the converted model beside {out_dir}: {exc.strerror or exc}",
            f"free some disk space (it needs about {need / 1e6:,.1f} MB) and run again; "
            f"{out_dir} was left as it was",
        ) from exc
    return ConvertResult(
        out_dir=out_dir,
        tensors=len(plan.items),
        skipped=plan.skipped,
        heads=plan.heads,
        classifier_labels=plan.labels,
        bytes=size,
    )
