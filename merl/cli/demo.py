"""`merl demo`: the whole pipeline on the synthetic corpus (see merl/demo.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

TOP_LEVEL: list = []


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for everything the demo writes."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Demo config YAML (corpus sizes, train config)."),
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
    from merl.demo import DemoConfig, plan, run_step, summarize

    cfg = load_config(DemoConfig, config, list(overrides or []))
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
    r = Table(title="Zero-shot macro AUC (%) on SYNTHETIC data: CKEPE prompts vs class names")
    for col in ("task", "CKEPE prompts", "class names"):
        r.add_column(col, justify="left" if col == "task" else "right")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"
    for task, v in summary["tasks"].items():
        r.add_row(task, fmt(v.get("ckepe")), fmt(v.get("names")))
    r.add_row("average", fmt(summary.get("average_auc_ckepe")), fmt(summary.get("average_auc_names")))
    console.print(r)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(f"Synthetic-data results; plots and JSON under {out}/eval_ckepe and {out}/eval_names.")


TOP_LEVEL.append(demo)
