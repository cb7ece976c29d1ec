"""GLUE (and XNLI) tasks: where each split's file lies, which columns hold what, and a strict reader.

The files are the `glue_data` layout that `download_glue_data.py` writes (REFERENCE §5): tab
separated, UTF-8, with **quoting disabled**: a `"` is a character of the sentence, never a field
delimiter (MRPC has sentences that open a quote they never close; a CSV reader would swallow the
following lines). So this module splits lines on "\\t" itself and never uses `csv`.

Every file has an exact column count, and every row is checked against it, together with its
label and its texts. A row that fails raises `GlueError` with `file:line`, or, with
`skip_bad_rows=True`, is left out and listed in `Split.skipped`. Files are read line by line, so
the 80 MB MNLI and QQP train files never sit in memory twice.

XNLI follows Google's `XnliProcessor`: train is the machine-translated MultiNLI of XNLI-MT 1.0,
`multinli/multinli.train.<lang>.tsv` (3 columns, header `premise hypo label`, label
"contradictory" read as "contradiction"); dev and test are XNLI 1.0's `xnli.dev.tsv` /
`xnli.test.tsv` (19 columns: language, gold_label, 2 binary parses, 2 parses, sentence1,
sentence2, promptID, pairID, genre, label1-5, 2 tokenized sentences, match), of which columns
6 / 7 / 1 are read and rows are kept where column 0 equals the language. The default language is
"zh", Google's hard-coded choice, so `finetune xnli` reproduces the README's Chinese result; pass
`language=` for another. Unlike GLUE's, XNLI's test file is labelled, and its labels are kept.

Example:
    >>> task = get_task("mrpc")
    >>> split = read_split(task, resolve_data_dir(task, None), "dev")  # $GLUE_DIR/MRPC/dev.tsv
    >>> len(split.examples), split.examples[0].label                     # (408, '1')
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bertctl import outputs, paths
from bertctl.errors import BertctlError, UsageError
from bertctl.tokenstream import bounded_lines


class GlueError(BertctlError):
    """A GLUE / custom data file that is missing or holds a malformed row."""


ROW_FIX = (
    "fix or delete that line, or pass --skip-bad-rows to skip malformed rows (they are counted)"
)

# The languages of XNLI 1.0 (and of XNLI-MT's translated train files).
XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")  # fmt: skip
XNLI_DEFAULT_LANGUAGE = "zh"  # Google's XnliProcessor hard-codes "zh"

_BOM = b"\xef\xbb\xbf"


# --------------------------------------------------------------------------------------------
# The task table


@dataclass(frozen=True)
class FileLayout:
    """One split's file: where it lies under the task folder and what its columns hold.

    Columns are 0-based indices, or header names (custom tasks only; resolved against the
    file's own header when it is read).
    """

    file: str
    """Path relative to the task folder; `{language}` is filled in for XNLI."""
    header: bool
    """Whether the first line is a header (skipped, but its column count is checked)."""
    columns: int | None
    """The exact number of columns of every row (and the header); None: the first line's count."""
    text_a: int | str
    text_b: int | str | None = None
    label: int | str | None = None
    """None for an unlabelled file (GLUE's test sets)."""
    index: int | str | None = None
    """The row id a GLUE submission keys on (test files); None: the row's position."""
    language: int | None = None
    """XNLI: the column rows are filtered on."""
    alternates: tuple[str, ...] = ()
    """Other places under the task folder the file may lie (XNLI's zips unpacked as they are)."""


@dataclass(frozen=True)
class Task:
    """A task: its files, labels and metrics. `labels` is None for regression (STS-B)."""

    name: str
    """Canonical lower-case name: "cola", "sst-2", "mnli-mm", "custom"."""
    folder: str | None
    """The folder under GLUE_DIR ("CoLA", "SST-2", …); None for custom tasks."""
    splits: tuple[tuple[str, FileLayout], ...]
    labels: tuple[str, ...] | None
    """Class labels in the files' own spelling, in class-id order; None for regression."""
    metrics: tuple[str, ...]
    """The keys `metrics.compute` returns for this task."""
    main_metric: str
    """The metric that picks the best checkpoint and heads summary tables."""
    aliases: tuple[str, ...] = ()
    split_aliases: tuple[tuple[str, str], ...] = ()
    """Extra split names: MNLI's "dev" is "dev_matched"."""
    label_aliases: tuple[tuple[str, str], ...] = ()
    """Spellings read as a label: XNLI-MT's "contradictory" is "contradiction"."""
    label_range: tuple[float, float] | None = None
    """Regression: the range a score must lie in (STS-B: 0-5); None: any finite number."""
    languages: tuple[str, ...] = ()
    default_language: str | None = None
    data_dir: Path | None = None
    """Custom tasks: the folder their files lie in."""

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def display(self) -> str:
        """The name users see in messages: the GLUE folder name, e.g. "MRPC"."""
        return self.folder or self.name

    @property
    def split_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.splits)

    def layout(self, split: str) -> tuple[str, FileLayout]:
        """The canonical split name and its layout; "dev" is accepted for MNLI's dev_matched."""
        wanted = dict(self.split_aliases).get(split, split)
        for name, layout in self.splits:
            if name == wanted:
                return name, layout
        known = ", ".join([*self.split_names, *(alias for alias, _ in self.split_aliases)])
        raise UsageError(f"{self.display} has no split {split!r}", hint=f"choose one of {known}")

    def label_id(self, label: str) -> int:
        """The class id of a label as spelled in the files: MNLI "entailment" -> 1."""
        if self.labels is None:
            raise UsageError(f"{self.display} is a regression task; it has no class ids")
        label = dict(self.label_aliases).get(label, label)
        try:
            return self.labels.index(label)
        except ValueError:
            raise UsageError(
                f"{label!r} is not a {self.display} label",
                hint=f"use one of {', '.join(self.labels)}",
            ) from None


def _glue_splits(train: FileLayout, test: FileLayout) -> tuple[tuple[str, FileLayout], ...]:
    """A task's usual three files: train.tsv, dev.tsv laid out as train.tsv, and test.tsv."""
    return (("train", train), ("dev", replace(train, file="dev.tsv")), ("test", test))


def _pair_task(
    name: str, folder: str, labels: tuple[str, ...], *, aliases: tuple[str, ...] = ()
) -> Task:
    """QNLI, RTE and WNLI share a layout: `index text_a text_b label`, test without the label."""
    labelled = {"header": True, "columns": 4, "text_a": 1, "text_b": 2, "label": 3}
    return Task(
        name=name,
        folder=folder,
        splits=_glue_splits(
            FileLayout("train.tsv", **labelled),
            FileLayout("test.tsv", True, 3, text_a=1, text_b=2, index=0),
        ),
        labels=labels,
        metrics=("accuracy",),
        main_metric="accuracy",
        aliases=aliases,
    )


def _mnli(name: str, dev: str, test: str, aliases: tuple[str, ...]) -> Task:
    # train: index promptID pairID genre s1_binary_parse s2_binary_parse s1_parse s2_parse
    #        sentence1 sentence2 label1 gold_label (12); dev adds label2-5 before gold_label (16);
    # test stops after sentence2 (10).
    return Task(
        name=name,
        folder="MNLI",
        splits=(
            ("train", FileLayout("train.tsv", True, 12, text_a=8, text_b=9, label=11)),
            ("dev_matched", FileLayout("dev_matched.tsv", True, 16, text_a=8, text_b=9, label=15)),
            (
                "dev_mismatched",
                FileLayout("dev_mismatched.tsv", True, 16, text_a=8, text_b=9, label=15),
            ),
            ("test_matched", FileLayout("test_matched.tsv", True, 10, text_a=8, text_b=9, index=0)),
            (
                "test_mismatched",
                FileLayout("test_mismatched.tsv", True, 10, text_a=8, text_b=9, index=0),
            ),
        ),
        labels=("contradiction", "entailment", "neutral"),
        metrics=("accuracy",),
        main_metric="accuracy",
        aliases=aliases,
        split_aliases=(("dev", dev), ("test", test)),
    )


def _xnli_dev_test(file: str) -> FileLayout:
    return FileLayout(
        file, True, 19, text_a=6, text_b=7, label=1, language=0, alternates=(f"XNLI-1.0/{file}",)
    )


def _tasks() -> tuple[Task, ...]:
    binary = ("0", "1")
    return (
        Task(
            name="cola",
            folder="CoLA",
            # train/dev: source, label, original judgement ("*" or empty), sentence; no header.
            splits=_glue_splits(
                FileLayout("train.tsv", False, 4, text_a=3, label=1),
                FileLayout("test.tsv", True, 2, text_a=1, index=0),
            ),
            labels=binary,
            metrics=("matthews_corr", "accuracy"),
            main_metric="matthews_corr",
        ),
        Task(
            name="sst-2",
            folder="SST-2",
            splits=_glue_splits(
                FileLayout("train.tsv", True, 2, text_a=0, label=1),
                FileLayout("test.tsv", True, 2, text_a=1, index=0),
            ),
            labels=binary,
            metrics=("accuracy",),
            main_metric="accuracy",
            aliases=("sst2", "sst"),
        ),
        Task(
            name="mrpc",
            folder="MRPC",
            # Quality, #1 ID, #2 ID, #1 String, #2 String; test has index for Quality.
            splits=_glue_splits(
                FileLayout("train.tsv", True, 5, text_a=3, text_b=4, label=0),
                FileLayout("test.tsv", True, 5, text_a=3, text_b=4, index=0),
            ),
            labels=binary,
            metrics=("accuracy", "f1", "acc_and_f1"),
            main_metric="acc_and_f1",
        ),
        Task(
            name="sts-b",
            folder="STS-B",
            # index genre filename year old_index source1 source2 sentence1 sentence2 score.
            splits=_glue_splits(
                FileLayout("train.tsv", True, 10, text_a=7, text_b=8, label=9),
                FileLayout("test.tsv", True, 9, text_a=7, text_b=8, index=0),
            ),
            labels=None,
            metrics=("pearson", "spearman", "corr"),
            main_metric="corr",
            aliases=("stsb", "sts"),
            label_range=(0.0, 5.0),
        ),
        Task(
            name="qqp",
            folder="QQP",
            # id qid1 qid2 question1 question2 is_duplicate; test: id question1 question2.
            splits=_glue_splits(
                FileLayout("train.tsv", True, 6, text_a=3, text_b=4, label=5),
                FileLayout("test.tsv", True, 3, text_a=1, text_b=2, index=0),
            ),
            labels=binary,
            metrics=("accuracy", "f1", "acc_and_f1"),
            main_metric="acc_and_f1",
        ),
        _mnli("mnli", "dev_matched", "test_matched", ("mnli-m", "mnli-matched")),
        _mnli("mnli-mm", "dev_mismatched", "test_mismatched", ("mnli-mismatched",)),
        _pair_task("qnli", "QNLI", ("entailment", "not_entailment")),
        _pair_task("rte", "RTE", ("entailment", "not_entailment")),
        _pair_task("wnli", "WNLI", binary),
        Task(
            name="xnli",
            folder="XNLI",
            splits=(
                (
                    "train",
                    FileLayout(
                        "multinli/multinli.train.{language}.tsv",
                        True,
                        3,
                        text_a=0,
                        text_b=1,
                        label=2,
                        alternates=("XNLI-MT-1.0/multinli/multinli.train.{language}.tsv",),
                    ),
                ),
                ("dev", _xnli_dev_test("xnli.dev.tsv")),
                ("test", _xnli_dev_test("xnli.test.tsv")),
            ),
            labels=("contradiction", "entailment", "neutral"),
            metrics=("accuracy",),
            main_metric="accuracy",
            label_aliases=(("contradictory", "contradiction"),),
            languages=XNLI_LANGUAGES,
            default_language=XNLI_DEFAULT_LANGUAGE,
        ),
    )


TASKS: dict[str, Task] = {task.name: task for task in _tasks()}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _by_name() -> dict[str, Task]:
    table: dict[str, Task] = {}
    for task in TASKS.values():  # first wins: "MNLI" is mnli, not mnli-mm
        for key in (task.name, task.folder or task.name, *task.aliases):
            table.setdefault(_normalise(key), task)
    return table


_BY_NAME = _by_name()


def get_task(name: str | Task) -> Task:
    """The task called `name`, case-insensitively, with aliases: "SST2", "sts_b", "MNLI-mm"."""
    if isinstance(name, Task):
        return name
    task = _BY_NAME.get(_normalise(name))
    if task is None:
        raise UsageError(
            f"unknown task {name!r}",
            hint=f"choose one of {', '.join(TASK_NAMES)}, or describe your own files as a custom task",
        )
    return task


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True, slots=True)
class Example:
    """One row. `label` is the label as spelled in the file (a float for regression; None for
    an unlabelled test file). `index` is the test file's own row id, which submissions key on."""

    guid: str
    text_a: str
    text_b: str | None
    label: str | float | None
    index: str | None = None


@dataclass(frozen=True)
class Split:
    """The examples of one file, and the malformed rows skipped (line number, what was wrong)."""

    task: str
    split: str
    path: Path
    examples: tuple[Example, ...]
    skipped: tuple[tuple[int, str], ...] = ()

    def __len__(self) -> int:
        return len(self.examples)


@dataclass(frozen=True)
class _Columns:
    """A layout's columns resolved to indices, and the exact count rows must have."""

    text_a: int
    text_b: int | None
    label: int | None
    index: int | None
    language: int | None
    count: int | None

    @property
    def needed(self) -> int:
        used = (self.text_a, self.text_b, self.label, self.index, self.language)
        return 1 + max(c for c in used if c is not None)


def _language(task: Task, language: str | None) -> str | None:
    if not task.languages:
        if language is not None:
            raise UsageError(
                f"--language applies to XNLI; {task.display} has one language",
                hint="drop --language",
            )
        return None
    chosen = language or task.default_language
    if chosen not in task.languages:
        raise UsageError(
            f"XNLI has no language {chosen!r}", hint=f"choose one of {', '.join(task.languages)}"
        )
    return chosen


def _expected_files(task: Task) -> str:
    names = [layout.file for _, layout in task.splits]
    return ", ".join(name.replace("{language}", "<lang>") for name in names)


def _locate(task: Task, data_dir: Path, layout: FileLayout, language: str | None) -> Path:
    """The split's file: the layout's place, else an alternate; a clear error when neither."""
    candidates = [layout.file, *layout.alternates]
    if language is not None:
        candidates = [name.replace("{language}", language) for name in candidates]
    for name in candidates:
        path = data_dir / name
        if path.is_file():
            return path
    missing = data_dir / candidates[0]
    if task.folder is None:
        hint = "check the path given for the custom task's files"
    else:
        hint = (
            f"--data should be the folder holding {task.display}'s {_expected_files(task)}, "
            f"or GLUE_DIR the folder holding {task.folder}/ (what download_glue_data.py writes)"
        )
    where = "no such file" if data_dir.is_dir() else f"no such file (no folder {data_dir})"
    raise GlueError(f"{missing}: {where}", hint=hint)


def _lines(path: Path) -> Iterator[tuple[int, str | UnicodeDecodeError]]:
    """(line number, text) for each line, split on "\\n" only, "\\r" and a leading BOM dropped.

    Binary reading splits on b"\\n" alone, unlike `str.splitlines`, which also breaks on
    "\\x1c", "\\x85", "\\u2028" and other characters that can sit inside a sentence. A line
    over `tokenstream.MAX_LINE_BYTES` is refused, read no further than that (no row is near it).
    """
    hint = "each row of a TSV is one line; check that this is the task's TSV file"
    with path.open("rb") as handle:
        rows = bounded_lines(handle, str(path), hint, error=GlueError)
        for line_no, raw in enumerate(rows, start=1):
            if line_no == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                yield line_no, raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield line_no, error


def _undecodable(error: UnicodeDecodeError) -> str:
    return f"not valid UTF-8 ({error.reason} at byte {error.start})"


def _resolve(path: Path, layout: FileLayout, header: list[str] | None) -> _Columns:
    """Map the layout's columns to indices (names through the header) and check the header."""
    where = f"{path}:1"

    def index(column: int | str | None, role: str) -> int | None:
        if isinstance(column, int) and column < 0:
            raise UsageError(
                f"{role} column {column} is negative", hint="columns are numbered from 0"
            )
        if column is None or isinstance(column, int):
            return column
        if header is None:
            raise UsageError(
                f"{role} column {column!r} is a name but {path} is read without a header",
                hint="give a 0-based column number instead",
            )
        if column not in header:
            raise GlueError(
                f"{where}: no column named {column!r}",
                hint=f"the header has {', '.join(repr(name) for name in header)}",
            )
        return header.index(column)

    count = layout.columns
    if header is not None:
        if count is not None and len(header) != count:
            raise GlueError(
                f"{where}: the header has {len(header)} columns; this file should have {count}",
                hint="check that --data / GLUE_DIR points at this task's folder",
            )
        count = len(header)
    columns = _Columns(
        text_a=index(layout.text_a, "text_a"),  # type: ignore[arg-type]
        text_b=index(layout.text_b, "text_b"),
        label=index(layout.label, "label"),
        index=index(layout.index, "index"),
        language=layout.language,
        count=count,
    )
    if count is not None and columns.needed > count:
        raise GlueError(
            f"{where}: the file has {count} columns but column {columns.needed - 1} is asked for",
            hint="column numbers are 0-based; choose columns that exist",
        )
    return columns


def _open(
    path: Path, layout: FileLayout
) -> tuple[_Columns, Iterator[tuple[int, str | UnicodeDecodeError]]]:
    """The file's resolved columns (its header read and checked) and its remaining lines."""
    lines = _lines(path)
    if not layout.header:
        return _resolve(path, layout, None), lines
    first = next(lines, None)
    if first is None:
        raise GlueError(f"{path}:1: the file is empty", hint="expected a header line")
    if isinstance(first[1], UnicodeDecodeError):
        raise GlueError(f"{path}:1: header {_undecodable(first[1])}", hint=ROW_FIX)
    return _resolve(path, layout, first[1].split("\t")), lines


def _counted(path: Path, line_no: int, columns: _Columns, cells: list[str]) -> _Columns:
    """A headerless custom file: its first row sets the column count."""
    if columns.needed > len(cells):
        raise GlueError(
            f"{path}:{line_no}: {len(cells)} columns, but column {columns.needed - 1} is asked for",
            hint="column numbers are 0-based; choose columns that exist",
        )
    return replace(columns, count=len(cells))


def _example(
    task: Task,
    cells: list[str],
    columns: _Columns,
    guid: str,
    position: int,
    language: str | None,
) -> Example | str | None:
    """The row as an Example, or a string saying what is wrong with it, or None when the row
    belongs to another language (XNLI)."""
    if len(cells) != columns.count:
        return f"{len(cells)} columns, expected {columns.count} (a stray tab or a broken line?)"
    if columns.language is not None and cells[columns.language] != language:
        return None
    text_a = cells[columns.text_a]
    if not text_a.strip():
        return f"empty text_a (column {columns.text_a})"
    text_b = None
    if columns.text_b is not None:
        text_b = cells[columns.text_b]
        if not text_b.strip():
            return f"empty text_b (column {columns.text_b})"
    label: str | float | None = None
    if columns.label is not None:
        raw = cells[columns.label]
        if task.labels is None:
            label = _score(raw, task.label_range)
            if isinstance(label, str):
                return label
        else:
            label = dict(task.label_aliases).get(raw, raw)
            if label not in task.labels:
                return (
                    f"label {raw!r} (column {columns.label}) is not one of {', '.join(task.labels)}"
                )
    index = str(position) if columns.index is None else cells[columns.index]
    return Example(guid, text_a, text_b, label, index if columns.label is None else None)


def _score(raw: str, bounds: tuple[float, float] | None) -> float | str:
    """A regression label as a float, or what is wrong with it."""
    try:
        value = float(raw)
    except ValueError:
        return f"score {raw!r} is not a number"
    if not math.isfinite(value):
        return f"score {raw!r} is not a finite number"
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        return f"score {raw} lies outside {bounds[0]:g}–{bounds[1]:g}"
    return value


def read_split(
    task: Task | str,
    data_dir: Path | str,
    split: str,
    *,
    skip_bad_rows: bool = False,
    language: str | None = None,
) -> Split:
    """Read one split's file, row by row, checking every row.

    Args:
        task: a Task or a task name ("mrpc", "SST-2", "mnli-mm").
        data_dir: the task's folder (`resolve_data_dir`), e.g. `$GLUE_DIR/MRPC`.
        split: "train", "dev", "test"; MNLI also "dev_matched", "dev_mismatched",
            "test_matched", "test_mismatched" ("dev" is dev_matched for mnli, mismatched for
            mnli-mm).
        skip_bad_rows: leave malformed rows out and list them in `Split.skipped` instead of
            raising.
        language: XNLI only; default "zh" as in Google's processor.

    Returns:
        A Split; `Example.guid` is "<split>-<line number>", so it points back at the file.

    Raises:
        GlueError: the file is missing, its header has the wrong column count, or (without
            skip_bad_rows) a row is malformed: "<file>:<line>: <what>; <fix>".
    """
    task = get_task(task)
    split_name, layout = task.layout(split)
    language = _language(task, language)
    path = _locate(task, Path(data_dir), layout, language)

    examples: list[Example] = []
    skipped: list[tuple[int, str]] = []

    def bad(line_no: int, what: str) -> None:
        if not skip_bad_rows:
            raise GlueError(f"{path}:{line_no}: {what}", hint=ROW_FIX)
        skipped.append((line_no, what))

    columns, lines = _open(path, layout)

    blank: list[int] = []  # blank lines are an error unless nothing but blank lines follows
    for line_no, text in lines:
        if text == "":
            blank.append(line_no)
            continue
        for number in blank:
            bad(number, "blank line")
        blank.clear()
        if isinstance(text, UnicodeDecodeError):
            bad(line_no, _undecodable(text))
            continue
        cells = text.split("\t")
        if columns.count is None:
            columns = _counted(path, line_no, columns, cells)
        result = _example(task, cells, columns, f"{split_name}-{line_no}", len(examples), language)
        if isinstance(result, str):
            bad(line_no, result)
        elif result is not None:
            examples.append(result)
    return Split(task.name, split_name, path, tuple(examples), tuple(skipped))


# --------------------------------------------------------------------------------------------
# Custom tasks and the data folder


def custom_task(
    train_path_or_dir: Path | str,
    *,
    text_a: str | int,
    text_b: str | int | None = None,
    label: str | int,
    header: bool = True,
    regression: bool = False,
    dev: str = "dev.tsv",
    test: str = "test.tsv",
) -> Task:
    """A task over your own TSV files, usable with `read_split` and `metrics.compute`.

    Columns are header names or 0-based indices. Each file's column count is its first line's
    (header or first row); a test file may leave out the label column when columns are named.
    Labels are discovered from the train file: sorted as integers when all are integers, else
    as strings. Numeric labels with many distinct non-integer values are refused unless
    `regression=True` (then labels are floats, metrics are Pearson / Spearman).

    Args:
        train_path_or_dir: the train file (dev / test are `dev` / `test` beside it), or a folder
            holding train.tsv, dev.tsv, test.tsv.

    Example:
        >>> task = custom_task("reviews/", text_a="review", text_b=None, label="stars")
        >>> read_split(task, task.data_dir, "train").examples[0].label   # '4'
    """
    path = paths.expand(train_path_or_dir)
    if path.is_dir():
        folder, train = path, "train.tsv"
    else:
        folder, train = path.parent, path.name
    if not header and any(isinstance(c, str) for c in (text_a, text_b, label)):
        raise UsageError(
            "columns are given by name but the files have no header",
            hint="give 0-based column numbers, or drop --no-header",
        )

    def layout(file: str, labelled: bool) -> FileLayout:
        label_column = label if labelled else None
        return FileLayout(file, header, None, text_a=text_a, text_b=text_b, label=label_column)

    draft = Task(
        name="custom",
        folder=None,
        splits=(
            ("train", layout(train, True)),
            ("dev", layout(dev, True)),
            ("test", layout(test, False)),
        ),
        labels=None,
        metrics=("pearson", "spearman", "corr"),
        main_metric="corr",
        data_dir=folder,
    )
    if regression:
        return draft
    labels = _discover_labels(draft, folder)
    return replace(draft, labels=labels, metrics=("accuracy",), main_metric="accuracy")


def _discover_labels(draft: Task, folder: Path) -> tuple[str, ...]:
    """The distinct labels of the train file (malformed rows are left to `read_split`)."""
    _, layout = draft.layout("train")
    path = _locate(draft, folder, layout, None)
    columns, lines = _open(path, layout)
    seen: set[str] = set()
    for line_no, text in lines:
        if not isinstance(text, str) or not text:
            continue
        cells = text.split("\t")
        if columns.count is None:
            columns = _counted(path, line_no, columns, cells)
        if len(cells) == columns.count and cells[columns.label].strip():  # type: ignore[index]
            seen.add(cells[columns.label])  # type: ignore[index]
    if not seen:
        raise GlueError(
            f"{path}: no labels found in column {layout.label!r}",
            hint="check the label column and that the file has rows",
        )
    return _sorted_labels(seen, path)


def _sorted_labels(seen: set[str], path: Path) -> tuple[str, ...]:
    def number(text: str) -> float | None:
        try:
            value = float(text)
        except ValueError:
            return None
        return value if math.isfinite(value) else None

    values = {label: number(label) for label in seen}
    if all(v is not None for v in values.values()):
        fractional = [v for v in values.values() if v != int(v)]  # type: ignore[arg-type]
        if fractional and len(seen) > 10:
            raise GlueError(
                f"{path}: the label column holds {len(seen)} distinct numbers",
                hint="declare the task a regression (regression=True / --regression)",
            )
        if not fractional:
            return tuple(sorted(seen, key=lambda label: (values[label], label)))
    return tuple(sorted(seen))


def resolve_data_dir(task: Task | str, data: Path | str | None) -> Path:
    """The task's folder: `--data DIR`, else `$GLUE_DIR/<folder>` as in Google's recipe.

    Example:
        GLUE_DIR=~/glue_data, task mrpc -> ~/glue_data/MRPC
    """
    task = get_task(task)
    if data is not None:
        path = paths.expand(data)
        if not path.is_dir():
            raise GlueError(
                f"--data {data}: no such folder",
                hint=f"pass the folder holding {task.display}'s {_expected_files(task)}",
            )
        return path
    if task.data_dir is not None:
        return task.data_dir
    glue_dir = os.environ.get("GLUE_DIR")
    if glue_dir and task.folder is not None:
        root = paths.expand(glue_dir)
        path = root / task.folder
        if path.is_dir():
            return path
        if (root / task.splits[0][1].file).is_file():
            hint = f"GLUE_DIR is the folder that holds {task.folder}/, not {task.folder}/ itself; or pass --data {root}"
        else:
            hint = "set GLUE_DIR to the folder download_glue_data.py wrote (holding CoLA/, MRPC/, …), or pass --data DIR"
        raise GlueError(f"GLUE_DIR={glue_dir}: no {task.folder}/ folder in it", hint=hint)
    raise GlueError(
        f"no data folder for {task.display}",
        hint=(
            f"pass --data DIR (the folder holding {_expected_files(task)}) or set GLUE_DIR to "
            f"the folder holding {task.display}/, as in Google's recipe"
        ),
    )


# --------------------------------------------------------------------------------------------
# Writing


def _write_atomic(path: Path | str, lines: Iterable[str]) -> Path:
    """Write lines whole (`outputs.write_atomic`): never a half file; a failure is a GlueError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return outputs.write_atomic(path, lines)
    except OSError as exc:  # a full disk, most often: the file as it was stays in place
        raise GlueError(
            f"cannot write {path}: {exc.strerror or exc}",
            "free some disk space (or choose another folder) and run again; "
            "an earlier file of that name is unchanged",
        ) from exc


def format_prediction(task: Task, prediction: object) -> str:
    """One prediction as GLUE's submission spells it: a class id or label -> the label; an
    STS-B score -> clipped to 0-5 with 3 decimals."""
    if task.labels is None:
        value = float(prediction)  # type: ignore[arg-type]
        if not math.isfinite(value):
            raise GlueError(f"prediction {prediction!r} is not a finite number")
        low, high = task.label_range or (-math.inf, math.inf)
        return f"{min(max(value, low), high):.3f}"
    if isinstance(prediction, str):
        return task.labels[task.label_id(prediction)]
    try:
        class_id = operator.index(prediction)  # type: ignore[arg-type]
    except TypeError:
        raise GlueError(
            f"prediction {prediction!r} is neither a class id nor a {task.display} label"
        ) from None
    if not 0 <= class_id < len(task.labels):
        raise GlueError(
            f"class id {class_id} is out of range for {task.display}'s {len(task.labels)} labels"
        )
    return task.labels[class_id]


def write_submission(
    path: Path | str,
    task: Task | str,
    predictions: Sequence[object],
    *,
    indices: Sequence[object] | None = None,
) -> Path:
    """A GLUE submission file: header `index<TAB>prediction`, one row per test example.

    Args:
        predictions: class ids or labels (classification), scores (STS-B), in test-file order.
        indices: the test rows' ids (`Example.index`); default 0, 1, 2, …

    Example:
        MRPC, [1, 0] -> "index\\tprediction\\n0\\t1\\n1\\t0\\n"
    """
    task = get_task(task)
    if indices is None:
        indices = range(len(predictions))
    if len(indices) != len(predictions):
        raise GlueError(f"{len(predictions)} predictions for {len(indices)} test rows")
    rows = (
        f"{index}\t{format_prediction(task, p)}\n"
        for index, p in zip(indices, predictions, strict=True)
    )
    return _write_atomic(path, _prepend("index\tprediction\n", rows))


def _prepend(first: str, rest: Iterable[str]) -> Iterator[str]:
    yield first
    yield from rest


def write_test_results(path: Path | str, probabilities: Iterable[Iterable[object]]) -> Path:
    """Google's test_results.tsv: per example one line of tab-separated class probabilities,
    no header. Values are written with `str`, as Google does (numpy float32 stays short)."""

    def rows() -> Iterator[str]:
        width = None
        for number, row in enumerate(probabilities, start=1):
            values = [str(p) for p in row]
            if not values or width not in (None, len(values)):
                raise GlueError(f"row {number} has {len(values)} probabilities, expected {width}")
            width = len(values)
            yield "\t".join(values) + "\n"

    return _write_atomic(path, rows())


def write_eval_results(path: Path | str, metrics: Mapping[str, object]) -> Path:
    """Google's eval_results.txt: `key = value` per line, keys sorted.

    Example:
        {"eval_accuracy": 0.845, "eval_loss": 0.5} -> "eval_accuracy = 0.845\\neval_loss = 0.5\\n"
    """
    return _write_atomic(path, (f"{key} = {metrics[key]}\n" for key in sorted(metrics)))
