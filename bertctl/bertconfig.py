"""bert_config.json: load, apply Google's defaults, validate, count parameters, expected tensors.

Google's `BertConfig.from_dict` copies whatever keys it finds onto a config whose defaults are
BERT-Base with type_vocab_size 16; only vocab_size has no default. bertctl applies the same
defaults but says which ones it applied, and reports every problem instead of the first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bertctl.errors import ConfigError

# Google's modeling.BertConfig defaults. vocab_size is required.
GOOGLE_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 16,
    "initializer_range": 0.02,
}
INT_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)
PROB_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
# Sizes beyond these come from a damaged or crafted file, not a model: TensorFlow stores shapes
# as int32, and every layer is listed tensor by tensor (a billion layers would never finish).
MAX_SIZE = 2**31 - 1
MAX_LAYERS = 1000
# Google's modeling.get_activation accepts these names.
ACTIVATIONS = ("gelu", "relu", "tanh", "linear")
# Keys the multilingual/Chinese configs carry that no code reads.
IGNORED_KEYS = frozenset(
    {
        "directionality",
        "pooler_fc_size",
        "pooler_num_attention_heads",
        "pooler_num_fc_layers",
        "pooler_size_per_head",
        "pooler_type",
    }
)
# Keys an HF-format config.json adds; read where they matter, otherwise tolerated.
HF_KEYS = frozenset(
    {
        "model_type",
        "architectures",
        "layer_norm_eps",
        "pad_token_id",
        "position_embedding_type",
        "transformers_version",
        "use_cache",
        "classifier_dropout",
        "torch_dtype",
        "dtype",
        "gradient_checkpointing",
        "id2label",
        "label2id",
        "problem_type",
        "num_labels",
        "_name_or_path",
        "is_decoder",
        "add_cross_attention",
        "bos_token_id",
        "eos_token_id",
        "tie_word_embeddings",
        "finetuning_task",
        "output_past",
        "do_lower_case",
    }
)


@dataclass(frozen=True)
class Problem:
    """One finding: level "error" (the model cannot be built or loaded) or "warning"."""

    level: str
    message: str


@dataclass(frozen=True)
class BertConfig:
    """The architecture, after Google's defaults.

    Attributes follow bert_config.json. `layer_norm_eps` is not a Google key: TensorFlow used
    1e-12, which an HF config.json may override.
    """

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 16
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LoadedConfig:
    """A config file read and checked.

    Attributes:
        config: the architecture with defaults applied, or None when it cannot be built.
        raw: the JSON object as written.
        defaults_applied: keys that were absent and took Google's default.
        problems: every error and warning found.
        source: the file it came from.
    """

    config: BertConfig | None
    raw: dict[str, Any]
    defaults_applied: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = field(default=())
    source: str = "bert_config.json"

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_positive_number(value: Any) -> bool:
    """A finite number above 0 (JSON as Python reads it also spells Infinity and NaN)."""
    return _is_number(value) and 0 < value < float("inf")


def check_config(raw: Any, source: str = "bert_config.json") -> LoadedConfig:
    """Validate a parsed bert_config.json / config.json and apply Google's defaults.

    Never raises for content problems: they are returned as `problems`, so `inspect` can show all
    of them at once. Callers that need a usable config use `require_config`.
    """
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        problem = Problem("error", f"{source} holds a JSON {kind}, not an object of config keys")
        return LoadedConfig(None, {}, (), (problem,), source)
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    defaults: list[str] = []

    def err(message: str) -> None:
        problems.append(Problem("error", message))

    if "vocab_size" not in raw:
        err(
            f"{source}: vocab_size is missing (it has no default); set it to the line count of vocab.txt"
        )
    for key in INT_KEYS:
        if key not in raw:
            if key in GOOGLE_DEFAULTS:
                values[key] = GOOGLE_DEFAULTS[key]
                defaults.append(key)
            continue
        value = raw[key]
        if isinstance(value, float) and value.is_integer():
            problems.append(
                Problem("warning", f"{source}: {key} is {value!r}; read as {int(value)}")
            )
            value = int(value)
        limit = MAX_LAYERS if key == "num_hidden_layers" else MAX_SIZE
        if not _is_int(value):
            err(f"{source}: {key} must be a whole number, got {json.dumps(value)}")
        elif value <= 0:
            err(f"{source}: {key} must be positive, got {value}")
        elif value > limit:
            shown = f"{value:,}" if value < 10**15 else f"a {len(str(value))}-digit number"
            err(f"{source}: {key} is {shown}, beyond any BERT (at most {limit:,})")
        else:
            values[key] = value
    for key in PROB_KEYS:
        if key not in raw:
            values[key] = GOOGLE_DEFAULTS[key]
            defaults.append(key)
        elif not _is_number(raw[key]) or not 0.0 <= raw[key] < 1.0:
            err(f"{source}: {key} must be a probability in [0, 1), got {json.dumps(raw[key])}")
        else:
            values[key] = float(raw[key])
    if "initializer_range" not in raw:
        values["initializer_range"] = GOOGLE_DEFAULTS["initializer_range"]
        defaults.append("initializer_range")
    elif not _is_positive_number(raw["initializer_range"]):
        err(
            f"{source}: initializer_range must be a positive number, got {raw['initializer_range']!r}"
        )
    else:
        values["initializer_range"] = float(raw["initializer_range"])
    act = raw.get("hidden_act", GOOGLE_DEFAULTS["hidden_act"])
    if "hidden_act" not in raw:
        defaults.append("hidden_act")
    # HF spells the tanh approximation Google's code uses "gelu_new"; accept its names too.
    if not isinstance(act, str) or act not in (*ACTIVATIONS, "gelu_new", "gelu_pytorch_tanh"):
        err(f"{source}: hidden_act must be one of {', '.join(ACTIVATIONS)}, got {json.dumps(act)}")
    else:
        values["hidden_act"] = act
    if "layer_norm_eps" in raw:
        if not _is_positive_number(raw["layer_norm_eps"]):
            err(
                f"{source}: layer_norm_eps must be a positive number, got {raw['layer_norm_eps']!r}"
            )
        else:
            values["layer_norm_eps"] = float(raw["layer_norm_eps"])
    hidden, heads = values.get("hidden_size"), values.get("num_attention_heads")
    if _is_int(hidden) and _is_int(heads) and hidden % heads:
        err(
            f"{source}: hidden_size {hidden} is not divisible by num_attention_heads {heads}; "
            f"use a head count that divides it (e.g. {hidden // 64 or 1})"
        )
    known = set(INT_KEYS) | set(PROB_KEYS) | {"hidden_act", "initializer_range"}
    for key in sorted(set(raw) - known - IGNORED_KEYS - HF_KEYS):
        near = _near_key(key, known)
        if near and near not in raw:
            # A misspelt key silently falls back to a default and builds the wrong model.
            err(
                f"{source}: unknown key {key!r}, so {near} takes Google's default "
                f"{GOOGLE_DEFAULTS.get(near)!r}; rename it to {near!r}"
            )
        else:
            hint = f" (did you mean {near}?)" if near else ""
            problems.append(Problem("warning", f"{source}: unknown key {key!r} is ignored{hint}"))
    if "type_vocab_size" in defaults:
        problems.append(
            Problem(
                "warning",
                f"{source}: type_vocab_size is absent; Google's default is 16 (releases use 2)",
            )
        )
    config = None if any(p.level == "error" for p in problems) else BertConfig(**values)
    return LoadedConfig(config, dict(raw), tuple(defaults), tuple(problems), source)


def _near_key(key: str, known: set[str]) -> str | None:
    """A known key that differs from `key` only in case, separators or a small typo."""
    import difflib

    norm = key.lower().replace("-", "_")
    if norm in known:
        return norm
    close = difflib.get_close_matches(norm, sorted(known), n=1, cutoff=0.8)
    return close[0] if close else None


def parse_config_bytes(data: bytes, source: str) -> LoadedConfig:
    """Parse JSON bytes of a config file and check them."""
    if not data.strip():
        raise ConfigError(
            f"{source} is empty", "restore the bert_config.json that came with the model"
        )
    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{source} is not UTF-8 text (byte {exc.start})",
            "pass the bert_config.json of the model",
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})",
            "fix the file or restore the original bert_config.json",
        ) from None
    except (ValueError, RecursionError) as exc:
        # A number of thousands of digits (Python's int limit) or nesting thousands deep: no
        # config looks like that.
        what = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        raise ConfigError(
            f"{source}: not a config file ({what})",
            "restore the bert_config.json that came with the model",
        ) from None
    return check_config(raw, source)


def load_config(path: str | Path) -> LoadedConfig:
    """Read and check a bert_config.json or HF config.json."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file", "pass a bert_config.json or a model folder"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder", "pass the bert_config.json inside it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_config_bytes(data, str(path))


def require_config(loaded: LoadedConfig) -> BertConfig:
    """The config, or a ConfigError carrying the first error found."""
    if loaded.config is None:
        first = loaded.errors[0].message if loaded.errors else f"{loaded.source} is unusable"
        raise ConfigError(first)
    return loaded.config


# --------------------------------------------------------------------------------------------
# Parameters and tensors
# --------------------------------------------------------------------------------------------


def expected_tensor_shapes(config: BertConfig, heads: bool = True) -> dict[str, tuple[int, ...]]:
    """Every variable of a Google checkpoint for this config, with its TF shape (REFERENCE §2).

    Kernels are [in, out] as TensorFlow stores them. `heads` adds the pretraining heads (cls/...).
    """
    h, i = config.hidden_size, config.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "bert/embeddings/word_embeddings": (config.vocab_size, h),
        "bert/embeddings/position_embeddings": (config.max_position_embeddings, h),
        "bert/embeddings/token_type_embeddings": (config.type_vocab_size, h),
        "bert/embeddings/LayerNorm/gamma": (h,),
        "bert/embeddings/LayerNorm/beta": (h,),
    }
    for n in range(config.num_hidden_layers):
        p = f"bert/encoder/layer_{n}/"
        for part in ("query", "key", "value"):
            shapes[f"{p}attention/self/{part}/kernel"] = (h, h)
            shapes[f"{p}attention/self/{part}/bias"] = (h,)
        shapes[f"{p}attention/output/dense/kernel"] = (h, h)
        shapes[f"{p}attention/output/dense/bias"] = (h,)
        shapes[f"{p}attention/output/LayerNorm/gamma"] = (h,)
        shapes[f"{p}attention/output/LayerNorm/beta"] = (h,)
        shapes[f"{p}intermediate/dense/kernel"] = (h, i)
        shapes[f"{p}intermediate/dense/bias"] = (i,)
        shapes[f"{p}output/dense/kernel"] = (i, h)
        shapes[f"{p}output/dense/bias"] = (h,)
        shapes[f"{p}output/LayerNorm/gamma"] = (h,)
        shapes[f"{p}output/LayerNorm/beta"] = (h,)
    shapes["bert/pooler/dense/kernel"] = (h, h)
    shapes["bert/pooler/dense/bias"] = (h,)
    if heads:
        shapes["cls/predictions/transform/dense/kernel"] = (h, h)
        shapes["cls/predictions/transform/dense/bias"] = (h,)
        shapes["cls/predictions/transform/LayerNorm/gamma"] = (h,)
        shapes["cls/predictions/transform/LayerNorm/beta"] = (h,)
        shapes["cls/predictions/output_bias"] = (config.vocab_size,)
        shapes["cls/seq_relationship/output_weights"] = (2, h)
        shapes["cls/seq_relationship/output_bias"] = (2,)
    return shapes


# Variables Google's training scripts add next to the model weights (REFERENCE §2), and the
# classifier a fine-tuned checkpoint adds on top.
TRAINING_SUFFIXES = ("/adam_m", "/adam_v")
TRAINING_NAMES = ("global_step",)
CLASSIFIER_NAMES = ("output_weights", "output_bias")


def is_training_variable(name: str) -> bool:
    """True for optimizer slots and `global_step`: saved by training, not part of the model."""
    return (
        name.endswith(TRAINING_SUFFIXES)
        or name.startswith("AdamWeightDecayOptimizer")
        or name in TRAINING_NAMES
    )


def compare_shapes(
    found: Mapping[str, Sequence[int]], config: BertConfig, where: str
) -> list[Problem]:
    """Compare a checkpoint's tensor shapes with the ones `config` implies.

    Training variables (Adam slots, `global_step`) are ignored. The pretraining heads are
    optional: they are expected only when the checkpoint holds some `cls/` tensor. Returns an
    error per mismatched shape, one error summarising missing tensors, and a warning for
    tensors no BERT config explains (a fine-tuned classifier's `output_*` are accepted).

    Args:
        found: tensor name -> shape, as the checkpoint index records them.
        config: the architecture they should match.
        where: how to name the checkpoint in messages.
    """
    model = {n: tuple(s) for n, s in found.items() if not is_training_variable(n)}
    heads = any(n.startswith("cls/") for n in model)
    expected = expected_tensor_shapes(config, heads=heads)
    problems = []
    missing = [n for n in expected if n not in model]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        problems.append(
            Problem("error", f"{where}: tensor {missing[0]}{more} missing for this config")
        )
    for name, shape in expected.items():
        if name in model and model[name] != shape:
            problems.append(
                Problem(
                    "error",
                    f"{where}: tensor {name} has shape {list(model[name])}, the config implies "
                    f"{list(shape)}; the checkpoint and bert_config.json do not belong together",
                )
            )
    extra = [n for n in model if n not in expected and n not in CLASSIFIER_NAMES]
    if extra:
        problems.append(
            Problem(
                "warning",
                f"{where}: {len(extra)} tensor(s) no BERT config explains, e.g. {extra[0]}",
            )
        )
    return problems


def count_parameters(config: BertConfig, heads: bool = False) -> int:
    """Exact parameter count: encoder + pooler, plus the MLM and NSP heads when `heads`.

    The MLM decoder is tied to the word embeddings, so only its bias counts.

    >>> count_parameters(BertConfig(vocab_size=30522, type_vocab_size=2))
    109482240
    """
    total = 0
    for shape in expected_tensor_shapes(config, heads=heads).values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total
