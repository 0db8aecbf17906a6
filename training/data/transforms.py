"""Signal transforms shared by training and evaluation (pure numpy functions).

Evaluation imports :func:`prepare_ecg_batch`, so a model always sees ECGs prepared exactly
as in pretraining: resample -> crop/pad -> per-record normalisation (``data.normalize``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from merl.training.data.schema import decode_lead_masks, decode_signal

if TYPE_CHECKING:
    from merl.training.data.config import DataConfig

_EPS = 1e-6


def resample(x: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    """Resample along the last axis with a polyphase filter (exact for integer ratios)."""
    if int(fs_in) == int(fs_out):
        return x
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(fs_in), int(fs_out))
    return resample_poly(x, int(fs_out) // g, int(fs_in) // g, axis=-1).astype(x.dtype, copy=False)


def fit_length(x: np.ndarray, n_samples: int) -> np.ndarray:
    """Crop (from the start) or zero-pad (at the end) the last axis to ``n_samples``."""
    length = x.shape[-1]
    if length == n_samples:
        return x
    if length > n_samples:
        return x[..., :n_samples]
    pad = [(0, 0)] * (x.ndim - 1) + [(0, n_samples - length)]
    return np.pad(x, pad)


def normalize(x: np.ndarray, method: str = "minmax") -> np.ndarray:
    """Per-record scaling to float32 over the last axis (time), or the last two (leads x time).

    ``minmax`` -> [0, 1] per lead; ``zscore`` per lead; ``minmax_record`` -> [0, 1] with one
    min and max over all leads of the record, as the reference does (keeps the leads' relative
    amplitudes, which per-lead scaling discards). Flat leads / records (zero range or std)
    map to 0 rather than dividing by ~0.
    """
    x = np.asarray(x, dtype=np.float32)
    if method in ("minmax", "minmax_record"):
        axes = -1 if method == "minmax" else (-2, -1)
        lo = x.min(axis=axes, keepdims=True)
        rng = x.max(axis=axes, keepdims=True) - lo
        out = np.where(rng > _EPS, (x - lo) / np.maximum(rng, _EPS), 0.0)
    elif method == "zscore":
        mu = x.mean(axis=-1, keepdims=True)
        sd = x.std(axis=-1, keepdims=True)
        out = np.where(sd > _EPS, (x - mu) / np.maximum(sd, _EPS), 0.0)
    else:
        raise ValueError(f"unknown normalisation {method!r}; expected 'minmax', 'minmax_record' or 'zscore'")
    return out.astype(np.float32, copy=False)


# Canonical (schema.LEADS) rows -> MIMIC-IV-ECG's row order (aVF before aVL).
MIMIC_ROWS = (0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11)


def prepare_ecg_batch(signals_mv: np.ndarray, fs_in: int, data_cfg: DataConfig,
                      lead_mask: np.ndarray | None = None) -> np.ndarray:
    """[B, 12, L] mV at ``fs_in``, leads in the canonical order -> float32
    [B, 12, data_cfg.n_samples] in ``data_cfg.lead_order``, as training sees it.

    ``lead_mask`` [B, 12] (canonical order): masked leads are zeroed before normalisation
    (so their samples cannot shift a record-wide min/max) and after it (a zero lead is
    not 0 under ``minmax_record``); the encoder then sees exactly zeros there."""
    x = np.asarray(signals_mv, dtype=np.float32)
    keep = None if lead_mask is None else np.asarray(lead_mask, dtype=bool)[..., None]
    if keep is not None:
        x = np.where(keep, x, np.float32(0))
    x = resample(x, fs_in, data_cfg.fs)
    x = fit_length(x, data_cfg.n_samples)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    x = normalize(x, data_cfg.normalize)
    if keep is not None:
        x = np.where(keep, x, np.float32(0)).astype(np.float32, copy=False)
    return np.ascontiguousarray(x[..., MIMIC_ROWS, :]) if data_cfg.lead_order == "mimic" else x


def model_lead_mask(lead_mask: np.ndarray | None, n: int, data_cfg: DataConfig) -> np.ndarray:
    """[B, 12] bool in canonical order (None = all present) -> [B, 12] bool in the row order
    the model is fed (``data_cfg.lead_order``), as :func:`prepare_ecg_batch` orders the signal."""
    mask = np.ones((n, 12), dtype=bool) if lead_mask is None else np.asarray(lead_mask, dtype=bool).reshape(n, 12)
    return np.ascontiguousarray(mask[:, MIMIC_ROWS]) if data_cfg.lead_order == "mimic" else mask


_FAMILY_LEADS = {"limb": np.arange(6), "chest": np.arange(6, 12)}


def drop_leads(lead_mask: np.ndarray, rng: np.random.Generator, p: float, families: Mapping[str, float],
               keep: float = 0.5) -> np.ndarray:
    """Lead dropout (``data.lead_dropout``): each record, with probability ``p``, keeps only the
    leads of one family drawn by weight (limb, chest, one single lead, or each lead with
    probability ``keep``), intersected with the leads it has. A draw that would leave no
    lead keeps the record whole. Returns a new [B, 12] bool mask."""
    out = np.asarray(lead_mask, dtype=bool).copy()
    names = [f for f, w in families.items() if w > 0]
    if p <= 0 or not names:
        return out
    weights = np.array([families[f] for f in names], dtype=np.float64)
    for i in np.flatnonzero(rng.random(len(out)) < p):
        family = names[rng.choice(len(names), p=weights / weights.sum())]
        subset = np.zeros(12, dtype=bool)
        if family in _FAMILY_LEADS:
            subset[_FAMILY_LEADS[family]] = True
        elif family == "single":
            present = np.flatnonzero(out[i])
            if present.size:
                subset[rng.choice(present)] = True
        else:
            subset = rng.random(12) < keep
        reduced = out[i] & subset
        if reduced.any():
            out[i] = reduced
    return out


def _column(batch: Mapping[str, Any], name: str) -> list:
    col = batch[name]
    if hasattr(col, "to_pylist"):
        return col.to_pylist()
    return list(col)


def decode_batch(batch: Mapping[str, Any]) -> np.ndarray:
    """Shard rows (``signal`` + ``signal_scale`` columns) -> [B, 12, L] float32 mV.

    All rows of a batch must have one length; shards are canonical (fixed length per fs).
    """
    bufs = _column(batch, "signal")
    scales = _column(batch, "signal_scale")
    if not bufs:
        return np.zeros((0, 12, 0), dtype=np.float32)
    sigs = [decode_signal(bytes(b), float(s)) for b, s in zip(bufs, scales)]
    lengths = {s.shape[1] for s in sigs}
    if len(lengths) != 1:
        raise ValueError(f"records of one batch have different lengths {sorted(lengths)}; shards must be canonical")
    return np.stack(sigs)


def decode_masks(batch: Mapping[str, Any]) -> np.ndarray:
    """Shard rows -> [B, 12] bool lead masks (shards written before masks: all present)."""
    n = len(_column(batch, "signal_scale"))
    return decode_lead_masks(_column(batch, "lead_mask") if "lead_mask" in batch else None, n)


def batch_fs(batch: Mapping[str, Any]) -> int:
    """The single sampling rate of a shard batch (canonical shards: one rate)."""
    rates = {int(v) for v in _column(batch, "fs")}
    if len(rates) != 1:
        raise ValueError(f"records of one batch have different sampling rates {sorted(rates)}")
    return rates.pop()
