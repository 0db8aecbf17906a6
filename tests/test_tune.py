"""Ray Tune over real Ray Train pretraining runs on tiny shards, and the search config.

Slow tests: Optuna TPE (2 trials) with MLflow and the winner exported; a 3-trial grid
interrupted after its first trial and resumed; PBT cloning a trial into another (2 trials).
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
import yaml
from eval_fixtures import write_shards
from ray.tune import Callback

from merl.core.config import ConfigError
from merl.training.tune import check_search, load_tune_config

REPO = Path(__file__).resolve().parents[1]


def _base(tmp_path, shards, tasks=("ptbxl_super_class",), epochs=1):
    base = {
        "model": {"ecg_encoder": "resnet18", "width": 8, "proj_dim": 32, "proj_hidden": 32, "freeze_text_layers": 6},
        "data": {"train_shards": shards, "val_split": "", "fs": 100, "n_samples": 1000, "batch_size": 4,
                 "max_text_tokens": 32, "prefetch": 0},
        "train": {"epochs": epochs, "num_workers": 1, "log_every": 1, "cpus_per_worker": 0.5},
        "checkpoint": {"storage_path": str(tmp_path / "ckpt")},
        "eval": {"tasks": list(tasks), "shards": {t: shards for t in tasks}, "split": "val", "batch_size": 8},
    }
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def _tune_yaml(tmp_path, base_path, **extra):
    cfg = {
        "base": base_path.name,
        "search": {"loss.temperature": {"type": "loguniform", "low": 0.05, "high": 0.2},
                   "model.proj_dim": {"type": "choice", "values": [16, 32]}},
        "num_samples": 2, "storage_path": str(tmp_path / "tune"), "name": "t",
        "tracking": {"uri": str(tmp_path / "mlruns")},
    }
    cfg.update(extra)
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_config_errors(tmp_path):
    shards = str(write_shards(tmp_path / "shards", n_per_split=(3, 3, 3)))
    base = _base(tmp_path, shards, tasks=())
    cfg = load_tune_config(_tune_yaml(tmp_path, base))  # base resolved next to the YAML
    with pytest.raises(ConfigError, match="eval.tasks is empty"):
        check_search(cfg)
    base = _base(tmp_path, shards)
    typo = {"loss.temprature": {"type": "uniform", "low": 0.1, "high": 0.2}}
    with pytest.raises(ConfigError, match="temprature"):
        check_search(load_tune_config(_tune_yaml(tmp_path, base, search=typo)))
    bad = {"optim.lr": {"type": "loguniform", "low": 1.0, "high": 0.1}}
    with pytest.raises(ConfigError, match="low < high"):
        load_tune_config(_tune_yaml(tmp_path, base, search=bad))
    path = _tune_yaml(tmp_path, base)
    with pytest.raises(ConfigError, match=r"searcher 'grid' needs 'choice'.*loss.temperature"):
        load_tune_config(path, ["searcher=grid"])
    with pytest.raises(ConfigError, match="use searcher 'random'"):
        load_tune_config(path, ["scheduler=pbt", "searcher=optuna", "max_concurrent_trials=2"])
    with pytest.raises(ConfigError, match="max_concurrent_trials >= 2"):
        load_tune_config(path, ["scheduler=pbt"])
    with pytest.raises(ConfigError, match=r"pbt can mutate only .*model.proj_dim"):
        load_tune_config(path, ["scheduler=pbt", "max_concurrent_trials=2",
                                "pbt.mutations={model.proj_dim: {type: choice, values: [16, 32]}}"])
    with pytest.raises(ConfigError, match="train.epochs=1 gives no perturbation"):
        check_search(load_tune_config(path, ["scheduler=pbt", "max_concurrent_trials=2"]))


def test_every_field_overridable_from_the_command_line(tmp_path):
    shards = str(write_shards(tmp_path / "shards", n_per_split=(3, 3, 3)))
    path = _tune_yaml(tmp_path, _base(tmp_path, shards))
    cfg = load_tune_config(path, [
        "base_overrides=[eval.tasks=[ptbxl_super_class], optim.weight_decay=0.01]",  # nested brackets in a list
        "search.loss.temperature.low=0.01",          # a dotted search key, edited in place
        "search.model.proj_dim=null",                # removed
        "search.loss.weight_uni={type: uniform, low: 0.5, high: 2.0}",  # added
        "searcher=optuna", "optuna.n_startup_trials=2", "asha.grace_period=2", "tracking=none", "plots=false",
    ])
    assert cfg.base_overrides == ["eval.tasks=[ptbxl_super_class]", "optim.weight_decay=0.01"]
    assert set(cfg.search) == {"loss.temperature", "loss.weight_uni"}
    assert cfg.search["loss.temperature"].low == 0.01 and cfg.search["loss.weight_uni"].high == 2.0
    assert (cfg.searcher, cfg.optuna.n_startup_trials, cfg.asha.grace_period) == ("optuna", 2, 2)
    assert cfg.tracking.backend == "none" and cfg.plots is False
    base = check_search(cfg)
    assert base["optim"]["weight_decay"] == 0.01
    grid = load_tune_config(path, ["searcher=grid", "num_samples=null",
                                   "search.loss.temperature={type: choice, values: [0.05, 0.1]}"])
    assert grid.samples == 1 and grid.total_trials == 4


def test_shipped_tune_config_runs_on_demo_shards(tmp_path, monkeypatch):
    """configs/tune.yaml as shipped, from the repository root, after `make demo` (its shard
    folders faked here): it validates and points every trial at the demo's shards."""
    monkeypatch.chdir(tmp_path)
    for layout in ("mimic", "ptbxl"):
        write_shards(tmp_path / "runs/demo/shards" / layout, n_per_split=(3, 3, 3))
    cfg = load_tune_config(REPO / "configs/tune.yaml")
    base = check_search(cfg)
    assert base["data"]["train_shards"] == str(tmp_path / "runs/demo/shards/mimic")
    assert base["eval"]["shards"]["ptbxl_super_class"] == str(tmp_path / "runs/demo/shards/ptbxl")
    assert {"loss.temperature", "loss.learnable", "model.proj_dim", "model.proj_hidden", "optim.lr",
            "loss.weight_uni"} <= set(cfg.search)
    assert cfg.tracking.backend == "mlflow" and cfg.storage_path == "runs/tune"


def test_pbt_restore_applies_the_trials_temperature_and_lr():
    """A checkpoint from another trial (PBT's clone) restarts temperature and LR at this config's values."""
    import torch

    from merl.training.config import TrainConfig
    from merl.training.loop import apply_config_hparams, apply_config_lr, build_optimizer, lr_lambda

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.logit_scale = torch.nn.Parameter(torch.tensor([2.0]))

    cfg = TrainConfig.model_validate({"loss": {"temperature": 0.1}, "optim": {"lr": 2e-3, "T_0": 10}})
    donor = {"loss": {"temperature": 0.05}, "optim": {"lr": 1e-3}}
    model = Tiny()
    opt, sched = build_optimizer(model, cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"lr": 1e-3})}))
    for _ in range(3):
        opt.step()
        sched.step()

    class Stepper:
        scheduler = sched

    apply_config_hparams(model, cfg, donor)
    assert math.isclose(float(model.logit_scale), math.log(1 / 0.1), rel_tol=1e-6)
    apply_config_lr(Stepper, cfg, donor)
    assert math.isclose(opt.param_groups[0]["lr"], 2e-3 * lr_lambda(cfg.optim)(3), rel_tol=1e-6)
    sched.step()  # the schedule goes on from the new base
    assert math.isclose(opt.param_groups[0]["lr"], 2e-3 * lr_lambda(cfg.optim)(4), rel_tol=1e-6)
    same = {"loss": {"temperature": 0.1}, "optim": {"lr": 2e-3}}
    model.logit_scale.data.fill_(3.0)
    apply_config_hparams(model, cfg, same)  # a plain resume keeps the learned scale
    assert float(model.logit_scale) == 3.0


def _val_rows(run_dir: Path) -> int:
    lines = (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return sum(json.loads(x)["phase"] == "val" for x in lines)


@pytest.mark.slow
def test_optuna_search_tracked_and_winner_exported(tmp_path, ray_local):
    from mlflow.tracking import MlflowClient
    from rich.console import Console

    from merl.cli.evaluate import tune_table
    from merl.cli.train import export_cmd
    from merl.core.config import load_config
    from merl.training.config import TrainConfig
    from merl.training.export import load_bundle
    from merl.training.tracking import mlflow_uri
    from merl.training.tune import run_tune

    shards = str(write_shards(tmp_path / "shards", n_per_split=(8, 6, 3)))
    cfg = load_tune_config(_tune_yaml(tmp_path, _base(tmp_path, shards), searcher="optuna",
                                      optuna={"n_startup_trials": 1}))
    outcome = run_tune(cfg)
    assert len(outcome.rows) == 2
    assert all(r["iterations"] == 1 and math.isfinite(r["best"]) for r in outcome.rows), outcome.rows
    best = load_config(TrainConfig, outcome.best_config_path)
    assert best.model.proj_dim == outcome.best_params["model.proj_dim"]
    assert math.isclose(best.loss.temperature, outcome.best_params["loss.temperature"])

    exp = Path(outcome.experiment_path)
    record = json.loads((exp / "best.json").read_text())
    assert record["score"] == outcome.best_score and Path(record["checkpoint"]).is_dir()
    assert record["checkpoint"].startswith(str(tmp_path / "tune" / "t-runs" / f"trial_{record['trial_id']}"))
    for name in ("trials.csv", "metric_per_trial.png", "params_vs_metric.png"):
        assert (exp / name).stat().st_size > 0, name
    assert len((exp / "trials.csv").read_text().splitlines()) == 3

    client = MlflowClient(mlflow_uri(str(tmp_path / "mlruns")))
    runs = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert len(runs) == 2
    winner = next(r for r in runs if r.info.run_id == record["tracking"]["run_id"])
    assert winner.data.params["params/model.proj_dim"] == str(outcome.best_params["model.proj_dim"])
    assert math.isclose(winner.data.metrics["val_zeroshot_auc"], outcome.best_score)

    export_cmd(out=str(tmp_path / "model"), checkpoint=None, run=None, tune_run=str(exp), untrained=False, seed=0)
    bundle = load_bundle(tmp_path / "model")
    assert bundle.config.model.proj_dim == outcome.best_params["model.proj_dim"]
    artifacts = {a.path for a in client.list_artifacts(winner.info.run_id, "bundle")}
    assert "bundle/model.safetensors" in artifacts
    assert {a.path for a in client.list_artifacts(winner.info.run_id, "search")} >= {"search/best.json"}

    console = Console(width=200, record=True)
    console.print(tune_table(cfg, outcome))
    text = console.export_text()
    for row in outcome.rows:
        assert row["trial"] in text and f"{row['best']:.4f}" in text


class InterruptAfterFirstTrial(Callback):
    """A Tune callback acting like Ctrl-C once the first trial finished (once: a marker file),
    so that the search stops the way a user stops it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not self.marker.exists():
            self.marker.write_text(trial.trial_id)
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's own handler: stop, save the state


@pytest.mark.slow
def test_interrupted_grid_search_resumes_without_rerunning_trials(tmp_path, ray_local):
    from merl.training.tune import TuneInterrupted, run_tune

    shards = str(write_shards(tmp_path / "shards", n_per_split=(8, 6, 3)))
    path = _tune_yaml(tmp_path, _base(tmp_path, shards), searcher="grid", num_samples=None, tracking="none",
                      search={"model.proj_dim": {"type": "choice", "values": [16, 24, 32]}})
    cfg = load_tune_config(path)
    marker = tmp_path / "interrupted.txt"
    with pytest.raises(TuneInterrupted, match="--resume"):
        run_tune(cfg, callbacks=[InterruptAfterFirstTrial(marker)])
    first = marker.read_text()
    with pytest.raises(ConfigError, match="--resume"):
        run_tune(cfg)  # a second plain start would mix two searches in one folder
    outcome = run_tune(load_tune_config(path), resume=True)
    assert len(outcome.rows) == 3 and first in {r["trial"] for r in outcome.rows}
    assert sorted(r["params"]["model.proj_dim"] for r in outcome.rows) == [16, 24, 32]
    assert all(r["iterations"] == 1 and math.isfinite(r["best"]) for r in outcome.rows), outcome.rows
    runs = sorted((tmp_path / "tune" / "t-runs").glob("trial_*"))
    assert [p.name for p in runs] == sorted(f"trial_{r['trial']}" for r in outcome.rows)
    assert all(_val_rows(p) == 1 for p in runs)  # every trial validated once: none ran twice


@pytest.mark.slow
def test_pbt_clones_a_trial_from_its_checkpoint(tmp_path, ray_local):
    from merl.training.checkpoint import load_checkpoint
    from merl.training.tune import run_tune

    shards = str(write_shards(tmp_path / "shards", n_per_split=(8, 6, 3)))
    path = _tune_yaml(tmp_path, _base(tmp_path, shards, epochs=2), scheduler="pbt", max_concurrent_trials=2,
                      tracking="none", search={"loss.temperature": {"type": "choice", "values": [0.05, 0.2]},
                                               "optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}},
                      pbt={"synch": True, "quantile_fraction": 0.5, "resample_probability": 1.0})
    outcome = run_tune(load_tune_config(path))
    assert all(r["iterations"] == 2 for r in outcome.rows), outcome.rows
    clones = list((tmp_path / "tune" / "t-runs").glob("trial_*-*"))
    assert clones, "no trial was restarted from a PBT checkpoint"
    reported = [row for p in (tmp_path / "tune" / "t").glob("_trial_*/progress.csv") for row in _csv(p)]
    for run_dir in clones:  # each went on from the cloned checkpoint's step, with its own trial's values
        steps = [json.loads(x)["step"] for x in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
        assert min(steps) > 1, steps
        saved = load_checkpoint(next(run_dir.glob("checkpoint_step*")))
        assert saved.state.epoch == 2
        row = next(r for r in reported if r["checkpoint_path"].startswith(str(run_dir)))
        assert math.isclose(saved.config["optim"]["lr"], float(row["param.optim.lr"]))
        assert math.isclose(saved.config["loss"]["temperature"], float(row["param.loss.temperature"]))
    assert list((tmp_path / "tune" / "t").glob("pbt_policy_*.txt"))  # PBT's own record of each exploit


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path) as fh:
        return list(csv.DictReader(fh))
