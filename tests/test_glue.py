"""GLUE task table and TSV reading: every layout, the real files, every malformed row, writers."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bertctl.errors import UsageError
from bertctl.glue import (
    TASK_NAMES,
    TASKS,
    XNLI_DEFAULT_LANGUAGE,
    Example,
    GlueError,
    custom_task,
    get_task,
    read_split,
    resolve_data_dir,
    write_eval_results,
    write_submission,
    write_test_results,
)

GLUE = Path(__file__).parent / "fixtures" / "glue"
BROKEN = GLUE / "broken"


def fixture_dir(task: str) -> Path:
    return GLUE / get_task(task).folder


def labels_of(task: str, split: str, **kwargs) -> list:
    return [e.label for e in read_split(task, fixture_dir(task), split, **kwargs).examples]


# --------------------------------------------------------------------------------------------
# The task table


def test_every_glue_task_and_xnli_is_in_the_table():
    folders = {task.folder for task in TASKS.values()}
    assert folders == {
        "CoLA",
        "SST-2",
        "MRPC",
        "STS-B",
        "QQP",
        "MNLI",
        "QNLI",
        "RTE",
        "WNLI",
        "XNLI",
    }
    assert set(TASK_NAMES) == set(TASKS)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("SST-2", "sst-2"),
        ("sst2", "sst-2"),
        ("STS-B", "sts-b"),
        ("stsb", "sts-b"),
        ("sts_b", "sts-b"),
        ("CoLA", "cola"),
        ("MNLI", "mnli"),
        ("mnli-mm", "mnli-mm"),
        ("MNLI_MM", "mnli-mm"),
        ("xnli", "xnli"),
    ],
)
def test_task_names_and_aliases(name, canonical):
    assert get_task(name).name == canonical


def test_unknown_task_names_the_choices():
    with pytest.raises(UsageError, match="unknown task 'mprc'") as info:
        get_task("mprc")
    assert "mrpc" in info.value.one_line()


def test_labels_metrics_and_regression():
    assert get_task("sts-b").is_regression and get_task("sts-b").labels is None
    assert get_task("mnli").labels == ("contradiction", "entailment", "neutral")
    assert get_task("qnli").labels == ("entailment", "not_entailment")
    assert get_task("wnli").labels == ("0", "1")
    assert get_task("mrpc").metrics == ("accuracy", "f1", "acc_and_f1")
    assert get_task("cola").main_metric == "matthews_corr"
    assert get_task("mnli").label_id("neutral") == 2
    assert get_task("xnli").label_id("contradictory") == 0
    assert not any(task.is_regression for name, task in TASKS.items() if name != "sts-b")


def test_unknown_split_is_a_usage_error():
    with pytest.raises(UsageError, match="no split 'validation'"):
        read_split("mrpc", fixture_dir("mrpc"), "validation")


# --------------------------------------------------------------------------------------------
# Every fixture layout


ALL_SPLITS = [(name, split) for name, task in TASKS.items() for split in task.split_names]


@pytest.mark.parametrize(("name", "split"), ALL_SPLITS)
def test_every_split_of_every_task_parses(name, split):
    result = read_split(name, fixture_dir(name), split)
    assert 1 <= len(result) <= 6
    assert result.skipped == ()
    task = get_task(name)
    for example in result.examples:
        assert example.text_a.strip()
        assert (example.text_b is None) == (task.splits[0][1].text_b is None)
        if split.startswith("test") and name != "xnli":
            assert example.label is None and example.index is not None
        elif task.is_regression:
            assert isinstance(example.label, float)
        else:
            assert example.label in task.labels


LABELS = {
    ("cola", "train"): ["1", "0", "1", "0"],
    ("cola", "dev"): ["1", "0", "1"],
    ("sst-2", "train"): ["1", "0", "0", "0", "1"],
    ("sst-2", "dev"): ["1", "0", "1"],
    ("mrpc", "train"): ["1", "0", "1", "0", "1"],
    ("mrpc", "dev"): ["1", "0", "1"],
    ("sts-b", "train"): [4.2, 3.4, 0.6, 5.0, 0.0],
    ("sts-b", "dev"): [4.75, 0.25, 3.0],
    ("qqp", "train"): ["1", "0", "1", "0"],
    ("qqp", "dev"): ["1", "0", "0"],
    ("mnli", "train"): ["entailment", "contradiction", "neutral", "contradiction"],
    ("mnli", "dev_matched"): ["entailment", "contradiction", "neutral"],
    ("mnli", "dev_mismatched"): ["entailment", "neutral", "contradiction", "entailment"],
    ("qnli", "train"): ["entailment", "not_entailment", "entailment"],
    ("qnli", "dev"): ["entailment", "not_entailment", "not_entailment"],
    ("rte", "train"): ["entailment", "not_entailment", "entailment"],
    ("rte", "dev"): ["entailment", "not_entailment", "entailment"],
    ("wnli", "train"): ["1", "0", "1", "0"],
    ("wnli", "dev"): ["1", "0", "1"],
}


@pytest.mark.parametrize(("name", "split"), sorted(LABELS))
def test_fixture_labels(name, split):
    assert labels_of(name, split) == LABELS[(name, split)]


@pytest.mark.parametrize(
    ("name", "split", "count"),
    [
        ("cola", "test", 3),
        ("sst-2", "test", 3),
        ("mrpc", "test", 3),
        ("sts-b", "test", 3),
        ("qqp", "test", 3),
        ("mnli", "test_matched", 3),
        ("mnli", "test_mismatched", 3),
        ("qnli", "test", 3),
        ("rte", "test", 3),
        ("wnli", "test", 3),
    ],
)
def test_glue_test_files_carry_their_index_and_no_label(name, split, count):
    result = read_split(name, fixture_dir(name), split)
    assert [e.index for e in result.examples] == [str(i) for i in range(count)]
    assert all(e.label is None for e in result.examples)


def test_mrpc_bom_is_stripped_and_quotes_are_literal():
    train = read_split("mrpc", fixture_dir("mrpc"), "train")
    assert (fixture_dir("mrpc") / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert len(train) == 5  # the BOM-prefixed header was recognised and skipped
    assert train.examples[0].guid == "train-2"
    assert train.examples[0].text_a.startswith("The ferry")
    quoted = train.examples[2]
    assert quoted.text_a == '"We are not finished yet," the coach told reporters.'
    assert quoted.text_b == 'The coach told reporters that the team was "not finished yet."'
    # An opening quote that never closes: a CSV reader would swallow the next line.
    unbalanced = train.examples[3]
    assert unbalanced.text_a == '"The bridge will reopen in June, officials said.'
    assert unbalanced.text_b == "Officials gave no date for the reopening of the bridge."
    assert train.examples[4].text_a == "Rain delayed the harvest in the valley by two weeks."
    assert not any(e.text_a.startswith("\ufeff") for e in train.examples)


def test_cola_train_has_no_header_and_test_has_one():
    train = read_split("cola", fixture_dir("cola"), "train")
    assert train.examples[0] == Example(
        "train-1", "The kettle whistled before anyone reached the stove.", None, "1"
    )
    assert train.examples[2].text_a == 'Mara said "later" and closed the shutters.'
    dev = read_split("cola", fixture_dir("cola"), "dev")
    assert dev.examples[2].text_a == '"Careful," the guide warned the hikers.'
    test = read_split("cola", fixture_dir("cola"), "test")
    assert test.examples[0] == Example("test-2", "The owl blinked twice.", None, None, "0")


def test_sst2_keeps_text_verbatim_with_a_leading_quote():
    train = read_split("sst-2", fixture_dir("sst-2"), "train")
    assert train.examples[0].text_a == "a warm , unhurried portrait of two stubborn neighbours "
    assert train.examples[2].text_a == '" a triumph of set design over sense '
    assert train.path == fixture_dir("sst-2") / "train.tsv"
    assert (train.task, train.split) == ("sst-2", "train")


def test_stsb_scores_and_columns():
    train = read_split("sts-b", fixture_dir("sts-b"), "train")
    first = train.examples[0]
    assert (first.text_a, first.text_b) == (
        "A dog is chasing a red ball.",
        "A dog runs after a ball.",
    )
    assert train.examples[2].text_b == 'I think the "best" option is to repot it.'
    test = read_split("sts-b", fixture_dir("sts-b"), "test")
    assert test.examples[2].text_a == '"Yes" is the short answer.'


def test_qqp_test_has_three_columns():
    test = read_split("qqp", fixture_dir("qqp"), "test")
    assert test.examples[1] == Example(
        "test-3", "How tall do sunflowers grow?", 'What is a "micro" sunflower?', None, "1"
    )
    train = read_split("qqp", fixture_dir("qqp"), "train")
    assert train.examples[3].text_a == '"Is it safe to swim after eating?'


def test_mnli_split_names():
    matched = read_split("mnli", fixture_dir("mnli"), "dev")
    assert matched.split == "dev_matched" and len(matched) == 3
    assert matched.examples[0].text_a == "The gallery added a wing for sculpture."
    mismatched = read_split("mnli-mm", fixture_dir("mnli"), "dev")
    assert mismatched.split == "dev_mismatched" and len(mismatched) == 4
    assert mismatched.examples[1].text_a == 'He wrote "nearly done" on every report.'
    assert read_split("mnli", fixture_dir("mnli"), "test").split == "test_matched"
    assert read_split("mnli-mm", fixture_dir("mnli"), "test").split == "test_mismatched"
    train = read_split("mnli", fixture_dir("mnli"), "train")
    assert (train.examples[1].text_a, train.examples[1].text_b) == (
        "The office closes at five on weekdays.",
        "The office is open until midnight.",
    )


# --------------------------------------------------------------------------------------------
# XNLI


def test_xnli_default_language_is_googles_zh():
    assert XNLI_DEFAULT_LANGUAGE == "zh"
    train = read_split("xnli", fixture_dir("xnli"), "train")
    assert train.path.name == "multinli.train.zh.tsv"
    assert [e.label for e in train.examples] == ["contradiction", "entailment", "neutral"]
    dev = read_split("xnli", fixture_dir("xnli"), "dev")
    assert [(e.text_a, e.label) for e in dev.examples] == [
        ("老人每天早上在公园里散步。", "contradiction"),
        ("她把钥匙忘在车里了。", "entailment"),
        ("孩子们在河边放风筝。", "neutral"),
    ]
    assert dev.examples[0].text_b == "老人从不出门。"
    assert dev.skipped == ()  # rows of other languages are filtered, not skipped


def test_xnli_other_languages():
    train = read_split("xnli", fixture_dir("xnli"), "train", language="en")
    assert train.examples[2].text_a == 'She says " maybe " to every plan .'
    assert labels_of("xnli", "train", language="en") == [
        "contradiction",
        "entailment",
        "neutral",
        "contradiction",
    ]
    assert len(read_split("xnli", fixture_dir("xnli"), "dev", language="en")) == 2
    assert labels_of("xnli", "dev", language="de") == ["contradiction"]
    # XNLI's test file is labelled, unlike GLUE's.
    assert labels_of("xnli", "test") == ["entailment", "neutral"]
    assert labels_of("xnli", "test", language="de") == ["entailment"]


def test_xnli_language_errors():
    with pytest.raises(UsageError, match="no language 'xx'"):
        read_split("xnli", fixture_dir("xnli"), "dev", language="xx")
    with pytest.raises(UsageError, match="applies to XNLI"):
        read_split("mrpc", fixture_dir("mrpc"), "dev", language="en")
    with pytest.raises(GlueError, match=r"multinli\.train\.fr\.tsv: no such file"):
        read_split("xnli", fixture_dir("xnli"), "train", language="fr")


def test_xnli_reads_the_zips_unpacked_as_they_are(tmp_path):
    (tmp_path / "XNLI-1.0").mkdir()
    (tmp_path / "XNLI-MT-1.0" / "multinli").mkdir(parents=True)
    source = fixture_dir("xnli")
    (tmp_path / "XNLI-1.0" / "xnli.dev.tsv").write_bytes((source / "xnli.dev.tsv").read_bytes())
    train = source / "multinli" / "multinli.train.zh.tsv"
    (tmp_path / "XNLI-MT-1.0" / "multinli" / train.name).write_bytes(train.read_bytes())
    assert len(read_split("xnli", tmp_path, "dev")) == 3
    assert len(read_split("xnli", tmp_path, "train")) == 3


# --------------------------------------------------------------------------------------------
# The real GLUE files (REFERENCE §5 row counts)


REAL_COUNTS = {
    ("mrpc", "train"): 3668,
    ("mrpc", "dev"): 408,
    ("mrpc", "test"): 1725,
    ("sst-2", "train"): 67349,
    ("sst-2", "dev"): 872,
    ("sst-2", "test"): 1821,
    ("wnli", "train"): 635,
    ("wnli", "dev"): 71,
    ("wnli", "test"): 146,
}
REAL_LABELS = {
    ("mrpc", "train"): {"0": 1194, "1": 2474},
    ("mrpc", "dev"): {"0": 129, "1": 279},
    ("sst-2", "train"): {"0": 29780, "1": 37569},
    ("sst-2", "dev"): {"0": 428, "1": 444},
    ("wnli", "train"): {"0": 323, "1": 312},
    ("wnli", "dev"): {"0": 40, "1": 31},
}
# The first row of each file, checked without copying corpus text here: label, text lengths and
# the first 16 hex digits of the sha256 of text_a.
REAL_FIRST = {
    ("mrpc", "train"): ("1", 98, 107, "72d34f6ec8161ea0"),
    ("mrpc", "dev"): ("1", 89, 73, "1fd0651bb31e291d"),
    ("mrpc", "test"): (None, 121, 108, "d80bcfb28284a526"),
    ("sst-2", "train"): ("0", 44, None, "55b0e1c3b375a0a8"),
    ("sst-2", "dev"): ("1", 47, None, "16e60b6a61103672"),
    ("sst-2", "test"): (None, 38, None, "2821f65b5e8d3b33"),
    ("wnli", "train"): ("1", 73, 22, "bbe895992866f317"),
    ("wnli", "dev"): ("0", 53, 27, "b44bba2f8a3b1bd4"),
    ("wnli", "test"): (None, 248, 50, "3a27308ef231c583"),
}


@pytest.mark.parametrize(("name", "split"), sorted(REAL_COUNTS))
def test_real_glue_files_parse_completely(shared_data, name, split):
    folder = shared_data / "glue" / get_task(name).folder
    result = read_split(name, folder, split)
    assert len(result) == REAL_COUNTS[(name, split)]
    assert result.skipped == ()
    first = result.examples[0]
    label, len_a, len_b, digest = REAL_FIRST[(name, split)]
    assert first.guid == f"{split}-2"
    assert first.label == label
    assert len(first.text_a) == len_a
    assert (None if first.text_b is None else len(first.text_b)) == len_b
    assert hashlib.sha256(first.text_a.encode()).hexdigest()[:16] == digest
    assert not first.text_a.startswith("\ufeff")
    if split == "test":
        assert [e.index for e in result.examples] == [str(i) for i in range(len(result))]
    else:
        assert dict(Counter(e.label for e in result.examples)) == REAL_LABELS[(name, split)]


def test_real_mrpc_quotes_stay_literal(shared_data):
    folder = shared_data / "glue" / "MRPC"
    assert (folder / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    dev = read_split("mrpc", folder, "dev")
    # dev's first pair opens a quote in text_b that it never closes.
    assert dev.examples[0].text_b.startswith('"') and dev.examples[0].text_b.count('"') == 1
    train = read_split("mrpc", folder, "train")
    odd = [e for e in train.examples if e.text_a.count('"') % 2 or e.text_b.count('"') % 2]
    assert len(odd) == 207


# --------------------------------------------------------------------------------------------
# Malformed rows


BROKEN_CASES = [
    # kind, task, line, what the message says
    ("columns", "sst-2", 3, "3 columns, expected 2"),
    ("label", "sst-2", 4, "label '2' (column 1) is not one of 0, 1"),
    ("empty_text", "rte", 3, "empty text_b (column 2)"),
    ("score_text", "sts-b", 3, "score 'n/a' is not a number"),
    ("score_range", "sts-b", 2, "score 5.200 lies outside 0–5"),
    ("utf8", "sst-2", 3, "not valid UTF-8"),
    ("blank_line", "sst-2", 3, "blank line"),
]


@pytest.mark.parametrize(("kind", "task", "line", "what"), BROKEN_CASES)
def test_malformed_row_raises_with_file_and_line(kind, task, line, what):
    folder = BROKEN / kind
    with pytest.raises(GlueError) as info:
        read_split(task, folder, "train")
    message = info.value.one_line()
    assert message.startswith(f"{folder / 'train.tsv'}:{line}: {what}")
    assert "--skip-bad-rows" in message
    assert "\n" not in message


@pytest.mark.parametrize(("kind", "task", "line", "what"), BROKEN_CASES)
def test_malformed_row_is_skipped_and_counted(kind, task, line, what):
    folder = BROKEN / kind
    total = len((folder / "train.tsv").read_bytes().rstrip(b"\n").split(b"\n")) - 1  # no header
    result = read_split(task, folder, "train", skip_bad_rows=True)
    assert [number for number, _ in result.skipped] == [line]
    assert result.skipped[0][1].startswith(what)
    assert len(result) == total - 1
    assert all(e.guid != f"train-{line}" for e in result.examples)


def test_trailing_blank_lines_are_fine():
    result = read_split("sst-2", BROKEN / "blank_line", "train", skip_bad_rows=True)
    assert [e.text_a for e in result.examples] == ["crisp and funny ", "flat and slow "]


def test_a_wrong_header_fails_even_when_skipping():
    for skip in (False, True):
        with pytest.raises(GlueError, match=r"train\.tsv:1: the header has 4 columns") as info:
            read_split("mrpc", BROKEN / "header", "train", skip_bad_rows=skip)
        assert "GLUE_DIR" in info.value.one_line()


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(GlueError) as info:
        read_split("mrpc", tmp_path, "dev")
    message = info.value.one_line()
    assert message.startswith(f"{tmp_path / 'dev.tsv'}: no such file")
    assert "--data" in message and "GLUE_DIR" in message and "MRPC/" in message


def test_empty_file_with_a_header_expected(tmp_path):
    (tmp_path / "dev.tsv").write_bytes(b"")
    with pytest.raises(GlueError, match=r"dev\.tsv:1: the file is empty"):
        read_split("sst-2", tmp_path, "dev")


def test_crlf_and_unicode_line_separators(tmp_path):
    # "\r\n" endings lose their "\r"; U+2028 and U+0085 inside a sentence do not break the line.
    rows = ["sentence\tlabel", "odd\u2028spacing here \t1", "next\x85line stays whole \t0", ""]
    (tmp_path / "dev.tsv").write_bytes("\r\n".join(rows).encode("utf-8"))
    result = read_split("sst-2", tmp_path, "dev")
    assert [(e.text_a, e.label) for e in result.examples] == [
        ("odd\u2028spacing here ", "1"),
        ("next\x85line stays whole ", "0"),
    ]


def test_many_bad_rows_are_all_listed(tmp_path):
    lines = ["sentence\tlabel"] + [f"row {i} \t{i % 3}" for i in range(9)]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = read_split("sst-2", tmp_path, "train", skip_bad_rows=True)
    assert len(result) == 6
    assert [line for line, _ in result.skipped] == [4, 7, 10]


# --------------------------------------------------------------------------------------------
# Custom tasks


def test_custom_task_by_header_name():
    task = custom_task(GLUE / "custom", text_a="review", text_b="context", label="stars")
    assert task.labels == ("1", "2", "10")  # integers sort as numbers
    assert task.data_dir == GLUE / "custom"
    assert task.metrics == ("accuracy",) and not task.is_regression
    train = read_split(task, task.data_dir, "train")
    assert train.examples[2] == Example("train-4", 'The "quiet" mode is not quiet.', "kitchen", "1")
    assert [e.label for e in read_split(task, task.data_dir, "dev").examples] == ["10", "1"]
    test = read_split(task, task.data_dir, "test")  # no stars column: found by name
    assert [(e.text_a, e.label, e.index) for e in test.examples] == [
        ("Good value for the price.", None, "0"),
        ("Too heavy to carry.", None, "1"),
    ]
    assert resolve_data_dir(task, None) == GLUE / "custom"


def test_custom_task_by_index_and_from_a_train_file():
    task = custom_task(GLUE / "custom" / "train.tsv", text_a=1, text_b=None, label=3)
    assert task.labels == ("1", "2", "10")
    examples = read_split(task, task.data_dir, "train").examples
    assert examples[0] == Example("train-2", "The blender is loud but strong.", None, "2")
    assert examples[0].text_b is None


def test_custom_task_without_header(tmp_path):
    rows = ["good\tstrong and quiet", "bad\tbroke at once", "good\tworks fine", "meh\tit is ok"]
    (tmp_path / "reviews.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    task = custom_task(tmp_path / "reviews.tsv", text_a=1, text_b=None, label=0, header=False)
    assert task.labels == ("bad", "good", "meh")
    result = read_split(task, tmp_path, "train")
    assert [e.label for e in result.examples] == ["good", "bad", "good", "meh"]
    assert result.examples[0].guid == "train-1"
    with pytest.raises(UsageError, match="no header"):
        custom_task(tmp_path / "reviews.tsv", text_a="text", text_b=None, label=0, header=False)
    with pytest.raises(UsageError, match="label column -1 is negative"):
        custom_task(tmp_path / "reviews.tsv", text_a=1, text_b=None, label=-1, header=False)
    with pytest.raises(GlueError, match="column 4 is asked for"):
        custom_task(tmp_path / "reviews.tsv", text_a=4, text_b=None, label=0, header=False)


def test_custom_rows_are_checked_like_glue_rows(tmp_path):
    (tmp_path / "train.tsv").write_text("text\tlabel\nfine\tyes\nalso fine\tno\n", encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("text\tlabel\nok\tyes\nhmm\tmaybe\n\tno\n", encoding="utf-8")
    task = custom_task(tmp_path, text_a="text", text_b=None, label="label")
    assert task.labels == ("no", "yes")
    with pytest.raises(GlueError, match=r"dev\.tsv:3: label 'maybe'"):
        read_split(task, tmp_path, "dev")
    result = read_split(task, tmp_path, "dev", skip_bad_rows=True)
    assert [line for line, _ in result.skipped] == [3, 4]
    assert "empty text_a" in result.skipped[1][1]


def test_custom_unknown_column_name():
    with pytest.raises(GlueError, match="no column named 'rating'") as info:
        custom_task(GLUE / "custom", text_a="review", text_b=None, label="rating")
    assert "'stars'" in info.value.one_line()


def test_custom_regression(tmp_path):
    rows = ["a\tb\tscore"] + [f"first {i}\tsecond {i}\t{i / 7:.3f}" for i in range(15)]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(GlueError, match="15 distinct numbers") as info:
        custom_task(tmp_path, text_a="a", text_b="b", label="score")
    assert "regression" in info.value.one_line()
    task = custom_task(tmp_path, text_a="a", text_b="b", label="score", regression=True)
    assert task.is_regression and task.main_metric == "corr"
    labels = [e.label for e in read_split(task, tmp_path, "train").examples]
    assert labels[:3] == [0.0, 0.143, 0.286]


# --------------------------------------------------------------------------------------------
# The data folder


def test_resolve_data_dir_from_data_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(tmp_path / "elsewhere"))
    assert resolve_data_dir("mrpc", tmp_path) == tmp_path  # --data wins over GLUE_DIR
    with pytest.raises(GlueError, match=r"--data .*: no such folder"):
        resolve_data_dir("mrpc", tmp_path / "missing")


def test_resolve_data_dir_from_glue_dir(monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(GLUE))
    assert resolve_data_dir("sst2", None) == GLUE / "SST-2"
    assert resolve_data_dir("mnli-mm", None) == GLUE / "MNLI"
    assert resolve_data_dir(get_task("xnli"), None) == GLUE / "XNLI"


def test_glue_dir_pointing_at_the_task_folder_itself(monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(GLUE / "MRPC"))
    with pytest.raises(GlueError, match="no MRPC/ folder in it") as info:
        resolve_data_dir("mrpc", None)
    assert "not MRPC/ itself" in info.value.one_line()


def test_resolve_data_dir_with_neither_names_both():
    with pytest.raises(GlueError, match="no data folder for MRPC") as info:
        resolve_data_dir("mrpc", None)
    message = info.value.one_line()
    assert "--data" in message and "GLUE_DIR" in message


# --------------------------------------------------------------------------------------------
# Writers


def test_write_submission_classification(tmp_path):
    path = write_submission(tmp_path / "MRPC.tsv", "mrpc", [1, 0, np.int64(1)])
    assert path.read_text(encoding="utf-8") == "index\tprediction\n0\t1\n1\t0\n2\t1\n"
    mnli = write_submission(
        tmp_path / "MNLI-m.tsv", "mnli", [2, "entailment", 0], indices=["7", "8", "9"]
    )
    assert mnli.read_text(encoding="utf-8") == (
        "index\tprediction\n7\tneutral\n8\tentailment\n9\tcontradiction\n"
    )


def test_write_submission_stsb_clips_and_rounds(tmp_path):
    path = write_submission(tmp_path / "STS-B.tsv", "sts-b", [5.7, -0.2, 2.3456, np.float32(3)])
    assert path.read_text(encoding="utf-8") == (
        "index\tprediction\n0\t5.000\n1\t0.000\n2\t2.346\n3\t3.000\n"
    )


def test_write_submission_refuses_bad_predictions_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "RTE.tsv"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(GlueError, match="class id 2 is out of range"):
        write_submission(target, "rte", [0, 1, 2])
    with pytest.raises(UsageError, match="'maybe' is not a RTE label"):
        write_submission(target, "rte", ["maybe"])
    with pytest.raises(GlueError, match="neither a class id"):
        write_submission(target, "rte", [0.5])
    with pytest.raises(GlueError, match="2 predictions for 3 test rows"):
        write_submission(target, "rte", [0, 1], indices=[0, 1, 2])
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RTE.tsv"]  # no temp files left


def test_write_test_results_matches_google(tmp_path):
    probabilities = np.array([[0.25, 0.75], [0.9, 0.1]], dtype=np.float32)
    path = write_test_results(tmp_path / "out" / "test_results.tsv", probabilities)
    assert path.read_text(encoding="utf-8") == "0.25\t0.75\n0.9\t0.1\n"
    plain = write_test_results(tmp_path / "plain.tsv", [[0.5, 0.25, 0.25]])
    assert plain.read_text(encoding="utf-8") == "0.5\t0.25\t0.25\n"
    with pytest.raises(GlueError, match="row 2 has 3 probabilities, expected 2"):
        write_test_results(tmp_path / "ragged.tsv", [[0.5, 0.5], [0.2, 0.3, 0.5]])
    assert not (tmp_path / "ragged.tsv").exists()


def test_write_eval_results_sorted_key_value_lines(tmp_path):
    path = write_eval_results(
        tmp_path / "eval_results.txt",
        {"global_step": 343, "eval_loss": 0.5, "eval_accuracy": 0.845, "loss": 0.25},
    )
    assert path.read_text(encoding="utf-8") == (
        "eval_accuracy = 0.845\neval_loss = 0.5\nglobal_step = 343\nloss = 0.25\n"
    )
    # Rewriting replaces the file whole.
    write_eval_results(path, {"eval_accuracy": 0.9})
    assert path.read_text(encoding="utf-8") == "eval_accuracy = 0.9\n"
