"""Canonicalisation: any RawSignal -> 12 leads by name, finite, 500 Hz, 5000 samples.

Policies (all in :class:`CanonConfig`):

* Leads are picked **by the names in the header** (case-insensitive), in the order of
  :data:`merl.training.data.schema.LEADS`; extra leads are dropped. The reference swapped rows
  4 and 5 of every downstream record blindly instead (MIMIC stores aVF before aVL).
* Non-finite samples are replaced, per lead along time, by the mean of the finite samples
  within ``nan_window`` on each side (linear interpolation where the gap is wider). The
  reference's loop indexed the wrong axis after a transpose. An all-NaN lead is unusable.
* Resampling uses ``scipy.signal.resample_poly`` (polyphase FIR with an anti-aliasing
  low-pass), after cropping the source to the kept window.
* Crop: ``first`` keeps the first ``seconds`` (the reference's choice), ``centre`` the middle;
  shorter records are zero-padded at the end to 10 s.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Literal

import numpy as np
from pydantic import Field

from merl.core.config import StrictModel
from merl.training.data.readers.base import RawSignal, RecordError
from merl.training.data.schema import LEADS, TARGET_FS, TARGET_SAMPLES

_LEAD_KEYS = [lead.lower() for lead in LEADS]


class CanonConfig(StrictModel):
    """How records become canonical 12 x 5000 @ 500 Hz arrays."""

    crop: Literal["first", "centre"] = Field("first", description="which 10 s window of a longer record to keep")
    seconds: float = Field(
        10.0, gt=0, le=TARGET_SAMPLES / TARGET_FS, description="seconds kept before zero-padding to 10 s (CPSC reference: 5)"
    )
    min_seconds: float = Field(0.0, ge=0, description="records shorter than this are quarantined")
    zero_fill_missing_leads: bool = Field(False, description="zero-fill absent standard leads instead of quarantining the record")
    nan_window: int = Field(5, ge=1, le=500, description="half-width (samples) of the neighbourhood mean that repairs NaN/inf")
    reject_flat_leads: bool = Field(True, description="quarantine records with a recorded lead that is constant (electrode off)")


def select_leads(sig: np.ndarray, names: list[str], zero_fill: bool = False) -> tuple[np.ndarray, list[int]]:
    """(n, N) with header lead names -> ((12, N) in canonical order, rows actually present)."""
    pos: dict[str, int] = {}
    for i, n in enumerate(names):
        pos.setdefault(str(n).strip().lower(), i)
    missing = [LEADS[k] for k, key in enumerate(_LEAD_KEYS) if key not in pos]
    if missing and (not zero_fill or len(missing) == len(LEADS)):
        raise RecordError(f"missing leads: {', '.join(missing)} (has {', '.join(map(str, names)) or 'none'})")
    out = np.zeros((len(LEADS), sig.shape[1]), dtype=np.float64)
    present = [k for k, key in enumerate(_LEAD_KEYS) if key in pos]
    for k in present:
        out[k] = sig[pos[_LEAD_KEYS[k]]]
    return out, present


def check_flat(sig: np.ndarray, rows: list[int]) -> None:
    """A recorded lead that never changes is a disconnected electrode, not an ECG."""
    sub = sig[rows]
    flat = np.flatnonzero(sub.max(axis=1) == sub.min(axis=1))
    if flat.size:
        raise RecordError(f"flat lead: {LEADS[rows[flat[0]]]}")


def repair_nonfinite(sig: np.ndarray, window: int = 5, leads: tuple[str, ...] = LEADS) -> np.ndarray:
    """Replace NaN/inf per lead, along time, by the local mean of finite neighbours."""
    bad = ~np.isfinite(sig)
    if not bad.any():
        return sig
    out = sig.copy()
    kernel = np.ones(2 * window + 1)
    for i in np.flatnonzero(bad.any(axis=1)):
        b = bad[i]
        if b.all():
            raise RecordError(f"all-NaN lead: {leads[i]}")
        good = ~b
        sums = np.convolve(np.where(good, sig[i], 0.0), kernel, mode="same")
        counts = np.convolve(good.astype(np.float64), kernel, mode="same")
        near = b & (counts > 0)
        out[i, near] = sums[near] / counts[near]
        far = b & (counts == 0)
        if far.any():
            gi = np.flatnonzero(good)
            out[i, far] = np.interp(np.flatnonzero(far), gi, sig[i, gi])
    return out


def crop(sig: np.ndarray, n_keep: int, policy: str) -> np.ndarray:
    n = sig.shape[1]
    if n <= n_keep:
        return sig
    start = 0 if policy == "first" else (n - n_keep) // 2
    return sig[:, start : start + n_keep]


def resample(sig: np.ndarray, fs: float, target: int = TARGET_FS) -> np.ndarray:
    """Anti-aliased rational resampling (polyphase FIR) along time."""
    if abs(fs - target) < 1e-9:
        return sig
    from scipy.signal import resample_poly

    ratio = Fraction(int(round(target * 1000)), int(round(fs * 1000))).limit_denominator(10000)
    return resample_poly(sig, ratio.numerator, ratio.denominator, axis=1)


def fix_length(sig: np.ndarray, n: int = TARGET_SAMPLES) -> np.ndarray:
    if sig.shape[1] >= n:
        return sig[:, :n]
    return np.pad(sig, ((0, 0), (0, n - sig.shape[1])))


def canonicalize(raw: RawSignal, cfg: CanonConfig | None = None) -> np.ndarray:
    """RawSignal -> (12, 5000) float32 mV at 500 Hz, or RecordError with the reason."""
    cfg = cfg or CanonConfig()
    if raw.signal.ndim != 2 or raw.signal.shape[1] == 0:
        raise RecordError("empty signal")
    if not raw.fs or raw.fs <= 0:
        raise RecordError(f"invalid sampling frequency {raw.fs}")
    duration = raw.signal.shape[1] / raw.fs
    if duration < cfg.min_seconds:
        raise RecordError(f"record shorter than {cfg.min_seconds:g} s ({duration:.2f} s)")
    sig, present = select_leads(raw.signal, raw.leads, cfg.zero_fill_missing_leads)
    sig = crop(sig, int(round(cfg.seconds * raw.fs)), cfg.crop)
    sig = repair_nonfinite(sig, cfg.nan_window)
    if cfg.reject_flat_leads:
        check_flat(sig, present)  # after repair: every value finite
    sig = resample(sig, raw.fs)
    sig = fix_length(sig[:, : int(round(cfg.seconds * TARGET_FS))])
    return sig.astype(np.float32)
