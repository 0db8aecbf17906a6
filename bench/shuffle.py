"""Same-patient pairs in training batches, per shuffle mode (synthetic shards).

Two ECGs of one patient in one batch are near-duplicate reports: false negatives for the
contrastive loss. The shards hold 4,000 records of 800 patients (a geometric number of
records each, mean 5, as MIMIC-IV-ECG's ~800k records of ~160k patients), written either
in the order ``merl data prepare`` writes now (``shard_order: shuffled``) or as the dataset
lists them (``index``: one patient's records side by side, how shards were written before).
Each figure is :func:`merl.training.data.loader.same_patient_pairs` over 2 epochs of
32-record batches (100 Hz x 1000 rows, as the laptop config): the share of within-batch
pairs that are same-patient pairs, and its ratio to a random permutation's expectation
(1 = as rare as chance). Ray Data blocks are capped at 4 MB (~85 rows) here: at its default
128 MB a block would hold most of this small corpus, where on MIMIC-IV-ECG a block (~2,700
rows at 100 Hz, ~530 at 500 Hz) and the 1,024-row window hold well under 1% of it.

* ``same_patient_pair_fraction_<mode>``: on shuffled shards; ``global`` is the default.
* ``..._<mode>_index_order``: on index-ordered shards; ``window_4_batches`` is the loader
  before this change (a 4-batch row window, files in manifest order).
* ``batch_pairs_repeated_next_epoch_<mode>``: share of epoch 2's within-batch pairs that
  already shared a batch in epoch 1 (``_random``: two independent permutations).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BATCH = 32


def patient_shards(root: Path, order: str, n_patients: int = 800, mean_records: float = 5.0,
                   records_per_shard: int = 500, seed: int = 0) -> Path:
    """Shards of ``n_patients`` patients with a geometric number of records each (tiny signals: only ids
    and patient ids are read), records in ``order`` (``shuffled`` | ``index``) as prepare writes them."""
    import pyarrow.parquet as pq

    from merl.core.io import sha256_file
    from merl.training.data.manifest import Counts, Manifest, ShardInfo, write_manifest
    from merl.training.data.prepare import shard_order
    from merl.training.data.schema import CanonicalRecord, rows_to_table

    rng = np.random.default_rng(seed)
    counts = rng.geometric(1.0 / mean_records, n_patients)  # >= 1, mean ``mean_records``
    signal = np.zeros((12, 8), np.float32)
    rows = [CanonicalRecord(id=f"synthetic:{p}-{j}", source="synthetic", signal=signal, patient_id=str(p),
                            report="sinus rhythm.").to_row()
            for p, k in enumerate(counts) for j in range(k)]
    rows = [rows[i] for i in shard_order(len(rows), order, seed)]
    root.mkdir(parents=True, exist_ok=True)
    shards = []
    for i, k in enumerate(range(0, len(rows), records_per_shard)):
        name = f"shard-{i:05d}.parquet"
        chunk = rows[k:k + records_per_shard]
        pq.write_table(rows_to_table(chunk), root / name)
        shards.append(ShardInfo(file=name, rows=len(chunk), sha256=sha256_file(root / name), splits={"train": len(chunk)}))
    write_manifest(root, Manifest(dataset="synthetic", shards=shards, config={"synthetic": True, "shard_order": order},
                                  counts=Counts(records=len(rows), by_split={"train": len(rows)})))
    return root


MODES = {  # name -> DataConfig fields
    "global": {"shuffle": "global", "shuffle_buffer_rows": 1024},
    "window": {"shuffle": "window", "shuffle_buffer_rows": 1024},
    "window_4_batches": {"shuffle": "window", "shuffle_buffer_rows": 4 * BATCH},
    "none": {"shuffle": "none"},
}


BLOCK_BYTES = 4 * 1024 * 1024


def measure(shards: Path, mode: str, epochs: int = 2) -> dict[str, float]:
    """:func:`same_patient_pairs` of one mode, with blocks capped at :data:`BLOCK_BYTES`."""
    import ray.data

    from merl.training.data.config import DataConfig
    from merl.training.data.loader import same_patient_pairs

    ctx = ray.data.DataContext.get_current()
    saved = ctx.target_max_block_size
    ctx.target_max_block_size = BLOCK_BYTES
    try:
        cfg = DataConfig(train_shards=str(shards), batch_size=BATCH, **MODES[mode])
        return same_patient_pairs(str(shards), cfg, seed=42, epochs=epochs)
    finally:
        ctx.target_max_block_size = saved


def run(report, workdir: Path) -> None:
    import sys

    from merl.core.raysession import ensure_ray

    workdir = Path(workdir)
    layouts = {"shuffled": patient_shards(workdir / "shuffled", "shuffled"),
               "index": patient_shards(workdir / "index", "index")}
    ray = ensure_ray(num_cpus=2)
    try:
        expected = None
        for layout, shards in layouts.items():
            for mode in MODES:
                m = measure(shards, mode)
                expected = m["expected_pair_fraction"]
                tag = mode if layout == "shuffled" else f"{mode}_index_order"
                print(f"# {layout} shards, {mode}: {m['records']} records, {m['patients']} patients, "
                      f"{m['batches']} batches; batches with a same-patient pair {m['batch_fraction']:.3f} "
                      f"(random {m['expected_batch_fraction']:.3f})", file=sys.stderr)
                report(f"same_patient_pair_fraction_{tag}", m["pair_fraction"], "fraction")
                report(f"same_patient_pair_ratio_{tag}", m["ratio"], "x")
                if layout == "shuffled":
                    report(f"batch_pairs_repeated_next_epoch_{tag}", m["repeat_fraction"], "fraction")
        report("same_patient_pair_fraction_random", expected, "fraction")
        report("batch_pairs_repeated_next_epoch_random", m["expected_repeat_fraction"], "fraction")
    finally:
        ray.shutdown()
