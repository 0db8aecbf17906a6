"""Synthetic prepared shards for the throughput benchmarks (not a data set: noise + sines).

Written straight into the training shard format (``CanonicalRecord`` rows + manifest), at
the corpus rate of 500 Hz x 5000 samples, skipping ``merl data prepare``: the benchmarks time
what reads shards, not what writes them. Shards are written in parallel processes when asked.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

REPORTS = [  # synthetic MIMIC-style machine reports of varied length
    "sinus rhythm. normal ecg.",
    "sinus bradycardia. otherwise normal ecg.",
    "atrial fibrillation with rapid ventricular response. nonspecific st t wave changes. abnormal ecg.",
    "sinus rhythm with 1st degree a-v block. left axis deviation. left anterior fascicular block. borderline ecg.",
    "sinus tachycardia. possible left atrial enlargement. inferior infarct, age undetermined.",
    "left bundle branch block. abnormal ecg.",
    "sinus rhythm. prolonged qt interval. lateral st-t changes may be due to myocardial ischemia.",
    "atrial flutter with variable a-v block. low qrs voltages in limb leads.",
]


def _write_shard(job: tuple[str, str, int, int, int, int]):
    """Write records ``start .. start+count`` (the first ``n_train`` of the corpus are train, the rest val)."""
    import pyarrow.parquet as pq

    from merl.core.io import sha256_file
    from merl.training.data.manifest import ShardInfo
    from merl.training.data.schema import CanonicalRecord, rows_to_table

    root, name, start, count, n_train, n_samples = job
    rng = np.random.default_rng(start)
    t = np.arange(n_samples) / 500
    rows, splits = [], {}
    for i in range(start, start + count):
        split = "train" if i < n_train else "val"
        splits[split] = splits.get(split, 0) + 1
        wave = np.sin(2 * np.pi * (0.8 + 0.2 * (i % 8)) * t)[None] * rng.uniform(-1, 1, (12, 1))
        rows.append(CanonicalRecord(id=f"synthetic:{i}", source="synthetic", report=REPORTS[i % len(REPORTS)],
                                    split=split, signal=(wave + rng.normal(0, 0.05, (12, n_samples))).astype(np.float32),
                                    ).to_row())
    pq.write_table(rows_to_table(rows), Path(root) / name)
    return ShardInfo(file=name, rows=count, sha256=sha256_file(Path(root) / name), splits=splits)


def write_shards(root: Path, n_train: int, n_val: int = 0, per_shard: int = 160, n_samples: int = 5000,
                 workers: int = 1) -> Path:
    """A shard folder of ``n_train`` train (+ ``n_val`` val) records at 500 Hz; ``workers`` processes."""
    from merl.training.data.manifest import Counts, Manifest, write_manifest

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    total = n_train + n_val
    jobs = [(str(root), f"shard-{k // per_shard:05d}.parquet", k, min(per_shard, total - k), n_train, n_samples)
            for k in range(0, total, per_shard)]
    workers = max(1, min(workers, len(jobs), os.cpu_count() or 1))
    if workers == 1:
        shards = [_write_shard(j) for j in jobs]
    else:  # spawn: the caller may already run Ray (threads), which a fork would copy half-way
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            shards = list(pool.map(_write_shard, jobs))
    by_split = {"train": n_train, **({"val": n_val} if n_val else {})}
    write_manifest(root, Manifest(dataset="synthetic", shards=shards, counts=Counts(records=total, by_split=by_split)))
    return root
