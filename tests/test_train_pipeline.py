"""Transforms + loader pieces (fast), and the shard-building helper the Ray tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from merl.training.data.config import DataConfig
from merl.training.data.manifest import Counts, Manifest, ShardInfo, write_manifest
from merl.training.data.schema import TARGET_FS, TARGET_SAMPLES, CanonicalRecord, rows_to_table
from merl.training.data.transforms import decode_batch, fit_length, normalize, prepare_ecg_batch, resample

CLASSES = {  # (beat frequency Hz, lead gain pattern seed, report)
    "NORM": (1.2, 0, "sinus rhythm. normal ecg."),
    "AFIB": (2.6, 1, "atrial fibrillation with rapid ventricular response."),
    "BRAD": (0.7, 2, "sinus bradycardia. otherwise normal ecg."),
    "LBBB": (1.6, 3, "left bundle branch block. abnormal ecg."),
}


def class_signal(label: str, rng: np.random.Generator, n: int = TARGET_SAMPLES) -> np.ndarray:
    freq, pattern, _ = CLASSES[label]
    t = np.arange(n) / TARGET_FS
    gains = np.random.default_rng(pattern).uniform(-1.5, 1.5, size=(12, 1))
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * freq * t + phase) ** 3 + 0.3 * np.sin(2 * np.pi * 3 * freq * t + phase)
    return (gains * wave + rng.normal(0, 0.05, (12, n))).astype(np.float32)


def make_ecg_shards(root: Path, n_train: int = 96, n_val: int = 32, per_shard: int = 32, seed: int = 0,
                    labels: tuple[str, ...] = tuple(CLASSES), n_samples: int = TARGET_SAMPLES) -> Path:
    """A prepared shard folder of distinguishable synthetic classes with matching reports.

    ``n_samples`` < 5000 stores shorter (500 Hz) records, which keeps Ray tests quick.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_train + n_val):
        label = labels[i % len(labels)]
        rows.append(CanonicalRecord(
            id=f"synthetic:{i}", source="synthetic", signal=class_signal(label, rng, n_samples), report=CLASSES[label][2],
            labels=[label], split="train" if i < n_train else "val").to_row())
    shards = []
    for k in range(0, len(rows), per_shard):
        part = rows[k: k + per_shard]
        name = f"shard-{k // per_shard:05d}.parquet"
        pq.write_table(rows_to_table(part), root / name)
        splits: dict[str, int] = {}
        for r in part:
            splits[r["split"]] = splits.get(r["split"], 0) + 1
        from merl.core.io import sha256_file

        shards.append(ShardInfo(file=name, rows=len(part), sha256=sha256_file(root / name), splits=splits))
    write_manifest(root, Manifest(dataset="synthetic", shards=shards,
                                  counts=Counts(records=len(rows), by_split={"train": n_train, "val": n_val})))
    return root


def test_resample_fit_normalize():
    x = np.random.default_rng(0).normal(size=(3, 12, 5000)).astype(np.float32)
    y = resample(x, 500, 100)
    assert y.shape == (3, 12, 1000)
    assert fit_length(y, 800).shape == (3, 12, 800)
    padded = fit_length(y, 1200)
    assert padded.shape == (3, 12, 1200) and np.all(padded[..., 1000:] == 0)
    mm = normalize(y, "minmax")
    assert mm.dtype == np.float32 and np.allclose(mm.min(-1), 0) and np.allclose(mm.max(-1), 1)
    z = normalize(y, "zscore")
    assert np.allclose(z.mean(-1), 0, atol=1e-5) and np.allclose(z.std(-1), 1, atol=1e-3)
    flat = normalize(np.ones((1, 12, 10)), "minmax")
    assert np.all(flat == 0)  # flat lead: no division by ~0
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize(y, "l2")


def test_prepare_ecg_batch_from_shard_rows(tmp_path):
    root = make_ecg_shards(tmp_path / "shards", n_train=4, n_val=0, per_shard=4)
    table = pq.read_table(root / "shard-00000.parquet")
    batch = table.to_pydict()
    sig = decode_batch(batch)
    assert sig.shape == (4, 12, TARGET_SAMPLES) and sig.dtype == np.float32
    out = prepare_ecg_batch(sig, 500, DataConfig(fs=100, n_samples=1000, normalize="minmax"))
    assert out.shape == (4, 12, 1000) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_preprocess_drops_other_splits_and_empty_reports_and_pads_dynamically(tmp_path):
    from merl.training.data.loader import Collate, pad_id_for, preprocess_batch

    root = make_ecg_shards(tmp_path / "shards", n_train=6, n_val=2, per_shard=8)
    batch = pq.read_table(root / "shard-00000.parquet").to_pydict()
    batch["report"][0] = "   "
    batch = {k: np.asarray(v, dtype=object) for k, v in batch.items()}
    cfg = DataConfig(fs=100, n_samples=1000)
    out = preprocess_batch(batch, split="train", data_cfg=cfg, text_model="default")
    assert len(out["report"]) == 5 and out["ecg"].shape == (5, 12, 1000)
    lengths = [len(x) for x in out["input_ids"]]
    assert len(set(lengths)) > 1  # ragged: no padding in the pipeline
    col = Collate(pad_id_for("default"))(out)
    assert col["input_ids"].shape == (5, max(lengths))  # padded to this batch's longest only
    assert col["attention_mask"].sum(1).tolist() == lengths
