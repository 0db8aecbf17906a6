"""Results as rich tables, ``results.json`` and per-task plots.

The paper comparison is the one figure ``shared/reference/benchmarks.md`` states: MERL
(ResNet18 + CKEPE prompts) averages 75.2 zero-shot AUC over the six tasks. The run is
marked comparable only when it matches the paper's setup (:mod:`merl.evaluation.comparable`:
model, input, splits, CPSC crop, real data on all six tasks, whole prompts from a file);
otherwise the reasons are listed. Numbers computed on synthetic shards are labelled
"synthetic" everywhere (table title, JSON, plot titles) and are never comparable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Any

from merl.core.io import atomic_write_text, makedirs
from merl.core.tasks import TASKS
from merl.core.uri import join
from merl.evaluation.leadsets import LeadSetResult
from merl.evaluation.linear_probe import LinearProbeResult
from merl.evaluation.zeroshot import ZeroShotResult

PAPER_ZEROSHOT_AVG_AUC = 75.2  # MERL ResNet18 + CKEPE, mean over the six tasks
SYNTHETIC_TAG = " - SYNTHETIC data"
PAPER_NOTE = "MERL (ICML 2024) ResNet18 + CKEPE, average zero-shot AUC over the six tasks"


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> null (strict JSON), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


@dataclass
class EvalReport:
    zeroshot: list[ZeroShotResult]
    probes: list[LinearProbeResult] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    paper_check: dict[str, Any] | None = None  # evaluation.comparable.paper_comparability of the run, if known
    prompts_name: str = "prompts"  # the name of the prompt set ``zeroshot`` was scored with
    prompt_files: dict[str, str | None] = field(default_factory=dict)  # set name -> prompts file (None = names)
    alternatives: dict[str, list[ZeroShotResult]] = field(default_factory=dict)  # more sets, same records
    lead_sets: list[LeadSetResult] = field(default_factory=list)  # reduced-lead zero-shot (evaluation.leadsets)

    @property
    def synthetic(self) -> bool:
        return any(r.synthetic for r in self.zeroshot) or any(p.synthetic for p in self.probes)

    def average_auc(self) -> float:
        return average_auc(self.zeroshot)

    def average_auc_ci(self) -> tuple[float, float]:
        return average_auc_ci(self.zeroshot)

    def prompt_sets(self) -> dict[str, list[ZeroShotResult]]:
        return {self.prompts_name: self.zeroshot, **self.alternatives}

    def paired(self) -> list[dict[str, Any]]:
        """Paired bootstrap of every two prompt sets: macro AUC difference per task and of the
        average, on the same records and resamples (:func:`merl.training.metrics.paired_difference`)."""
        from merl.training.metrics import paired_difference

        sets = self.prompt_sets()
        out = []
        for a, b in combinations(sets, 2):
            by_b = {r.task: r for r in sets[b]}
            pairs = [(ra, by_b[ra.task]) for ra in sets[a] if ra.task in by_b and ra.boot is not None
                     and by_b[ra.task].boot is not None]
            for ra, rb in pairs:
                out.append({"a": a, "b": b, "task": ra.task, **paired_difference(
                    ra.boot.macro, rb.boot.macro, ra.macro_auc, rb.macro_auc, ra.ci_level)})
            if len(pairs) > 1:
                ra_list, rb_list = [p[0] for p in pairs], [p[1] for p in pairs]
                out.append({"a": a, "b": b, "task": "average", **paired_difference(
                    average_draws(ra_list), average_draws(rb_list), average_auc(ra_list), average_auc(rb_list),
                    pairs[0][0].ci_level)})
        return out

    def prompts_truncated(self) -> int:
        """Class prompts cut to the prompt token limit, over all tasks (0 = every prompt whole)."""
        return sum(len(r.truncated_prompts) for r in self.zeroshot)

    def comparison(self) -> dict[str, Any]:
        """The paper figure beside ours, whether the two are comparable, and why not."""
        check = self.paper_check
        if check is None:  # scored without run facts (a model passed in): only the results speak
            reasons = ["synthetic data"] if self.synthetic else []
            tasks = {r.task for r in self.zeroshot}
            if tasks != set(TASKS):
                reasons.append(f"{len(tasks)} of {len(TASKS)} tasks evaluated (the paper averages all six)")
            reasons.append("run configuration unknown (no model bundle and shard manifests)")
            check = {"comparable": False, "reasons": reasons, "prompts": "unknown"}
        reasons = check["reasons"]
        note = "matches the paper's setup (docs/fidelity.md)" if not reasons else (
            reasons[0] + (f" (+{len(reasons) - 1} more reasons in results.json)" if len(reasons) > 1 else ""))
        return {"paper_avg_auc": PAPER_ZEROSHOT_AVG_AUC, "paper": PAPER_NOTE, "ours_avg_auc": self.average_auc(),
                "comparable": check["comparable"], "reasons": reasons, "prompts": check.get("prompts"),
                "note": "not comparable: " + note if reasons else note}

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": "synthetic" if self.synthetic else "real",
            "meta": self.meta,
            "zeroshot": [r.summary() for r in self.zeroshot],
            "zeroshot_average_auc": self.average_auc(),
            "zeroshot_average_auc_ci": list(self.average_auc_ci()),
            "prompts_name": self.prompts_name,
            "prompt_sets": {name: {"prompts": self.prompt_files.get(name), "average_auc": average_auc(rs),
                                   "average_auc_ci": list(average_auc_ci(rs)),
                                   "tasks": {r.task: {"macro_auc": r.macro_auc, "macro_auc_ci": list(r.macro_auc_ci),
                                                      "n_records": r.n_records} for r in rs}}
                            for name, rs in self.prompt_sets().items()},
            "paired": self.paired(),
            "prompts_truncated": self.prompts_truncated(),
            "paper_comparison": self.comparison(),
            "linear_probe": [p.summary() for p in self.probes],
            **({"lead_sets": [r.summary() for r in self.lead_sets]} if self.lead_sets else {}),
        })


def average_auc(results: Sequence[ZeroShotResult]) -> float:
    """Mean macro AUC over tasks (those with one)."""
    vals = [r.macro_auc for r in results if math.isfinite(r.macro_auc)]
    return sum(vals) / len(vals) if vals else math.nan


def average_draws(results: Sequence[ZeroShotResult]):
    """Per-resample mean of the tasks' macro AUC draws (each task resampled on its own records)."""
    from merl.training.metrics import mean_draws

    return mean_draws([r.boot.macro for r in results if r.boot is not None and math.isfinite(r.macro_auc)])


def average_auc_ci(results: Sequence[ZeroShotResult]) -> tuple[float, float]:
    from merl.training.metrics import percentile_interval

    level = results[0].ci_level if results else 0.95
    return percentile_interval(average_draws(results), level)


def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.1f}"


def fmt_ci(v: float | None, ci: Sequence[float | None] | None = None) -> str:
    """``74.5 [70.1, 78.9]``; the bare value without a finite interval."""
    if ci is None or len(ci) != 2 or any(c is None or not math.isfinite(c) for c in ci):
        return _fmt(v)
    return f"{_fmt(v)} [{ci[0]:.1f}, {ci[1]:.1f}]"


def fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "-"
    return f"{p:.3f}" if p >= 0.001 else "<0.001"


def render_tables(report: EvalReport) -> list:
    """rich Tables: zero-shot per task (+ average vs paper), linear probe per fraction."""
    from rich.markup import escape
    from rich.table import Table

    tag = SYNTHETIC_TAG if report.synthetic else ""
    level = report.zeroshot[0].ci_level if report.zeroshot else 0.95
    zs = Table(title=f"Zero-shot{tag}, prompts: {escape(report.prompts_name)}", show_lines=False)
    auc_col = f"AUC [{100 * level:g}% CI]"
    for col in ("task", "split", "records", "classes", auc_col, "F1", "ACC", "excluded / dropped"):
        zs.add_column(col, justify="right" if col in ("records", "classes", auc_col, "F1", "ACC") else "left")
    for r in report.zeroshot:
        notes = ", ".join(r.excluded) + (f" | dropped {', '.join(r.dropped_labels)}" if r.dropped_labels else "")
        zs.add_row(r.task, r.split, str(r.n_records), str(len(r.labels) - len(r.excluded)),
                   fmt_ci(r.macro_auc, r.macro_auc_ci), _fmt(r.macro_f1), _fmt(r.macro_acc), escape(notes))
    cmp = report.comparison()
    zs.add_section()
    zs.add_row("average", "", "", "", fmt_ci(cmp["ours_avg_auc"], report.average_auc_ci()), "", "", "")
    zs.add_row("paper", "", "", "", _fmt(cmp["paper_avg_auc"]), "", "", cmp["note"])
    tables = [zs]
    cut = {r.task: r.truncated_prompts for r in report.zeroshot if r.truncated_prompts}
    if cut:
        zs.caption = "prompts cut to the token limit: " + escape("; ".join(f"{t}: {', '.join(v)}" for t, v in cut.items()))
    if report.alternatives:
        sets = report.prompt_sets()
        ps = Table(title=f"Zero-shot macro AUC [{100 * level:g}% CI] by prompt set{tag}")
        ps.add_column("task")
        for name in sets:
            ps.add_column(escape(name), justify="right")
        for i, r in enumerate(report.zeroshot):
            ps.add_row(r.task, *[fmt_ci(rs[i].macro_auc, rs[i].macro_auc_ci) if i < len(rs) else "-"
                                 for rs in sets.values()])
        ps.add_section()
        ps.add_row("average", *[fmt_ci(average_auc(rs), average_auc_ci(rs)) for rs in sets.values()])
        tables.append(ps)
        pt = Table(title=f"Paired bootstrap, macro AUC difference A - B [{100 * level:g}% CI]{tag}")
        for col in ("A", "B", "task", "A - B", "p (two-sided)"):
            pt.add_column(col, justify="right" if col in ("A - B", "p (two-sided)") else "left")
        for d in report.paired():
            pt.add_row(escape(d["a"]), escape(d["b"]), d["task"], fmt_ci(d["diff"], d["ci"]), fmt_p(d["p"]))
        tables.append(pt)
    if report.probes:
        fracs = sorted({f.fraction for p in report.probes for f in p.fits})
        lp = Table(title=f"Linear probe, macro AUC [{100 * level:g}% CI] on test{tag}")
        lp.add_column("task")
        for f in fracs:
            lp.add_column(f"{100 * f:g}%", justify="right")
        for p in report.probes:
            by = {f.fraction: f for f in p.fits}
            lp.add_row(p.task, *[fmt_ci(by[f].macro_auc, by[f].macro_auc_ci) if f in by else "-" for f in fracs])
        tables.append(lp)
    if report.lead_sets:
        from merl.evaluation.leadsets import lead_set_table

        tables.append(lead_set_table(report.lead_sets))
    return tables


def per_class_table(result: ZeroShotResult):
    from rich.markup import escape
    from rich.table import Table

    tag = SYNTHETIC_TAG if result.synthetic else ""
    t = Table(title=f"{result.task} per class{tag}")
    for col in ("class", "positives", "AUC [CI]", "F1", "ACC", "prompt"):
        t.add_column(col, justify="left" if col in ("class", "prompt") else "right")
    for lab in result.labels:
        m = result.per_class.get(lab, {})
        t.add_row(escape(lab), str(m.get("n_pos", 0)), fmt_ci(m.get("auc"), m.get("auc_ci")), _fmt(m.get("f1")),
                  _fmt(m.get("acc")),
                  escape(result.prompts.get(lab, "")[:60]))
    return t


def write_report(report: EvalReport, out_dir: str | Path, plots: bool = True) -> dict[str, Any]:
    """``results.json`` + ``plots/<task>_roc.png`` and ``plots/<task>_auc.png``; returns the paths.

    ``out_dir`` may be a URI (``s3://...``); ``results.json`` goes last, once the plots exist."""
    from merl.evaluation.plots import auc_bars, roc_curves

    out = str(out_dir)
    makedirs(out)
    written: dict[str, Any] = {"results": join(out, "results.json"), "plots": []}
    if plots:
        for r in report.zeroshot:
            if r.n_records:
                written["plots"].append(str(roc_curves(r, join(out, "plots", f"{r.task}_roc.png"))))
                written["plots"].append(str(auc_bars(r, join(out, "plots", f"{r.task}_auc.png"))))
        if report.lead_sets:
            from merl.evaluation.leadsets import lead_set_plot

            written["plots"].append(str(lead_set_plot(report.lead_sets, join(out, "plots", "lead_sets.png"))))
    atomic_write_text(join(out, "results.json"), json.dumps(report.to_dict(), indent=2, allow_nan=False))
    return written


def print_report(report: EvalReport, console=None, per_class: Sequence[str] = ()) -> None:
    from rich.console import Console

    console = console or Console()
    for r in report.zeroshot:
        if r.task in per_class:
            console.print(per_class_table(r))
    for t in render_tables(report):
        console.print(t)
