"""Simple signal measurements, the same on real and synthetic ECGs (scipy filters only).

Deliberately independent of the generator (nothing here imports it): the tests and
docs/make_figures.py use these to compare synthetic records with the real ones in
``../shared/real-ecg`` and to check that each recording nuisance really is in the signal.
All functions take a (leads, samples) array in mV and its sampling rate.
"""

from __future__ import annotations

from functools import cache

import numpy as np


@cache
def _sos(kind: str, cutoff: float | tuple[float, float], fs: float, order: int = 2) -> np.ndarray:
    from scipy import signal as ss

    return ss.butter(order, cutoff, btype=kind, fs=fs, output="sos")


def _filt(x: np.ndarray, kind: str, cutoff, fs: float, order: int = 2) -> np.ndarray:
    from scipy import signal as ss

    return ss.sosfiltfilt(_sos(kind, cutoff, float(fs), order), x, axis=-1)


def r_peaks(sig: np.ndarray, fs: float) -> np.ndarray:
    """QRS positions: peaks of the 8-25 Hz energy summed over leads (250 ms refractory)."""
    x = np.nan_to_num(np.asarray(sig, dtype=np.float64))
    bp = _filt(x, "bandpass", (8.0, 25.0), fs)
    e = np.sqrt((bp ** 2).sum(axis=0))
    w = max(1, int(0.05 * fs))
    e = np.convolve(e, np.ones(w) / w, mode="same")
    from scipy.signal import find_peaks

    peaks, _ = find_peaks(e, height=0.35 * np.percentile(e, 99), distance=int(0.27 * fs))
    return peaks


def outside_qrs(n: int, peaks: np.ndarray, fs: float, half_s: float = 0.1, edge_s: float = 0.2) -> np.ndarray:
    """Boolean mask of samples at least ``half_s`` from every QRS and ``edge_s`` from the ends."""
    mask = np.ones(n, bool)
    h = int(half_s * fs)
    for p in peaks:
        mask[max(0, p - h): p + h] = False
    e = int(edge_s * fs)
    mask[:e] = False
    mask[n - e:] = False
    return mask


def measure(sig: np.ndarray, fs: float) -> dict[str, np.ndarray | float]:
    """Per-lead amplitude, noise and baseline of a record.

    ``qrs_ptp``: median over beats of the QRS peak-to-peak (+-60 ms, after a 0.5 Hz
    high-pass), mV. ``r_amp``: median R amplitude above the PR segment, mV.
    ``hf_noise_uv``: RMS above 35 Hz outside the QRS (+-100 ms), uV. ``wander_mv``: 2-98%
    range of the signal below 0.6 Hz, mV. ``hr``: median rate of the detected beats, /min.
    """
    sig = np.nan_to_num(np.asarray(sig, dtype=np.float64))
    n_leads, n = sig.shape
    hp = _filt(sig, "highpass", 0.5, fs)
    peaks = r_peaks(sig, fs)
    inner = peaks[(peaks > int(0.3 * fs)) & (peaks < n - int(0.3 * fs))]
    w = int(0.06 * fs)
    if len(inner):
        seg = np.stack([hp[:, p - w: p + w] for p in inner])  # (beats, leads, window)
        base = np.stack([np.median(hp[:, p - int(0.12 * fs): p - int(0.07 * fs)], axis=1) for p in inner])
        qrs_ptp = np.median(seg.max(axis=2) - seg.min(axis=2), axis=0)
        r_amp = np.median(seg.max(axis=2) - base, axis=0)
    else:
        qrs_ptp = r_amp = np.full(n_leads, np.nan)
    mask = outside_qrs(n, peaks, fs)
    hf = _filt(sig, "highpass", 35.0, fs, 4)
    hf_noise = np.sqrt((hf[:, mask] ** 2).mean(axis=1)) * 1000.0 if mask.any() else np.full(n_leads, np.nan)
    lf = _filt(sig - sig.mean(axis=1, keepdims=True), "lowpass", 0.6, fs)[:, int(0.5 * fs): n - int(0.5 * fs)]
    wander = np.percentile(lf, 98, axis=1) - np.percentile(lf, 2, axis=1)
    hr = 60.0 * fs / float(np.median(np.diff(peaks))) if len(peaks) > 2 else float("nan")
    return {"qrs_ptp": qrs_ptp, "r_amp": r_amp, "hf_noise_uv": hf_noise, "wander_mv": wander, "hr": hr}


def line_amplitude_uv(sig: np.ndarray, fs: float, hz: float) -> np.ndarray:
    """Per-lead amplitude (uV) of a sinusoid at ``hz`` (lock-in: correlation with sin/cos
    over the whole record, after a 20 Hz high-pass so the ECG itself contributes little)."""
    x = _filt(np.asarray(sig, dtype=np.float64), "highpass", 20.0, fs)
    t = np.arange(x.shape[1]) / fs
    z = np.exp(-2j * np.pi * hz * t)
    return 2.0 * np.abs(x @ z) / x.shape[1] * 1000.0


def band_rms_uv(sig: np.ndarray, fs: float, lo: float, hi: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-lead RMS (uV) in the ``lo``-``hi`` Hz band, over ``mask`` samples if given."""
    x = _filt(np.asarray(sig, dtype=np.float64), "bandpass", (lo, min(hi, 0.45 * fs)), fs, 3)
    if mask is not None:
        x = x[:, mask]
    return np.sqrt((x ** 2).mean(axis=1)) * 1000.0


def lsb_uv(lead: np.ndarray) -> float:
    """ADC step of a lead (uV): the smallest difference between its distinct values."""
    d = np.diff(np.unique(np.round(np.asarray(lead, dtype=np.float64) * 1e6) / 1e3))
    return float(d[d > 0].min()) if (d > 0).any() else float("nan")


def burst_ratio(x: np.ndarray, fs: float, win_s: float = 0.25) -> float:
    """Largest short-window RMS over the median one, of a (noise) trace: bursts stand out."""
    w = max(1, int(win_s * fs))
    k = len(x) // w
    r = np.sqrt((np.asarray(x[: k * w], dtype=np.float64).reshape(k, w) ** 2).mean(axis=1))
    return float(r.max() / max(np.median(r), 1e-12))
