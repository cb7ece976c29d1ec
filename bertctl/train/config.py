"""Training settings: Google's recipe as defaults, a YAML file on top, flags on top of that.

One resolver for every workflow (`resolve`): the same type checks on what a settings file
holds, the same range rules on the settings the workflows share (`TrainingConfig`), and a bad
value that came from a file named by the file and key, not blamed on a flag never passed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from bertctl.errors import BertctlError, UsageError
from bertctl.memory import MAX_BATCH, parse_size

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("google", "adamw")


class SettingError(UsageError):
    """A setting out of range; `keys` are the FinetuneConfig fields the rule involves, so a
    caller can tell whether the value came from a flag or from a settings file."""

    def __init__(self, message: str, hint: str | None = None, keys: tuple[str, ...] = ()):
        super().__init__(message, hint)
        self.keys = keys


def thread_limit() -> int:
    """The most --threads accepted: 4 per core. More only queue for the same cores, and torch
    (OpenMP) crashes or hangs starting tens of thousands of threads."""
    return 4 * (os.cpu_count() or 1)


@dataclass
class TrainingConfig:
    """The settings every training workflow shares, with the same defaults and rules."""

    data: str | None = None
    """The training data: a task folder (fine-tuning) or prepared shards (pretraining)."""
    model: str | None = None
    """Catalogue name, hub:ORG/NAME, release or HF-format folder, or a previous run."""
    out: str | None = None
    """Run folder; default runs/<task>-<model>-<time>."""
    batch_size: int = 32
    """Examples per optimizer step over all processes (Google: 32); --grad-accum splits it."""
    warmup: float = 0.1
    """Fraction of steps with linear warmup (Google: 0.1), then linear decay to 0."""
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    optimizer: str = "google"
    """google: Google's AdamW without bias correction; see each workflow for the others."""
    precision: str = "auto"
    """auto: bf16 on a GPU that supports it, else fp32; or fp32, bf16, fp16 (GPU autocast)."""
    grad_accum: int = 1
    grad_checkpointing: bool = False
    seed: int = 42
    device: str | None = None
    """cpu, cuda, cuda:N; default the first GPU if any (under torchrun: the local rank's)."""
    eval_every: int | None = None
    """Evaluate every N steps (default: each workflow's)."""
    keep_checkpoints: int = 2
    threads: int | None = None
    """CPU threads for torch; default all cores."""
    gpu_memory: str | None = None
    """Plan for a GPU of this size (e.g. 12GiB, 11.5G, 12000MB) instead of reading the free memory
    of the GPU in use; the memory check then runs on any device, the CPU included."""
    auto_fit: bool = False
    """When the estimate does not fit, apply the best settings that do (see `bertctl plan`)."""
    force: bool = False
    """Skip the memory check before training."""

    OPTIMIZERS = OPTIMIZERS  # the optimizers a workflow offers

    def __post_init__(self) -> None:
        for ok, keys, message in self.checks():
            if not ok:
                raise SettingError(message, keys=keys)
        if self.gpu_memory is not None:
            try:
                parse_size(self.gpu_memory, "--gpu-memory")
            except UsageError as exc:
                raise SettingError(exc.message, exc.hint, keys=("gpu_memory",)) from None

    def checks(self) -> list[tuple[bool, tuple[str, ...], str]]:
        """(holds, the fields involved, the message when it does not) for every rule."""
        return _shared_checks(self)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("extra", None)
        return data


@dataclass
class FinetuneConfig(TrainingConfig):
    """Everything a fine-tuning run needs; saved as config.yaml in the run folder."""

    task: str = "mrpc"
    """GLUE task (cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte, wnli, xnli) or custom."""
    lowercase: bool | None = None
    """True/False to force casing; None follows the model (Google's check applies)."""
    epochs: float = 3.0
    """Google: 3."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs), for a short run."""
    eval_batch_size: int = 64
    """Evaluation batch (Google: 8; the size does not change the metrics, only the speed)."""
    lr: float = 2e-5
    """Peak learning rate (Google's README example: 2e-5)."""
    max_seq_length: int = 128
    save_every: int | None = None
    """Checkpoint every N steps; default at each evaluation (default: each epoch's end)."""
    skip_bad_rows: bool = False
    language: str | None = None
    """XNLI language (Google: zh)."""
    text_a: str | None = None
    """custom: the text column (header name or index)."""
    text_b: str | None = None
    label_column: str | None = None
    regression: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def checks(self) -> list[tuple[bool, tuple[str, ...], str]]:
        return [*super().checks(), *_finetune_checks(self)]


@dataclass
class PretrainConfig(TrainingConfig):
    """Everything a pretraining run needs; saved as config.yaml in the run folder."""

    bert_config: str | None = None
    """Start from scratch with this architecture (bert_config.json or config.json): --config."""
    vocab: str | None = None
    """From scratch: the vocab.txt the data was prepared with (default: the bundled uncased one,
    when it is that vocab)."""
    steps: int | None = None
    """Optimizer steps (Google: 100,000); default one pass over the training instances."""
    lr: float | None = None
    """Peak learning rate; default 5e-5 from scratch, 2e-5 continuing (x20 with LAMB)."""
    dynamic_masking: bool = False
    """Mask every instance anew each epoch after the first (RoBERTa), with Google's rules."""
    save_every: int = 1000
    """Checkpoint every N steps (Google: 1,000) and at the end."""
    eval_batches: int = 100
    """Evaluation batches (Google: 100)."""
    eval_batch_size: int = 8
    """Instances per evaluation batch (Google: 8)."""
    holdout: int = 0
    """Evaluate on the last N instances and train on the others; 0: evaluate on the training
    data, as Google's demo does."""

    OPTIMIZERS = ("google", "lamb")  # lamb: LAMB, for large batches

    def checks(self) -> list[tuple[bool, tuple[str, ...], str]]:
        return [*super().checks(), *_pretrain_checks(self)]


def _pretrain_checks(c: PretrainConfig) -> list[tuple[bool, tuple[str, ...], str]]:
    return [
        (
            c.model is None or c.bert_config is None,
            ("model", "bert_config"),
            "--model and --config both given: pass --model to continue from a model, or "
            "--config to start from scratch",
        ),
        (c.steps is None or c.steps > 0, ("steps",), "--steps must be positive"),
        (
            c.lr is None or (math.isfinite(c.lr) and c.lr > 0),
            ("lr",),
            "--lr must be positive",
        ),
        (
            0 <= c.warmup < 1 or (math.isfinite(c.warmup) and float(c.warmup).is_integer()),
            ("warmup",),
            "--warmup is a fraction of the steps (below 1) or a whole number of steps",
        ),
        (c.save_every >= 1, ("save_every",), "--save-every must be at least 1"),
        (c.eval_batches >= 0, ("eval_batches",), "--eval-batches must be 0 or more"),
        (c.eval_batch_size >= 1, ("eval_batch_size",), "--eval-batch-size must be at least 1"),
        (
            c.eval_batch_size <= MAX_BATCH,
            ("eval_batch_size",),
            f"--eval-batch-size must be at most {MAX_BATCH}",
        ),
        (c.holdout >= 0, ("holdout",), "--holdout must be 0 or more"),
    ]


def field_names(cls: type[TrainingConfig]) -> set[str]:
    """The settings of a workflow: the keys its config.yaml and --config file may hold."""
    return {f.name for f in fields(cls)} - {"extra"}


FIELDS = field_names(FinetuneConfig)


def _shared_checks(c: TrainingConfig) -> list[tuple[bool, tuple[str, ...], str]]:
    """The rules on the settings every workflow shares.

    Messages name flags, as most settings come from flags; `resolve` rewrites them for a value
    that came from a settings file (see `_blame_file`)."""
    finite = math.isfinite
    threads = thread_limit()
    return [
        (c.batch_size > 0, ("batch_size",), "--batch-size must be positive"),
        # The search for settings that fit, and the data loader, work per example of a batch;
        # no BERT recipe goes beyond 65,536 (LAMB's), so a larger value is a typo.
        (
            c.batch_size <= MAX_BATCH,
            ("batch_size",),
            f"--batch-size must be at most {MAX_BATCH}",
        ),
        (
            finite(c.weight_decay) and c.weight_decay >= 0,
            ("weight_decay",),
            "weight_decay must be 0 or more",
        ),
        (
            finite(c.max_grad_norm) and c.max_grad_norm > 0,
            ("max_grad_norm",),
            "max_grad_norm must be positive",
        ),
        (0 <= c.seed < 2**32, ("seed",), "--seed must be between 0 and 4294967295"),
        (c.threads is None or c.threads >= 1, ("threads",), "--threads must be at least 1"),
        (
            c.threads is None or c.threads <= threads,
            ("threads",),
            f"--threads must be at most {threads}, 4 per core of the {os.cpu_count() or 1} here",
        ),
        (
            c.eval_every is None or c.eval_every >= 1,
            ("eval_every",),
            "--eval-every must be at least 1",
        ),
        (
            c.precision in PRECISIONS,
            ("precision",),
            f"--precision must be one of {', '.join(PRECISIONS)}",
        ),
        (
            c.optimizer in c.OPTIMIZERS,
            ("optimizer",),
            f"--optimizer must be one of {', '.join(c.OPTIMIZERS)}",
        ),
        (c.grad_accum >= 1, ("grad_accum",), "--grad-accum must be at least 1"),
        (
            c.grad_accum < 1 or c.batch_size % c.grad_accum == 0,
            ("batch_size", "grad_accum"),
            f"--batch-size {c.batch_size} does not split into --grad-accum {c.grad_accum} "
            f"micro-batches: pass a multiple of {c.grad_accum}",
        ),
        (c.keep_checkpoints >= 1, ("keep_checkpoints",), "keep_checkpoints must be at least 1"),
        (
            not (c.auto_fit and c.force),
            ("auto_fit", "force"),
            "--auto-fit and --force both given; pass one",
        ),
    ]


def _finetune_checks(c: FinetuneConfig) -> list[tuple[bool, tuple[str, ...], str]]:
    finite = math.isfinite
    return [
        (finite(c.epochs) and c.epochs > 0, ("epochs",), "--epochs must be positive"),
        (c.max_steps is None or c.max_steps > 0, ("max_steps",), "--max-steps must be positive"),
        (c.eval_batch_size > 0, ("eval_batch_size",), "eval_batch_size must be positive"),
        (
            c.eval_batch_size <= MAX_BATCH,
            ("eval_batch_size",),
            f"eval_batch_size must be at most {MAX_BATCH}",
        ),
        (finite(c.lr) and c.lr > 0, ("lr",), "--lr must be positive"),
        (0 <= c.warmup < 1, ("warmup",), "--warmup is a fraction of the steps, in [0, 1)"),
        (
            c.save_every is None or c.save_every >= 1,
            ("save_every",),
            "--save-every must be at least 1",
        ),
        (
            3 <= c.max_seq_length <= 8192,
            ("max_seq_length",),
            "--max-seq-length must be between 3 and 8192",
        ),
    ]


# No settings file comes near 1 MiB (bertctl writes about 1 kB); reading stops there, so a file
# that never ends (/dev/zero, a stream) costs 1 MiB of memory, not all of it.
MAX_SETTINGS_BYTES = 1 << 20
_MAX_YAML_DEPTH = 64


def _flow_depth(text: str) -> int:
    """The deepest nesting of [ and { (quotes are not parsed: a bound, not a YAML reader)."""
    depth = deepest = 0
    for bracket in re.findall(r"[\[\]{}]", text):
        depth = depth + 1 if bracket in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


def _read_settings(path: Path, hint: str) -> str:
    """The text of a settings file, reading at most MAX_SETTINGS_BYTES + 1 bytes of it."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_SETTINGS_BYTES + 1)
    except FileNotFoundError:
        raise BertctlError(f"{path}: no such file", hint) from None
    except IsADirectoryError:
        raise BertctlError(f"{path} is a folder", hint) from None
    except OSError as exc:
        raise BertctlError(f"{path}: cannot read ({exc.strerror or exc})", hint) from None
    if len(data) > MAX_SETTINGS_BYTES:
        raise BertctlError(
            f"{path}: stopped reading at {MAX_SETTINGS_BYTES >> 20} MiB, far more than a "
            "settings file holds",
            hint,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BertctlError(
            f"{path}: not UTF-8 text (byte {exc.start})", "save the file as UTF-8"
        ) from None


def load_mapping(path: Path, hint: str = "pass a YAML file of settings to --config") -> dict:
    """A YAML file that holds a mapping (or nothing), read with `safe_load`: tags that would
    build Python objects are refused, never run. Every way it can fail is one BertctlError
    naming the file (and the line, for a syntax error); `hint` says what to pass instead."""
    text = _read_settings(path, hint)
    if _flow_depth(text) > _MAX_YAML_DEPTH:
        # PyYAML takes quadratic time on deeply nested [ and { (and recurses on any deep
        # nesting); no settings file is deep, so such a file is refused unread.
        raise BertctlError(
            f"{path}: too large or nested too deeply to be a settings file", "fix the file"
        )
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise BertctlError(
            f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})", "fix the file"
        ) from None
    except RecursionError:
        raise BertctlError(
            f"{path}: nested too deeply to be a settings file", "fix the file"
        ) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BertctlError(
            f"{path}: expected a mapping of settings, got {type(raw).__name__}", hint
        )
    return raw


def read_yaml(
    path: Path,
    cls: type[TrainingConfig] = FinetuneConfig,
    hint: str = "pass a YAML file of settings to --config",
) -> dict[str, Any]:
    """A YAML mapping of `cls` fields (dashes or underscores), unknown keys refused."""
    raw = load_mapping(path, hint)
    known = field_names(cls)
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = (
                f"did you mean {close[0]}?" if close else f"known keys: {', '.join(sorted(known))}"
            )
            raise BertctlError(f"{path}: unknown setting {key!r}", hint)
        out[name] = value
    return out


def resolve(
    yaml_path: Path | None,
    flags: dict[str, Any],
    cls: type[TrainingConfig] = FinetuneConfig,
    *,
    hint: str = "pass a YAML file of settings to --config",
    exclusive: tuple[tuple[str, str], ...] = (),
) -> tuple[Any, set[str]]:
    """Built-in defaults < YAML file < flags given on the command line (None means not given).

    Every workflow's settings come through here: `cls` is its config class, `hint` what to pass
    when the file is wrong, and `exclusive` pairs of settings of which a flag for one drops the
    other from the file (pretraining's --model and --config).

    Returns the config and the names the user set, so defaults that depend on the model
    (`small_model_defaults`) never override a choice the user made.
    """
    from_file: dict[str, Any] = {}
    if yaml_path is not None:
        # `key:` with no value (null) leaves the setting at its default, as leaving it out does
        raw = read_yaml(yaml_path, cls, hint)
        from_file = {k: _coerce(cls, k, v, yaml_path) for k, v in raw.items() if v is not None}
    given = {k: v for k, v in flags.items() if v is not None}
    for pair in exclusive:
        for mine, other in (pair, pair[::-1]):
            if mine in given:
                from_file.pop(other, None)
    values = {**from_file, **given}
    try:
        return cls(**values), set(values)
    except TypeError as exc:
        where = yaml_path or "the flags"
        raise BertctlError(f"bad settings: {exc}", f"check the types in {where}") from None
    except SettingError as exc:
        if yaml_path is not None and any(k in from_file and k not in given for k in exc.keys):
            raise _blame_file(exc, yaml_path, from_file, given) from None
        raise


def _blame_file(
    exc: SettingError, path: Path, from_file: dict[str, Any], given: dict[str, Any]
) -> UsageError:
    """The error for a rule broken by a value from the settings file: it names the file and
    the key (a resumed run's config.yaml holds values the user never typed as flags), and any
    flag that takes part, with its value."""
    in_file = [k for k in exc.keys if k in from_file and k not in given]
    parts = [f"{k} is {_describe(from_file[k])}" for k in in_file]
    parts += [f"{_flag(k)} {_describe(given[k])}" for k in exc.keys if k in given]
    flags = [_flag(k) for k in in_file if _flag(k) != k]
    fix = f"fix {' and '.join(in_file)} in {path}"
    hint = f"{fix}, or pass {' and '.join(flags)} to override it" if flags else fix
    return UsageError(f"{path}: {', with '.join(parts)} ({exc.message})", hint)


# Settings without a flag of their own: their messages use the key.
_NO_FLAG = {"eval_batch_size", "weight_decay", "max_grad_norm", "keep_checkpoints", "extra"}


# Settings whose flag is not --<name with dashes>.
_FLAG_NAMES = {"bert_config": "--config"}


def _flag(key: str) -> str:
    if key in _FLAG_NAMES:
        return _FLAG_NAMES[key]
    return key if key in _NO_FLAG else "--" + key.replace("_", "-")


def _coerce(cls: type[TrainingConfig], name: str, value: Any, source: Path) -> Any:
    """YAML reads 2e-5 as a string and 3 as an int; give each setting its declared type."""
    kind = str(next(f.type for f in fields(cls) if f.name == name))
    if value is None:
        return None
    try:
        # A list or mapping is never a setting, and YAML aliases can make one astronomically
        # large when stringified, so nothing below ever turns one into text.
        if isinstance(value, (list, dict, bytes)):
            raise TypeError
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError  # `lr: yes` would read as 1.0
            return float(value)
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind.startswith("bool"):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind.startswith("str"):
            if isinstance(value, bool):
                raise ValueError  # `yes`, `no`, `on`, `off` unquoted are YAML booleans
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise BertctlError(
            f"{source}: {name} must be {kind.split(' ')[0]}, got {_describe(value)}",
            "fix the value in the file (quote text that YAML would read otherwise)",
        ) from None
    return value


def _describe(value: Any) -> str:
    """A short description of a YAML value for a message (never the repr of a huge list)."""
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} keys"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def small_model_defaults(hidden_size: int, num_layers: int) -> dict[str, Any]:
    """bertctl's defaults for compact models, inside the grid Google tuned its small BERTs over
    (lr 3e-5, 5e-5, 1e-4, 3e-4; 4 epochs).

    BERT-Base and larger keep Google's 2e-5 and 3 epochs. Compact models get 4 epochs and:

    - hidden 384 to 767 (BERT-Small and Medium, MiniLM-L6-H384): 3e-5. Measured on MRPC with
      all-MiniLM-L6-v2, 3 seeds each (BENCHMARKS.md): 1e-4 collapsed to the majority class,
      5e-5 reached a median of 0.80 and 3e-5 the best median. Google's optimizer has no bias
      correction, so its first few hundred steps are 2 to 6 times larger than AdamW's at the
      same rate; the low end of the grid is its safe end.
    - hidden below 384 (BERT-Tiny and Mini, the H-128 and H-256 models): 1e-4, as such narrow
      models move little in 4 epochs at 3e-5.

    >>> small_model_defaults(768, 12), small_model_defaults(384, 6), small_model_defaults(128, 2)
    ({}, {'lr': 3e-05, 'epochs': 4.0}, {'lr': 0.0001, 'epochs': 4.0})
    """
    if hidden_size >= 768 and num_layers >= 12:
        return {}
    return {"lr": 3e-5 if hidden_size >= 384 else 1e-4, "epochs": 4.0}
