"""The ECG-report shard format: one contract between ingestion, training and evaluation.

A shard is a Parquet file of canonical records. Signals are stored compactly as int16
counts (C-order, leads x samples, little-endian bytes) with a per-record scale in mV per
count (1 uV by default; larger when the record would overflow). Normalisation is *not*
baked in: loaders apply it, so one set of shards serves every normalisation policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = 1  # lead_mask (added later) is optional: shards without it read as all leads present
LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
TARGET_FS = 500
TARGET_SAMPLES = 5000
DEFAULT_SCALE_MV = 0.001  # 1 uV per count
SPLITS = ("train", "val", "test")

SHARD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),          # "<source>:<record id>", unique
        pa.field("patient_id", pa.string()),
        pa.field("source", pa.string(), nullable=False),      # mimic | ptbxl | cpsc2018 | csn | wfdb
        pa.field("report", pa.string()),                      # cleaned free text ("" if none)
        pa.field("labels", pa.list_(pa.string())),            # ontology-native codes, exact
        pa.field("label_weights", pa.list_(pa.float32())),    # PTB-XL likelihoods; 100 otherwise
        pa.field("snomed", pa.list_(pa.string())),            # SNOMED CT ids where known
        pa.field("age", pa.float32()),                        # null if unknown
        pa.field("sex", pa.string()),                         # "M" | "F" | ""
        pa.field("split", pa.string(), nullable=False),       # train | val | test
        pa.field("fs", pa.int32(), nullable=False),
        pa.field("n_samples", pa.int32(), nullable=False),
        pa.field("signal", pa.binary(), nullable=False),      # int16 LE, 12 x n_samples
        pa.field("signal_scale", pa.float32(), nullable=False),  # mV per count
        pa.field("lead_mask", pa.list_(pa.bool_())),          # 12 x usable, canonical order; null = all
    ],
    metadata={b"merl_schema_version": str(SCHEMA_VERSION).encode()},
)


def encode_signal(sig_mv: np.ndarray) -> tuple[bytes, float]:
    """(12, N) float mV -> (int16 bytes, scale). Scale grows only if 1 uV would overflow."""
    sig = np.asarray(sig_mv, dtype=np.float32)
    peak = float(np.max(np.abs(sig))) if sig.size else 0.0
    scale = DEFAULT_SCALE_MV if peak <= 32767 * DEFAULT_SCALE_MV else peak / 32767.0
    q = np.clip(np.rint(sig / scale), -32768, 32767).astype("<i2")
    return q.tobytes(order="C"), float(scale)


# The contract before lead masks: such shards are still read (every lead present).
SHARD_SCHEMA_NO_MASK = pa.schema([f for f in SHARD_SCHEMA if f.name != "lead_mask"], metadata=SHARD_SCHEMA.metadata)


def decode_lead_masks(values, n: int) -> np.ndarray:
    """A ``lead_mask`` column (list of 12 bools per row, None = unknown; or None for a shard
    without the column) -> (n, 12) bool, unknown rows all present."""
    out = np.ones((n, len(LEADS)), dtype=bool)
    if values is None:
        return out
    for i, v in enumerate(values):
        if v is not None and len(v) == len(LEADS):
            out[i] = np.asarray(v, dtype=bool)
    return out


def decode_signal(buf: bytes, scale: float, n_leads: int = 12) -> np.ndarray:
    """Inverse of :func:`encode_signal`: (12, N) float32 mV."""
    arr = np.frombuffer(buf, dtype="<i2").reshape(n_leads, -1)
    return arr.astype(np.float32) * np.float32(scale)


@dataclass
class CanonicalRecord:
    """One record after canonicalisation (12 leads by name, 500 Hz, fixed length, finite)."""

    id: str
    source: str
    signal: np.ndarray  # (12, TARGET_SAMPLES) float32 mV
    report: str = ""
    labels: list[str] = field(default_factory=list)
    label_weights: list[float] = field(default_factory=list)
    snomed: list[str] = field(default_factory=list)
    patient_id: str = ""
    age: float | None = None
    sex: str = ""
    split: str = "train"
    lead_mask: np.ndarray | None = None  # (12,) bool, canonical order; None = every lead present

    def to_row(self) -> dict:
        buf, scale = encode_signal(self.signal)
        weights = self.label_weights or [100.0] * len(self.labels)
        return {
            "id": self.id,
            "patient_id": self.patient_id,
            "source": self.source,
            "report": self.report,
            "labels": list(self.labels),
            "label_weights": [float(w) for w in weights],
            "snomed": list(self.snomed),
            "age": None if self.age is None or not np.isfinite(self.age) else float(self.age),
            "sex": self.sex,
            "split": self.split,
            "fs": TARGET_FS,
            "n_samples": int(self.signal.shape[1]),
            "signal": buf,
            "signal_scale": scale,
            "lead_mask": [True] * len(LEADS) if self.lead_mask is None else [bool(b) for b in self.lead_mask],
        }


def rows_to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)
