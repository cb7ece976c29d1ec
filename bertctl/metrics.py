"""Task metrics: GLUE's, computed with scikit-learn and SciPy (imported only when called).

| key | meaning | tasks |
|---|---|---|
| accuracy | share of exact matches | every classification task |
| f1 | F1 of the positive class ("1") | MRPC, QQP |
| acc_and_f1 | (accuracy + f1) / 2, GLUE's score for the task | MRPC, QQP (main) |
| matthews_corr | Matthews correlation coefficient | CoLA (main) |
| pearson, spearman | correlations of score with gold | STS-B |
| corr | (pearson + spearman) / 2, GLUE's score | STS-B (main) |

A correlation with a constant side is undefined; it is reported as 0.0, the convention
scikit-learn follows for Matthews. MNLI's matched and mismatched dev sets are scored one at a
time; `suffixed(metrics, "_mm")` names the second (`accuracy_mm`), and `compute_mnli` does both.

Example:
    >>> compute("mrpc", [1, 0, 1, 1], [1, 1, 1, 0])
    {'accuracy': 0.5, 'f1': 0.666..., 'acc_and_f1': 0.583...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bertctl.errors import BertctlError
from bertctl.glue import Task, get_task


class MetricsError(BertctlError):
    """Labels and predictions that cannot be scored together."""


def main_metric(task: Task | str) -> str:
    """The metric that picks the best checkpoint and heads summaries: "matthews_corr" for CoLA,
    "acc_and_f1" for MRPC and QQP, "corr" for STS-B, "accuracy" for the rest."""
    return get_task(task).main_metric


def metric_names(task: Task | str) -> tuple[str, ...]:
    """The keys `compute` returns for the task."""
    return get_task(task).metrics


def _class_ids(task: Task, values: Any, what: str) -> Any:
    """Class ids as an int array from ids, label strings, or per-class scores (argmax)."""
    import numpy as np

    array = np.asarray(values)
    if array.ndim == 2:
        return array.argmax(axis=-1)
    if array.ndim != 1:
        raise MetricsError(f"{what} have shape {array.shape}; expected one value per example")
    if array.dtype.kind in "USO":
        try:
            return np.array([task.label_id(str(v)) for v in array.tolist()], dtype=np.int64)
        except BertctlError as error:
            raise MetricsError(f"{what}: {error.message}", hint=error.hint) from None
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise MetricsError(f"{what} are not class ids", hint="pass class ids or labels")
        array = array.astype(np.int64)
    if array.dtype.kind not in "iub":
        raise MetricsError(f"{what} are not class ids", hint="pass class ids or labels")
    array = array.astype(np.int64)
    assert task.labels is not None
    if array.size and (array.min() < 0 or array.max() >= len(task.labels)):
        raise MetricsError(
            f"{what} hold class ids outside 0..{len(task.labels) - 1}",
            hint=f"{task.display} has labels {', '.join(task.labels)}",
        )
    return array


def _scores(values: Any, what: str) -> Any:
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise MetricsError(f"{what} have shape {array.shape}; expected one score per example")
    if not np.all(np.isfinite(array)):
        raise MetricsError(f"{what} hold a value that is not a finite number")
    return array


def _correlation(function: Any, gold: Any, predicted: Any) -> float:
    if gold.min() == gold.max() or predicted.min() == predicted.max():
        return 0.0
    return float(function(gold, predicted)[0])


def compute(
    task: Task | str, labels: Sequence[Any], predictions: Sequence[Any]
) -> dict[str, float]:
    """Score predictions against gold labels with the task's metrics.

    Args:
        task: a Task or task name.
        labels: gold class ids or label strings (classification), or scores (regression); [n].
        predictions: class ids, label strings or per-class scores [n, classes] (argmax is
            taken); scores [n] for regression.

    Returns:
        {metric: value} for the keys in `task.metrics`, as Python floats.

    Example:
        >>> compute("cola", [1, 1, 0, 0], [1, 0, 0, 0])["matthews_corr"]   # 1/sqrt(3)
        0.577...
    """
    task = get_task(task)
    if len(labels) != len(predictions):
        raise MetricsError(f"{len(labels)} labels but {len(predictions)} predictions")
    if len(labels) == 0:
        raise MetricsError("no examples to score")

    if task.is_regression:
        from scipy.stats import pearsonr, spearmanr

        gold, predicted = _scores(labels, "labels"), _scores(predictions, "predictions")
        pearson = _correlation(pearsonr, gold, predicted)
        spearman = _correlation(spearmanr, gold, predicted)
        every = {"pearson": pearson, "spearman": spearman, "corr": (pearson + spearman) / 2}
    else:
        from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

        assert task.labels is not None
        gold = _class_ids(task, labels, "labels")
        predicted = _class_ids(task, predictions, "predictions")
        every = {"accuracy": float(accuracy_score(gold, predicted))}
        if "matthews_corr" in task.metrics:
            every["matthews_corr"] = float(matthews_corrcoef(gold, predicted))
        if "f1" in task.metrics:
            positive = task.label_id("1")
            f1 = f1_score(
                gold,
                predicted,
                labels=list(range(len(task.labels))),
                pos_label=positive,
                average="binary",
                zero_division=0.0,
            )
            every["f1"] = float(f1)
            every["acc_and_f1"] = (every["accuracy"] + every["f1"]) / 2
    return {name: every[name] for name in task.metrics}


def suffixed(metrics: Mapping[str, float], suffix: str) -> dict[str, float]:
    """The same metrics with `suffix` on every key: {"accuracy": …} -> {"accuracy_mm": …}."""
    return {f"{key}{suffix}": value for key, value in metrics.items()}


def compute_mnli(
    matched: tuple[Sequence[Any], Sequence[Any]],
    mismatched: tuple[Sequence[Any], Sequence[Any]],
) -> dict[str, float]:
    """MNLI's two dev sets, each a (labels, predictions) pair: {"accuracy", "accuracy_mm"}."""
    return {
        **compute("mnli", *matched),
        **suffixed(compute("mnli", *mismatched), "_mm"),
    }
