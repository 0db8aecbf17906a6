"""``fit``: build the Ray Train ``TorchTrainer`` for a :class:`TrainConfig` and run it.

Reused by ``merl train`` and by Ray Tune (``training/tune.py`` calls ``fit`` with modified
configs). Re-running with the same storage path + name resumes from the run's latest valid
checkpoint; worker failures restart the worker group from it (``max_failures``).
Storage may be a local folder or a URI (``s3://bucket/runs``): Ray Train writes checkpoints
there itself through pyarrow. A new run
may start from another run's checkpoint (``init_checkpoint``: what PBT hands a trial).
The run's experiment-tracking run (MLflow by default) is opened here, on the driver, and
recorded in the run folder, so resumes and restarts log to the same one.
"""

from __future__ import annotations

import logging
import time
from pathlib import PurePosixPath
from typing import Any

from merl.core.io import exists, is_file
from merl.core.uri import absolute, filesystem, is_uri, join
from merl.training.config import TrainConfig

log = logging.getLogger(__name__)


def resolve_storage(storage_path: str) -> str:
    """Absolute local path (Ray needs one; ``file://`` becomes a plain path) or a remote URI left as is."""
    return absolute(storage_path)


def run_dir_for(storage_path: str, name: str) -> str:
    return join(resolve_storage(storage_path), name)


def storage_location(path: str, storage_path: str) -> str:
    """A path Ray Train reports (``Result.path``, ``Checkpoint.path``) as a location merl reads.

    Ray gives paths *within* the storage filesystem: ``bucket/runs/x`` for ``s3://bucket/runs``.
    They are re-rooted on ``storage_path`` so the scheme (and any ``?query``) comes back."""
    storage = resolve_storage(storage_path)
    if not is_uri(storage) or is_uri(path):
        return path
    _, root = filesystem(storage)
    try:
        rel = PurePosixPath(path).relative_to(PurePosixPath(root))
    except ValueError:
        raise ValueError(f"{path} is not under the run storage {storage}") from None
    return join(storage, *rel.parts)


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """Workers run in Ray's own working directories: make every local path absolute, and
    check the inputs exist now, on the driver, rather than after an epoch on the workers."""
    from merl.training.data.manifest import read_manifest

    cfg = cfg.model_copy(deep=True)
    cfg.data.train_shards = absolute(cfg.data.train_shards)
    read_manifest(cfg.data.train_shards)
    cfg.eval.shards = {t: absolute(d) for t, d in cfg.eval.shards.items()}
    for task in cfg.eval.tasks:
        read_manifest(cfg.eval.shards[task])
    if cfg.eval.prompts:
        cfg.eval.prompts = absolute(cfg.eval.prompts)
        if not is_file(cfg.eval.prompts):
            raise FileNotFoundError(f"eval.prompts: {cfg.eval.prompts} not found (write it with `merl prompts`)")
        from merl.training.zeroshot import load_prompts

        for task in cfg.eval.tasks:  # unknown labels fail here, not after the first epoch
            load_prompts(cfg.eval.prompts, task)
    return cfg


def build_trainer(cfg: TrainConfig, *, storage_path: str | None = None, name: str = "merl-pretrain",
                  extra_callbacks: list | None = None, loop_config_extra: dict[str, Any] | None = None):
    """The configured ``TorchTrainer`` (not started). ``loop_config_extra`` is for tests' fault hooks."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from merl.training.data.loader import split_datasets
    from merl.training.loop import SCORE, train_loop_per_worker

    storage = resolve_storage(storage_path or cfg.checkpoint.storage_path)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "run_dir": run_dir_for(storage, name),
                           **(loop_config_extra or {})},
        scaling_config=ScalingConfig(num_workers=cfg.train.num_workers, use_gpu=cfg.train.use_gpu,
                                     resources_per_worker={"CPU": cfg.train.cpus_per_worker,
                                                           **({"GPU": 1} if cfg.train.use_gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if cfg.train.use_gpu else "gloo"),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=cfg.checkpoint.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.keep, checkpoint_score_attribute=SCORE,
                                               checkpoint_score_order="max"),
            callbacks=extra_callbacks or None,
        ),
        datasets=split_datasets(cfg.data, cfg.model.text_model, seed=cfg.train.seed),
    )


def fit(cfg: TrainConfig, *, storage_path: str | None = None, name: str = "merl-pretrain",
        address: str | None = None, resume: bool = True, extra_callbacks: list | None = None,
        loop_config_extra: dict[str, Any] | None = None, init_checkpoint: str | None = None):
    """Train MERL on Ray; returns the ``ray.train.Result`` (``.checkpoint``, ``.metrics``, ``.best_checkpoints``).

    ``storage_path`` defaults to ``cfg.checkpoint.storage_path``; the run lives in
    ``<storage_path>/<name>``. ``resume=False`` never continues an existing run: a fresh
    name with a timestamp suffix is used instead. ``init_checkpoint`` (a checkpoint folder
    or URI) is where the run starts when it has no checkpoint of its own yet.
    """
    from merl.core.raysession import ensure_ray
    from merl.training.data.manifest import read_manifest
    from merl.training.tracking import end_run, start_run

    read_manifest(cfg.data.train_shards)  # a missing/unprepared shard folder fails before Ray starts
    storage = resolve_storage(storage_path or cfg.checkpoint.storage_path)
    if not resume and exists(run_dir_for(storage, name)):
        name = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        log.info("resume=False and the run exists: starting a new run %s", name)
    cfg = with_absolute_paths(cfg)
    tracking = start_run(cfg.tracking, run_dir_for(storage, name), name, cfg.model_dump(mode="json"))
    ensure_ray(address)
    trainer = build_trainer(cfg, storage_path=storage, name=name, extra_callbacks=extra_callbacks,
                            loop_config_extra={**(loop_config_extra or {}), "init_checkpoint": init_checkpoint,
                                               "tracking": tracking})
    try:
        result = trainer.fit()
    except BaseException:
        end_run(tracking, failed=True)
        raise
    end_run(tracking, failed=result.error is not None)
    log.info("run finished: %s (latest checkpoint %s)", run_dir_for(storage, name),
             result.checkpoint.path if result.checkpoint else None)
    return result
