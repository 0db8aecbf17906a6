"""`merl demo`: the whole pipeline on the synthetic corpus (see merl/demo.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

TOP_LEVEL: list = []


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for everything the demo writes."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Demo config YAML (corpus sizes, train config)."),
    reference_prompts: Optional[str] = typer.Option(
        None, "--reference-prompts", help="The paper's released prompt file (merl_ckepe_prompt.json) for a third "
        "results column; default: ../shared/reference/merl_ckepe_prompt.json if present ('none' = skip)."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Independent runs (corpus, pretraining, control) "
                                        "on seeds seed..seed+N-1, summarised as mean ± sd and min/max (default 1)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. n_mimic=1000"),
) -> None:
    """Run the main job end to end on an embedded local Ray cluster with the synthetic corpus.

    synthesise (4 layouts) -> prepare shards on Ray -> knowledge index + CKEPE prompts ->
    pretrain (Ray Train) -> export -> zero-shot evaluation on the six tasks with CKEPE prompts,
    class names (and the paper's prompts), paired, each AUC with a bootstrap 95% interval; and
    the same evaluation of an untrained (random-init) control. Steps whose outputs exist are
    skipped, so an interrupted demo resumes where it stopped.
    """
    import json

    from rich.console import Console

    from merl.core.config import load_config
    from merl.demo import DemoConfig, plan, run_step, summarize

    items = list(overrides or [])
    if reference_prompts:
        items.append("reference_prompts=null" if reference_prompts.lower() == "none"
                     else f"reference_prompts={reference_prompts}")
    if seeds is not None:
        items.append(f"seeds={seeds}")
    cfg = load_config(DemoConfig, config, items)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a log file: keep the tables whole
    out.mkdir(parents=True, exist_ok=True)
    steps = plan(cfg, out)
    for step in steps:
        try:
            run_step(step, Path.cwd(), announce=lambda cmd: typer.secho(f"\n$ {cmd}", bold=True))
        except RuntimeError as e:  # the step printed its own error above; say which step and stop
            typer.secho(f"error: {e}\nfix the cause and re-run `merl demo --out {out}`: finished steps are skipped",
                        fg="red", err=True)
            raise typer.Exit(1) from None
    summary = summarize(cfg, out)
    summary["step_seconds"] = {s.name: None if s.skipped else round(s.seconds, 1) for s in steps}
    for table in demo_tables(steps, summary):
        console.print(table)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(f"Synthetic-data results; summary {out / 'summary.json'}, plots and JSON under the eval folders.")


def demo_tables(steps, summary: dict) -> list:
    """Step times; per task, macro AUC per prompt set with its 95% interval (one seed) or mean
    ± sd and min/max (several), the untrained control below; per seed, the averages."""
    from rich.table import Table

    from merl.demo import PROMPT_KINDS
    from merl.evaluation.report import fmt_ci, fmt_p

    t = Table(title="merl demo: steps")
    t.add_column("step")
    t.add_column("seconds", justify="right")
    for s in steps:
        t.add_row(s.name, "skipped (done)" if s.skipped else f"{s.seconds:.0f}")
    tables = [t]
    kinds, runs, across = summary["kinds"], summary["seeds"], summary["across_seeds"]
    single = len(runs) == 1
    what = "95% bootstrap CI" if single else f"mean ± sd [min, max] over {len(runs)} seeds"
    r = Table(title=f"Zero-shot macro AUC (%) on SYNTHETIC data, {what}")
    r.add_column("task")
    for k in kinds:
        r.add_column(PROMPT_KINDS[k], justify="right")

    def spread_cell(s: dict) -> str:
        if s.get("mean") is None:
            return "-"
        return f"{s['mean']:.1f} ± {s['sd']:.1f} [{s['min']:.1f}, {s['max']:.1f}]"

    only = next(iter(runs.values()))
    for task in across["tasks"]:
        if single:
            r.add_row(task, *[fmt_ci(only["tasks"][task].get(k, {}).get("auc"), only["tasks"][task].get(k, {}).get("ci"))
                              for k in kinds])
        else:
            r.add_row(task, *[spread_cell(across["tasks"][task][k]) for k in kinds])
    r.add_section()
    for label, key in (("average of six", "average"), ("untrained control (random init), average", "untrained")):
        if single:
            r.add_row(label, *[fmt_ci(only[key].get(k, {}).get("auc"), only[key].get(k, {}).get("ci")) for k in kinds])
        else:
            r.add_row(label, *[spread_cell(across[key][k]) for k in kinds])
    tables.append(r)
    p = Table(title="Average of six tasks per seed (SYNTHETIC data): CKEPE prompts vs class names, paired bootstrap")
    for col in ("seed", "CKEPE [95% CI]", "class names [95% CI]", "CKEPE - names [95% CI]", "p", "untrained (CKEPE)"):
        p.add_column(col, justify="left" if col == "seed" else "right")
    for seed, run in runs.items():
        d = run["paired"].get("ckepe-names:average", {})
        avg = run["average"]
        p.add_row(seed, fmt_ci(avg.get("ckepe", {}).get("auc"), avg.get("ckepe", {}).get("ci")),
                  fmt_ci(avg.get("names", {}).get("auc"), avg.get("names", {}).get("ci")),
                  fmt_ci(d.get("diff"), d.get("ci")), fmt_p(d.get("p")),
                  fmt_ci(run["untrained"].get("ckepe", {}).get("auc"), run["untrained"].get("ckepe", {}).get("ci")))
    if not single:
        a, diff = across["average"], across["ckepe_minus_names"]
        cell = lambda s, f: "-" if s.get("mean") is None else f(s)
        p.add_section()
        p.add_row("mean ± sd", *[cell(s, lambda s: f"{s['mean']:.1f} ± {s['sd']:.1f}")
                                 for s in (a.get("ckepe", {}), a.get("names", {}), diff)], "",
                  cell(across["untrained"].get("ckepe", {}), lambda s: f"{s['mean']:.1f} ± {s['sd']:.1f}"))
        p.add_row("min / max", *[cell(s, lambda s: f"{s['min']:.1f} / {s['max']:.1f}")
                                 for s in (a.get("ckepe", {}), a.get("names", {}), diff)],
                  f"CKEPE >= names in {diff['seeds_ckepe_ge_names']} of {len(runs)}",
                  cell(across["untrained"].get("ckepe", {}), lambda s: f"{s['min']:.1f} / {s['max']:.1f}"))
    tables.append(p)
    tables += lead_set_tables(runs)
    return tables


def lead_set_tables(runs: dict) -> list:
    """Per seed, the reduced-lead table of `merl evaluate --lead-sets` (SYNTHETIC data)."""
    from merl.evaluation.leadsets import LeadSetResult, lead_set_table

    tables = []
    for seed, run in runs.items():
        rows = [LeadSetResult(r["task"], r["lead_set"], tuple(r["leads"]), r["split"], r["n_records"], r["macro_auc"],
                              synthetic=r.get("synthetic", True), extra={"macro_auc_ci": r.get("macro_auc_ci")})
                for r in run.get("lead_sets", [])]
        if rows:
            table = lead_set_table(rows)
            table.title = f"{table.title}, seed {seed}"
            tables.append(table)
    return tables


TOP_LEVEL.append(demo)
