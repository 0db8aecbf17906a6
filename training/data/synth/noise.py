"""Recording nuisances: baseline wander, powerline hum, EMG, atrial baselines, lead faults.

Noise is added to the eight independent leads only; the augmented/limb leads are derived
afterwards, as an electrocardiograph does, so Einthoven/Goldberger stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .waves import FS, direction


@dataclass
class NoiseReport:
    baseline: float = 0.0  # peak wander, mV
    hum_hz: int = 0
    emg: float = 0.0  # EMG sd, mV
    burst: bool = False
    nuisances: list[str] = field(default_factory=list)


def add_noise(sig8: np.ndarray, rng: np.random.Generator, fs: int = FS) -> NoiseReport:
    """Add wander, hum and EMG in place; returns what was added (for metadata columns)."""
    n_leads, n = sig8.shape
    t = np.arange(n) / fs
    rep = NoiseReport()
    # Baseline wander: respiration and electrode drift, 4 slow sources mixed differently
    # into each lead (the sources are smooth: evaluated every 10 ms and interpolated).
    level = rng.uniform(0.0, 1.0) ** 2 * 0.35
    coarse = t[::5]
    f = rng.uniform(0.05, 0.5, (4, 1))
    src = np.sin(2 * np.pi * f * coarse + rng.uniform(0, 2 * np.pi, (4, 1)))
    mix = rng.uniform(-1.0, 1.0, (n_leads, 4)) * (level / 2)
    wander = mix @ src
    sig8 += np.stack([np.interp(t, coarse, w) for w in wander])
    rep.baseline = float(level)
    # Powerline interference in a third of the records, 50 or 60 Hz.
    if rng.random() < 0.33:
        hz = 50 if rng.random() < 0.5 else 60
        amp = rng.uniform(0.005, 0.04) * rng.uniform(0.5, 1.0, (n_leads, 1))
        sig8 += amp * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))
        rep.hum_hz = hz
    # Muscle noise: low-passed white noise, occasionally in a burst.
    sd = rng.uniform(0.002, 0.025) * (1.0 if rng.random() < 0.85 else 3.0)
    w = rng.standard_normal((n_leads, n + 2), dtype=np.float32) * np.float32(sd)  # float32: 2x faster
    emg = (w[:, :-2] + w[:, 1:-1] + w[:, 2:]) / np.sqrt(3)
    if rng.random() < 0.1:
        env = np.zeros(n)
        c, width = rng.integers(0, n), int(rng.integers(fs // 2, 2 * fs))
        env[max(0, c - width // 2): c + width // 2] = 1.0
        emg = emg * (1 + 4 * env)
        rep.burst = True
    sig8 += emg
    rep.emg = float(sd)
    return rep


def atrial_baseline(kind: str, rate: float, n: int, rng: np.random.Generator,
                    fs: int = FS) -> tuple[np.ndarray, np.ndarray]:
    """Continuous atrial activity as a dipole time course: (3,) direction, (n,) waveform.

    AF: fibrillatory waves, 4-9 Hz with drifting frequency and amplitude, largest in V1.
    Flutter: a sawtooth at the flutter rate, negative in the inferior leads.
    """
    t = np.arange(n) / fs
    if kind == "af":
        wave = np.zeros(n)
        for _ in range(3):
            f0 = rng.uniform(4.0, 9.0)
            inst = f0 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
            phase = 2 * np.pi * np.cumsum(inst) / fs + rng.uniform(0, 6.3)
            env = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6.3))
            wave += env * np.sin(phase)
        wave *= rng.uniform(0.02, 0.07)
        return direction(rng.uniform(60, 110), 0.75), wave
    if kind == "flutter":
        # Slow descent, rapid ascent (typical counter-clockwise flutter in II, III, aVF).
        frac = (rate / 60.0 * t + rng.uniform(0, 1)) % 1.0
        saw = np.where(frac < 0.8, 1 - 2 * frac / 0.8, -1 + 2 * (frac - 0.8) / 0.2)
        return direction(90, -0.35), saw * rng.uniform(0.15, 0.3)
    return np.zeros(3), np.zeros(n)
