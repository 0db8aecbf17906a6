"""Experiment tracking: MLflow (default, an embedded local store), Weights & Biases, or none.

Ray's own integrations do the logging: ``setup_mlflow`` / ``setup_wandb`` on rank 0 of the
train loop (:class:`Tracker`), ``MLflowLoggerCallback`` / ``WandbLoggerCallback`` on a Tune
search (:func:`tune_callbacks`). The driver of ``merl train`` creates the MLflow run before
the workers start (:func:`start_run`) and records it in ``<run>/tracking.json``, so a
resumed run, or a worker group restarted after a failure, keeps logging to the same MLflow
run, and ``merl export --run`` can attach the bundle to it afterwards.

The embedded store is an SQLite database plus an artifacts folder inside ``tracking.uri``
(MLflow 3 keeps its plain-file store in maintenance mode and refuses it by default):
``mlflow ui --backend-store-uri sqlite:///runs/mlruns/mlflow.db``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import uuid
from pathlib import Path
from typing import Any

from merl.core.config import ConfigError
from merl.core.io import atomic_write_text, read_text_if_exists
from merl.core.uri import absolute, join
from merl.training.config import TrackingConfig

log = logging.getLogger(__name__)

RECORD = "tracking.json"  # in a run folder: the tracking run that Train run logs to
DB = "mlflow.db"
ARTIFACTS = "artifacts"
DEFAULT_EXPERIMENT = "merl-train"


def check_backend(tracking: TrackingConfig) -> None:
    """Fail on the driver, in one line, when the chosen backend's package is missing."""
    package = {"mlflow": "mlflow", "wandb": "wandb"}.get(tracking.backend)
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(f"tracking.backend={tracking.backend} needs the {package} package "
                          f"(pip install {package}), or set tracking=none")


def mlflow_uri(uri: str) -> str:
    """A folder -> the embedded store ``sqlite:///<folder>/mlflow.db``; a tracking URI as given."""
    if "://" in uri or uri.startswith("databricks"):
        return uri
    folder = Path(absolute(uri))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / DB}"


def _artifact_location(tracking_uri: str) -> str | None:
    """The embedded store keeps artifacts beside its database; a server decides its own."""
    if tracking_uri.startswith("sqlite:///"):
        return str(Path(tracking_uri.removeprefix("sqlite:///")).parent / ARTIFACTS)
    return None


def mlflow_experiment(tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``, created (artifacts beside an embedded store) if new."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_location(tracking_uri))


def flat_params(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"model.proj_dim": 256, ...}`` (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_params(v, key + "."))
        else:
            out[key] = v
    return out


def start_run(tracking: TrackingConfig, run_dir: str, name: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The tracking run of the Train run in ``run_dir``: the recorded one if any, else a new one.

    Returns the record handed to the workers (and written to ``<run_dir>/tracking.json``);
    None when tracking is off.
    """
    if tracking.backend == "none":
        return None
    check_backend(tracking)
    experiment = tracking.experiment or DEFAULT_EXPERIMENT
    recorded = load_record(run_dir)
    if tracking.backend == "wandb":
        if recorded and recorded.get("backend") == "wandb":
            return recorded
        record = {"backend": "wandb", "project": experiment, "run_id": uuid.uuid4().hex[:12], "run_name": name}
    else:
        from mlflow.tracking import MlflowClient

        uri = mlflow_uri(tracking.uri)
        client = MlflowClient(uri)
        if recorded and recorded.get("backend") == "mlflow" and recorded.get("uri") == uri:
            try:
                client.get_run(recorded["run_id"])
                return recorded
            except Exception as e:  # noqa: BLE001 - MlflowException or a DB error: the run is gone, start another
                log.warning("recorded MLflow run %s not found (%s): starting a new one", recorded["run_id"], e)
        exp_id = mlflow_experiment(uri, experiment)
        run = client.create_run(exp_id, run_name=name, tags={"merl.run_dir": run_dir, "merl.kind": "train"})
        for key, value in flat_params(params).items():
            client.log_param(run.info.run_id, key, str(value)[:6000])
        record = {"backend": "mlflow", "uri": uri, "experiment": experiment, "experiment_id": exp_id,
                  "run_id": run.info.run_id, "run_name": name}
        log.info("MLflow run %s in experiment %r at %s", run.info.run_id, experiment, uri)
    atomic_write_text(join(run_dir, RECORD), json.dumps(record, indent=2))
    return record


def load_record(run_dir: str) -> dict[str, Any] | None:
    """``<run_dir>/tracking.json``, or None."""
    text = read_text_if_exists(join(run_dir, RECORD))
    return json.loads(text) if text else None


def end_run(record: dict[str, Any] | None, failed: bool) -> None:
    """Mark the MLflow run finished or failed (the workers only log to it)."""
    if record and record.get("backend") == "mlflow":
        from mlflow.tracking import MlflowClient

        try:
            MlflowClient(record["uri"]).set_terminated(record["run_id"], "FAILED" if failed else "FINISHED")
        except Exception as e:  # noqa: BLE001 - the run's status is cosmetic; never mask the training outcome
            log.warning("could not close MLflow run %s: %s", record["run_id"], e)


def log_artifacts(record: dict[str, Any] | None, local_dir: str | Path, artifact_path: str) -> bool:
    """Attach a local folder (an export bundle, a search's report) to the recorded run."""
    if not record:
        return False
    if record.get("backend") == "mlflow":
        from mlflow.tracking import MlflowClient

        MlflowClient(record["uri"]).log_artifacts(record["run_id"], str(local_dir), artifact_path)
    elif record.get("backend") == "wandb":
        import wandb

        run = wandb.init(project=record["project"], id=record["run_id"], resume="allow")
        artifact = wandb.Artifact(artifact_path.replace("/", "-"), type="model")
        artifact.add_dir(str(local_dir))
        run.log_artifact(artifact)
        run.finish()
    else:
        return False
    log.info("logged %s as artifact %r of %s run %s", local_dir, artifact_path, record["backend"], record["run_id"])
    return True


class Tracker:
    """Rank 0's connection to the run's tracking run, through Ray's ``setup_mlflow`` / ``setup_wandb``.

    A failure to log is a warning, never the end of training.
    """

    def __init__(self, record: dict[str, Any] | None):
        self.record = record
        self._mlflow = self._wandb = None
        if not record:
            return
        try:
            if record["backend"] == "mlflow":
                import mlflow
                from ray.air.integrations.mlflow import setup_mlflow

                mlflow.set_tracking_uri(record["uri"])
                mlflow.start_run(run_id=record["run_id"])  # the driver's run; setup_mlflow keeps the active one
                self._mlflow = setup_mlflow(tracking_uri=record["uri"], experiment_id=record["experiment_id"],
                                            rank_zero_only=True)
            elif record["backend"] == "wandb":
                from ray.air.integrations.wandb import setup_wandb

                self._wandb = setup_wandb(project=record["project"], id=record["run_id"], name=record["run_name"],
                                          resume="allow", rank_zero_only=True)
        except Exception as e:  # noqa: BLE001 - tracking server down or misconfigured: train on, say so once
            log.warning("experiment tracking (%s) unavailable, training without it: %s", record["backend"], e)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        try:
            if self._mlflow is not None:
                self._mlflow.log_metrics(metrics, step=step)
            elif self._wandb is not None:
                self._wandb.log(metrics, step=step)
        except Exception as e:  # noqa: BLE001 - a lost metric must not stop training
            log.warning("tracking: could not log step %d: %s", step, e)

    def close(self) -> None:
        try:
            if self._mlflow is not None:
                self._mlflow.end_run()
            elif self._wandb is not None:
                self._wandb.finish()
        except Exception as e:  # noqa: BLE001 - closing is best effort
            log.warning("tracking: could not close the run: %s", e)


def tune_callbacks(tracking: TrackingConfig, search_name: str) -> list:
    """Tune logger callbacks: one MLflow (or W&B) run per trial, with its parameters and each
    validation's metrics; trials resumed after an interruption keep their run."""
    if tracking.backend == "none":
        return []
    check_backend(tracking)
    experiment = tracking.experiment or search_name
    if tracking.backend == "wandb":
        from ray.air.integrations.wandb import WandbLoggerCallback

        return [WandbLoggerCallback(project=experiment, group=search_name)]
    uri = mlflow_uri(tracking.uri)
    mlflow_experiment(uri, experiment)  # created here so that artifacts land beside an embedded store
    return [_trial_runs_callback(uri, experiment, search_name)]


def _trial_runs_callback(uri: str, experiment: str, search_name: str):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class TrialRuns(MLflowLoggerCallback):
        """``MLflowLoggerCallback`` that finds a trial's existing run (tag ``ray.trial_id``) on
        resume, and logs parameters once, when the run is created (PBT changes them later:
        their current values are in each result's ``config/...`` metrics)."""

        def log_trial_start(self, trial) -> None:
            if trial in self._trial_runs:
                return
            client = self.mlflow_util._get_client()
            found = client.search_runs([self.mlflow_util.experiment_id],
                                       filter_string=f"tags.`ray.trial_id` = '{trial.trial_id}'", max_results=1)
            if found:
                self._trial_runs[trial] = found[0].info.run_id
                return
            tags = {**self.tags, "trial_name": str(trial), "ray.trial_id": trial.trial_id}
            run = self.mlflow_util.start_run(tags=tags, run_name=str(trial))
            self._trial_runs[trial] = run.info.run_id
            self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=trial.config)

    return TrialRuns(tracking_uri=uri, experiment_name=experiment, tags={"merl.search": search_name})


def trial_run_id(tracking_uri: str, experiment: str, trial_id: str) -> str | None:
    """The MLflow run :func:`tune_callbacks` made for a Tune trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.`ray.trial_id` = '{trial_id}'", max_results=1)
    return found[0].info.run_id if found else None
