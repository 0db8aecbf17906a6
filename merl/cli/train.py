"""`merl train`, `merl export`, `merl import-reference`, `merl classify` (heavy imports inside the command bodies)."""

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
    _warn_relative_storage_in_job(cfg.checkpoint.storage_path)
    from merl.training.trainer import fit

    result = fit(cfg, name=name, address=address, resume=resume)
    if result.error is not None:
        raise typer.Exit(1)
    summary = write_run_summary(result, cfg.checkpoint.storage_path)
    typer.echo(json.dumps(summary, indent=2))


def _warn_relative_storage_in_job(storage_path: str) -> None:
    """A submitted job runs in Ray's copy of the working dir, deleted with the job's session:
    a relative checkpoint folder there is almost never what the user meant."""
    import logging
    import os

    from merl.core.env import job_env_vars
    from merl.core.uri import is_uri, local_path

    if job_env_vars() is not None and not is_uri(storage_path) and not Path(local_path(storage_path)).is_absolute():
        logging.getLogger(__name__).warning(
            "checkpoint.storage_path %r is relative: in this Ray job it resolves under %s, Ray's copy of the "
            "working dir; give an absolute path on shared storage or a URI to keep the run", storage_path, os.getcwd())


def write_run_summary(result, storage_path: str | None = None) -> dict:
    """``<run>/result.json``: latest and best checkpoint (by the score Ray Train ranks), final
    metrics and the run's tracking run; also attached to that run (MLflow/W&B).

    `merl export --run RUN` reads it, so users need not look up checkpoint folder names.
    ``storage_path``: the run's storage; for a URI, Ray's in-filesystem paths become URIs."""
    from merl.core.io import atomic_write_text
    from merl.core.uri import is_uri, join, local_path
    from merl.training.loop import SCORE
    from merl.training.tracking import load_record, log_artifacts
    from merl.training.trainer import storage_location

    def where(path: str | None) -> str | None:
        return storage_location(path, storage_path) if path and storage_path else path

    best = max(result.best_checkpoints or [], key=lambda cm: cm[1].get(SCORE, float("-inf")), default=None)
    summary = {
        "run_dir": where(result.path),
        "checkpoint": where(result.checkpoint.path) if result.checkpoint else None,
        "best_checkpoint": where(best[0].path if best else (result.checkpoint.path if result.checkpoint else None)),
        "best_score": best[1].get(SCORE) if best else None,
        "metrics": {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))},
    }
    summary["tracking"] = load_record(summary["run_dir"])
    path = join(summary["run_dir"], "result.json")
    atomic_write_text(path, json.dumps(summary, indent=2))
    if not is_uri(path):
        _log_artifact(summary["tracking"], Path(local_path(path)), log_artifacts)
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
    out: str = typer.Option(..., "--out", help="Bundle folder to write (a local path or a URI such as s3://b/model)."),
    checkpoint: Optional[str] = typer.Option(
        None, "--checkpoint", help="A training checkpoint folder (checkpoint_stepNNNNNNNN), local or a URI."
    ),
    run: Optional[str] = typer.Option(
        None, "--run", help="A finished run folder (local or a URI): exports its best checkpoint (from result.json)."
    ),
    tune_run: Optional[str] = typer.Option(
        None, "--tune-run", help="A finished search (runs/tune/NAME): exports the best trial's best checkpoint "
        "(from best.json)."
    ),
    untrained: bool = typer.Option(
        False, "--untrained", help="Export the untrained control instead: the checkpoint's architecture as "
        "training starts (random-init ECG tower and projections), none of its weights."),
    seed: int = typer.Option(0, "--seed", help="Seed of the --untrained model's random initialisation."),
) -> None:
    """Turn a training checkpoint into a self-contained inference bundle (loads offline).

    With --run or --tune-run the bundle is also attached to that run's (the winning trial's)
    MLflow / W&B run as artifact ``bundle/``, when one is recorded.
    """

    from merl.core.io import is_dir, is_file, read_text
    from merl.core.uri import is_uri, join, local_path
    from merl.training.export import export_checkpoint
    from merl.training.tracking import log_artifacts

    if sum(x is not None for x in (checkpoint, run, tune_run)) != 1:
        raise ConfigError("give exactly one of --checkpoint, --run or --tune-run")
    record = None
    if run is not None:
        summary_path = join(run, "result.json")
        if not is_file(summary_path):
            raise FileNotFoundError(f"{summary_path} not found: is {run} a finished `merl train` run?")
        summary = json.loads(read_text(summary_path))
        checkpoint, record = summary["best_checkpoint"], summary.get("tracking")
    elif tune_run is not None:
        text = read_text(join(tune_run, "best.json")) if is_file(join(tune_run, "best.json")) else None
        if text is None:
            raise FileNotFoundError(f"{join(tune_run, 'best.json')} not found: is {tune_run} a finished `merl tune` "
                                    "search (<storage_path>/<name>)?")
        best = json.loads(text)
        if not best.get("checkpoint"):
            raise FileNotFoundError(f"{tune_run}/best.json records no checkpoint for trial {best.get('trial_id')}")
        checkpoint, record = best["checkpoint"], best.get("tracking")
    if not checkpoint or not is_dir(checkpoint):
        raise FileNotFoundError(f"checkpoint folder not found: {checkpoint}")
    bundle = export_checkpoint(checkpoint, out, untrained_seed=seed if untrained else None)
    typer.echo(f"wrote {bundle}" + (" (untrained control)" if untrained else ""))
    if record and not untrained and not is_uri(str(bundle)):
        _log_artifact(record, Path(local_path(str(bundle))), lambda rec, src, _name: log_artifacts(rec, src, "bundle"))


def import_reference_cmd(
    checkpoint: str = typer.Option(..., "--checkpoint", help="The reference's <encoder>_ckpt.pth (whole model) "
                                   "or, with --encoder-only, <encoder>_encoder.pth (local or a URI)."),
    ecg_encoder: str = typer.Option(..., "--ecg-encoder", help="resnet18|resnet34|resnet50|resnet101|"
                                    "vit_tiny|vit_small|vit_middle|vit_base: the encoder the file was trained with."),
    out: str = typer.Option(..., "--out", help="Bundle folder to write, local or a URI (loads with `merl classify`, "
                            "`merl.load`)."),
    text_model: str = typer.Option("ncbi/MedCPT-Query-Encoder", "--text-model", help="MedCPT-Query-Encoder by "
                                   "Hugging Face name or local folder: tokenizer + config (+ weights with --encoder-only)."),
    encoder_only: bool = typer.Option(False, "--encoder-only", help="The file holds the ECG encoder only: the bundle "
                                      "serves linear probing; its heads are untrained."),
) -> None:
    """Convert one of MERL's released checkpoints into an export bundle (`model.arch: paper`).

    Every key is mapped and shape-checked; nothing is left over except the ResNets' unused
    classifier. The imported model computes what the reference computes (docs/fidelity.md).
    """
    from merl.training.reference import import_reference

    path = import_reference(checkpoint, ecg_encoder, out, text_model=text_model, encoder_only=encoder_only)
    typer.echo(f"wrote {path}")


def classify_cmd(
    model: str = typer.Option(..., "--model", help="Bundle folder written by `merl export` (local or a URI)."),
    input: str = typer.Option(..., "--input", help="One WFDB record (path without extension) or a shard folder "
                              "(local or a URI)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Comma-separated class names (used as prompts)."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help='JSON {"class": "prompt text", ...} (local or a URI).'),
    leads: Optional[str] = typer.Option(None, "--leads", help="Score with these leads only, e.g. I,II,V1 (aliases such "
                                        "as MLII allowed); for a record whose header names no standard lead: the "
                                        "names of its rows, in order. Default: every usable lead the header names."),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="Classes shown per record (best first)."),
    show_all: bool = typer.Option(False, "--all", help="Show the whole matrix: one column per class."),
    top: int = typer.Option(50, "--top", help="Records (rows) shown; the --json/--csv files have all."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write every score as JSON here (local or a URI)."),
    csv_out: Optional[str] = typer.Option(None, "--csv", help="Write every score as CSV here: one row per record, "
                                          "one column per class (local or a URI)."),
) -> None:
    """Zero-shot per-class scores (softmax over classes) for ECG records, with any set of leads.

    Prints one row per record: the leads used and the top classes with their scores
    (``--all``: every class). ``--json`` / ``--csv`` write every score.
    """
    if bool(labels) == bool(prompts):
        raise ConfigError("give exactly one of --labels A,B,C or --prompts prompts.json")
    if prompts:
        from merl.training.zeroshot import load_prompts

        class_prompts = load_prompts(prompts)  # {class: prompt}, local or a URI; a per-task file is refused
        if not class_prompts:
            raise ConfigError(f"{prompts}: expected a JSON object {{class: prompt}}")
    else:
        names = [x.strip() for x in labels.split(",") if x.strip()]
        class_prompts = {n: n for n in names}
    from rich.console import Console

    from merl.api import load, read_ecgs

    records = read_ecgs(input, leads)
    result = load(model).classify(records.signals, records.fs, prompts=class_prompts, lead_mask=records.lead_mask)
    synthetic = _is_shard_folder(input) and _is_synthetic(input)
    from merl.training.data.canonical import describe_leads

    used = [",".join(records.leads_of(i)) or "none" for i in range(len(records.ids))]
    Console().print(classify_table(records.ids, [describe_leads(m) for m in records.lead_mask], result.classes,
                                   result.probs, top_k=top_k, show_all=show_all, rows=top, synthetic=synthetic))
    if json_out or csv_out:
        from merl.core.io import atomic_write_text

        if json_out:
            atomic_write_text(json_out, json.dumps({
                "classes": result.classes,
                "leads": dict(zip(records.ids, used)),
                "scores": {rid: dict(zip(result.classes, map(float, row))) for rid, row in zip(records.ids, result.probs)},
            }, indent=2))
        if csv_out:
            atomic_write_text(csv_out, classify_csv(records.ids, used, result.classes, result.probs))


def classify_table(ids, used_leads, classes, probs, *, top_k: int = 3, show_all: bool = False, rows: int = 50,
                   synthetic: bool = False):
    """Records in rows: the leads used (short labels), then the ``top_k`` classes with scores (a table that fits a
    terminal whatever the number of classes), or every class as a column with ``show_all``."""
    import numpy as np
    from rich.table import Table

    shown = list(zip(ids, used_leads, probs))[:rows]
    more = f", first {len(shown)} shown" if len(shown) < len(ids) else ""
    table = Table(title=f"zero-shot scores ({len(ids)} {'synthetic ' if synthetic else ''}records, "
                        f"{len(classes)} classes{more})")
    table.add_column("record", no_wrap=True)
    table.add_column("leads")
    if show_all:
        for c in classes:
            table.add_column(c, justify="right")
        for rid, lead_list, row in shown:
            table.add_row(rid, lead_list, *[f"{p:.3f}" for p in row])
        return table
    k = min(top_k, len(classes))
    for i in range(k):
        table.add_column(["1st", "2nd", "3rd"][i] if i < 3 else f"{i + 1}th", no_wrap=True)
    for rid, lead_list, row in shown:
        best = np.argsort(-np.asarray(row), kind="stable")[:k]
        table.add_row(rid, lead_list, *[f"{classes[j]} {row[j]:.3f}" for j in best])
    return table


def classify_csv(ids, used_leads, classes, probs) -> str:
    """Every score: one row per record (id, leads used), one column per class."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["record", "leads", *classes])
    for rid, lead_list, row in zip(ids, used_leads, probs):
        w.writerow([rid, lead_list, *[f"{p:.6g}" for p in row]])
    return buf.getvalue()


def _is_shard_folder(path: str) -> bool:
    from merl.core.io import is_file
    from merl.core.uri import join
    from merl.training.data.manifest import MANIFEST_NAME

    return is_file(join(path, MANIFEST_NAME))


def _is_synthetic(shards: str) -> bool:
    from merl.evaluation.zeroshot import is_synthetic

    return is_synthetic(shards)


# Functions listed here become top-level commands (`merl <name>`; a trailing _cmd is dropped).
TOP_LEVEL: list = [train_cmd, export_cmd, import_reference_cmd, classify_cmd]
