"""Canonicalisation: any RawSignal -> 12 leads by name, finite, 500 Hz, 5000 samples.

Policies (all in :class:`CanonConfig`):

* Leads are picked **by the names in the header**, through :func:`lead_index` (case,
  spaces and the aliases of :data:`LEAD_ALIASES`: ``MLII`` -> II, ``AVL`` -> aVL ...), in the
  order of :data:`merl.training.data.schema.LEADS`; extra leads are dropped. The reference
  swapped rows 4 and 5 of every downstream record blindly instead (MIMIC stores aVF before aVL).
* Leads that are absent, all-NaN or flat are **masked**: zeros in the signal and ``False`` in
  the record's lead mask (:func:`canonicalize_masked`), so a 2-lead Holter strip or a
  12-lead record with one dead electrode is kept. Only a record with fewer than
  ``min_leads`` usable leads is quarantined.
* Non-finite samples are replaced, per lead along time, by the mean of the finite samples
  within ``nan_window`` on each side (linear interpolation where the gap is wider). The
  reference's loop indexed the wrong axis after a transpose.
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

from merl.core.config import ConfigError, StrictModel
from merl.training.data.readers.base import RawSignal, RecordError
from merl.training.data.schema import LEADS, TARGET_FS, TARGET_SAMPLES

_LEAD_KEYS = [lead.lower() for lead in LEADS]

# Other names files give the standard leads (keys: lower case, no spaces/dashes/underscores).
# MIT-BIH/Holter "modified limb leads" (MLII) stand for the limb lead; "D1".."D3" are the
# Einthoven leads in European exports. Inverted leads (-aVR, Cabrera) are *not* aliases.
LEAD_ALIASES: dict[str, str] = {
    "mli": "I", "ml1": "I", "di": "I", "d1": "I", "leadi": "I",
    "mlii": "II", "ml2": "II", "dii": "II", "d2": "II", "leadii": "II",
    "mliii": "III", "ml3": "III", "diii": "III", "d3": "III", "leadiii": "III",
    **{f"mv{k}": f"V{k}" for k in range(1, 7)},  # MIT-BIH "modified" chest leads
    **{f"lead{v.lower()}": v for v in LEADS[3:]},
}
_SUFFIXES = ("chest", "lead")  # "V5 chest", "V1 lead"


def lead_index(name: str) -> int | None:
    """Row of ``name`` in :data:`LEADS` (``aVL``, ``AVL``, ``avl``, ``MLII`` ...), or None."""
    text = str(name).strip().lower()
    if text.startswith("-"):  # an inverted lead (-aVR) is not the lead
        return None
    key = "".join(ch for ch in text if ch not in " -_.")
    for suffix in _SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
    if key in _LEAD_KEYS:
        return _LEAD_KEYS.index(key)
    alias = LEAD_ALIASES.get(key)
    return LEADS.index(alias) if alias else None


def parse_leads(text: str | list[str]) -> list[str]:
    """``"I,II,V1"`` (or a list) -> canonical names; an unknown name is a one-line error."""
    items = [str(x).strip() for x in (text.split(",") if isinstance(text, str) else text) if str(x).strip()]
    bad = [x for x in items if lead_index(x) is None]
    if bad or not items:
        raise ConfigError(f"unknown lead name(s) {', '.join(bad) or 'none given'}; use {', '.join(LEADS)} "
                          "(aliases such as MLII: docs/data.md)")
    return [LEADS[lead_index(x)] for x in items]


class CanonConfig(StrictModel):
    """How records become canonical 12 x 5000 @ 500 Hz arrays."""

    crop: Literal["first", "centre"] = Field("first", description="which 10 s window of a longer record to keep")
    seconds: float = Field(
        10.0, gt=0, le=TARGET_SAMPLES / TARGET_FS, description="seconds kept before zero-padding to 10 s (CPSC reference: 5)"
    )
    min_seconds: float = Field(0.0, ge=0, description="records shorter than this are quarantined")
    zero_fill_missing_leads: bool = Field(
        True, description="absent standard leads become zeros, masked in lead_mask; false: quarantine the record"
    )
    min_leads: int = Field(1, ge=1, le=12, description="records with fewer usable (present, finite, not flat) leads "
                                                        "are quarantined")
    nan_window: int = Field(5, ge=1, le=500, description="half-width (samples) of the neighbourhood mean that repairs NaN/inf")
    reject_flat_leads: bool = Field(
        True, description="mask a recorded lead that is constant (electrode off): zeros, lead_mask false; "
                          "false keeps it as recorded (the reference)"
    )


# Named lead sets (reduced-lead evaluation, lead dropout): defined here only.
LEAD_SETS: dict[str, tuple[str, ...]] = {
    "12": LEADS,
    "limb6": LEADS[:6],
    "chest6": LEADS[6:],
}


def resolve_lead_set(spec: str) -> tuple[str, tuple[str, ...]]:
    """``"limb6"`` / ``"12"`` / ``"I+II"`` / ``"II"`` -> (label, canonical lead names)."""
    spec = str(spec).strip()
    if spec in LEAD_SETS:
        return spec, LEAD_SETS[spec]
    names = parse_leads(spec.replace("+", ","))
    return "+".join(names), tuple(names)


def leads_mask(names) -> np.ndarray:
    """Canonical lead names -> (12,) bool mask."""
    mask = np.zeros(len(LEADS), dtype=bool)
    mask[[LEADS.index(n) for n in names]] = True
    return mask


def describe_leads(mask) -> str:
    """A short label of a lead mask for tables: ``12``, ``II,V5``, ``12 - V2,V4,V6``, ``none``."""
    present = [lead for lead, m in zip(LEADS, mask) if m]
    absent = [lead for lead, m in zip(LEADS, mask) if not m]
    if not absent:
        return "12"
    if not present:
        return "none"
    return ",".join(present) if len(present) <= 6 else "12 - " + ",".join(absent)


def names_found(names: list[str]) -> str:
    """How a record's own lead names read in an error: 'MLII, V5' or 'none'."""
    return ", ".join(map(str, names)) or "none"


def select_leads(sig: np.ndarray, names: list[str], zero_fill: bool = True) -> tuple[np.ndarray, list[int]]:
    """(n, N) with header lead names -> ((12, N) in canonical order, rows actually present).

    The first file row of each standard lead wins; names no alias matches are dropped.
    """
    pos: dict[int, int] = {}
    for i, n in enumerate(names):
        k = lead_index(n)
        if k is not None:
            pos.setdefault(k, i)
    missing = [LEADS[k] for k in range(len(LEADS)) if k not in pos]
    if not pos:
        raise RecordError(f"no recognisable lead (has {names_found(names)})")
    if missing and not zero_fill:
        raise RecordError(f"missing leads: {', '.join(missing)} (has {names_found(names)})")
    out = np.zeros((len(LEADS), sig.shape[1]), dtype=np.float64)
    present = sorted(pos)
    for k in present:
        out[k] = sig[pos[k]]
    return out, present


def flat_rows(sig: np.ndarray, rows: list[int]) -> list[int]:
    """The rows among ``rows`` that never change: a disconnected electrode, not an ECG."""
    sub = sig[rows]
    return [rows[i] for i in np.flatnonzero(sub.max(axis=1) == sub.min(axis=1))]


def check_flat(sig: np.ndarray, rows: list[int]) -> None:
    """RecordError naming the first flat lead among ``rows`` (for callers that refuse them)."""
    flat = flat_rows(sig, rows)
    if flat:
        raise RecordError(f"flat lead: {LEADS[flat[0]]}")


def dead_rows(sig: np.ndarray) -> list[int]:
    """Rows without a single finite sample (an all-NaN lead)."""
    return np.flatnonzero(~np.isfinite(sig).any(axis=1)).tolist()


def repair_nonfinite(sig: np.ndarray, window: int = 5, leads: tuple[str, ...] = LEADS) -> np.ndarray:
    """Replace NaN/inf per lead, along time, by the local mean of finite neighbours
    (an all-NaN lead is an error here: callers mask it first, :func:`dead_rows`)."""
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


def canonicalize_masked(raw: RawSignal, cfg: CanonConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """RawSignal -> ((12, 5000) float32 mV at 500 Hz, (12,) bool lead mask), or RecordError.

    Masked leads (absent, all-NaN in the kept window, flat with ``reject_flat_leads``) are
    zeros; a record with fewer than ``min_leads`` usable leads is an error naming its leads.
    """
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
    mask = np.zeros(len(LEADS), dtype=bool)
    mask[present] = True
    dead = dead_rows(sig)
    mask[dead] = False
    sig[dead] = 0.0
    sig = repair_nonfinite(sig, cfg.nan_window)
    if cfg.reject_flat_leads:  # after repair: every value finite
        flat = flat_rows(sig, [k for k in present if mask[k]])
        mask[flat] = False
        sig[flat] = 0.0
    if mask.sum() < cfg.min_leads:
        raise RecordError(f"no usable lead: {int(mask.sum())} of the {cfg.min_leads} needed "
                          f"(has {names_found(raw.leads)}; absent, flat or all-NaN leads are unusable)")
    sig = resample(sig, raw.fs)
    sig = fix_length(sig[:, : int(round(cfg.seconds * TARGET_FS))])
    sig[~mask] = 0.0  # the resampling filter must not leak into a masked row (it cannot: rows are independent)
    return sig.astype(np.float32), mask


def canonicalize(raw: RawSignal, cfg: CanonConfig | None = None) -> np.ndarray:
    """The signal of :func:`canonicalize_masked` (masked leads are zeros)."""
    return canonicalize_masked(raw, cfg)[0]
