"""Score a fine-tuned model on a GLUE-format split, or write GLUE's submission files.

The model is a run folder (its final/ model; the task, data folder, sequence length and eval
batch default to the run's own, so `evaluate RUN` reproduces the run's last metrics exactly), or
any HF-format folder or catalogue name that `modeling.prepare` resolves. The scoring itself is
the training run's: `finetune.evaluate_features` and `finetune.score_split`.

Example:
    >>> target = load("runs/mrpc-1", reporter=ui.Reporter())
    >>> evaluate(target).metrics            # {'accuracy': 0.84, 'f1': 0.89, 'acc_and_f1': 0.86}
    >>> predict(target).files               # (runs/mrpc-1/predictions/MRPC.tsv, …/test_results.tsv)
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bertctl import glue, memory, paths
from bertctl.errors import BertctlError, UsageError
from bertctl.train import data as D
from bertctl.train import distributed, preflight
from bertctl.train.config import FinetuneConfig, resolve
from bertctl.train.finetune import (
    check_seq_length,
    eval_splits,
    evaluate_features,
    make_task,
    own_memory,
    pick_precision,
    score_split,
)
from bertctl.train.modeling import (
    RUN_MARKER,
    PreparedModel,
    prepare,
    quiet_transformers,
    refuse_unloaded,
)

DEFAULT_SEQ_LENGTH = 128
DEFAULT_BATCH_SIZE = FinetuneConfig.eval_batch_size


@dataclass(frozen=True)
class Target:
    """A model loaded for one task, with everything needed to feed it that task's files.

    Attributes:
        label_order: for each of the task's labels (in `task.labels` order) the model's output
            column; None when they are the same.
        run: the run folder the model came from, if any.
    """

    model: Any
    prepared: PreparedModel
    task: glue.Task
    data_dir: Path
    run: Path | None
    device: torch.device
    autocast: torch.dtype | None
    batch_size: int
    max_seq_length: int
    language: str | None
    label_order: tuple[int, ...] | None


@dataclass(frozen=True)
class EvalReport:
    """What `evaluate` found: the task's metrics over the split(s), examples and losses."""

    model: str
    task: str
    splits: tuple[str, ...]
    examples: dict[str, int]
    metrics: dict[str, float]
    losses: dict[str, float | None]
    main_metric: str
    skipped: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"splits": list(self.splits)}


@dataclass(frozen=True)
class PredictReport:
    """What `predict` wrote: per split, the GLUE submission file and Google's results file."""

    model: str
    task: str
    out: Path
    files: tuple[Path, ...]
    examples: dict[str, int]
    skipped: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "out": str(self.out),
            "files": [str(f) for f in self.files],
            "examples": self.examples,
            "skipped": self.skipped,
        }


# --------------------------------------------------------------------------------------------
# The model and its task


def find_run(spec: str) -> Path | None:
    """The run folder `spec` names: the run itself, or its final/ folder; else None."""
    path = paths.expand(spec)
    if (path / RUN_MARKER).is_file():
        return path
    if path.name == "final" and (path.parent / RUN_MARKER).is_file():
        return path.parent
    return None


def run_config(run: Path) -> FinetuneConfig | None:
    """The settings a run was trained with (its config.yaml), or None when it has none."""
    path = run / "config.yaml"
    if not path.is_file():
        return None
    return resolve(path, {})[0]


def label_order(config: Any, task: glue.Task, model_label: str) -> tuple[int, ...] | None:
    """Match the model's output labels (config.id2label) to the task's labels.

    Same names in the same order, or transformers' generic LABEL_0.. in the task's number: the
    columns are used as they are (None). The same names in another order (any case): the
    columns are reordered. Anything else is an error that names both label sets.
    """
    count = int(config.num_labels)
    names = [str(config.id2label.get(i, f"LABEL_{i}")) for i in range(count)]
    hint = "pass the --task the model was fine-tuned on, or fine-tune it for this task"
    if task.is_regression:
        if count != 1:
            raise BertctlError(
                f"{model_label} has {count} output labels ({', '.join(names)}), but "
                f"{task.display} is a regression task that needs 1",
                hint,
            )
        return None
    assert task.labels is not None
    wanted = list(task.labels)
    if names == wanted:
        return None
    generic = all(name == f"LABEL_{i}" for i, name in enumerate(names))
    if generic and count == len(wanted):
        return None
    folded = [name.lower() for name in names]
    if len(set(folded)) == count and sorted(folded) == sorted(w.lower() for w in wanted):
        return tuple(folded.index(w.lower()) for w in wanted)
    raise BertctlError(
        f"{model_label} predicts labels {', '.join(names)}, but {task.display}'s labels are "
        f"{', '.join(wanted)}",
        hint,
    )


def load(
    spec: str,
    *,
    task: str | None = None,
    data: str | None = None,
    batch_size: int | None = None,
    max_seq_length: int | None = None,
    device: str | None = None,
    precision: str = "auto",
    gpu_memory: str | None = None,
    auto_fit: bool = False,
    force: bool = False,
    what: str = "evaluation",
    reporter,
) -> Target:
    """Resolve the model and task, check they fit together, and load the model for inference.

    On a GPU, or for `gpu_memory` (a card's size, on any device), the memory a forward pass
    needs is checked first (`preflight.check_inference`): before the model is downloaded,
    converted or loaded and before any data is read. `auto_fit` applies the best settings that
    fit instead of refusing; `force` skips the check; `what` names the work in its message.

    Raises:
        BertctlError: no task known, the model's labels do not fit the task, the folder holds
            no safetensors model, its classifier was never trained, or the estimate does not
            fit the GPU's memory.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    quiet_transformers()

    preflight.check_flags(gpu_memory, auto_fit, force)
    if batch_size is not None and batch_size < 1:
        raise UsageError("--batch-size must be positive")
    run = find_run(spec)
    settings = run_config(run) if run is not None else None
    the_task = _task(task, run, settings)
    data_dir = _data_dir(the_task, data, settings)
    torch_device = distributed.pick_device(device)
    pick_precision(precision, torch_device)  # a precision this device cannot run is refused first
    model_spec = str(run) if run is not None else spec
    batch_size = batch_size or (settings.eval_batch_size if settings else DEFAULT_BATCH_SIZE)
    wanted_length = max_seq_length or (settings.max_seq_length if settings else DEFAULT_SEQ_LENGTH)

    # Memory: on a GPU (or for --gpu-memory SIZE) the estimate, from the architecture alone,
    # must fit before the model is downloaded, converted or loaded and before data is read.
    labels = len(the_task.labels) if the_task.labels else 1
    memory_check = functools.partial(
        preflight.check_inference,
        model_spec,
        memory.InferenceSettings(batch_size, wanted_length, precision, labels),
        torch_device,
        reporter,
        gpu_memory=gpu_memory,
        auto_fit=auto_fit,
        force=force,
        what=what,
    )
    changes, checked = memory_check()
    prepared = prepare(model_spec, None, reporter)
    if not checked:  # a Hub model's config arrived with its download
        changes, _ = memory_check(folder=prepared.folder)
    # --auto-fit's changes: a smaller batch, bf16, or a length within the model's positions
    batch_size = changes.get("batch_size", batch_size)
    precision = changes.get("precision", precision)
    if "max_seq_length" in changes:
        wanted_length = max_seq_length = changes["max_seq_length"]
    autocast = pick_precision(precision, torch_device)

    model_label = str(run) if run is not None else prepared.label
    try:
        config = AutoConfig.from_pretrained(prepared.folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise BertctlError(
            f"{prepared.folder}: cannot read config.json ({_first_line(exc)})",
            "pass an HF-format model folder or a run folder",
        ) from None
    order = label_order(config, the_task, model_label)

    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            prepared.folder,
            config=config,
            local_files_only=True,
            use_safetensors=True,
            trust_remote_code=False,
            attn_implementation="sdpa",
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported by refuse_unloaded, with both shapes
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise BertctlError(
            f"{prepared.folder}: cannot load the model ({_first_line(exc)})",
            "bertctl loads model.safetensors only; convert or re-save the model in that format",
        ) from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        hint = (
            f"fine-tune it first: bertctl finetune {the_task.name} --model {spec}"
            if all(k.startswith("classifier.") for k in missing)
            else "pass a complete model folder"
        )
        raise BertctlError(f"{model_label} has no trained weights for {shown}", hint)
    refuse_unloaded(prepared.folder, model, info, new=())
    if torch_device.type == "cpu":
        own_memory(model)  # as the training run did: its metrics reproduce to the last bit
    model.to(torch_device)
    model.eval()

    positions = int(getattr(config, "max_position_embeddings", 512))
    seq_length = check_seq_length(wanted_length, max_seq_length is not None, positions, reporter)
    return Target(
        model=model,
        prepared=prepared,
        task=the_task,
        data_dir=data_dir,
        run=run,
        device=torch_device,
        autocast=autocast,
        batch_size=batch_size,
        max_seq_length=seq_length,
        language=settings.language if settings else None,
        label_order=order,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _task(name: str | None, run: Path | None, settings: FinetuneConfig | None) -> glue.Task:
    """--task, else the run's task; a custom task is rebuilt from the run's column settings."""
    if name is None:
        if settings is not None:
            return make_task(settings)
        if run is not None:
            info = json.loads((run / RUN_MARKER).read_text(encoding="utf-8"))
            if info.get("task") and info["task"] != "custom":
                return glue.get_task(info["task"])
        raise UsageError(
            "no task given", "pass --task (e.g. --task mrpc); only a run folder knows its own"
        )
    if name.lower() == "custom":
        if settings is None or settings.task != "custom":
            raise UsageError(
                "--task custom needs the run folder that was fine-tuned on the custom task",
                "pass that run folder as the model; its config.yaml describes the columns",
            )
        return make_task(settings)
    return glue.get_task(name)


def _data_dir(task: glue.Task, data: str | None, settings: FinetuneConfig | None) -> Path:
    """--data, else the run's own data folder (for the run's task), else $GLUE_DIR/<task>."""
    if data is not None or task.data_dir is not None:
        return glue.resolve_data_dir(task, data)
    if settings is not None and settings.data and _same_task(settings.task, task):
        folder = paths.expand(settings.data)
        if folder.is_dir():
            return folder
    return glue.resolve_data_dir(task, None)


def _same_task(name: str, task: glue.Task) -> bool:
    try:
        return glue.get_task(name).name == task.name
    except BertctlError:
        return False


# --------------------------------------------------------------------------------------------
# Scoring and predicting


def _read(target: Target, split: str, skip_bad_rows: bool) -> tuple[glue.Split, D.Features]:
    rows = glue.read_split(
        target.task,
        target.data_dir,
        split,
        skip_bad_rows=skip_bad_rows,
        language=target.language,
    )
    if not rows.examples:
        raise BertctlError(f"{rows.path} has no examples", "check the file")
    feats = D.featurize(
        rows.examples, target.task, target.prepared.tokenizer, target.max_seq_length
    )
    return rows, feats


def _logits(target: Target, feats: D.Features) -> tuple[torch.Tensor, float | None]:
    """Logits in the task's label order, and the mean loss when the split is labelled."""
    order = target.label_order
    if order is not None and feats.labels is not None:
        feats = dataclasses.replace(feats, labels=[order[int(y)] for y in feats.labels])
    logits, loss = evaluate_features(
        target.model, feats, target.task, target.batch_size, target.device, target.autocast
    )
    if order is not None:
        logits = logits[:, list(order)]
    return logits, loss


def evaluate(
    target: Target, split: str = "dev", *, skip_bad_rows: bool = False, reporter=None
) -> EvalReport:
    """The task's metrics on a labelled split; "dev" is both dev sets for MNLI (accuracy,
    accuracy_mm)."""
    task = target.task
    names = eval_splits(task) if split == "dev" else [task.layout(split)[0]]
    found: dict[str, float] = {}
    examples: dict[str, int] = {}
    losses: dict[str, float | None] = {}
    skipped: dict[str, int] = {}
    for name in names:
        rows, feats = _read(target, name, skip_bad_rows)
        if feats.labels is None:
            raise UsageError(
                f"{rows.path} has no labels to score against",
                f"use `bertctl predict` to write {task.display}'s predictions for {name}",
            )
        if reporter is not None:
            reporter.step(f"Evaluating {task.display} {name} ({len(feats):,} examples)")
        logits, loss = _logits(target, feats)
        found.update(score_split(task, name, logits, feats.labels))
        examples[name] = len(feats)
        losses[name] = loss
        if rows.skipped:
            skipped[name] = len(rows.skipped)
    return EvalReport(
        model=str(target.run) if target.run is not None else target.prepared.label,
        task=task.name,
        splits=tuple(names),
        examples=examples,
        metrics=found,
        losses=losses,
        main_metric=task.main_metric,
        skipped=skipped,
    )


def submission_name(task: glue.Task, split: str) -> str:
    """GLUE's file name for a task's predictions: MRPC.tsv, SST-2.tsv, MNLI-m.tsv, MNLI-mm.tsv;
    a split other than test adds its name (MRPC.dev.tsv)."""
    base = task.display
    if task.folder == "MNLI":
        base = "MNLI-mm" if split.endswith("mismatched") else "MNLI-m"
    return f"{base}.tsv" if split.startswith("test") else f"{base}.{split}.tsv"


def results_name(split: str) -> str:
    """Google's test_results.tsv (MNLI's mismatched test set: test_results_mm.tsv)."""
    if split in ("test", "test_matched"):
        return "test_results.tsv"
    if split == "test_mismatched":
        return "test_results_mm.tsv"
    return f"{split}_results.tsv"


def default_out(target: Target) -> Path:
    """The run's predictions/ folder, else ./predictions."""
    return (target.run / "predictions") if target.run is not None else Path("predictions")


def submission_ids(rows: glue.Split) -> list[str]:
    """Each example's id in the submission: the test file's own index column, else its
    position. An id repeated in the file is refused: GLUE scores one prediction per id, and a
    submission holding one twice is rejected or scored against the wrong row."""
    ids: list[str] = []
    first_line: dict[str, str] = {}
    for position, example in enumerate(rows.examples):
        index = example.index if example.index is not None else str(position)
        line = example.guid.rsplit("-", 1)[-1]  # the guid is "<split>-<line number>"
        if index in first_line:
            raise BertctlError(
                f"{rows.path}: id {index!r} is on line {first_line[index]} and again on "
                f"line {line}",
                "a GLUE test file holds each id once; remove or renumber the repeated row",
            )
        first_line[index] = line
        ids.append(index)
    return ids


def predict(
    target: Target,
    split: str = "test",
    out: Path | str | None = None,
    *,
    skip_bad_rows: bool = False,
    reporter=None,
) -> PredictReport:
    """Write GLUE's submission file and Google's test_results.tsv for each split.

    "test" is both test sets for MNLI (MNLI-m.tsv and MNLI-mm.tsv). The submission holds
    `index<TAB>prediction` with labels as GLUE spells them (STS-B: the score clipped to 0-5);
    test_results.tsv holds per example the softmax probabilities in the task's label order
    (STS-B: the predicted score). Both are written atomically.
    """
    task = target.task
    if split == "test" and task.name.startswith("mnli"):
        names = ["test_matched", "test_mismatched"]
    else:
        names = [task.layout(split)[0]]
    folder = Path(out) if out is not None else default_out(target)
    files: list[Path] = []
    examples: dict[str, int] = {}
    skipped: dict[str, int] = {}
    # Every split is read and checked before any file is written: MNLI's two test sets
    # give both submissions or neither.
    read = {name: _read(target, name, skip_bad_rows) for name in names}
    ids = {name: submission_ids(rows) for name, (rows, _) in read.items()}
    for name in names:
        rows, feats = read[name]
        if reporter is not None:
            reporter.step(f"Predicting {task.display} {name} ({len(feats):,} examples)")
        logits, _ = _logits(target, feats)
        indices = ids[name]
        if task.is_regression:
            scores = logits[:, 0]
            predictions: list[Any] = scores.tolist()
            results = [[value] for value in scores.numpy()]
        else:
            predictions = logits.argmax(-1).tolist()
            results = list(torch.softmax(logits.float(), dim=-1).numpy())
        files.append(
            glue.write_submission(
                folder / submission_name(task, name), task, predictions, indices=indices
            )
        )
        files.append(glue.write_test_results(folder / results_name(name), results))
        examples[name] = len(feats)
        if rows.skipped:
            skipped[name] = len(rows.skipped)
    return PredictReport(
        model=str(target.run) if target.run is not None else target.prepared.label,
        task=task.name,
        out=folder,
        files=tuple(files),
        examples=examples,
        skipped=skipped,
    )
