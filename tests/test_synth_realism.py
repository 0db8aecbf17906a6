"""The recording chain puts each nuisance into the signal at its configured rate and size, and
synthetic amplitude, noise and baseline distributions cover those of real ECGs.

Each check measures the signal with ``merl.training.data.synth.measure`` (scipy filters only;
it imports nothing of the generator) and compares a record with the *same* record generated
clean (``noise=False``: same heart, no recording chain), so the residual is exactly what the
chain added. Rates are checked to three binomial standard deviations.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_synth_signals import median_qrs_ms

from merl.training.data.synth import generate_record, record_at
from merl.training.data.synth.acquisition import RATES
from merl.training.data.synth.measure import (
    band_rms_uv,
    burst_ratio,
    line_amplitude_uv,
    lsb_uv,
    measure,
    outside_qrs,
    r_peaks,
)
from merl.training.data.synth.writers.base import SAMPLING_RATES

N = 300
INDEP = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1..V6: the leads the chain acts on


def _filt(x, kind, cutoff, fs, order=2):
    from scipy import signal as ss

    return ss.sosfiltfilt(ss.butter(order, cutoff, btype=kind, fs=fs, output="sos"), x, axis=-1)


def within_rate(hits: np.ndarray, rate: float) -> bool:
    sd = np.sqrt(rate * (1 - rate) / len(hits))
    return abs(hits.mean() - rate) <= 3 * sd + 1e-9


@pytest.fixture(scope="module")
def pairs():
    """(acquisition, noisy 8 leads, clean 8 leads, fs) for N records of 6 s, no electrode faults."""
    out = []
    for k in range(N):
        kw = {"duration_s": 6.0, "nuisance_rate": 0.0}
        noisy = generate_record(np.random.default_rng([5, k]), **kw)
        clean = generate_record(np.random.default_rng([5, k]), noise=False, **kw)
        out.append((noisy.acquisition, noisy.signal_mv[INDEP].astype(np.float64),
                    clean.signal_mv[INDEP].astype(np.float64), noisy.fs))
    return out


def test_clean_and_noisy_share_the_heart(pairs):
    """The chain is the only difference: the residual is small next to the QRS."""
    for acq, x, c, fs in pairs[:20]:
        if not acq["motion"] and not acq["emg_bursts"] and acq["highpass_hz"] < 0.3:
            assert np.corrcoef(_filt(x, "bandpass", (5, 30), fs).ravel(), _filt(c, "bandpass", (5, 30), fs).ravel())[0, 1] > 0.8


def test_mains_hum_at_rate_and_amplitude(pairs):
    """50 or 60 Hz in the residual (lock-in): as large as declared, at the configured rate,
    removed by the notch; a cart runs on one mains frequency."""
    plain = [(a, line_amplitude_uv(x - c, fs, a["mains_hz"]).max(), line_amplitude_uv(x - c, fs, 110 - a["mains_hz"]).max())
             for a, x, c, fs in pairs if a["highpass_hz"] < 0.3]
    no_notch = [(a, m, other) for a, m, other in plain if not a["notch_hz"]]
    visible = np.array([m >= 4.0 for _, m, _ in no_notch])
    assert within_rate(visible, RATES["mains"]), visible.mean()
    for a, m, other in no_notch:
        if a["mains_uv"] >= 10:
            assert 0.8 < m / a["mains_uv"] < 1.3, (m, a)
            assert other < 0.3 * m + 5.0, (other, m)  # the other mains frequency: noise floor only
    for a, m, _ in plain:
        if a["notch_hz"]:
            assert m < 0.1 * a["mains_uv"] + 5.0, (m, a)  # + the EMG noise floor of a lock-in
    assert {a["mains_hz"] for a, _, _ in plain} == {50, 60}


def test_muscle_noise_level_and_bursts(pairs):
    """EMG: 68-98 Hz residual RMS outside the QRS (clear of 50/60 Hz and their harmonics)
    follows the declared level (about 0.28 of the 0-250 Hz level after the band-limit); bursts
    (short windows several times the median) occur exactly in the records that have them."""
    ratios, burst_hits, agree = [], [], []
    for a, x, c, fs in pairs:
        if a["highpass_hz"] >= 0.3 or a["motion"]:
            continue
        res = x - c
        if not a["emg_bursts"] and a["emg_uv"] >= 10:
            mask = outside_qrs(x.shape[1], r_peaks(c, fs), fs)
            ratios.append(band_rms_uv(res, fs, 68, 98, mask).max() / a["emg_uv"])
        br = max(burst_ratio(h, fs) for h in _filt(res, "highpass", 35.0, fs, 4))
        burst_hits.append(a["emg_bursts"] > 0)
        agree.append((br > 2.5) == (a["emg_bursts"] > 0))
    ratios = np.array(ratios)
    assert len(ratios) > 100 and 0.22 < np.median(ratios) < 0.35 and ((ratios > 0.2) & (ratios < 0.45)).mean() > 0.97, \
        np.percentile(ratios, [0, 50, 100])
    assert np.mean(agree) > 0.97
    assert within_rate(np.array(burst_hits), RATES["emg_burst"])
    levels = np.array([a["emg_uv"] for a, *_ in pairs])
    assert levels.min() < 5 and levels.max() > 40  # quiet and noisy records both


def test_baseline_wander_size(pairs):
    """Below 0.6 Hz the residual swings by the declared wander (median over leads)."""
    r, sizes = [], []
    for a, x, c, fs in pairs:
        if a["highpass_hz"] >= 0.3 or a["motion"]:
            continue
        res = x - x.mean(axis=1, keepdims=True) - c + c.mean(axis=1, keepdims=True)
        lf = _filt(res, "lowpass", 0.6, fs)[:, int(0.5 * fs): -int(0.5 * fs)]
        r.append(np.median(np.ptp(lf, axis=1)) / a["wander_mv"])
        sizes.append(a["wander_mv"])
    r = np.array(r)
    assert ((r > 0.6) & (r < 1.1)).mean() > 0.97, np.percentile(r, [0, 50, 100])
    assert min(sizes) < 0.03 and max(sizes) > 0.6


def test_electrode_motion_artefacts_at_rate(pairs):
    """Steps, bumps and pops (0.7-15 Hz residual above 0.1 mV) in the records declaring them."""
    hits, agree = [], []
    for a, x, c, fs in pairs:
        if a["highpass_hz"] >= 0.3 or a["emg_bursts"]:
            continue
        big = np.abs(_filt(x - c, "bandpass", (0.7, 15.0), fs)[:, int(0.3 * fs): -int(0.3 * fs)]).max() > 0.1
        hits.append(a["motion"] > 0)
        agree.append(big == (a["motion"] > 0))
    assert np.mean(agree) > 0.95
    assert within_rate(np.array(hits), RATES["motion"])


def test_monitoring_filter_at_rate(pairs):
    """A 0.5-40 Hz monitoring band shows as the heart's 30-40 Hz content cut by a third
    (cross-spectral gain of the noisy over the clean record)."""
    hits, agree = [], []
    for a, x, c, fs in pairs:
        f = np.fft.rfftfreq(x.shape[1], 1 / fs)
        band = (f > 30) & (f < 40)
        X, C = np.fft.rfft(x, axis=1)[:, band], np.fft.rfft(c, axis=1)[:, band]
        gain = (X * C.conj()).real.sum() / (np.abs(C) ** 2).sum()
        mon = a["highpass_hz"] >= 0.3
        hits.append(mon)
        agree.append((gain < 0.82) == mon)
    assert np.mean(agree) > 0.97
    assert within_rate(np.array(hits), RATES["monitoring"])


def test_adc_resolution_at_rate(pairs):
    """Samples sit on the declared LSB grid (1 uV, or 2.5-5 uV for coarse carts)."""
    coarse = []
    for a, x, _, _ in pairs:
        assert abs(lsb_uv(x[1]) - a["lsb_uv"]) < 1e-6, (lsb_uv(x[1]), a)
        coarse.append(a["lsb_uv"] > 1.0)
    assert within_rate(np.array(coarse), RATES["coarse_adc"])


def test_realism_zero_switches_the_occasional_nuisances_off():
    for k in range(30):
        rec = generate_record(np.random.default_rng([6, k]), duration_s=3.0, realism=0.0)
        a = rec.acquisition
        assert a["mains_uv"] < 5 and not a["emg_bursts"] and not a["motion"] and a["highpass_hz"] < 0.3
        assert a["lsb_uv"] == 1.0 and rec.fs == 500
        full = generate_record(np.random.default_rng([6, k]), duration_s=3.0)
        assert full.conditions == rec.conditions and full.measurements == rec.measurements  # same heart


def test_electrode_faults_are_real_and_at_rate():
    """Swaps are exact lead transformations of the clean record; a detached electrode is flat."""
    eq = lambda a, b: np.allclose(a, b, atol=1e-5)
    rate, n = 0.25, 200
    seen = {k: [] for k in ("arm_lead_reversal", "la_ll_reversal", "precordial_swap", "high_v1v2", "lead_off")}
    for k in range(n):
        f = generate_record(np.random.default_rng([8, k]), duration_s=4.0, noise=False, nuisance_rate=rate)
        c = generate_record(np.random.default_rng([8, k]), duration_s=4.0, noise=False, nuisance_rate=0.0)
        F, C = f.signal_mv.astype(np.float64), c.signal_mv.astype(np.float64)
        truth = {x.split(":")[0] for x in f.nuisances}
        found = set()
        if eq(F[0], -C[0]) and eq(F[1], C[1] - C[0]):
            found.add("arm_lead_reversal")  # RA <-> LA
        if eq(F[0], C[1]) and eq(F[1], C[0]):
            found.add("la_ll_reversal")
        if any(np.ptp(F[6 + j]) < 0.05 for j in range(6)):
            found.add("lead_off")
        if not truth & {"high_v1v2", "lead_off"}:
            if any(eq(F[6 + j], C[7 + j]) and eq(F[7 + j], C[6 + j]) and not eq(C[6 + j], C[7 + j]) for j in range(5)):
                found.add("precordial_swap")
        else:
            found |= truth & {"precordial_swap"}
        if not truth & {"precordial_swap", "lead_off"}:
            if not eq(F[6], C[6]) and not eq(F[7], C[7]) and all(eq(F[j], C[j]) for j in range(8, 12)):
                found.add("high_v1v2")  # V1-V2 seen from higher up, V3-V6 untouched
        else:
            found |= truth & {"high_v1v2"}
        assert found == truth, (k, truth, found)
        for name in seen:
            seen[name].append(name in truth)
    for name, hits in seen.items():
        assert within_rate(np.array(hits), rate * (0.75 if name == "la_ll_reversal" else 1.0)), (name, np.mean(hits))


def test_sampling_rates_vary_in_wfdb_layouts_and_the_heart_keeps_its_rate():
    """MIMIC/CSN records come at 250-1000 Hz (written at that rate); the beat rate measured
    at the record's own rate matches the generator's."""
    rates = []
    for i in range(150):
        rec, _ = record_at("mimic", 3, i)
        rates.append(rec.fs)
        assert rec.signal_mv.shape[1] == 10 * rec.fs and rec.acquisition["fs"] == rec.fs
        if i < 40 and rec.fs != 500:
            hr = measure(rec.signal_mv, rec.fs)["hr"]
            assert abs(hr - rec.measurements["hr"]) < 0.2 * rec.measurements["hr"], (rec.fs, hr, rec.measurements["hr"])
    assert set(rates) <= set(SAMPLING_RATES) and len(set(rates)) >= 3
    assert within_rate(np.array(rates) != 500, 1 - SAMPLING_RATES[500])
    assert {record_at("ptbxl", 3, i)[0].fs for i in range(20)} == {500}  # records500/: fixed by the layout


def test_age_and_sex_shape_the_beat():
    """Men: wider QRS and taller voltages; older hearts: a more leftward frontal axis."""
    def group(age, sex, n=40):
        recs = [generate_record(np.random.default_rng([9, k, age]), conditions=["sinus_normal"], noise=False,
                                age=age, sex=sex, duration_s=4.0) for k in range(n)]
        qrs = [median_qrs_ms(r.signal_mv) for r in recs]
        amp = [np.median(measure(r.signal_mv, r.fs)["qrs_ptp"]) for r in recs]
        axis = []
        for r in recs:
            s, pk = r.signal_mv.astype(np.float64), r_peaks(r.signal_mv, r.fs)
            area = [sum(s[lead, p - 30: p + 30].sum() for p in pk if 30 < p < s.shape[1] - 30) for lead in (0, 5)]
            axis.append(np.degrees(np.arctan2(area[1], area[0])))
        return np.median(qrs), np.median(amp), np.median(axis)

    young_m, old_m, young_f = group(25, "M"), group(80, "M"), group(25, "F")
    assert young_m[0] > young_f[0] + 3, (young_m, young_f)  # QRS ms
    assert young_m[1] > young_f[1] and young_m[1] > old_m[1], (young_m, young_f, old_m)  # voltage
    assert young_m[2] > old_m[2] + 8, (young_m, old_m)  # axis deg


@pytest.mark.realdata
def test_synthetic_distributions_cover_the_real_records(shared_dir):
    """Per-record amplitude, noise and baseline (median over leads) of the real 12-lead
    records in ../shared/real-ecg all fall inside the synthetic range, and the real median
    sits in the synthetic middle 80%; per lead, real QRS swings match synthetic ones."""
    import scipy.io
    import wfdb

    base = shared_dir / "real-ecg"
    real = [(wfdb.rdrecord(str(h.with_suffix(""))).p_signal.T, 500) for h in sorted((base / "cinc2021").glob("*.hea"))]
    real += [(scipy.io.loadmat(m)["ECG"][0, 0]["data"], 500) for m in sorted((base / "cpsc2018").glob("*.mat"))]
    if (base / "physionet-wfdb/s0010_re.hea").exists():
        r = wfdb.rdrecord(str(base / "physionet-wfdb/s0010_re"), channels=list(range(12)), sampto=10000)
        real.append((r.p_signal.T, 1000))
    assert len(real) >= 15
    synth = [generate_record(np.random.default_rng([12, k])) for k in range(150)]
    rm = [measure(s, fs) for s, fs in real]
    sm = [measure(r.signal_mv, r.fs) for r in synth]

    def per_record(ms, key):
        out = []
        for m in ms:
            v = np.asarray(m[key], dtype=float)
            v = v[np.isfinite(v) & (np.asarray(m["qrs_ptp"]) > 0.01)]  # dead (all-zero) leads of real files
            out.append(np.median(v))
        return np.array(out)

    for key in ("qrs_ptp", "r_amp", "hf_noise_uv", "wander_mv"):
        rv, sv = per_record(rm, key), per_record(sm, key)
        assert sv.min() <= rv.min() and rv.max() <= sv.max(), (key, rv.min(), rv.max(), sv.min(), sv.max())
        lo, hi = np.percentile(sv, [10, 90])
        assert lo <= np.median(rv) <= hi, (key, np.median(rv), lo, hi)
    real_lead = np.nanmedian([np.where(np.asarray(m["qrs_ptp"]) > 0.01, m["qrs_ptp"], np.nan) for m in rm], axis=0)
    synth_lead = np.array([m["qrs_ptp"] for m in sm])
    lo, hi = np.percentile(synth_lead, [10, 90], axis=0)
    assert ((real_lead >= lo) & (real_lead <= hi)).all(), (real_lead, lo, hi)
