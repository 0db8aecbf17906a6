"""`merl train`, `merl export`, `merl classify` (heavy imports inside the command bodies)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from merl.core.config import ConfigError

app = typer.Typer(no_args_is_help=True)


def train_cmd(
    config: Path = typer.Option(..., "--config", "-c", help="Pretraining YAML (e.g. configs/pretrain_laptop.yaml)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. train.epochs=2 data.batch_size=32"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: embedded local cluster)."),
    name: str = typer.Option("merl-pretrain", "--name", help="Run name: <checkpoint.storage_path>/<name>."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue the run's latest valid checkpoint if it exists."),
) -> None:
    """Pretrain MERL (ECG-report contrastive) with Ray Train, DDP or DeepSpeed."""
    from merl.core.config import load_config
    from merl.training.config import TrainConfig

    cfg = load_config(TrainConfig, config, overrides or [])
    from merl.training.trainer import fit

    result = fit(cfg, name=name, address=address, resume=resume)
    if result.error is not None:
        raise typer.Exit(1)
    summary = write_run_summary(result)
    typer.echo(json.dumps(summary, indent=2))


def write_run_summary(result) -> dict:
    """``<run>/result.json``: latest and best checkpoint (by the score Ray Train ranks), final
    metrics and the run's tracking run; also attached to that run (MLflow/W&B).

    `merl export --run RUN` reads it, so users need not look up checkpoint folder names."""
    from merl.core.io import atomic_write_text
    from merl.core.uri import is_uri, local_path
    from merl.training.loop import SCORE
    from merl.training.tracking import load_record, log_artifacts

    best = max(result.best_checkpoints or [], key=lambda cm: cm[1].get(SCORE, float("-inf")), default=None)
    summary = {
        "run_dir": result.path,
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        "best_checkpoint": best[0].path if best else (result.checkpoint.path if result.checkpoint else None),
        "best_score": best[1].get(SCORE) if best else None,
        "metrics": {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))},
        "tracking": load_record(result.path),
    }
    if not is_uri(result.path):
        path = Path(local_path(result.path)) / "result.json"
        atomic_write_text(path, json.dumps(summary, indent=2))
        _log_artifact(summary["tracking"], path, log_artifacts)
    return summary


def _log_artifact(record, path: Path, log_artifacts) -> None:
    """A file or folder attached to the run's tracking run; a tracking failure is a warning."""
    import logging
    import shutil
    import tempfile

    if not record:
        return
    with tempfile.TemporaryDirectory(prefix="merl-artifact-") as tmp:
        if path.is_dir():
            src, name = str(path), path.name
        else:
            shutil.copy2(path, Path(tmp) / path.name)
            src, name = tmp, ""
        try:
            log_artifacts(record, src, name)
        except Exception as e:  # noqa: BLE001 - MLflow/W&B errors vary; the file itself is written
            logging.getLogger(__name__).warning("could not log %s to the tracking run: %s", path, e)


def export_cmd(
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    checkpoint: Optional[str] = typer.Option(
        None, "--checkpoint", help="A training checkpoint folder or URI (checkpoint_stepNNNNNNNN)."
    ),
    run: Optional[Path] = typer.Option(
        None, "--run", help="A finished run folder: exports its best checkpoint (from result.json)."
    ),
    tune_run: Optional[str] = typer.Option(
        None, "--tune-run", help="A finished search (runs/tune/NAME): exports the best trial's best checkpoint "
        "(from best.json)."
    ),
) -> None:
    """Turn a training checkpoint into a self-contained inference bundle (loads offline).

    With --run or --tune-run the bundle is also attached to that run's (the winning trial's)
    MLflow / W&B run as artifact ``bundle/``, when one is recorded.
    """
    import tempfile

    from merl.core.uri import is_uri, join, read_text
    from merl.training.checkpoint import fetch_checkpoint
    from merl.training.export import export_checkpoint
    from merl.training.tracking import log_artifacts

    if sum(x is not None for x in (checkpoint, run, tune_run)) != 1:
        raise ConfigError("give exactly one of --checkpoint, --run or --tune-run")
    record = None
    if run is not None:
        summary_path = run / "result.json"
        if not summary_path.is_file():
            raise FileNotFoundError(f"{summary_path} not found: is {run} a finished `merl train` run?")
        summary = json.loads(summary_path.read_text())
        checkpoint, record = summary["best_checkpoint"], summary.get("tracking")
    elif tune_run is not None:
        text = read_text(join(tune_run, "best.json"))
        if text is None:
            raise FileNotFoundError(f"{join(tune_run, 'best.json')} not found: is {tune_run} a finished `merl tune` "
                                    "search (<storage_path>/<name>)?")
        best = json.loads(text)
        if not best.get("checkpoint"):
            raise FileNotFoundError(f"{tune_run}/best.json records no checkpoint for trial {best.get('trial_id')}")
        checkpoint, record = best["checkpoint"], best.get("tracking")
    with tempfile.TemporaryDirectory(prefix="merl-export-") as scratch:
        local = fetch_checkpoint(checkpoint, scratch) if is_uri(checkpoint) else checkpoint
        if not Path(local).is_dir():
            raise FileNotFoundError(f"checkpoint folder not found: {checkpoint}")
        bundle = export_checkpoint(local, out)
    typer.echo(f"wrote {bundle}")
    if record:
        _log_artifact(record, Path(bundle), lambda rec, src, _name: log_artifacts(rec, src, "bundle"))


def classify_cmd(
    model: Path = typer.Option(..., "--model", help="Bundle folder written by `merl export`."),
    input: Path = typer.Option(..., "--input", help="One WFDB record (path without extension) or a shard folder."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Comma-separated class names (used as prompts)."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help='JSON {"class": "prompt text", ...}.'),
    top: int = typer.Option(50, "--top", help="Rows shown (the JSON output has all)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write all scores as JSON here."),
) -> None:
    """Zero-shot per-class scores (softmax over classes) for ECG records."""
    if bool(labels) == bool(prompts):
        raise ConfigError("give exactly one of --labels A,B,C or --prompts prompts.json")
    if prompts:
        if not prompts.is_file():
            raise FileNotFoundError(f"prompts file not found: {prompts}")
        class_prompts = json.loads(prompts.read_text())
        if not isinstance(class_prompts, dict) or not class_prompts:
            raise ConfigError(f"{prompts}: expected a JSON object {{class: prompt}}")
    else:
        names = [x.strip() for x in labels.split(",") if x.strip()]
        class_prompts = {n: n for n in names}
    from rich.console import Console
    from rich.table import Table

    from merl.training.export import load_bundle
    from merl.training.infer import load_inputs, score

    bundle = load_bundle(model)
    ids, signals, fs = load_inputs(input)
    probs = score(bundle, signals, fs, class_prompts)
    classes = list(class_prompts)
    synthetic = input.is_dir() and _is_synthetic(input)
    table = Table(title=f"zero-shot scores ({len(ids)} {'synthetic ' if synthetic else ''}records)")
    table.add_column("record")
    for c in classes:
        table.add_column(c, justify="right")
    table.add_column("top")
    for rid, row in list(zip(ids, probs))[:top]:
        table.add_row(rid, *[f"{p:.3f}" for p in row], classes[int(row.argmax())])
    Console().print(table)
    if json_out:
        from merl.core.io import atomic_write_text

        atomic_write_text(
            json_out,
            json.dumps(
                {"classes": classes, "scores": {rid: dict(zip(classes, map(float, row))) for rid, row in zip(ids, probs)}},
                indent=2,
            ),
        )


def _is_synthetic(shards: Path) -> bool:
    from merl.evaluation.zeroshot import is_synthetic

    return is_synthetic(str(shards))


# Functions listed here become top-level commands (`merl <name>`; a trailing _cmd is dropped).
TOP_LEVEL: list = [train_cmd, export_cmd, classify_cmd]
