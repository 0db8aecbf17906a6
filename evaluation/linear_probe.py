"""Linear probing: frozen ECG encoder, a linear head trained on 1% / 10% / 100% of train.

The encoder runs once per split (features = ``model.probe_features``: for ``model.arch:
paper`` the average-pooled backbone features, as the reference probes them; for
``merl-ray`` the attention-pooled / CLS output); the head is one L2-regularised logistic
regression per class (one-vs-rest) on standardised features -- a convex fit, so the result
depends only on the seeded subsample, not on an optimiser schedule. Macro ROC AUC on test.

A class absent from a small training subsample cannot be fitted; its test scores are
constant (AUC 50) and it stays in the macro mean, as a linear head that never saw the
class would score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from merl.training.metrics import task_metrics

if TYPE_CHECKING:
    from merl.training.data.config import DataConfig

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.1, 1.0)


def subsample_indices(n: int, fraction: float, seed: int = 42) -> np.ndarray:
    """``round(fraction * n)`` indices (at least 1), drawn without replacement, sorted."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = max(1, int(round(fraction * n)))
    if k >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=k, replace=False))


@dataclass
class ProbeFit:
    fraction: float
    n_train: int
    macro_auc: float
    per_class_auc: dict[str, float]
    unfitted: list[str] = field(default_factory=list)  # classes with one label value in the subsample
    macro_auc_ci: tuple[float, float] = (float("nan"), float("nan"))  # bootstrap over the test records
    per_class_auc_ci: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class LinearProbeResult:
    task: str
    labels: list[str]
    n_test: int
    synthetic: bool
    fits: list[ProbeFit]

    def summary(self) -> dict:
        return {
            "task": self.task, "n_test": self.n_test, "synthetic": self.synthetic,
            "fits": [f.__dict__ for f in self.fits],
        }


def fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, c: float = 1.0,
                max_iter: int = 1000) -> tuple[np.ndarray, list[int]]:
    """One-vs-rest logistic regression scores [n_test, n_classes]; and the unfitted class indices."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    xtr, xte = scaler.transform(x_train), scaler.transform(x_test)
    scores = np.zeros((len(x_test), y_train.shape[1]), dtype=np.float64)
    unfitted = []
    for j in range(y_train.shape[1]):
        yj = y_train[:, j]
        if yj.min() == yj.max():
            unfitted.append(j)
            scores[:, j] = float(yj[0]) if len(yj) else 0.0
            continue
        clf = LogisticRegression(C=c, max_iter=max_iter)
        clf.fit(xtr, yj)
        scores[:, j] = clf.decision_function(xte)
    return scores, unfitted


def probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
          labels: Sequence[str], fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 42,
          n_boot: int = 1000, boot_seed: int = 0, ci_level: float = 0.95) -> list[ProbeFit]:
    """Fit a head on each seeded train fraction and score the test set; AUC intervals from
    ``n_boot`` bootstrap resamples of the test records (the same resamples for every fraction)."""
    from merl.training.metrics import bootstrap_aucs, resample_counts

    counts = resample_counts(len(x_test), n_boot, boot_seed)
    fits = []
    for frac in fractions:
        idx = subsample_indices(len(x_train), frac, seed)
        scores, unfitted = fit_predict(x_train[idx], y_train[idx], x_test)
        tm = task_metrics(y_test, scores, labels)
        boot = bootstrap_aucs(y_test, scores, labels, counts, ci_level)
        fits.append(ProbeFit(frac, len(idx), tm.macro_auc, {k: m.auc for k, m in tm.per_class.items()},
                             [labels[j] for j in unfitted], boot.macro_interval(),
                             {k: boot.class_interval(k) for k in labels}))
        log.info("linear probe %.0f%% (%d records): macro AUC %.2f", 100 * frac, len(idx), tm.macro_auc)
    return fits


def evaluate_linear_probe(
    model,
    task_name: str,
    shards_dir: str,
    data_cfg: DataConfig,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 42,
    batch_size: int = 64,
    device: str = "cpu",
    train_split: str = "train",
    test_split: str = "test",
    progress: bool = True,
    n_boot: int = 1000,
    boot_seed: int = 0,
    ci_level: float = 0.95,
    task=None,
    min_records: int | None = None,
    leads=None,
) -> LinearProbeResult:
    """Linear-probe macro AUC of ``model``'s frozen ECG encoder on one task; ``leads`` ((12,)
    bool, canonical order): probe (fit and test) on only these leads of every record."""
    from merl.core.tasks import get_task
    from merl.evaluation.zeroshot import is_synthetic
    from merl.training.data.tasklabels import split_labels
    from merl.training.embed import embed_ecgs

    task = task if task is not None else get_task(task_name)  # a Task with its own labels (task_with_labels)
    model.to(device)
    data = {}
    for split in (train_split, test_split):
        sl = split_labels(task, shards_dir, split, min_records)
        if len(sl.ids) == 0:
            raise ValueError(f"{task_name}: no {split} records with a task label in {shards_dir}")
        emb = embed_ecgs(model, shards_dir, split, data_cfg, ids=list(sl.ids), batch_size=batch_size,
                         features="backbone", progress=progress, leads=leads)
        data[split] = (emb.emb, sl.matrix.y, sl.matrix.labels)
    x_tr, y_tr, labels = data[train_split]
    x_te, y_te, _ = data[test_split]
    from merl.training.metrics import task_seed

    fits = probe(x_tr, y_tr, x_te, y_te, labels, fractions, seed, n_boot, task_seed(boot_seed, task_name), ci_level)
    return LinearProbeResult(task_name, list(labels), len(x_te), is_synthetic(shards_dir), fits)
