"""Experiment tracking (MLflow, W&B by config) and run logs on remote storage."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from eval_fixtures import write_shards

from merl.core.config import ConfigError
from merl.training.config import TrackingConfig
from merl.training.tracking import check_backend, end_run, load_record, log_artifacts, mlflow_uri, start_run


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_without_the_package_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match=r"pip install wandb") as e:
        check_backend(TrackingConfig.model_validate("wandb"))
    assert "\n" not in str(e.value)
    shards = write_shards(tmp_path / "shards", n_per_split=(3, 3, 3))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"train_shards": str(shards)}, "tracking": "wandb"}))
    res = subprocess.run([sys.executable, "-m", "merl", "train", "--config", str(cfg)], capture_output=True,
                         text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1].startswith("error: tracking.backend=wandb needs the wandb package")
    assert "Traceback" not in res.stderr


def test_mlflow_run_metrics_resume_and_artifacts(tmp_path):
    """The driver's run, rank 0's metrics through Ray's setup_mlflow, the same run on resume."""
    from mlflow.tracking import MlflowClient

    from merl.training.metrics_log import MetricsLogger

    tracking = TrackingConfig(uri=str(tmp_path / "mlruns"), experiment="exp")
    run_dir = str(tmp_path / "run")
    record = start_run(tracking, run_dir, "run", {"model": {"proj_dim": 64}, "optim": {"lr": 1e-3}})
    assert load_record(run_dir) == record and record["uri"] == mlflow_uri(str(tmp_path / "mlruns"))
    logger = MetricsLogger(run_dir, rank=0, tracking=record)
    logger.log(1, {"loss": 2.0, "lr": 1e-3})
    logger.log(2, {"loss": 1.5, "lr": 1e-3})
    logger.log(2, {"val_zeroshot_auc": 61.0}, phase="val")
    logger.close()
    assert start_run(tracking, run_dir, "run", {})["run_id"] == record["run_id"]  # a resume keeps the run
    end_run(record, failed=False)
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "model.safetensors").write_bytes(b"x")
    assert log_artifacts(record, tmp_path / "bundle", "bundle")

    client = MlflowClient(record["uri"])
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED" and run.info.experiment_id == client.get_experiment_by_name("exp").experiment_id
    assert run.data.params["model.proj_dim"] == "64"
    assert [(m.step, m.value) for m in client.get_metric_history(record["run_id"], "loss")] == [(1, 2.0), (2, 1.5)]
    assert run.data.metrics["val_zeroshot_auc"] == 61.0
    assert [a.path for a in client.list_artifacts(record["run_id"], "bundle")] == ["bundle/model.safetensors"]
    artifacts_root = Path(client.get_experiment(run.info.experiment_id).artifact_location)
    assert artifacts_root.is_relative_to(tmp_path / "mlruns")  # the embedded store keeps its artifacts


def test_tracking_shorthand_and_off(tmp_path):
    assert TrackingConfig.model_validate("none").backend == "none"
    assert start_run(TrackingConfig(backend="none"), str(tmp_path / "run"), "run", {}) is None
    assert not (tmp_path / "run").exists()
    assert mlflow_uri("http://mlflow:5000") == "http://mlflow:5000"


def test_run_logs_on_remote_storage_are_uploaded_and_continued(s3):
    """Metric logs and TensorBoard events reach the run's S3 folder (the loopback moto server)."""
    from merl.core import io
    from merl.core.uri import join
    from merl.training.metrics_log import MetricsLogger

    run = s3.uri()
    remote = join(run, "logs")
    logger = MetricsLogger(run, rank=0)
    logger.log(1, {"loss": 2.0})
    logger.log(1, {"val_loss": 1.0}, phase="val")  # a validation uploads at once
    assert len(io.read_text(join(remote, "metrics.jsonl")).splitlines()) == 2
    logger.close()
    assert [n for n in io.listdir(join(remote, "tensorboard")) if n.startswith("events.out.tfevents.")]
    again = MetricsLogger(run, rank=0)  # a restarted run appends to what is there
    again.log(2, {"loss": 1.0})
    again.close()
    rows = [json.loads(x) for x in io.read_text(join(remote, "metrics.jsonl")).splitlines()]
    assert [r["step"] for r in rows] == [1, 1, 2]
    assert len(io.listdir(join(remote, "tensorboard"), "events.out.tfevents.*")) == 2
    assert MetricsLogger(run, rank=1).enabled is False


@pytest.mark.slow
def test_train_run_tracked_and_export_attached(tmp_path, ray_local):
    """`merl train` end to end: per-step and validation metrics in MLflow, result.json records the
    run, `merl export --run` attaches the bundle to it."""
    from mlflow.tracking import MlflowClient

    from merl.cli.train import export_cmd, write_run_summary
    from merl.training.config import TrainConfig
    from merl.training.trainer import fit

    shards = str(write_shards(tmp_path / "shards", n_per_split=(12, 6, 3)))
    cfg = TrainConfig.model_validate({
        "model": {"width": 8, "proj_dim": 32, "proj_hidden": 32, "freeze_text_layers": 6},
        "data": {"train_shards": shards, "fs": 100, "n_samples": 1000, "batch_size": 4, "max_text_tokens": 32,
                 "prefetch": 0},
        "train": {"epochs": 1, "num_workers": 1, "log_every": 1, "cpus_per_worker": 0.5},
        "checkpoint": {"storage_path": str(tmp_path / "runs")},
        "eval": {"tasks": ["ptbxl_super_class"], "shards": {"ptbxl_super_class": shards}, "batch_size": 8},
        "tracking": {"uri": str(tmp_path / "mlruns")},
    })
    result = fit(cfg, name="tracked")
    summary = write_run_summary(result)
    record = summary["tracking"]
    assert json.loads((tmp_path / "runs/tracked/result.json").read_text())["tracking"] == record
    client = MlflowClient(record["uri"])
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["model.proj_dim"] == "32"
    assert [m.step for m in client.get_metric_history(record["run_id"], "loss")] == [1, 2, 3]
    assert "val_zeroshot_auc" in run.data.metrics and "val_loss" in run.data.metrics
    export_cmd(out=str(tmp_path / "model"), checkpoint=None, run=str(tmp_path / "runs/tracked"), tune_run=None,
               untrained=False, seed=0)
    names = {a.path for a in client.list_artifacts(record["run_id"], "bundle")}
    assert {"bundle/model.safetensors", "bundle/train_config.json"} <= names
    assert "result.json" in {a.path for a in client.list_artifacts(record["run_id"])}
