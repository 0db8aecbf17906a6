"""Cardiac-dipole primitives: Gaussian dipole waves projected on per-person lead vectors.

Each wave (P, Q, R, S, ST, T, delta, pacing spike ...) is a 3-D dipole whose magnitude
follows a Gaussian in time. A lead sees the dot product of the dipole with its lead vector,
so axis, hypertrophy, bundle-branch patterns and infarct localisation come from *where the
dipole points*, and the lead relations of a real heart hold by construction.

Coordinates: x = towards the patient's left, y = inferior (feet), z = anterior (chest).
Only eight leads are independent (I, II, V1..V6); III, aVR, aVL and aVF are derived with
Einthoven/Goldberger identities by :func:`limb_leads` after all noise has been added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FS = 500
INDEPENDENT = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
# Horizontal-plane angles (deg, from +x towards +z) and gains of the precordial electrodes.
_PRECORDIAL_ANGLE = np.array([115.0, 95.0, 75.0, 55.0, 30.0, 5.0])
_PRECORDIAL_GAIN = np.array([1.05, 1.85, 2.5, 2.3, 1.75, 1.4])

# Wave groups: the T/U groups move with the QT interval of each beat.
QRS, ST, T, U, SPIKE = 0, 1, 2, 3, 4


def direction(frontal_deg: float, anterior: float = 0.0) -> np.ndarray:
    """Unit vector from a frontal-plane angle (0 = left, +90 = inferior) and a z component."""
    a = np.deg2rad(frontal_deg)
    c = np.sqrt(max(0.0, 1.0 - anterior * anterior))
    return np.array([c * np.cos(a), c * np.sin(a), anterior])


def lead_matrix(rng: np.random.Generator | None = None) -> np.ndarray:
    """(8, 3) lead vectors for I, II, V1..V6; electrode placement and body habitus jitter."""
    ang = _PRECORDIAL_ANGLE.copy()
    gain = _PRECORDIAL_GAIN.copy()
    tilt = np.full(6, 0.1)
    if rng is not None:
        ang += rng.normal(0.0, 6.0, 6)
        gain *= rng.uniform(0.85, 1.15, 6)
        tilt += rng.normal(0.0, 0.05, 6)
    th = np.deg2rad(ang)
    prec = np.stack([np.cos(th), tilt, np.sin(th)], axis=1) * gain[:, None]
    limb = np.array([[1.0, 0.0, 0.0], [0.5, np.sqrt(3) / 2, 0.0]])
    return np.vstack([limb, prec])


@dataclass
class Waves:
    """A set of Gaussian dipole waves: centre time t (s), width sigma (s), dipole vec (mV)."""

    t: np.ndarray
    sigma: np.ndarray
    vec: np.ndarray  # (K, 3)
    group: np.ndarray  # (K,) int

    @staticmethod
    def empty() -> Waves:
        return Waves(np.zeros(0), np.zeros(0), np.zeros((0, 3)), np.zeros(0, dtype=int))

    @staticmethod
    def of(items: list[tuple[float, float, np.ndarray, int]]) -> Waves:
        """From (t_ms, sigma_ms, vec, group) tuples."""
        if not items:
            return Waves.empty()
        t, s, v, g = zip(*items)
        return Waves(np.array(t) / 1000.0, np.array(s) / 1000.0, np.array(v, dtype=float),
                     np.array(g, dtype=int))

    def __add__(self, other: Waves) -> Waves:
        return Waves(np.concatenate([self.t, other.t]), np.concatenate([self.sigma, other.sigma]),
                     np.concatenate([self.vec, other.vec]), np.concatenate([self.group, other.group]))

    def select(self, mask: np.ndarray) -> Waves:
        return Waves(self.t[mask], self.sigma[mask], self.vec[mask], self.group[mask])

    def scaled(self, groups: tuple[int, ...], amp: float = 1.0, time: float = 1.0) -> Waves:
        """Scale amplitude and/or duration (times and widths) of the waves in ``groups``."""
        m = np.isin(self.group, groups)
        t, s, v = self.t.copy(), self.sigma.copy(), self.vec.copy()
        t[m] *= time
        s[m] *= time
        v[m] *= amp
        return Waves(t, s, v, self.group.copy())


def render(t: np.ndarray, sigma: np.ndarray, amps: np.ndarray, n: int, fs: int = FS) -> np.ndarray:
    """Sum of Gaussians sampled on ``n`` samples: amps (K, L) -> (L, n). Vectorised.

    Each wave is evaluated only on a window of +-4.5 sigma around its centre and
    accumulated with ``np.bincount`` (no per-sample Python loops).
    """
    n_leads = amps.shape[1]
    out = np.zeros((n_leads, n))
    if t.size == 0:
        return out
    centre = t * fs
    sig = np.maximum(sigma * fs, 0.35)
    half = int(np.ceil(4.5 * sig.max()))
    offs = np.arange(-half, half + 1)
    idx = np.rint(centre).astype(np.int64)[:, None] + offs[None, :]
    g = np.exp(-0.5 * ((idx - centre[:, None]) / sig[:, None]) ** 2)
    keep = (idx >= 0) & (idx < n) & (np.abs(offs)[None, :] <= np.ceil(4.5 * sig)[:, None])
    flat_idx = idx[keep]
    for lead in range(n_leads):
        w = (g * amps[:, lead][:, None])[keep]
        out[lead] = np.bincount(flat_idx, weights=w, minlength=n)
    return out


def project(waves: Waves, leads: np.ndarray) -> np.ndarray:
    """(K, 8) lead amplitudes of each wave."""
    return waves.vec @ leads.T


def render_waves(waves: Waves, leads: np.ndarray, n: int, fs: int = FS) -> np.ndarray:
    return render(waves.t, waves.sigma, project(waves, leads), n, fs)


def limb_leads(sig8: np.ndarray) -> np.ndarray:
    """(8, n) I, II, V1..V6 -> (12, n) canonical order with exact Einthoven/Goldberger leads."""
    i, ii = sig8[0], sig8[1]
    iii = ii - i
    avr = -(i + ii) / 2
    avl = i - ii / 2
    avf = ii - i / 2
    return np.vstack([i, ii, iii, avr, avl, avf, sig8[2:]])
