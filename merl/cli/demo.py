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
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. n_mimic=1000"),
) -> None:
    """Run the main job end to end on an embedded local Ray cluster with the synthetic corpus.

    synthesise (4 layouts) -> prepare shards on Ray -> knowledge index + CKEPE prompts ->
    pretrain (Ray Train) -> export -> zero-shot evaluation on the six tasks. Steps whose
    outputs exist are skipped, so an interrupted demo resumes where it stopped.
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from merl.core.config import load_config
    from merl.demo import PROMPT_KINDS, DemoConfig, plan, run_step, summarize

    items = list(overrides or [])
    if reference_prompts:
        items.append("reference_prompts=null" if reference_prompts.lower() == "none"
                     else f"reference_prompts={reference_prompts}")
    cfg = load_config(DemoConfig, config, items)
    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    steps = plan(cfg, out)
    for step in steps:
        try:
            run_step(step, Path.cwd(), announce=lambda cmd: typer.secho(f"\n$ {cmd}", bold=True))
        except RuntimeError as e:  # the step printed its own error above; say which step and stop
            typer.secho(f"error: {e}\nfix the cause and re-run `merl demo --out {out}`: finished steps are skipped",
                        fg="red", err=True)
            raise typer.Exit(1) from None
    t = Table(title="merl demo: steps")
    t.add_column("step")
    t.add_column("seconds", justify="right")
    for s in steps:
        t.add_row(s.name, "skipped (done)" if s.skipped else f"{s.seconds:.0f}")
    console.print(t)
    summary = summarize(out)
    planned_reference = any(s.name.startswith("evaluate (paper") for s in steps)
    kinds = [k for k in PROMPT_KINDS if f"average_auc_{k}" in summary and (k != "reference" or planned_reference)]
    r = Table(title="Zero-shot macro AUC (%) on SYNTHETIC data by prompts: " + " vs ".join(PROMPT_KINDS[k] for k in kinds))
    r.add_column("task")
    for k in kinds:
        r.add_column(PROMPT_KINDS[k], justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"
    for task, v in summary["tasks"].items():
        r.add_row(task, *[fmt(v.get(k)) for k in kinds])
    r.add_row("average", *[fmt(summary.get(f"average_auc_{k}")) for k in kinds])
    console.print(r)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(f"Synthetic-data results; plots and JSON under {', '.join(f'{out}/eval_{k}' for k in kinds)}.")


TOP_LEVEL.append(demo)
