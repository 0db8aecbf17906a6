"""Per-class ROC AUC, best F1 and accuracy at the best-F1 threshold, in percent.

As the MERL reference computes them (sklearn ``roc_auc_score`` per class;
``precision_recall_curve`` -> F1 at every threshold -> the maximum; accuracy of the
binarised scores at that threshold), with two deliberate differences, both documented in
``docs/evaluation.md``:

* The accuracy binarises with ``score >= threshold``, the rule under which
  ``precision_recall_curve`` computed that F1; the reference uses ``>`` and so scores the
  threshold record itself as negative.
* A class whose labels take a single value in the split (no positives, or no negatives)
  has no ROC curve: its metrics are NaN and it is left out of the macro means (the
  reference raised or averaged NaN in).

It lives in the training layer because the train loop ranks checkpoints by the same macro
AUC that ``merl evaluate`` reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_curve, roc_auc_score

NAN = float("nan")


@dataclass(frozen=True)
class ClassMetrics:
    auc: float  # percent; NaN when degenerate
    f1: float
    acc: float
    threshold: float  # score threshold of the best F1
    n_pos: int
    n: int

    @property
    def degenerate(self) -> bool:
        return math.isnan(self.auc)

    def as_dict(self) -> dict:
        return {"auc": self.auc, "f1": self.f1, "acc": self.acc, "threshold": self.threshold,
                "n_pos": self.n_pos, "n": self.n}


def best_f1(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(best F1 in [0, 1], its threshold) over the precision-recall curve thresholds."""
    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    # The last PR point (precision 1, recall 0) has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom != 0)
    k = int(np.argmax(f1))
    return float(f1[k]), float(thresholds[k])


def class_metrics(y_true: Sequence[int], scores: Sequence[float]) -> ClassMetrics:
    y = np.asarray(y_true).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return ClassMetrics(NAN, NAN, NAN, NAN, n_pos, len(y))
    auc = roc_auc_score(y, s)
    f1, thr = best_f1(y, s)
    acc = accuracy_score(y, s >= thr)
    return ClassMetrics(100.0 * auc, 100.0 * f1, 100.0 * acc, thr, n_pos, len(y))


@dataclass(frozen=True)
class TaskMetrics:
    per_class: dict[str, ClassMetrics]
    macro_auc: float
    macro_f1: float
    macro_acc: float
    excluded: tuple[str, ...]  # degenerate classes left out of the macro means


def _nanmean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else NAN


def task_metrics(y_true: np.ndarray, scores: np.ndarray, labels: Sequence[str]) -> TaskMetrics:
    """Per-class metrics of a (records x classes) label / score matrix and macro means."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores)
    if y_true.shape != scores.shape or y_true.ndim != 2 or y_true.shape[1] != len(labels):
        raise ValueError(f"labels {y_true.shape} / scores {scores.shape} / {len(labels)} class names disagree")
    per = {lab: class_metrics(y_true[:, j], scores[:, j]) for j, lab in enumerate(labels)}
    ok = [m for m in per.values() if not m.degenerate]
    return TaskMetrics(
        per_class=per,
        macro_auc=_nanmean([m.auc for m in ok]),
        macro_f1=_nanmean([m.f1 for m in ok]),
        macro_acc=_nanmean([m.acc for m in ok]),
        excluded=tuple(lab for lab, m in per.items() if m.degenerate),
    )
