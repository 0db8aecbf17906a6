"""`merl evaluate` (zero-shot + linear probing) and `merl tune` (Ray Tune search)."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True)


def _parse_tasks(items: list[str]) -> dict[str, str]:
    from merl.core.config import ConfigError

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--task {item!r} is not of the form TASK=SHARDS_DIR (e.g. ptbxl_super_class=data/ptbxl)")
        task, shards = item.split("=", 1)
        out[task.strip()] = shards.strip()
    return out


def evaluate(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Export bundle directory of the trained model."),
    task: list[str] = typer.Option([], "--task", "-t", help="TASK=SHARDS_DIR; repeat for several tasks "
                                   "(ptbxl_super_class, ptbxl_sub_class, ptbxl_form, ptbxl_rhythm, icbeb, chapman)."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="Prompts JSON {label: prompt} (e.g. from "
                                          "`merl prompts`); default: each label's preferred name."),
    linear_probe: bool = typer.Option(False, "--linear-probe", help="Also linear-probe the frozen ECG encoder "
                                      "on 1%/10%/100% of the train split."),
    split: Optional[str] = typer.Option(None, "--split", help="Split scored (default test)."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device (default cpu)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Output folder for results.json and plots/."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="EvalConfig YAML; flags override it."),
    per_class: bool = typer.Option(False, "--per-class", help="Also print per-class tables."),
    leads: Optional[str] = typer.Option(None, "--leads", help="Score with only these leads of every record, "
                                        "e.g. I,II,V1 (default: every lead a record has)."),
    lead_sets: Optional[str] = typer.Option(None, "--lead-sets", help="Also score zero-shot per lead set, e.g. "
                                            "12,limb6,I+II,I,II (named: 12, limb6, chest6; else names joined by +)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides of the config (e.g. batch_size=32)."),
) -> None:
    """Zero-shot classification (and optional linear probing) of a trained model on benchmark tasks.

    Writes OUT/results.json, OUT/plots/<task>_roc.png and <task>_auc.png, and prints the
    results with the paper's average for comparison. Numbers from synthetic shards are
    labelled "synthetic". ``--lead-sets`` adds reduced-lead zero-shot AUCs (a table,
    results.json ``lead_sets`` and plots/lead_sets.png).
    """
    from rich.console import Console

    from merl.core.config import apply_overrides, read_yaml, validate
    from merl.evaluation.config import EvalConfig

    data = read_yaml(config) if config else {}
    flags = {"model": model, "prompts": prompts, "split": split, "device": device, "out": out, "leads": leads,
             "lead_sets": lead_sets}
    data.update({k: v for k, v in flags.items() if v is not None})
    if task:
        data["tasks"] = {**data.get("tasks", {}), **_parse_tasks(task)}
    if linear_probe:
        data["linear_probe"] = True
    cfg = validate(EvalConfig, apply_overrides(data, overrides or []), source=config or "merl evaluate options")

    from merl.evaluation.report import print_report
    from merl.evaluation.run import run_evaluation

    report, written = run_evaluation(cfg)
    console = Console()
    print_report(report, console, per_class=list(cfg.tasks) if per_class else ())
    console.print(f"results: {written['results']}  plots: {len(written['plots'])} in {cfg.out}/plots")


def tune(
    config: str = typer.Option("configs/tune.yaml", "--config", "-c", help="Tune search YAML (see configs/tune.yaml)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (auto, host:6379, "
                                          "ray://host:10001); default: an embedded local cluster."),
    num_cpus: Optional[int] = typer.Option(None, "--num-cpus", help="CPUs of the embedded local cluster."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted search <storage_path>/<name> "
                                "(finished trials are kept, unfinished and errored ones continue)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides (YAML values, lists too), e.g. "
                                          "num_samples=8 searcher=optuna search.optim.lr.high=1e-2 tracking=none."),
) -> None:
    """Hyperparameter search (temperature, projection sizes, lr, uni-modal loss weight) with Ray Tune.

    Each trial is a full Ray Train pretraining run scored by its zero-shot validation AUC;
    random, Optuna TPE or grid search, with ASHA early stopping or PBT. Prints one row per
    trial and writes, beside Tune's state, trials.csv, best_config.yaml, best.json (the
    winner's checkpoint, for `merl export --tune-run`) and two plots. Ctrl-C stops the
    search cleanly; `--resume` continues it.
    """
    from rich.console import Console

    from merl.training.tune import TuneInterrupted, load_tune_config, run_tune

    cfg = load_tune_config(config, overrides or [])
    try:
        outcome = run_tune(cfg, address=address, num_cpus=num_cpus, resume=resume)
    except TuneInterrupted as e:
        typer.secho(str(e), fg="yellow", err=True)
        raise typer.Exit(130) from None
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file: no terminal width to respect, keep the table whole
    console.print(tune_table(cfg, outcome))
    console.print(f"best: {outcome.best_params} -> {cfg.metric} {outcome.best_score:.4f}")
    console.print(f"best config: {outcome.best_config_path}")
    console.print(f"best checkpoint: {outcome.best['checkpoint']}  (merl export --tune-run {outcome.experiment_path} "
                  "--out model/)")
    console.print("files: " + ", ".join(outcome.files.values()))


def tune_table(cfg, outcome):
    """One row per trial: its parameters, best metric and validations run (short headers:
    the last part of each key when that is unique, so six parameters fit a terminal)."""
    import math

    from rich.table import Table

    keys = list(outcome.rows[0]["params"] if outcome.rows else cfg.search)
    tails = [k.rsplit(".", 1)[-1] for k in keys]
    headers = tails if len(set(tails)) == len(tails) else keys
    errors = any(r["error"] for r in outcome.rows)
    table = Table(title=f"Tune {cfg.name}: {cfg.metric} ({cfg.mode}), {cfg.searcher} search, {cfg.scheduler}")
    table.add_column("trial", no_wrap=True)
    for header in headers:
        table.add_column(header, justify="right")
    table.add_column("best", justify="right", no_wrap=True)
    table.add_column("val.", justify="right", no_wrap=True)
    if errors:
        table.add_column("error")
    for row in sorted(outcome.rows, key=lambda r: r["trial"]):
        vals = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row["params"].values()]
        best = "-" if not math.isfinite(row["best"]) else f"{row['best']:.4f}"
        table.add_row(row["trial"], *vals, best, str(row["iterations"]), *([row["error"][:60]] if errors else []))
    return table


# Functions listed here become top-level commands (`merl <name>`; a trailing _cmd is dropped).
TOP_LEVEL: list = [evaluate, tune]
