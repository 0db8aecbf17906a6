"""What a finished search leaves beside Tune's experiment state, in ``<storage>/<name>/``.

- ``trials.csv``: one row per trial (parameters, best metric, validations, error, checkpoint);
- ``best_config.yaml``: the winner's full TrainConfig (``merl train --config`` runs it again);
- ``best.json``: the winner's trial, score, parameters, Train run, best checkpoint (path or
  URI) and tracking run; ``merl export --tune-run`` reads it;
- ``metric_per_trial.png`` (the metric at each validation, one line per trial) and
  ``params_vs_metric.png`` (each parameter against the trial's best metric).

The same files are attached to the winner's MLflow run (``search/``) when tracking is on.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

from merl.core.io import atomic_write_text, copy_dir, exists
from merl.core.uri import is_uri, join, local_path

log = logging.getLogger(__name__)

TABLE = "trials.csv"
BEST = "best.json"
BEST_CONFIG = "best_config.yaml"
PLOT_HISTORY = "metric_per_trial.png"
PLOT_PARAMS = "params_vs_metric.png"


def _param_keys(cfg) -> list[str]:
    keys = list(cfg.search)
    if cfg.scheduler == "pbt":
        keys += [k for k in cfg.pbt_mutations if k not in keys]
    return keys


def trial_rows(cfg, grid) -> list[dict[str, Any]]:
    """One row per trial: metric history, best value, the parameters it was reached with (PBT
    changes them along the way) and the Train checkpoint saved with it (or, if the run's
    ``checkpoint.keep`` deleted that one, the latest one still on storage)."""
    from merl.training.tune import CHECKPOINT_PATH, PARAM

    rows = []
    pick = max if cfg.mode == "max" else min
    dists = _distributions(cfg)
    for res in grid:
        records = _progress(res)
        scored = [r for r in records if _finite(r.get(cfg.metric))]
        best_rec = pick(scored, key=lambda r: r[cfg.metric]) if scored else None
        checkpoint = _text(best_rec.get(CHECKPOINT_PATH)) if best_rec else None
        note = ""
        if checkpoint and not exists(checkpoint):
            later = [c for c in (_text(r.get(CHECKPOINT_PATH)) for r in reversed(scored)) if c]
            note = f"best checkpoint {checkpoint} was deleted (checkpoint.keep); latest kept one used"
            checkpoint = next((c for c in later if exists(c)), None)
        config = res.config.get("params", {})
        params = {}
        for k in _param_keys(cfg):
            reported = best_rec.get(PARAM + k) if best_rec else None
            params[k] = _typed(dists.get(k), reported) if _present(reported) else config.get(k)
        trial_id = next((r["trial_id"] for r in records if _text(r.get("trial_id"))), None)
        rows.append({
            "trial": trial_id or (res.metrics or {}).get("trial_id") or Path(res.path).name,
            "params": params,
            "best": best_rec[cfg.metric] if best_rec else math.nan,
            "iterations": len(scored),
            "history": [float(r[cfg.metric]) for r in scored],
            "checkpoint": checkpoint,
            "checkpoint_note": note,
            "error": str(res.error).splitlines()[0] if res.error else "",
        })
    return rows


def _progress(res) -> list[dict[str, Any]]:
    """Every result the trial reported, from its ``progress.csv`` (Tune's ``result.json`` is
    rewritten when PBT restores a trial, so ``metrics_dataframe`` can miss rows)."""
    import pandas as pd
    import pyarrow.fs as pafs

    fs = res.filesystem or pafs.LocalFileSystem()
    try:
        with fs.open_input_stream(f"{res.path}/progress.csv") as fh:
            df = pd.read_csv(fh)
    except (FileNotFoundError, OSError, pd.errors.EmptyDataError):
        df = res.metrics_dataframe
    return df.to_dict("records") if df is not None else []


def _distributions(cfg) -> dict[str, Any]:
    return {**cfg.search, **(cfg.pbt_mutations if cfg.scheduler == "pbt" else {})}


def _typed(dist, value: Any) -> Any:
    """A value read back from CSV as the type the search space gave it."""
    if hasattr(value, "item"):
        value = value.item()  # numpy scalar
    if dist is None:
        return value
    if dist.type == "choice":
        return next((v for v in dist.values if str(v) == str(value) or v == value), value)
    return int(value) if dist.type == "randint" else float(value)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def summarize(cfg, grid, base: dict[str, Any], exp_path: str):
    """Rows, the winner, and every report file; returns the :class:`~merl.training.tune.TuneOutcome`."""
    from merl.training.tune import TuneOutcome, trial_train_config

    rows = trial_rows(cfg, grid)
    scored = [r for r in rows if _finite(r["best"])]
    if not scored:
        errors = "; ".join(r["error"] for r in rows if r["error"]) or "no trial reported the metric"
        raise RuntimeError(f"no trial produced {cfg.metric!r}: {errors}")
    pick = max if cfg.mode == "max" else min
    best = pick(scored, key=lambda r: r["best"])
    best_cfg = trial_train_config(base, best["params"])
    best_config_path = cfg.best_config or join(exp_path, BEST_CONFIG)
    record = {
        "search": cfg.name, "experiment_path": exp_path, "metric": cfg.metric, "mode": cfg.mode,
        "score": best["best"], "trial_id": best["trial"], "params": best["params"],
        "config": best_config_path, "checkpoint": best["checkpoint"],
        "train_run": join(exp_path + "-runs", f"trial_{best['trial']}"),
        "tracking": _trial_tracking(cfg, best["trial"]),
    }
    if best["checkpoint_note"]:
        record["checkpoint_note"] = best["checkpoint_note"]
    import yaml

    config_text = yaml.safe_dump(best_cfg.model_dump(mode="json"), sort_keys=False)
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="merl-tune-report-") as tmp:
        out = Path(tmp) if is_uri(exp_path) else Path(local_path(exp_path))
        out.mkdir(parents=True, exist_ok=True)
        (out / BEST_CONFIG).write_text(config_text)
        (out / BEST).write_text(json.dumps(record, indent=2, default=str))
        (out / TABLE).write_text(table_csv(cfg, rows))
        names = [BEST_CONFIG, BEST, TABLE]
        if cfg.plots:
            plot_history(rows, cfg.metric, out / PLOT_HISTORY, best["trial"])
            plot_params(rows, cfg, out / PLOT_PARAMS, best["trial"])
            names += [PLOT_HISTORY, PLOT_PARAMS]
        if is_uri(exp_path):
            copy_dir(out, exp_path)
        files = {n: join(exp_path, n) for n in names}
        if cfg.best_config:
            atomic_write_text(cfg.best_config, config_text)
        _attach(record["tracking"], out, names)
    log.info("best trial %s: %s = %.4f -> %s (checkpoint %s)", best["trial"], cfg.metric, best["best"],
             best_config_path, best["checkpoint"])
    return TuneOutcome(rows, best["params"], best["best"], best_config_path, exp_path, record, files)


def _trial_tracking(cfg, trial_id: str) -> dict[str, Any] | None:
    """The winner's MLflow run (made by the search's ``MLflowLoggerCallback``), if tracked."""
    if cfg.tracking.backend != "mlflow":
        return None
    from merl.training.tracking import mlflow_uri, trial_run_id

    uri = mlflow_uri(cfg.tracking.uri)
    experiment = cfg.tracking.experiment or cfg.name
    try:
        run_id = trial_run_id(uri, experiment, trial_id)
    except Exception as e:  # noqa: BLE001 - MlflowException / DB errors: the search's result stands without it
        log.warning("could not look up the MLflow run of trial %s: %s", trial_id, e)
        return None
    return {"backend": "mlflow", "uri": uri, "experiment": experiment, "run_id": run_id} if run_id else None


def _attach(record: dict[str, Any] | None, folder: Path, names: list[str]) -> None:
    if not record:
        return
    from merl.training.tracking import log_artifacts

    with tempfile.TemporaryDirectory(prefix="merl-tune-artifacts-") as tmp:
        for n in names:
            (Path(tmp) / n).write_bytes((folder / n).read_bytes())
        try:
            log_artifacts(record, tmp, "search")
        except Exception as e:  # noqa: BLE001 - artifact upload is a copy; the files are on storage already
            log.warning("could not attach the search report to MLflow run %s: %s", record.get("run_id"), e)


def table_csv(cfg, rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    keys = _param_keys(cfg)
    w = csv.writer(buf)
    w.writerow(["trial", *keys, f"best_{cfg.metric}", "validations", "checkpoint", "error"])
    for r in sorted(rows, key=lambda r: r["trial"]):
        w.writerow([r["trial"], *(r["params"].get(k) for k in keys),
                    "" if not _finite(r["best"]) else f"{r['best']:.6f}", r["iterations"], r["checkpoint"] or "",
                    r["error"]])
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(rows: list[dict[str, Any]], metric: str, path: Path, best_trial: str | None = None) -> Path:
    """The metric after each validation, one line per trial (the winner drawn bold)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in sorted(rows, key=lambda r: r["trial"]):
        if not r["history"]:
            continue
        xs = range(1, len(r["history"]) + 1)
        win = r["trial"] == best_trial
        ax.plot(xs, r["history"], marker="o", linewidth=2.5 if win else 1.0, zorder=3 if win else 2,
                label=f"{r['trial']}{' (best)' if win else ''}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    longest = max((len(r["history"]) for r in rows), default=1)
    ax.set_xlim(0.5, longest + 0.5)
    ax.set_xlabel("validation (epoch)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per trial")
    ax.grid(alpha=0.3)
    if len(rows) <= 16:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_params(rows: list[dict[str, Any]], cfg, path: Path, best_trial: str | None = None) -> Path:
    """Each searched parameter against the trial's best metric (log axis for loguniform entries,
    category positions for choices); the winner marked."""
    import numpy as np
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    plt = _pyplot()
    keys = _param_keys(cfg)
    dists = _distributions(cfg)
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.2 * nrows), sharey=True, squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    scored = [r for r in rows if _finite(r["best"])]
    for ax, key in zip(axes.flat, keys):
        values = [r["params"].get(key) for r in scored]
        ys = [r["best"] for r in scored]
        categorical = dists[key].type == "choice" or not all(isinstance(v, (int, float)) for v in values)
        if categorical:
            cats = list(dict.fromkeys(dists[key].values or [])) or sorted(set(map(str, values)))
            pos = {str(c): i for i, c in enumerate(cats)}
            for v in values:
                pos.setdefault(str(v), len(pos))
            xs = [pos[str(v)] for v in values]
            ax.set_xticks(range(len(pos)), list(pos), rotation=30, fontsize=8)
            ax.set_xlim(-0.5, len(pos) - 0.5)
        else:
            xs = values
            dist = dists[key]
            if dist.type == "loguniform":  # the whole search range, a few plain tick labels
                ax.set_xscale("log")
                ticks = np.geomspace(dist.low, dist.high, 4)
            else:
                ticks = np.linspace(dist.low, dist.high, 4)
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%.3g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            span = dist.high / dist.low if dist.type == "loguniform" else dist.high - dist.low
            pad = span ** 0.05 if dist.type == "loguniform" else span * 0.05
            ax.set_xlim(*((dist.low / pad, dist.high * pad) if dist.type == "loguniform"
                          else (dist.low - pad, dist.high + pad)))
            ax.tick_params(axis="x", labelsize=8)
        ax.scatter(xs, ys, s=36, alpha=0.8)
        for x, y, r in zip(xs, ys, scored):
            if r["trial"] == best_trial:
                ax.scatter([x], [y], s=160, marker="*", color="crimson", zorder=3, label="best")
        ax.set_xlabel(key + (" (final)" if cfg.scheduler == "pbt" and key in cfg.pbt_mutations else ""))
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel(f"best {cfg.metric}")
    fig.suptitle(f"{cfg.name}: parameter vs {cfg.metric}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
