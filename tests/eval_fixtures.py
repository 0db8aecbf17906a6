"""Tiny shard folders for the evaluation tests (real Parquet shards + manifest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from merl.training.data.manifest import Manifest, ShardInfo, write_manifest
from merl.training.data.schema import TARGET_FS, TARGET_SAMPLES, CanonicalRecord, rows_to_table

# (labels, frequency in Hz of the dominant sinusoid, report): easily told-apart groups.
PTBXL_GROUPS = [
    (["NORM", "SR"], 1.0, "sinus rhythm. normal ecg."),
    (["IMI", "NST_", "SR"], 8.0, "sinus rhythm. inferior infarct. nonspecific st changes."),
    (["CLBBB", "AFIB"], 8.0, "atrial fibrillation. left bundle branch block."),
]


def write_shards(root: Path, n_per_split=(12, 6, 6), dataset: str = "synthetic-test", seed: int = 0,
                 groups=PTBXL_GROUPS, source: str = "ptbxl", config: dict | None = None) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(TARGET_SAMPLES) / TARGET_FS
    rows = []
    for split, n in zip(("train", "val", "test"), n_per_split):
        for i in range(n):
            labels, freq, report = groups[i % len(groups)]
            sig = np.sin(2 * np.pi * freq * t)[None, :] * rng.uniform(0.5, 1.5, (12, 1))
            sig = (sig + 0.05 * rng.standard_normal((12, TARGET_SAMPLES))).astype(np.float32)
            rec = CanonicalRecord(id=f"{source}:{split}{i:03d}", source=source, signal=sig,
                                  labels=list(labels), split=split, report=report)
            rows.append(rec.to_row())
    root.mkdir(parents=True, exist_ok=True)
    table = rows_to_table(rows)
    pq.write_table(table, root / "part-00000.parquet")
    by_split = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    write_manifest(
        root,
        Manifest(
            dataset=dataset,
            config=config or {},
            shards=[ShardInfo(file="part-00000.parquet", rows=len(rows), sha256="-", splits=by_split)],
        ),
    )
    return root
