"""Hyperparameter search with Ray Tune over pretraining runs, scored by zero-shot validation AUC.

Ray Train V2 composes with Tune by nesting: each Tune trial is a small *driver* function
that builds a ``TorchTrainer`` (through :func:`merl.training.trainer.fit`) with the trial's
hyperparameters and runs it; a ``TuneReportCallback`` on the Train run forwards the
workers' reports to Tune. ASHA stops weak trials early, which ends their Train runs.

The train loop reports ``val_zeroshot_auc`` once per epoch (when ``eval.tasks`` is set)
and may also report mid-epoch checkpoints without it; only the reports that carry the
search metric are forwarded, so one Tune iteration = one validation.

Search space (``configs/tune.yaml``): dotted :class:`~merl.training.config.TrainConfig` keys ->
distributions, e.g. ``loss.temperature: {type: loguniform, low: 0.03, high: 0.3}``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import Field, model_validator

from merl.core.config import ConfigError, StrictModel, apply_overrides, read_yaml, validate
from merl.core.uri import absolute, join

log = logging.getLogger(__name__)

DRIVER_MEMORY = 256 * 1024**2  # bytes reserved by a CPU-less trial driver


class Distribution(StrictModel):
    """One hyperparameter's search distribution."""

    type: Literal["uniform", "loguniform", "choice", "randint"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Distribution:
        if self.type == "choice":
            if not self.values:
                raise ValueError("type 'choice' needs a non-empty 'values' list")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"type {self.type!r} needs low < high (got low={self.low}, high={self.high})")
        elif self.type == "loguniform" and self.low <= 0:
            raise ValueError("type 'loguniform' needs low > 0")
        return self

    def to_tune(self):
        from ray import tune

        if self.type == "choice":
            return tune.choice(self.values)
        if self.type == "randint":
            return tune.randint(int(self.low), int(self.high))
        return getattr(tune, self.type)(self.low, self.high)

    def example(self) -> Any:
        """A value inside the distribution (used to validate the key against TrainConfig)."""
        if self.type == "choice":
            return self.values[0]
        return int(self.low) if self.type == "randint" else self.low


class AshaSection(StrictModel):
    grace_period: int = Field(1, ge=1, description="validations (epochs) every trial runs before it may be stopped")
    reduction_factor: float = Field(2.0, gt=1.0, description="keep the top 1/reduction_factor at each rung")
    max_t: int | None = Field(None, ge=1, description="validations of the longest trial (default: train.epochs)")


class TuneSearchConfig(StrictModel):
    base: str = Field(description="the pretraining YAML every trial starts from (must set eval.tasks)")
    base_overrides: list[str] = Field(default_factory=list, description="key=value applied to the base config")
    search: dict[str, Distribution] = Field(description="dotted TrainConfig key -> distribution")
    num_samples: int = Field(4, ge=1, description="trials sampled")
    max_concurrent_trials: int = Field(1, ge=1, description="trials running at once (each runs its own Train workers)")
    trial_driver_cpus: float = Field(0.0, ge=0.0, description="CPUs held by each trial's driver; the Train "
                                                              "workers request train.cpus_per_worker each")
    metric: str = Field("val_zeroshot_auc", description="metric reported by the train loop")
    mode: Literal["max", "min"] = "max"
    asha: AshaSection = Field(default_factory=AshaSection)
    seed: int | None = Field(0, description="seed of the random search (None = unseeded)")
    storage_path: str = Field("runs/tune", description="local dir or URI for Tune and the trials' Train runs")
    name: str = "merl-tune"
    best_config: str | None = Field(None, description="where to write the best trial's TrainConfig "
                                                      "(default <storage_path>/<name>/best_config.yaml)")

    @model_validator(mode="after")
    def _nonempty(self) -> TuneSearchConfig:
        if not self.search:
            raise ValueError("search is empty: give at least one 'key: {type: ..., ...}'")
        return self


def load_tune_config(path: str | Path | None, overrides: list[str] = ()) -> TuneSearchConfig:
    """``configs/tune.yaml`` + ``key=value`` overrides; ``base`` is resolved next to the YAML when relative."""
    data = apply_overrides(read_yaml(path) if path else {}, overrides)
    cfg = validate(TuneSearchConfig, data, source=str(path) if path else "tune config")
    if path and not Path(cfg.base).is_file() and (Path(path).parent / cfg.base).is_file():
        cfg.base = str(Path(path).parent / cfg.base)
    return cfg


def trial_train_config(base: dict[str, Any], params: dict[str, Any]):
    """The TrainConfig of one trial: the base config with the sampled ``params`` (dotted keys)."""
    from merl.training.config import TrainConfig

    return validate(TrainConfig, apply_overrides(base, [f"{k}={_yaml_scalar(v)}" for k, v in params.items()]),
                    source="trial config")


def _yaml_scalar(v: Any) -> str:
    import yaml

    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def check_search(cfg: TuneSearchConfig) -> dict[str, Any]:
    """Read and validate the base config and every search key; return the base as a dict."""
    if not Path(cfg.base).is_file():
        raise ConfigError(f"base: training config {cfg.base!r} not found (a pretraining YAML with eval.tasks set)")
    base = apply_overrides(read_yaml(cfg.base), cfg.base_overrides)
    train_cfg = trial_train_config(base, {k: d.example() for k, d in cfg.search.items()})
    for key in cfg.search:
        node: Any = train_cfg
        for part in key.split("."):
            if not hasattr(node, part):
                raise ConfigError(f"search key {key!r} is not a TrainConfig field ({part!r} unknown)")
            node = getattr(node, part)
    if cfg.metric.startswith("val_zeroshot_auc") and not train_cfg.eval.tasks:
        raise ConfigError(
            f"{cfg.base}: eval.tasks is empty, so the train loop never reports {cfg.metric!r}; "
            "set eval.tasks and eval.shards (e.g. ptbxl_super_class: data/ptbxl_shards)"
        )
    return _absolute_paths(base, trial_train_config(base, {}))


def _absolute_paths(base: dict[str, Any], train_cfg) -> dict[str, Any]:
    """Local paths made absolute against the launching directory (defaults included): trials
    run in other working directories (Tune's trial dirs, Ray worker processes)."""
    import copy

    def fix(value: str | None) -> str | None:
        return absolute(value) if value else value

    out = copy.deepcopy(base)
    out.setdefault("data", {})["train_shards"] = fix(train_cfg.data.train_shards)
    ev = out.setdefault("eval", {})
    if train_cfg.eval.shards:
        ev["shards"] = {k: fix(v) for k, v in train_cfg.eval.shards.items()}
    if train_cfg.eval.prompts:
        ev["prompts"] = fix(train_cfg.eval.prompts)
    return out


def _metric_reports(metric: str):
    """TuneReportCallback that forwards only reports carrying ``metric`` (one per validation)."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class ScoredReports(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if metrics and metric in metrics[0]:
                super().after_report(run_context, metrics, checkpoint)

    return ScoredReports()


def _trial(config: dict[str, Any], base: dict[str, Any], storage_path: str, metric: str) -> None:
    """Tune function trainable: one Ray Train pretraining run with this trial's hyperparameters."""
    import ray.tune

    from merl.training.trainer import fit

    cfg = trial_train_config(base, config["params"])
    trial = ray.tune.get_context().get_trial_id()
    fit(cfg, storage_path=storage_path, name=f"trial_{trial}", address=None, resume=True,
        extra_callbacks=[_metric_reports(metric)])


def _driver_resources(cpus: float) -> dict[str, float]:
    """A trial driver only waits on its Train run. Ray rejects an empty request, so a CPU-less
    driver reserves a little memory instead: the Train workers keep every CPU."""
    return {"cpu": cpus} if cpus > 0 else {"cpu": 0, "memory": DRIVER_MEMORY}


@dataclass
class TuneOutcome:
    rows: list[dict[str, Any]]  # one per trial: trial, params, best metric, status
    best_params: dict[str, Any]
    best_score: float
    best_config_path: str
    experiment_path: str


def run_tune(cfg: TuneSearchConfig, address: str | None = None, num_cpus: int | None = None) -> TuneOutcome:
    """Run the search; write the best trial's full TrainConfig YAML; return a summary."""
    import ray.tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from merl.core.config import dump_config
    from merl.core.raysession import ensure_ray
    from merl.training.trainer import resolve_storage

    base = check_search(cfg)
    base_cfg = trial_train_config(base, {})
    storage = resolve_storage(cfg.storage_path)
    ensure_ray(address, num_cpus=num_cpus)
    max_t = cfg.asha.max_t or base_cfg.train.epochs
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=min(cfg.asha.grace_period, max_t),
                              reduction_factor=cfg.asha.reduction_factor)
    # The base config travels via with_parameters (object store), so trial tables show only params.
    trainable = ray.tune.with_parameters(_trial, base=base, storage_path=join(storage, f"{cfg.name}-runs"),
                                         metric=cfg.metric)
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(trainable, _driver_resources(cfg.trial_driver_cpus)),
        param_space={"params": {k: d.to_tune() for k, d in cfg.search.items()}},
        tune_config=ray.tune.TuneConfig(
            metric=cfg.metric, mode=cfg.mode, num_samples=cfg.num_samples, scheduler=scheduler,
            max_concurrent_trials=cfg.max_concurrent_trials,
            search_alg=BasicVariantGenerator(random_state=cfg.seed, max_concurrent=cfg.max_concurrent_trials),
        ),
        run_config=ray.tune.RunConfig(name=cfg.name, storage_path=storage),
    )
    grid = tuner.fit()
    rows = []
    for res in grid:
        hist = res.metrics_dataframe
        vals = hist[cfg.metric].dropna().tolist() if hist is not None and cfg.metric in hist else []
        best = (max(vals) if cfg.mode == "max" else min(vals)) if vals else math.nan
        rows.append({
            "trial": (res.metrics or {}).get("trial_id") or PurePosixPath(res.path).name,
            "params": {k: res.config["params"][k] for k in cfg.search},
            "best": best,
            "iterations": len(vals),
            "error": str(res.error).splitlines()[0] if res.error else "",
        })
    scored = [r for r in rows if math.isfinite(r["best"])]
    if not scored:
        errors = "; ".join(r["error"] for r in rows if r["error"]) or "no trial reported the metric"
        raise RuntimeError(f"no trial produced {cfg.metric!r}: {errors}")
    pick = max if cfg.mode == "max" else min
    best = pick(scored, key=lambda r: r["best"])
    out = cfg.best_config or join(storage, cfg.name, "best_config.yaml")
    dump_config(trial_train_config(base, best["params"]), out)
    log.info("best trial %s: %s = %.4f -> %s", best["trial"], cfg.metric, best["best"], out)
    return TuneOutcome(rows, best["params"], best["best"], out, grid.experiment_path)
