"""Continuous atrial activity (AF f-waves, flutter sawtooth) added to the heart's signal.

The recording nuisances (wander, mains, EMG, motion, filters, ADC) are in :mod:`.acquisition`.
"""

from __future__ import annotations

import numpy as np

from .waves import FS, direction


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
