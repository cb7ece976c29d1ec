"""Task metrics against values worked out by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bertctl.glue import TASKS, custom_task
from bertctl.metrics import (
    MetricsError,
    compute,
    compute_mnli,
    main_metric,
    metric_names,
    suffixed,
)

# A binary confusion matrix worked out by hand:
#   gold  1 0 1 1 0 1
#   pred  1 0 0 1 1 1
# TP = 3 (positions 0, 3, 5), TN = 1 (1), FN = 1 (2), FP = 1 (4).
GOLD = [1, 0, 1, 1, 0, 1]
PRED = [1, 0, 0, 1, 1, 1]
ACCURACY = 4 / 6
F1 = 2 * 3 / (2 * 3 + 1 + 1)  # precision 3/4, recall 3/4 -> 0.75
MCC = (3 * 1 - 1 * 1) / math.sqrt((3 + 1) * (3 + 1) * (1 + 1) * (1 + 1))  # 2 / 8 = 0.25


def test_mrpc_and_qqp_accuracy_f1():
    for task in ("mrpc", "qqp"):
        result = compute(task, GOLD, PRED)
        assert list(result) == ["accuracy", "f1", "acc_and_f1"]
        assert result["accuracy"] == pytest.approx(2 / 3)
        assert result["f1"] == pytest.approx(0.75)
        assert result["acc_and_f1"] == pytest.approx((2 / 3 + 0.75) / 2)  # 17/24


def test_f1_is_of_the_positive_class():
    # Swapping which class is "1" changes F1: here class 1 has TP 1, FP 2, FN 0 -> 2/(2+2).
    result = compute("mrpc", [0, 0, 0, 1], [1, 1, 0, 1])
    assert result["f1"] == pytest.approx(0.5)
    assert result["accuracy"] == pytest.approx(0.5)
    # No positive prediction and no positive gold: F1 is 0, not a warning or NaN.
    assert compute("qqp", [0, 0], [0, 0])["f1"] == 0.0


def test_cola_matthews():
    result = compute("cola", GOLD, PRED)
    assert list(result) == ["matthews_corr", "accuracy"]
    assert result["matthews_corr"] == pytest.approx(0.25)
    assert result["matthews_corr"] == pytest.approx(MCC)
    assert result["accuracy"] == pytest.approx(ACCURACY)
    # Perfect, inverted, and constant predictions.
    assert compute("cola", [1, 0, 1, 0], [1, 0, 1, 0])["matthews_corr"] == pytest.approx(1.0)
    assert compute("cola", [1, 0, 1, 0], [0, 1, 0, 1])["matthews_corr"] == pytest.approx(-1.0)
    assert compute("cola", [1, 0, 1, 0], [1, 1, 1, 1])["matthews_corr"] == 0.0


def test_labels_as_strings_and_scores_as_logits():
    assert compute("sst-2", ["1", "0", "1"], ["1", "1", "1"])["accuracy"] == pytest.approx(2 / 3)
    logits = np.array([[0.1, 2.0], [3.0, -1.0], [0.2, 0.1]])  # argmax -> 1, 0, 0
    assert compute("sst-2", [1, 0, 1], logits)["accuracy"] == pytest.approx(2 / 3)


def test_mnli_three_classes_and_mismatched_suffix():
    gold = ["entailment", "neutral", "contradiction", "neutral"]
    pred = [1, 2, 2, 0]  # contradiction=0, entailment=1, neutral=2 -> right, right, wrong, wrong
    assert compute("mnli", gold, pred) == {"accuracy": 0.5}
    both = compute_mnli((gold, pred), ([0, 1, 2], [0, 1, 2]))
    assert both == {"accuracy": 0.5, "accuracy_mm": 1.0}
    assert suffixed({"accuracy": 0.5, "f1": 0.25}, "_mm") == {"accuracy_mm": 0.5, "f1_mm": 0.25}


def test_stsb_pearson_and_spearman():
    gold = [1, 2, 3, 4, 5]
    pred = [2, 1, 4, 3, 10]
    # Spearman: ranks of pred are 2 1 4 3 5, d = 1 1 1 1 0, rho = 1 - 6*4 / (5*(25-1)) = 0.8.
    # Pearson: deviations (-2 -1 0 1 2) and (-2 -3 0 -1 6): 18 / sqrt(10 * 50) = 9*sqrt(5)/25.
    pearson = 9 * math.sqrt(5) / 25
    result = compute("sts-b", gold, pred)
    assert list(result) == ["pearson", "spearman", "corr"]
    assert result["pearson"] == pytest.approx(pearson)
    assert result["spearman"] == pytest.approx(0.8)
    assert result["corr"] == pytest.approx((pearson + 0.8) / 2)


def test_spearman_averages_tied_ranks():
    # gold ranks 1 2.5 2.5 4, pred ranks 1 2 3 4: 4.5 / sqrt(4.5 * 5) = 3/sqrt(10).
    result = compute("stsb", [1.0, 2.0, 2.0, 3.0], [0.1, 0.2, 0.3, 0.4])
    assert result["spearman"] == pytest.approx(3 / math.sqrt(10))


def test_constant_scores_give_zero_correlation():
    result = compute("sts-b", [1.0, 2.0, 3.0], [2.5, 2.5, 2.5])
    assert result == {"pearson": 0.0, "spearman": 0.0, "corr": 0.0}


def test_main_metrics():
    assert main_metric("cola") == "matthews_corr"
    assert main_metric("mrpc") == "acc_and_f1"
    assert main_metric("qqp") == "acc_and_f1"
    assert main_metric("sts-b") == "corr"
    for name in ("sst-2", "mnli", "mnli-mm", "qnli", "rte", "wnli", "xnli"):
        assert main_metric(name) == "accuracy"
    for name, task in TASKS.items():
        assert main_metric(name) in metric_names(task)


def test_every_task_computes_its_declared_keys():
    for name, task in TASKS.items():
        if task.is_regression:
            result = compute(name, [0.0, 2.5, 5.0], [0.5, 2.0, 4.5])
        else:
            result = compute(name, [0, 1, 1], [0, 1, 0])
        assert tuple(result) == task.metrics
        assert all(isinstance(value, float) for value in result.values())


def test_custom_task_metrics(tmp_path):
    (tmp_path / "train.tsv").write_text("t\tl\nfine\tyes\nbad\tno\n", encoding="utf-8")
    task = custom_task(tmp_path, text_a="t", text_b=None, label="l")
    assert compute(task, ["yes", "no", "no"], ["yes", "yes", "no"]) == {
        "accuracy": pytest.approx(2 / 3)
    }


@pytest.mark.parametrize(
    ("task", "labels", "predictions", "match"),
    [
        ("mrpc", [0, 1], [0], "2 labels but 1 predictions"),
        ("mrpc", [], [], "no examples"),
        ("mrpc", [0, 1], [0, 2], "class ids outside 0..1"),
        ("mrpc", [0, 1], [0.5, 1.0], "not class ids"),
        ("mnli", ["entailment"], ["maybe"], "'maybe' is not a MNLI label"),
        ("sts-b", [1.0, 2.0], [1.0, float("nan")], "not a finite number"),
    ],
)
def test_bad_inputs(task, labels, predictions, match):
    with pytest.raises(MetricsError, match=match):
        compute(task, labels, predictions)
