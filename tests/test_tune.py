"""Ray Tune over real Ray Train pretraining runs on tiny shards (2 trials), and config checks."""

from __future__ import annotations

import math

import pytest
import yaml
from eval_fixtures import write_shards

from merl.core.config import ConfigError
from merl.training.tune import check_search, load_tune_config


def _base(tmp_path, shards, tasks=("ptbxl_super_class",)):
    base = {
        "model": {"ecg_encoder": "resnet18", "width": 8, "proj_dim": 32, "proj_hidden": 32, "freeze_text_layers": 6},
        "data": {"train_shards": shards, "val_split": "", "fs": 100, "n_samples": 1000, "batch_size": 4,
                 "max_text_tokens": 32, "prefetch": 0},
        "train": {"epochs": 1, "num_workers": 1, "log_every": 1, "cpus_per_worker": 0.5},
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


@pytest.mark.slow
def test_tiny_tune_two_trials(tmp_path, ray_local):
    from merl.core.config import load_config
    from merl.training.config import TrainConfig
    from merl.training.tune import run_tune

    shards = str(write_shards(tmp_path / "shards", n_per_split=(8, 6, 3)))
    cfg = load_tune_config(_tune_yaml(tmp_path, _base(tmp_path, shards)))
    outcome = run_tune(cfg)
    assert len(outcome.rows) == 2
    assert all(r["iterations"] == 1 and math.isfinite(r["best"]) for r in outcome.rows), outcome.rows
    best = load_config(TrainConfig, outcome.best_config_path)
    assert best.model.proj_dim == outcome.best_params["model.proj_dim"]
    assert math.isclose(best.loss.temperature, outcome.best_params["loss.temperature"])

    from rich.console import Console

    from merl.cli.evaluate import tune_table

    console = Console(width=200, record=True)
    console.print(tune_table(cfg, outcome))
    text = console.export_text()
    for row in outcome.rows:
        assert row["trial"] in text and f"{row['best']:.4f}" in text
