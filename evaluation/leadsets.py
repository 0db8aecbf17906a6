"""Reduced-lead zero-shot evaluation: the same task scored with 12 leads, the 6 limb leads, I+II ...

Each lead set restricts every record to those of its leads (the others zeroed and masked, as
if never recorded) and scores the task through :func:`merl.evaluation.zeroshot.evaluate_zeroshot`,
the one zero-shot path, so a lead set's AUC is the full-lead AUC's exact counterpart. Named
sets (``12``, ``limb6``, ``chest6``) are defined once, in
:data:`merl.training.data.canonical.LEAD_SETS`; any other set is lead names joined by ``+``.

``merl evaluate --lead-sets 12,limb6,I+II,I,II`` adds these results to results.json
(``lead_sets``), the printed report (one table: tasks x lead sets, with the change against
12 leads) and ``plots/lead_sets.png``. A script (the demo) gets the same table from an
export bundle with :func:`bundle_lead_sets`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from merl.training.data.canonical import leads_mask, resolve_lead_set

if TYPE_CHECKING:
    from merl.evaluation.zeroshot import ZeroShotResult
    from merl.training.data.config import DataConfig

DEFAULT_LEAD_SETS: tuple[str, ...] = ("12", "limb6", "I+II", "I", "II")
FULL = "12"


@dataclass
class LeadSetResult:
    """Zero-shot macro AUC of one task with one lead set (percent)."""

    task: str
    lead_set: str  # its label: "12", "limb6", "I+II" ...
    leads: tuple[str, ...]
    split: str
    n_records: int
    macro_auc: float
    per_class_auc: dict[str, float] = field(default_factory=dict)
    synthetic: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. an interval, where evaluation provides one

    def summary(self) -> dict[str, Any]:
        return {"task": self.task, "lead_set": self.lead_set, "leads": list(self.leads), "split": self.split,
                "n_records": self.n_records, "macro_auc": self.macro_auc, "per_class_auc": self.per_class_auc,
                "synthetic": self.synthetic, **self.extra}


def parse_lead_sets(text: str | Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``"12,limb6,I+II,I,II"`` (or a list) -> [(label, leads)], in order, without repeats;
    an unknown lead name is a one-line ConfigError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: dict[str, tuple[str, ...]] = {}
    for item in items:
        if str(item).strip():
            label, leads = resolve_lead_set(item)
            out.setdefault(label, leads)
    return list(out.items())


def from_zeroshot(result: ZeroShotResult, label: str, leads: Sequence[str],
                  full: ZeroShotResult | None = None) -> LeadSetResult:
    """A lead set's result with its bootstrap interval and, given the 12-lead result on the
    same records (``full``), the paired difference to it: the same resamples score both."""
    extra: dict[str, Any] = {"macro_auc_ci": list(result.macro_auc_ci)}
    if full is not None and full is not result and result.boot is not None and full.boot is not None:
        from merl.training.metrics import paired_difference

        extra["vs_12_leads"] = paired_difference(result.boot.macro, full.boot.macro, result.macro_auc,
                                                 full.macro_auc, result.ci_level)
    return LeadSetResult(result.task, label, tuple(leads), result.split, result.n_records, result.macro_auc,
                         {k: v.get("auc", math.nan) for k, v in result.per_class.items()}, result.synthetic, extra)


def evaluate_lead_sets(model, tokenizer, tasks: Mapping[str, str], data_cfg: DataConfig,
                       lead_sets: str | Sequence[str] = DEFAULT_LEAD_SETS, *,
                       prompts: Mapping[str, Mapping[str, str] | None] | None = None, split: str = "test",
                       batch_size: int = 64, device: str = "cpu", max_prompt_tokens: int | None = None,
                       progress: bool = False, task_defs: Mapping[str, Any] | None = None,
                       **zeroshot_kwargs) -> list[LeadSetResult]:
    """Zero-shot macro AUC of every task ({task: shard folder}) with every lead set.

    ``prompts``: {task: {label: prompt}} (None = each label's default prompt). A record that
    has none of a set's leads is still scored (its embedding then carries no signal), so
    every set is scored on the same records. ``task_defs`` ({task: Task} with its own label
    set) and ``zeroshot_kwargs`` (``n_boot``, ``seed``, ``ci_level``, ``min_records``,
    ``ecg_cache``) go to :func:`~merl.evaluation.zeroshot.evaluate_zeroshot` as in the main
    evaluation, so lead sets share its label sets, resamples and (for 12 leads) embeddings.
    """
    from merl.evaluation.zeroshot import evaluate_zeroshot

    out = []
    sets = parse_lead_sets(lead_sets)
    for task, shards in tasks.items():
        scored = {label: evaluate_zeroshot(model, tokenizer, task, shards, data_cfg, prompts=(prompts or {}).get(task),
                                           split=split, batch_size=batch_size, device=device, progress=progress,
                                           max_prompt_tokens=max_prompt_tokens, leads=leads_mask(leads),
                                           task=(task_defs or {}).get(task), **zeroshot_kwargs)
                  for label, leads in sets}
        out += [from_zeroshot(scored[label], label, leads, scored.get(FULL)) for label, leads in sets]
    return out


def bundle_lead_sets(bundle, tasks: Mapping[str, str], lead_sets: str | Sequence[str] = DEFAULT_LEAD_SETS, *,
                     split: str = "test", prompts: Mapping[str, Mapping[str, str] | None] | None = None,
                     batch_size: int = 64, device: str | None = None):
    """(results, rich Table) of :func:`evaluate_lead_sets` for an export bundle (a
    ``merl.training.export.Bundle`` or a bundle folder): the reduced-lead table in one call."""
    if not hasattr(bundle, "model"):
        from merl.training.export import load_bundle

        bundle = load_bundle(bundle, device or "cpu")
    from merl.training.embed import device_dtype

    results = evaluate_lead_sets(bundle.model, bundle.tokenizer, tasks, bundle.config.data, lead_sets, prompts=prompts,
                                 split=split, batch_size=batch_size,
                                 device=device or str(device_dtype(bundle.model)[0]))
    return results, lead_set_table(results)


def lead_set_table(results: Sequence[LeadSetResult]):
    """rich Table: one row per task, one column per lead set (macro AUC; the change against
    12 leads beside it when 12 leads were scored)."""
    from rich.table import Table

    from merl.evaluation.report import fmt_ci

    sets = list(dict.fromkeys(r.lead_set for r in results))
    tasks = list(dict.fromkeys(r.task for r in results))
    by = {(r.task, r.lead_set): r for r in results}
    tag = " - SYNTHETIC data" if any(r.synthetic for r in results) else ""
    table = Table(title=f"Zero-shot macro AUC [95% CI] by lead set (change vs 12 leads){tag}")
    table.add_column("task", no_wrap=True)
    for s in sets:
        table.add_column(s, justify="right", no_wrap=True)
    for task in tasks:
        full = by.get((task, FULL))
        cells = []
        for s in sets:
            r = by.get((task, s))
            if r is None:
                cells.append("-")
                continue
            delta = r.macro_auc - full.macro_auc if full is not None and s != FULL else math.nan
            cells.append(fmt_ci(r.macro_auc, r.extra.get("macro_auc_ci"))
                         + (f" ({delta:+.1f})" if math.isfinite(delta) else ""))
        table.add_row(task, *cells)
    return table


def lead_set_plot(results: Sequence[LeadSetResult], path: str | Path) -> str | Path:
    """Grouped bars: macro AUC per task (groups) and lead set (bars)."""
    import numpy as np

    from merl.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    sets = list(dict.fromkeys(r.lead_set for r in results))
    tasks = list(dict.fromkeys(r.task for r in results))
    by = {(r.task, r.lead_set): r.macro_auc for r in results}
    width = 0.8 / max(len(sets), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(tasks) * len(sets) * 0.5 + 2), 3.6))
    x = np.arange(len(tasks))
    for i, s in enumerate(sets):
        ax.bar(x + i * width - 0.4 + width / 2, [by.get((t, s), math.nan) for t in tasks], width, label=s)
    ax.set_xticks(x, tasks)
    ax.set_ylabel("zero-shot macro AUC (%)")
    ax.set_ylim(0, 100)
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.legend(title="leads", fontsize=8, ncols=min(len(sets), 6), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    tag = " - SYNTHETIC data" if any(r.synthetic for r in results) else ""
    ax.set_title(f"Zero-shot AUC by lead set ({results[0].split if results else ''}){tag}")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
