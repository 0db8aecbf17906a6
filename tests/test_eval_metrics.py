"""Metrics agree with sklearn and with a hand computation; degenerate classes excluded."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from merl.training.metrics import best_f1, class_metrics, task_metrics


def test_best_f1_by_hand():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.3])
    # thresholds 0.3: TP3 FP1 -> P=.75 R=1 F1=6/7; 0.35: TP2 FP1 -> 2/3; 0.4: TP1 FP1 -> 1/2; 0.8: 2/3
    f1, thr = best_f1(y, s)
    assert thr == 0.3 and math.isclose(f1, 6 / 7)
    m = class_metrics(y, s)
    # at score >= 0.3: predictions 0,1,1,1,0,1 -> 5 of 6 correct
    assert math.isclose(m.acc, 100 * 5 / 6)
    assert math.isclose(m.f1, 100 * f1_score(y, s >= thr))
    assert math.isclose(m.auc, 100 * roc_auc_score(y, s))


def test_auc_equals_sklearn_on_random_matrix():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 4)) < [0.1, 0.3, 0.5, 0.7]).astype(int)
    s = rng.normal(size=(200, 4)) + y * [0.5, 1.0, 1.5, 0.0]
    tm = task_metrics(y, s, ["a", "b", "c", "d"])
    for j, lab in enumerate("abcd"):
        assert math.isclose(tm.per_class[lab].auc, 100 * roc_auc_score(y[:, j], s[:, j]))
    assert math.isclose(tm.macro_auc, 100 * roc_auc_score(y, s, average="macro"))
    assert tm.excluded == ()


def test_degenerate_class_is_nan_and_excluded_from_macro():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    s = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.4], [0.8, 0.2, 0.3], [0.1, 0.9, 0.2]])
    tm = task_metrics(y, s, ["pos", "none", "all"])
    assert tm.excluded == ("none", "all")
    assert math.isnan(tm.per_class["none"].auc) and math.isnan(tm.per_class["all"].f1)
    assert tm.macro_auc == 100.0 and tm.macro_f1 == 100.0 and tm.macro_acc == 100.0
