"""Hyperparameter search with Ray Tune over pretraining runs, scored by zero-shot validation AUC.

Ray Train V2 composes with Tune by nesting: each Tune trial is a small *driver* function
that builds a ``TorchTrainer`` (through :func:`merl.training.trainer.fit`) with the trial's
hyperparameters and runs it. A Train callback forwards the workers' reports that carry the
search metric (one per validation, so one Tune iteration = one validation) to the trial,
which reports them to Tune with the path of the Train checkpoint saved with them.

Ray's own ``TuneReportCallback`` forwards metrics only, never a Tune checkpoint, so PBT could
not clone a trial through it; :func:`_trial` bridges the reports itself (a Ray queue from
the Train controller to the trial) and, under PBT, reports each validation's Train
checkpoint to Tune too. A trial PBT restarts from another trial's checkpoint starts a new
Train run from it (``fit(init_checkpoint=...)``; Train V2 has no ``resume_from_checkpoint``),
with this trial's mutated temperature and learning rate applied on restore.

Searchers: random (Tune's variant generator), Optuna TPE (behind a ``ConcurrencyLimiter``),
grid (every ``choice`` entry an axis). Schedulers: ASHA (default), PBT, FIFO.
An interrupted search (Ctrl-C) continues with ``run_tune(..., resume=True)`` (``Tuner.restore``;
errored trials restarted). The winner's config, checkpoint and report files are written by
:mod:`merl.training.tune_report`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import queue as pyqueue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from merl.core.config import ConfigError, StrictModel, apply_overrides, read_yaml, validate
from merl.core.io import atomic_write_text, read_text_if_exists
from merl.core.uri import absolute, join
from merl.training.config import TrackingConfig

log = logging.getLogger(__name__)

DRIVER_MEMORY = 256 * 1024**2  # bytes reserved by a CPU-less trial driver
SAVED_CONFIG = "tune_config.yaml"  # in the experiment folder: what --resume continues
CHECKPOINT_PATH = "checkpoint_path"  # reported with each validation: the Train checkpoint saved with it
PARAM = "param."  # reported with each validation: the hyperparameters it was trained with (PBT changes them)
# Hyperparameters PBT may change in a running trial: the checkpoint's tensors keep their shapes.
PBT_MUTABLE = ("loss.temperature", "optim.lr", "loss.weight_uni", "loss.weight_clip", "optim.weight_decay")


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

    def to_tune(self, grid: bool = False):
        from ray import tune

        if self.type == "choice":
            return tune.grid_search(self.values) if grid else tune.choice(self.values)
        if self.type == "randint":
            return tune.randint(int(self.low), int(self.high))
        return getattr(tune, self.type)(self.low, self.high)

    def example(self) -> Any:
        """A value inside the distribution (used to validate the key against TrainConfig)."""
        if self.type == "choice":
            return self.values[0]
        return int(self.low) if self.type == "randint" else self.low


def _flat_space(space: Any) -> Any:
    """Search spaces are keyed by dotted names; a nested mapping (from a ``key=value`` override
    such as ``search.model.dropout={type: uniform, ...}``) is flattened to ``model.dropout``, and
    a ``null`` entry (``search.model.proj_dim=null``) removes that key."""
    if not isinstance(space, dict):
        return space
    out: dict[str, Any] = {}
    for key, value in space.items():
        if value is None:
            continue
        if isinstance(value, dict) and value and "type" not in value:
            out.update({f"{key}.{k}": v for k, v in _flat_space(value).items()})
        else:
            out[key] = value
    return out


class AshaSection(StrictModel):
    grace_period: int = Field(1, ge=1, description="validations (epochs) every trial runs before it may be stopped")
    reduction_factor: float = Field(2.0, gt=1.0, description="keep the top 1/reduction_factor at each rung")
    max_t: int | None = Field(None, ge=1, description="validations of the longest trial (default: train.epochs)")


class PbtSection(StrictModel):
    perturbation_interval: int = Field(1, ge=1, description="validations between exploit/explore steps")
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5, description="bottom fraction cloned from the top one")
    resample_probability: float = Field(0.25, ge=0.0, le=1.0, description="explore: resample instead of perturb")
    mutations: dict[str, Distribution] | None = Field(
        None, description=f"key -> distribution PBT draws from; default: the search's entries among {PBT_MUTABLE}")
    synch: bool = Field(False, description="perturb the whole population at once (every trial pauses, i.e. "
                                           "restarts its Train run, at each perturbation) instead of each "
                                           "trial as it reports")
    checkpoints_to_keep: int = Field(4, ge=3, description="Tune checkpoints kept per trial (clone sources)")

    @field_validator("mutations", mode="before")
    @classmethod
    def _flat(cls, value: Any) -> Any:
        return _flat_space(value)


class OptunaSection(StrictModel):
    n_startup_trials: int = Field(4, ge=1, description="random trials before TPE models the results")


class TuneSearchConfig(StrictModel):
    base: str = Field(description="the pretraining YAML every trial starts from (must set eval.tasks)")
    base_overrides: list[str] = Field(default_factory=list, description="key=value applied to the base config")
    search: dict[str, Distribution] = Field(description="dotted TrainConfig key -> distribution")
    searcher: Literal["random", "optuna", "grid"] = Field(
        "random", description="random | optuna (TPE) | grid (each 'choice' entry an axis; no continuous entries)")
    scheduler: Literal["asha", "pbt", "fifo"] = Field(
        "asha", description="asha (early stopping) | pbt (population based training) | fifo (run every trial out)")
    num_samples: int | None = Field(None, ge=1, description="trials sampled (grid: repeats of the whole grid); "
                                                            "default 4 (grid: 1)")
    max_concurrent_trials: int = Field(1, ge=1, description="trials running at once (each runs its own Train workers)")
    trial_driver_cpus: float = Field(0.0, ge=0.0, description="CPUs held by each trial's driver; the Train "
                                                              "workers request train.cpus_per_worker each")
    metric: str = Field("val_zeroshot_auc", description="metric reported by the train loop")
    mode: Literal["max", "min"] = "max"
    asha: AshaSection = Field(default_factory=AshaSection)
    pbt: PbtSection = Field(default_factory=PbtSection)
    optuna: OptunaSection = Field(default_factory=OptunaSection)
    seed: int | None = Field(0, description="seed of the searcher (None = unseeded)")
    storage_path: str = Field("runs/tune", description="local dir or URI for Tune and the trials' Train runs")
    name: str = "merl-tune"
    best_config: str | None = Field(None, description="where to write the best trial's TrainConfig "
                                                      "(default <storage_path>/<name>/best_config.yaml)")
    plots: bool = Field(True, description="metric-per-trial and parameter-vs-metric PNGs beside the table")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig,
                                     description="one run per trial (experiment default: the search's name)")

    @field_validator("search", mode="before")
    @classmethod
    def _flat(cls, value: Any) -> Any:
        return _flat_space(value)

    @model_validator(mode="after")
    def _consistent(self) -> TuneSearchConfig:
        if not self.search:
            raise ValueError("search is empty: give at least one 'key: {type: ..., ...}'")
        if self.searcher == "grid":
            continuous = [k for k, d in self.search.items() if d.type != "choice"]
            if continuous:
                raise ValueError(f"searcher 'grid' needs 'choice' entries (the grid's values); {continuous} are "
                                 "continuous: list values, or use searcher random/optuna")
        if self.scheduler == "pbt":
            if self.searcher != "random":
                raise ValueError("scheduler 'pbt' explores by mutating running trials: use searcher 'random' "
                                 "for its initial population")
            if self.samples < 2 or self.max_concurrent_trials < 2:
                raise ValueError("scheduler 'pbt' needs a population that trains together: num_samples >= 2 and "
                                 "max_concurrent_trials >= 2")
            bad = [k for k in self.pbt_mutations if k not in PBT_MUTABLE]
            if bad:
                raise ValueError(f"pbt can mutate only {list(PBT_MUTABLE)} (a cloned checkpoint's tensors keep "
                                 f"their shapes); got {bad}")
            if not self.pbt_mutations:
                raise ValueError(f"pbt: nothing to mutate; give pbt.mutations or search entries among {PBT_MUTABLE}")
        return self

    @property
    def samples(self) -> int:
        return self.num_samples or (1 if self.searcher == "grid" else 4)

    @property
    def total_trials(self) -> int:
        """Trials the search runs in all."""
        if self.searcher != "grid":
            return self.samples
        return self.samples * math.prod(len(d.values) for d in self.search.values())

    @property
    def pbt_mutations(self) -> dict[str, Distribution]:
        if self.pbt.mutations is not None:
            return self.pbt.mutations
        return {k: d for k, d in self.search.items() if k in PBT_MUTABLE}


class TuneInterrupted(RuntimeError):
    """The search stopped before every trial finished (Ctrl-C): ``merl tune --resume`` continues it."""


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
    keys = {**cfg.search, **(cfg.pbt_mutations if cfg.scheduler == "pbt" else {})}
    train_cfg = trial_train_config(base, {k: d.example() for k, d in keys.items()})
    for key in keys:
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
    if cfg.scheduler == "pbt" and train_cfg.train.epochs <= cfg.pbt.perturbation_interval:
        raise ConfigError(f"pbt: train.epochs={train_cfg.train.epochs} gives no perturbation every "
                          f"{cfg.pbt.perturbation_interval} validation(s); raise train.epochs")
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


def checkpoint_uri(checkpoint, storage: str) -> str:
    """A Ray checkpoint's location as one string merl reads (a URI on remote storage)."""
    from merl.training.trainer import storage_location

    return storage_location(checkpoint.path, storage)


def _bridge_callback(reports, metric: str):
    """Train callback (runs in the Train controller): puts each report carrying ``metric`` on
    the trial's queue with the latest checkpoint saved so far (a validation at a step that a
    mid-epoch checkpoint already saved carries none of its own)."""
    from ray.train.v2.api.callback import UserCallback

    class ScoredReports(UserCallback):
        def __init__(self):
            self.latest = None

        def after_report(self, run_context, metrics, checkpoint):
            if checkpoint is not None:
                self.latest = checkpoint
            if metrics and metric in metrics[0]:
                reports.put((dict(metrics[0]), self.latest))

    return ScoredReports()


def _trial(config: dict[str, Any], base: dict[str, Any], storage_path: str, metric: str,
           tune_checkpoints: bool) -> None:
    """Tune function trainable: one Ray Train pretraining run with this trial's hyperparameters.

    Train runs in a thread; this (Tune's) thread reports each forwarded validation. A trial
    (re)started from a Tune checkpoint (PBT's clone, or its own on resume) starts a new Train
    run from it; otherwise it continues its own Train run (``trial_<id>``) if one exists.
    """
    import ray.tune
    from ray.util.queue import Empty, Queue

    from merl.training.trainer import fit

    cfg = trial_train_config(base, config["params"])
    cfg.tracking = TrackingConfig(backend="none")  # the search's tracker keeps one run per trial
    trial = ray.tune.get_context().get_trial_id()
    start = ray.tune.get_checkpoint()
    start_uri = checkpoint_uri(start, storage_path) if start else None
    if start_uri and _finished(start_uri, cfg):
        return  # PBT paused (and so restarts) a trial at its last validation: nothing is left to train
    name = f"trial_{trial}" + (f"-{hashlib.sha1(start_uri.encode()).hexdigest()[:8]}" if start_uri else "")
    reports = Queue(maxsize=1, actor_options={"num_cpus": 0})
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fit(cfg, storage_path=storage_path, name=name, address=None, resume=True,
                                    extra_callbacks=[_bridge_callback(reports, metric)], init_checkpoint=start_uri)
        except BaseException as e:  # noqa: BLE001 - handed to Tune's thread, which raises it
            outcome["error"] = e

    worker = threading.Thread(target=run, name=f"merl-trial-{trial}", daemon=True)
    worker.start()
    forwarded = 0
    while worker.is_alive() or not reports.empty():
        try:
            metrics, ckpt = reports.get(timeout=1.0)
        except (Empty, pyqueue.Empty):
            continue
        metrics[CHECKPOINT_PATH] = checkpoint_uri(ckpt, storage_path) if ckpt else None
        metrics.update({PARAM + k: v for k, v in config["params"].items()})  # in effect for this validation
        tune_ckpt = ray.tune.Checkpoint(ckpt.path, ckpt.filesystem) if tune_checkpoints and ckpt else None
        ray.tune.report(metrics, checkpoint=tune_ckpt)
        forwarded += 1
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    if result.error is not None:
        raise result.error
    if not forwarded and metric in (result.metrics or {}):
        # The Train run had already finished (a trial re-run after a hard stop): report its last validation.
        ray.tune.report({**result.metrics, **{PARAM + k: v for k, v in config["params"].items()},
                         CHECKPOINT_PATH: checkpoint_uri(result.checkpoint, storage_path) if result.checkpoint else None})


def _finished(checkpoint: str, cfg) -> bool:
    """The checkpoint already stands at the end of training (``train.epochs`` / ``max_steps``)."""
    import json

    from merl.training.checkpoint import STATE

    text = read_text_if_exists(join(checkpoint, STATE))
    if text is None:
        return False
    state = json.loads(text)
    return state["epoch"] >= cfg.train.epochs or (cfg.train.max_steps is not None and state["step"] >= cfg.train.max_steps)


def _driver_resources(cpus: float) -> dict[str, float]:
    """A trial driver only waits on its Train run. Ray rejects an empty request, so a CPU-less
    driver reserves a little memory instead: the Train workers keep every CPU."""
    return {"cpu": cpus} if cpus > 0 else {"cpu": 0, "memory": DRIVER_MEMORY}


def _search_alg(cfg: TuneSearchConfig):
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if cfg.searcher == "optuna":
        import optuna
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=cfg.optuna.n_startup_trials)
        return ConcurrencyLimiter(OptunaSearch(metric=cfg.metric, mode=cfg.mode, sampler=sampler),
                                  max_concurrent=cfg.max_concurrent_trials)
    return BasicVariantGenerator(random_state=cfg.seed, max_concurrent=cfg.max_concurrent_trials)


def _scheduler(cfg: TuneSearchConfig, epochs: int):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if cfg.scheduler == "pbt":
        return PopulationBasedTraining(
            time_attr="training_iteration", perturbation_interval=cfg.pbt.perturbation_interval,
            hyperparam_mutations={"params": {k: d.to_tune() for k, d in cfg.pbt_mutations.items()}},
            quantile_fraction=cfg.pbt.quantile_fraction, resample_probability=cfg.pbt.resample_probability,
            synch=cfg.pbt.synch,
        )
    if cfg.scheduler == "fifo":
        return FIFOScheduler()
    max_t = cfg.asha.max_t or epochs
    return ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=min(cfg.asha.grace_period, max_t),
                         reduction_factor=cfg.asha.reduction_factor)


@dataclass
class TuneOutcome:
    rows: list[dict[str, Any]]  # one per trial: trial, params, best metric, validations, error, checkpoint
    best_params: dict[str, Any]
    best_score: float
    best_config_path: str
    experiment_path: str
    best: dict[str, Any]  # best.json: the winner's trial, score, config and checkpoint
    files: dict[str, str]  # report files written (table, plots, best.json)


def experiment_path(cfg: TuneSearchConfig) -> str:
    from merl.training.trainer import resolve_storage

    return join(resolve_storage(cfg.storage_path), cfg.name)


def run_tune(cfg: TuneSearchConfig, address: str | None = None, num_cpus: int | None = None, resume: bool = False,
             callbacks: list | None = None) -> TuneOutcome:
    """Run (or with ``resume`` continue) the search; write the winner's config, checkpoint record,
    the trial table and plots; return a summary. ``callbacks``: extra Tune callbacks (tests)."""
    import ray.tune

    from merl.core.raysession import ensure_ray
    from merl.training.tracking import tune_callbacks
    from merl.training.trainer import resolve_storage
    from merl.training.tune_report import summarize

    storage = resolve_storage(cfg.storage_path)
    exp_path = join(storage, cfg.name)
    if resume:
        cfg = _saved_config(cfg, exp_path)
    base = check_search(cfg)
    base_cfg = trial_train_config(base, {})
    _check_state_api(ensure_ray(address, num_cpus=num_cpus))
    # The base config travels via with_parameters (object store), so trial tables show only params.
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(_trial, base=base, storage_path=join(storage, f"{cfg.name}-runs"),
                                 metric=cfg.metric, tune_checkpoints=cfg.scheduler == "pbt"),
        _driver_resources(cfg.trial_driver_cpus))
    param_space = {"params": {k: d.to_tune(grid=cfg.searcher == "grid") for k, d in cfg.search.items()}}
    if resume:
        if not ray.tune.Tuner.can_restore(exp_path):
            raise ConfigError(f"nothing to resume at {exp_path}: no Tune experiment state there")
        log.info("resuming the search at %s (unfinished and errored trials continue)", exp_path)
        tuner = ray.tune.Tuner.restore(exp_path, trainable=trainable, param_space=param_space,
                                       resume_unfinished=True, resume_errored=True)
    else:
        if read_text_if_exists(join(exp_path, SAVED_CONFIG)) is not None or ray.tune.Tuner.can_restore(exp_path):
            raise ConfigError(f"a search named {cfg.name!r} exists at {exp_path}: `merl tune --resume` continues "
                              "it, or give another name=...")
        atomic_write_text(join(exp_path, SAVED_CONFIG), _dump_yaml(cfg))
        ckpt_cfg = ray.tune.CheckpointConfig(num_to_keep=cfg.pbt.checkpoints_to_keep) if cfg.scheduler == "pbt" else None
        tuner = ray.tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=ray.tune.TuneConfig(
                metric=cfg.metric, mode=cfg.mode, num_samples=cfg.samples,
                scheduler=_scheduler(cfg, base_cfg.train.epochs), search_alg=_search_alg(cfg),
                reuse_actors=False,  # a stopped trial's process (and the Train run it owns) must end
            ),
            run_config=ray.tune.RunConfig(name=cfg.name, storage_path=storage, checkpoint_config=ckpt_cfg,
                                          callbacks=[*tune_callbacks(cfg.tracking, cfg.name), *(callbacks or [])]),
        )
    grid = tuner.fit()
    finished = grid.num_terminated + grid.num_errors
    expected = max(cfg.total_trials, len(grid))
    if finished < expected:
        raise TuneInterrupted(f"search interrupted: {finished} of {expected} trials finished; "
                              f"`merl tune --resume` (same config) continues it from {exp_path}")
    return summarize(cfg, grid, base, exp_path)


def _check_state_api(ray) -> None:
    """Warn when Ray runs without its state API (a cluster started without the dashboard): Ray
    Train then cannot free the workers of a trial that ASHA stopped or PBT paused, and later
    trials may wait for CPUs forever."""
    from ray.util.state import list_nodes

    try:
        list_nodes(address=ray.get_runtime_context().gcs_address, limit=1, timeout=10)
    except Exception as e:  # noqa: BLE001 - ServerUnavailable / RayStateApiException / connection errors alike
        log.warning("Ray state API unavailable (%s): stopped trials may keep their Train workers' CPUs; start "
                    "the cluster with its dashboard (ray start --head / merl cluster up do)", type(e).__name__)


def _dump_yaml(cfg: TuneSearchConfig) -> str:
    import yaml

    data = cfg.model_dump(mode="json")
    data["base"] = absolute(cfg.base)
    return yaml.safe_dump(data, sort_keys=False)


def _saved_config(cfg: TuneSearchConfig, exp_path: str) -> TuneSearchConfig:
    """The config the search started with (Tune restores its search space and searcher state,
    which a changed config would contradict); differences from ``cfg`` are reported."""
    import yaml

    text = read_text_if_exists(join(exp_path, SAVED_CONFIG))
    if text is None:
        raise ConfigError(f"nothing to resume at {exp_path}: no {SAVED_CONFIG} (was the search started there?)")
    saved = validate(TuneSearchConfig, yaml.safe_load(text), source=join(exp_path, SAVED_CONFIG))
    given = yaml.safe_load(_dump_yaml(cfg))
    changed = sorted(k for k, v in yaml.safe_load(text).items() if given.get(k) != v)
    if changed:
        log.warning("--resume continues the search as it was started; ignoring changed settings %s", changed)
    return saved
