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


# --- bootstrap confidence intervals ---------------------------------------------------------
#
# Records are resampled with replacement (no stratification). A resample is a row of counts
# (how often each record was drawn; multinomial(n, 1/n), the same distribution as drawing n
# indices), so every AUC of every class -- and of any other score matrix on the same records,
# e.g. another prompt set -- is computed from the same resamples in one vectorised pass: the
# Mann-Whitney statistic with each record weighted by its count, ties counted half. A class
# whose labels take a single value in a resample has no AUC there and is skipped in that
# resample's macro mean; a class degenerate in the full sample is left out altogether.
# Intervals are percentile intervals of the draws; the paired test of two score matrices is
# the percentile interval of the per-resample difference and the two-sided bootstrap p-value
# 2 * min(P(d <= 0), P(d >= 0)) with the usual +1 correction.


def task_seed(seed: int, task_name: str) -> int:
    """The resampling seed of one task: the run's seed and the task's name (stable across runs,
    the same for every prompt set and model scored on that task's records)."""
    import zlib

    return (int(seed) * 1_000_003 + zlib.crc32(task_name.encode())) % (2**32)


def resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) float counts of n records drawn with replacement, seeded."""
    rng = np.random.default_rng(seed)
    if n == 0 or n_boot == 0:
        return np.zeros((n_boot, n))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def weighted_auc(y_true: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC AUC in [0, 1] of one class under each resample (row of ``counts``); NaN where a
    resample has no positive or no negative record. ``counts`` = ones reproduces sklearn."""
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted, c = s[order], y[order], counts[:, order]
    neg = np.where(y_sorted, 0.0, c)
    pos = np.where(y_sorted, c, 0.0)
    cum_neg = np.cumsum(neg, axis=1)
    # tie groups of the sorted scores: first and last position of each record's group
    new = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
    start = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    end = np.r_[start[1:], len(s_sorted)] - 1
    first, last = start[group], end[group]
    below = np.where(first > 0, cum_neg[:, np.maximum(first - 1, 0)], 0.0)  # negatives strictly lower
    tied = cum_neg[:, last] - below
    w_pos, w_neg = pos.sum(axis=1), neg.sum(axis=1)
    num = (pos * (below + 0.5 * tied)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = num / (w_pos * w_neg)
    auc[(w_pos == 0) | (w_neg == 0)] = np.nan
    return auc


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite draws; (NaN, NaN) without any."""
    d = np.asarray(draws, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return (NAN, NAN)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(d, [a, 1.0 - a])
    return (float(lo), float(hi))


@dataclass(frozen=True)
class AucBootstrap:
    """Bootstrap draws (percent) of one score matrix's AUCs on one set of records."""

    per_class: dict[str, np.ndarray]  # label -> (n_boot,) AUC draws (NaN where skipped)
    macro: np.ndarray  # (n_boot,) macro AUC draws over the classes non-degenerate in the full sample
    level: float

    def class_interval(self, label: str) -> tuple[float, float]:
        return percentile_interval(self.per_class[label], self.level)

    def macro_interval(self) -> tuple[float, float]:
        return percentile_interval(self.macro, self.level)


def bootstrap_aucs(y_true: np.ndarray, scores: np.ndarray, labels: Sequence[str], counts: np.ndarray,
                   level: float = 0.95) -> AucBootstrap:
    """Per-class and macro AUC draws (percent) of a (records x classes) matrix under ``counts``
    (:func:`resample_counts`); pass the same counts for every score matrix of a paired test."""
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    n_boot = counts.shape[0]
    per: dict[str, np.ndarray] = {}
    kept = []
    for j, lab in enumerate(labels):
        yj = y_true[:, j]
        if yj.min(initial=0) == yj.max(initial=0) or n_boot == 0:  # degenerate in the full sample
            per[lab] = np.full(n_boot, NAN)
            continue
        per[lab] = 100.0 * weighted_auc(yj, scores[:, j], counts)
        kept.append(per[lab])
    if kept:
        stack = np.vstack(kept)
        ok = np.isfinite(stack)
        with np.errstate(invalid="ignore", divide="ignore"):
            macro = np.where(ok, stack, 0.0).sum(axis=0) / ok.sum(axis=0)
    else:
        macro = np.full(n_boot, NAN)
    return AucBootstrap(per, macro, level)


def mean_draws(draws: Sequence[np.ndarray]) -> np.ndarray:
    """Per-resample mean over several tasks' macro draws (e.g. the six-task average), NaN-skipping."""
    if not draws:
        return np.zeros(0)
    stack = np.vstack([np.asarray(d, dtype=np.float64) for d in draws])
    ok = np.isfinite(stack)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, stack, 0.0).sum(axis=0) / ok.sum(axis=0)


def paired_difference(draws_a: np.ndarray, draws_b: np.ndarray, point_a: float, point_b: float,
                      level: float = 0.95) -> dict:
    """A - B from draws on the same resamples: the point difference, its percentile interval and
    the two-sided bootstrap p-value of no difference."""
    d = np.asarray(draws_a, dtype=np.float64) - np.asarray(draws_b, dtype=np.float64)
    d = d[np.isfinite(d)]
    lo, hi = percentile_interval(d, level)
    if d.size:
        p = 2.0 * min((1 + np.sum(d <= 0)) / (d.size + 1), (1 + np.sum(d >= 0)) / (d.size + 1))
        p = float(min(1.0, p))
    else:
        p = NAN
    return {"diff": float(point_a - point_b), "ci": [lo, hi], "p": p, "n_boot": int(d.size), "level": level}
