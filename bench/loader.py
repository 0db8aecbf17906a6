"""Input-pipeline throughput per CPU (synthetic shards): how many CPUs keep a GPU fed.

``loader_samples_per_s_per_cpu``: samples/s that the training input pipeline delivers, divided
by the Ray cluster's CPUs. No model. The pipeline is the one ``merl train`` runs
(``training.data.loader.build_dataset``: Parquet read, split filter, signal decode, resample
500 -> ``data.fs`` Hz, crop, per-lead normalisation and report tokenisation in Ray Data
tasks, then the loop's collate: dynamic padding into tensors), consumed by one iterator as a
training worker would. A GPU training at G samples/s needs about G / this many CPUs for data.
One warm-up pass (worker start, tokenizer load) and the best of two timed passes are taken.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from merl.training.data.config import DataConfig

N_RECORDS = 1280  # 20 shards of 64: more blocks than CPUs, a few seconds per pass on 2 CPUs


def samples_per_s_per_cpu(shards: Path, data_cfg: DataConfig, text_model: str, num_cpus: int,
                          passes: int = 2) -> float:
    """Best samples/s/CPU of ``passes`` full reads of the ``train`` split (after one warm-up read)."""
    from merl.training.data.loader import Collate, build_dataset, pad_id_for

    collate = Collate(pad_id_for(text_model))
    best = 0.0
    for i in range(passes + 1):
        ds = build_dataset(str(shards), "train", data_cfg, text_model)
        t0, n = time.perf_counter(), 0
        for batch in ds.iter_torch_batches(batch_size=data_cfg.batch_size, collate_fn=collate,
                                           prefetch_batches=max(2, num_cpus)):
            n += len(batch["ecg"])
        if i:  # pass 0 starts Ray Data's workers and loads the tokenizer in each
            best = max(best, n / (time.perf_counter() - t0))
    return best / num_cpus


def run(report, workdir: Path) -> None:
    from bench.shards import write_shards
    from merl.core.raysession import ensure_ray
    from merl.training.data.config import DataConfig

    shards = write_shards(Path(workdir) / "shards", N_RECORDS, per_shard=64)
    cpus = 2
    ray = ensure_ray(num_cpus=cpus)
    try:
        cfg = DataConfig(train_shards=str(shards), batch_size=64)  # 500 -> 100 Hz x 1000 (laptop config)
        rate = samples_per_s_per_cpu(shards, cfg, "default", cpus)
    finally:
        ray.shutdown()
    report("loader_samples_per_s_per_cpu", rate, "samples/s/cpu")
