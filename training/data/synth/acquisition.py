"""The recording chain: what a real electrocardiograph adds to the heart's signal.

Real 12-lead ECGs differ in far more than cardiac findings: baseline wander from breathing
and electrode drift, 50/60 Hz mains, muscle (EMG) noise, electrode motion artefacts, the
acquisition band (0.05-150 Hz diagnostic vs 0.5-40 Hz monitoring), a mains notch or not,
and ADC resolution. A model pretrained on one fixed chain learns the chain; this module
draws a different chain per record so that nothing but the heart carries the labels.

Nuisances are made at the nine electrodes (RA, LA, LL, V1..V6) and converted to the eight
independent leads (I = LA - RA, II = LL - RA, Vk = Ck - WCT), so a noisy arm electrode shows
in I, II and (a third of it) in every chest lead, as on a real cart; III, aVR, aVL and aVF are
derived afterwards. Ranges are set so that the independent measurements in
:mod:`.measure` on synthetic records cover those on the real records in ``../shared``
(docs/synthetic.md lists them).

Every random number comes from per-component generators seeded from one integer of the
record's stream, so changing ``realism`` changes the chain but never the heart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

# (8, 9) electrodes RA, LA, LL, C1..C6 -> leads I, II, V1..V6 (Wilson central terminal).
TO_LEADS = np.zeros((8, 9), dtype=np.float32)
TO_LEADS[0, :2] = (-1, 1)
TO_LEADS[1, [0, 2]] = (-1, 1)
TO_LEADS[2:, :3] = -1.0 / 3.0
TO_LEADS[2:, 3:] = np.eye(6)


def to_leads(e9: np.ndarray) -> np.ndarray:
    """``TO_LEADS @ e9`` elementwise (a BLAS call on these shapes may start threads)."""
    wct = (e9[0] + e9[1] + e9[2]) / 3
    return np.vstack([e9[1] - e9[0], e9[2] - e9[0], e9[3:] - wct])


# Chance per record of each occasional nuisance at realism=1 (scaled by ``realism``).
RATES = {
    "mains": 0.4,  # visible hum (5-300 uV); otherwise a residual < 3 uV
    "emg_burst": 0.08,  # 0.3-2 s of strong muscle noise (movement, shivering)
    "motion": 0.1,  # 1-3 electrode motion artefacts (steps with recovery, bumps, pops)
    "monitoring": 0.15,  # 0.5-40 Hz monitoring band instead of a diagnostic one
    "coarse_adc": 0.5,  # 2.5-5 uV LSB instead of 1 uV
}
P_NOTCH = 0.35  # mains notch on (not a nuisance: not scaled by realism)
DIAGNOSTIC_LOWPASS = ((150.0, 0.7), (100.0, 0.3))
MONITORING = (0.5, 40.0)
DIAGNOSTIC_HIGHPASS = 0.05
COARSE_LSB_UV = (2.5, 4.88, 5.0)
ADC_BITS = 16


@dataclass
class Acquisition:
    """What the chain did to one record (metadata columns, report remarks, tests)."""

    fs: int
    highpass_hz: float
    lowpass_hz: float
    notch_hz: int  # 0: no notch
    lsb_uv: float
    wander_mv: float  # median over leads of the wander's peak-to-peak
    mains_hz: int
    mains_uv: float  # hum amplitude in the most affected lead, before any notch
    emg_uv: float  # muscle-noise RMS in the noisiest lead over 0-250 Hz, before any band-limit
    emg_bursts: int
    motion: int  # number of electrode motion artefacts
    motion_mv: float  # largest artefact amplitude at its electrode

    @property
    def monitoring(self) -> bool:
        return self.highpass_hz >= 0.3

    def to_dict(self) -> dict:
        return asdict(self)


def _wander(n: int, fs: int, level: float, rng: np.random.Generator) -> np.ndarray:
    """(8, n) baseline wander: breathing (one source, electrode-dependent coupling, chest
    electrodes moving most) plus slow independent electrode drift; peak-to-peak ``level``."""
    step = max(1, fs // 25)  # smooth sources: evaluated at 25 Hz, interpolated
    tc = np.arange(0, n + step, step) / fs
    f_resp = rng.uniform(0.12, 0.45)
    resp = np.sin(2 * np.pi * f_resp * tc + rng.uniform(0, 2 * np.pi)) * (
        1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.02, 0.08) * tc + rng.uniform(0, 2 * np.pi)))
    couple = rng.uniform(-1, 1, 9) * np.r_[np.full(3, 0.5), np.full(6, 1.0)]
    f = rng.uniform(0.02, 0.35, (9, 2, 1))
    drift = (rng.uniform(0, 1, (9, 2, 1)) * np.sin(2 * np.pi * f * tc + rng.uniform(0, 2 * np.pi, (9, 2, 1)))).sum(1)
    w = to_leads(np.outer(couple, resp) * rng.uniform(0.3, 1.5) + drift)
    w *= level / max(float(np.median(np.ptp(w, axis=1))), 1e-9)
    t = np.arange(n) / fs
    return np.stack([np.interp(t, tc, row) for row in w])


def _mains(n: int, fs: int, hz: int, amp_mv: float, rng: np.random.Generator) -> np.ndarray:
    """(8, n) hum: common-mode mains turned differential by unequal electrode impedances
    (a per-electrode gain and phase), with a third harmonic in some records."""
    t = np.arange(n) / fs
    z = rng.uniform(-1, 1, 9) * np.exp(1j * rng.normal(0, 0.3, 9))  # complex coupling per electrode
    lead = TO_LEADS.astype(complex) @ z
    lead *= amp_mv / max(float(np.abs(lead).max()), 1e-9)
    ph = rng.uniform(0, 2 * np.pi)
    out = np.outer(lead.real, np.sin(2 * np.pi * hz * t + ph)) + np.outer(lead.imag, np.cos(2 * np.pi * hz * t + ph))
    if rng.random() < 0.3 and 3 * hz < 0.45 * fs:
        out += rng.uniform(0.1, 0.3) * np.outer(lead.real, np.sin(2 * np.pi * 3 * hz * t + 3 * ph))
    return out


def _emg(n: int, fs: int, level_mv: float, rng: np.random.Generator, bursts: int, band_hz: float) -> np.ndarray:
    """(9, n) electrode muscle noise: broadband with the same density per Hz at any sampling
    rate, arm and leg electrodes noisier than chest ones, ``bursts`` segments 3-8x stronger.
    ``level_mv``: RMS in the noisiest lead over 0-250 Hz. ``band_hz`` > 0 band-limits it with
    a moving average of noise-equivalent bandwidth ~``band_hz`` (the diagnostic low-pass: the
    heart's waves have no content there, so only this broadband noise needs it)."""
    k = max(1, int(round(fs / (2.0 * band_hz)))) if band_hz else 1
    w = rng.random((9, n + k - 1), dtype=np.float32)  # uniform, unit variance after centring
    if k > 1:
        c = np.cumsum(w, axis=1, dtype=np.float32)
        w = np.concatenate([c[:, k - 1:k], c[:, k:] - c[:, :-k]], axis=1) / np.float32(k)
    weight = np.r_[rng.uniform(0.5, 1.5, 3), rng.uniform(0.1, 0.6, 6)]
    lead_rms = np.sqrt(((TO_LEADS.astype(np.float64) ** 2) @ weight ** 2).max())
    # uniform(0,1) has sd 1/sqrt(12); averaging k samples divides the variance by k
    scale = weight * level_mv / lead_rms * np.sqrt(fs / 500.0 * 12.0)
    e = (w - np.float32(0.5)) * scale.astype(np.float32)[:, None]
    for _ in range(bursts):
        width = int(rng.uniform(0.3, 2.0) * fs)
        c = int(rng.integers(0, n))
        which = rng.random(9) < 0.5
        which[int(rng.integers(3))] = True  # a limb electrode at least: the patient moved
        e[which, max(0, c - width // 2): c + width // 2] *= np.float32(rng.uniform(3, 8))
    return e


def _motion(n: int, fs: int, rng: np.random.Generator, count: int) -> tuple[np.ndarray, float]:
    """(9, n) electrode motion artefacts: a step with exponential recovery (pressure on the
    electrode), a smooth bump (cable tug) or a pop (momentary contact loss)."""
    e = np.zeros((9, n), dtype=np.float32)
    biggest = 0.0
    for _ in range(count):
        k = int(rng.integers(9))
        c = int(rng.integers(0, n))
        amp = rng.uniform(0.3, 2.0) * rng.choice((-1.0, 1.0))
        kind = rng.choice(3, p=(0.5, 0.35, 0.15))
        if kind == 0:
            tau = rng.uniform(0.2, 1.5) * fs
            seg = np.arange(n - c)
            e[k, c:] += amp * np.exp(-seg / tau)
        elif kind == 1:
            sd = rng.uniform(0.1, 0.4) * fs
            lo, hi = max(0, int(c - 4 * sd)), min(n, int(c + 4 * sd))
            e[k, lo:hi] += amp * np.exp(-0.5 * ((np.arange(lo, hi) - c) / sd) ** 2)
        else:
            seg = np.arange(min(n - c, int(0.3 * fs)))
            e[k, c:c + len(seg)] += 1.5 * amp * np.exp(-seg / (0.03 * fs))
        biggest = max(biggest, abs(amp) * (1.5 if kind == 2 else 1.0))
    return e, biggest


@lru_cache(maxsize=32)  # record lengths vary (CPSC: 6-60 s): bounded
def _monitoring_gain(n_fft: int, fs: int, highpass: float, lowpass: float, notch: int) -> np.ndarray:
    """Zero-phase power gain of the monitoring chain at the rfft bins: what ``sosfiltfilt``
    of a 2nd-order Butterworth low-pass, a 1st-order high-pass and a Q=30 notch applies
    (|H|^2 of each), computed in closed form so generation needs no scipy."""
    f = np.fft.rfftfreq(n_fft, 1.0 / fs)
    g = 1.0 / (1.0 + (f / lowpass) ** 4)
    r = (f / highpass) ** 2
    g *= r / (1.0 + r)
    if notch and notch < 0.45 * fs:
        d = (f ** 2 - notch ** 2) ** 2
        g *= d / (d + (f * notch / 30.0) ** 2 + 1e-30)
    g.setflags(write=False)
    return g


def _monitoring_filter(x: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Apply :func:`_monitoring_gain` by FFT, the record reflected by up to 1 s at each end
    so the 0.5 Hz high-pass has no wrap-around transient."""
    n = x.shape[1]
    pad = min(n - 1, acq.fs)
    xp = np.pad(x, ((0, 0), (pad, pad)), mode="reflect")
    g = _monitoring_gain(xp.shape[1], acq.fs, acq.highpass_hz, acq.lowpass_hz, acq.notch_hz)
    return np.fft.irfft(np.fft.rfft(xp, axis=1) * g, n=xp.shape[1], axis=1)[:, pad: pad + n]


def record_chain(sig8: np.ndarray, fs: int, seed: int, realism: float = 1.0) -> Acquisition:
    """Add the electrode nuisances to ``sig8`` (8 independent leads, mV) in place; returns
    the chain drawn. The monitoring filter and the ADC come later (:func:`digitize_chain`),
    after any electrode swap, as in a real cart."""
    n = sig8.shape[1]
    r = [np.random.default_rng([seed, k]) for k in range(6)]
    rate = {k: min(1.0, v * realism) for k, v in RATES.items()}

    monitoring = r[4].random() < rate["monitoring"]
    lowpass = MONITORING[1] if monitoring else float(r[4].choice([lp for lp, _ in DIAGNOSTIC_LOWPASS],
                                                                  p=[p for _, p in DIAGNOSTIC_LOWPASS]))
    lowpass = min(lowpass, round(0.45 * fs))
    hz = 50 if r[1].random() < 0.5 else 60
    notch = hz if r[4].random() < P_NOTCH else 0
    lsb = float(r[5].choice(COARSE_LSB_UV)) if r[5].random() < rate["coarse_adc"] else 1.0

    wander = float(np.clip(r[0].lognormal(np.log(0.1), 0.9), 0.01, 3.0))
    sig8 += _wander(n, fs, wander, r[0])

    visible = r[1].random() < rate["mains"]
    mains = float(np.clip(r[1].lognormal(np.log(15.0), 0.9), 5.0, 300.0) if visible
                  else r[1].uniform(0.2, 3.0)) / 1000.0
    if hz < 0.45 * fs:
        # a diagnostic notch is emulated by its residual (line frequency drifts off the
        # notch centre); the monitoring path filters for real in digitize_chain
        sig8 += _mains(n, fs, hz, mains * (0.03 if notch and not monitoring else 1.0), r[1])

    emg = float(np.clip(r[2].lognormal(np.log(18.0), 0.6), 1.0, 150.0)) / 1000.0
    bursts = int(r[2].integers(1, 3)) if r[2].random() < rate["emg_burst"] else 0
    e9 = _emg(n, fs, emg, r[2], bursts, 0.0 if monitoring else lowpass)
    n_motion, motion_mv = 0, 0.0
    if r[3].random() < rate["motion"]:
        n_motion = int(r[3].integers(1, 4))
        m9, motion_mv = _motion(n, fs, r[3], n_motion)
        e9 += m9
    sig8 += to_leads(e9)
    return Acquisition(
        fs=fs, highpass_hz=MONITORING[0] if monitoring else DIAGNOSTIC_HIGHPASS, lowpass_hz=lowpass,
        notch_hz=notch, lsb_uv=lsb, wander_mv=wander, mains_hz=hz, mains_uv=mains * 1000.0,
        emg_uv=emg * 1000.0, emg_bursts=bursts, motion=n_motion, motion_mv=motion_mv,
    )


def digitize_chain(sig8: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Monitoring band (zero-phase Butterworth 0.5-40 Hz + notch) on the whole signal, then
    the ADC: quantised to ``lsb_uv`` and clipped to the 16-bit range. Float32 mV on the LSB
    grid. (The diagnostic band needs no pass here: its 0.05 Hz high-pass changes a 10 s
    record by < 5% and its low-pass acted on the broadband noise in :func:`_emg`.)"""
    x = _monitoring_filter(sig8, acq) if acq.monitoring else sig8
    lsb = acq.lsb_uv / 1000.0
    full = (2 ** (ADC_BITS - 1) - 1) * lsb
    return (np.round(np.clip(x, -full, full) / lsb) * lsb).astype(np.float32)


# Electrode faults, each with chance ``nuisance_rate`` per record (at most one limb reversal).
FAULTS = ("arm_reversal", "la_ll_reversal", "precordial_swap", "high_v1v2", "lead_off")
PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")


def draw_faults(rng: np.random.Generator, rate: float) -> dict[str, int]:
    """Which electrode faults a record has: name -> chest electrode index (0 when unused).
    Draws the same numbers whatever ``rate``, so the rate never changes the rest."""
    u, k = rng.random(len(FAULTS)), rng.integers(0, 6, len(FAULTS))
    out = {name: int(k[i]) for i, name in enumerate(FAULTS) if u[i] < rate}
    if "arm_reversal" in out:
        out.pop("la_ll_reversal", None)
    if "precordial_swap" in out:
        out["precordial_swap"] = min(out["precordial_swap"], 4)  # swaps V(k+1) with V(k+2)
    return out


def misplace_high_v1v2(leads: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """V1-V2 one or two intercostal spaces too high: their lead vectors tilt superior and
    see the heart from further away (negative P and T, rSr' in V1-V2)."""
    out = leads.copy()
    out[2:4, 1] = -rng.uniform(0.3, 0.55)
    out[2:4] *= rng.uniform(0.75, 0.9)
    return out


def apply_faults(sig8: np.ndarray, faults: dict[str, int], rng: np.random.Generator) -> list[str]:
    """Electrode swaps and a detached chest electrode on the noisy leads, in place (the noise
    of an electrode moves with it); returns the nuisance names for metadata and tests."""
    names = []
    if "arm_reversal" in faults:  # RA <-> LA: I = -I, II = LL - LA = II - I, Wilson unchanged
        sig8[1] = sig8[1] - sig8[0]
        sig8[0] = -sig8[0]
        names.append("arm_lead_reversal")
    if "la_ll_reversal" in faults:  # LA <-> LL: I and II trade places
        sig8[[0, 1]] = sig8[[1, 0]]
        names.append("la_ll_reversal")
    if "precordial_swap" in faults:
        k = faults["precordial_swap"]
        sig8[[2 + k, 3 + k]] = sig8[[3 + k, 2 + k]]
        names.append(f"precordial_swap:{PRECORDIAL[k]}-{PRECORDIAL[k + 1]}")
    if "high_v1v2" in faults:
        names.append("high_v1v2")
    if "lead_off" in faults:  # a chest electrode off: near-flat noise only
        k = faults["lead_off"]
        sig8[2 + k] = rng.normal(0.0, 0.004, sig8.shape[1])
        names.append(f"lead_off:{PRECORDIAL[k]}")
    return names


def chain_events(acq: Acquisition) -> list[str]:
    """Visible recording nuisances of a chain (``truth.jsonl`` ``nuisances``)."""
    out = []
    if acq.mains_uv >= 5.0 and not acq.notch_hz:
        out.append(f"mains:{acq.mains_hz}Hz")
    if acq.wander_mv >= 0.5 and not acq.monitoring:
        out.append("baseline_wander")
    if acq.emg_bursts:
        out.append("emg_burst")
    if acq.motion:
        out.append("motion_artefact")
    if acq.monitoring:
        out.append("monitoring_filter")
    return out


def technical_remarks(acq: Acquisition) -> set[str]:
    """Quality problems a cart would remark on; the report may mention only these."""
    out = set()
    if acq.wander_mv >= 0.4 and not acq.monitoring:
        out.add("wander")
    if acq.motion or acq.emg_bursts:
        out.add("artifact")
    if acq.emg_uv >= 45.0 and not acq.monitoring:
        out.add("muscle")
    if acq.mains_uv >= 30.0 and not acq.notch_hz:
        out.add("mains")
    return out
