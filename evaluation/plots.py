"""Per-task PNGs: ROC curve of every class, and per-class AUC bars (matplotlib Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from merl.core.io import atomic_path

if TYPE_CHECKING:
    from merl.evaluation.zeroshot import ZeroShotResult


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(result: ZeroShotResult, what: str) -> str:
    tag = " - SYNTHETIC data" if result.synthetic else ""
    return f"{result.task} ({result.split}, n={result.n_records}) {what}{tag}"


def _save(fig, path: str | Path) -> str | Path:
    with atomic_path(path) as tmp:  # a local path or a URI (uploaded once complete)
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def roc_curves(result: ZeroShotResult, path: str | Path) -> str | Path:
    """One ROC curve per non-degenerate class, AUC in the legend."""
    from sklearn.metrics import roc_curve

    from merl.evaluation.report import fmt_ci

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    for j, lab in enumerate(result.labels):
        m = result.per_class.get(lab, {})
        auc = m.get("auc", math.nan)
        if math.isnan(auc):
            continue
        fpr, tpr, _ = roc_curve(result.y_true[:, j], result.scores[:, j])
        ax.plot(fpr, tpr, lw=1, label=f"{lab} ({fmt_ci(auc, m.get('auc_ci'))})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title=_title(result, f"zero-shot ROC, macro AUC {fmt_ci(result.macro_auc, result.macro_auc_ci)}"))
    ax.legend(fontsize=6, ncol=2 if len(result.labels) > 12 else 1, loc="lower right")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def auc_bars(result: ZeroShotResult, path: str | Path) -> str | Path:
    """Per-class AUC bars with their bootstrap intervals as error bars (degenerate classes shown
    as gaps) and the 50% chance line."""
    from merl.evaluation.report import fmt_ci

    plt = _pyplot()
    aucs = np.array([result.per_class.get(lab, {}).get("auc", math.nan) for lab in result.labels])
    cis = np.array([[np.nan if c is None else c for c in (result.per_class.get(lab, {}).get("auc_ci") or
                                                            [np.nan, np.nan])] for lab in result.labels],
                   dtype=float).reshape(len(aucs), 2)
    err = np.nan_to_num(np.vstack([aucs - cis[:, 0], cis[:, 1] - aucs]), nan=0.0).clip(min=0)
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * len(aucs) + 2), 4))
    ax.bar(range(len(aucs)), np.nan_to_num(aucs, nan=0.0), color="tab:blue", yerr=err, capsize=2,
           error_kw={"lw": 0.8, "ecolor": "black"})
    for i in np.flatnonzero(np.isnan(aucs)):  # single label value in the split: no AUC
        ax.text(i, 2, "n/a", ha="center", va="bottom", rotation=90, fontsize=7, color="grey")
    ax.axhline(50, color="grey", ls="--", lw=0.8)
    ax.set_xticks(range(len(aucs)), result.labels, rotation=70, fontsize=7)
    ax.set(ylabel=f"ROC AUC (%), {100 * result.ci_level:g}% bootstrap CI", ylim=(0, 100),
           title=_title(result, f"per-class zero-shot AUC, macro {fmt_ci(result.macro_auc, result.macro_auc_ci)}"))
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
