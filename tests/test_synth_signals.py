"""Synthetic signals are physiologically right, checked with independent tools on the signal.

Heart rate and RR irregularity come from wfdb's XQRS detector; QRS and PR durations from a
plain spatial-magnitude delineation written here - never from the generator's parameters.
"""

from __future__ import annotations

import numpy as np
import pytest
from wfdb import processing

from merl.training.data.synth import generate_record

FS = 500
INDEPENDENT = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1..V6


def records(conds, n=3, noise=True, seed=0):
    return [generate_record(np.random.default_rng([seed, k]), conditions=conds, noise=noise) for k in range(n)]


def r_peaks(sig: np.ndarray) -> np.ndarray:
    """R peaks from wfdb's XQRS detector on the lead with the largest swing."""
    lead = int(np.argmax(np.ptp(sig[INDEPENDENT], axis=1)))
    x = sig[INDEPENDENT][lead].astype(np.float64)
    peaks = processing.xqrs_detect(sig=x, fs=FS, verbose=False)
    return np.sort(np.asarray(peaks))


def rr_seconds(sig):
    return np.diff(r_peaks(sig)) / FS


def spatial_magnitude(sig):
    return np.sqrt((sig[INDEPENDENT].astype(np.float64) ** 2).sum(axis=0))


def qrs_bounds(sig, frac=0.1):
    """(onset, offset) samples of each QRS on a noise-free signal: around each peak of the
    spatial magnitude (8 independent leads), where it stays above ``frac`` of that peak."""
    mag = spatial_magnitude(sig)
    peaks = processing.find_local_peaks(mag, radius=150)
    peaks = peaks[mag[peaks] > 0.5 * mag.max()]
    out = []
    for p in peaks:
        if p < 250 or p > sig.shape[1] - 250:
            continue
        above = np.flatnonzero(mag[p - 150: p + 150] > frac * mag[p]) + p - 150
        on = off = p
        for i in above[above < p][::-1]:  # contiguous, bridging dips shorter than 12 ms
            if on - i > 6:
                break
            on = i
        for i in above[above > p]:
            if i - off > 6:
                break
            off = i
        out.append((on, off + 1))
    return out, mag


def median_qrs_ms(sig):
    bounds, _ = qrs_bounds(sig)
    return float(np.median([(b - a) / FS * 1000 for a, b in bounds]))


@pytest.mark.parametrize("conds", [["sinus_normal", "lbbb"], ["afib", "rbbb"], ["sinus_brady", "lvh"],
                                   ["sinus_tachy", "mi_inferior", "acute_mi"]])
def test_limb_leads_obey_einthoven_and_goldberger(conds):
    for r in records(conds, n=2):
        s = r.signal_mv
        assert s.shape == (12, 5000) and s.dtype == np.float32
        i, ii, iii, avr, avl, avf = s[:6]
        np.testing.assert_allclose(iii, ii - i, atol=1e-6)
        np.testing.assert_allclose(avr, -(i + ii) / 2, atol=1e-6)
        np.testing.assert_allclose(avl, i - ii / 2, atol=1e-6)
        np.testing.assert_allclose(avf, ii - i / 2, atol=1e-6)


@pytest.mark.parametrize("conds,lo,hi", [(["sinus_brady"], 30, 60), (["sinus_normal"], 58, 102),
                                         (["sinus_tachy"], 100, 160), (["svt"], 140, 230)])
def test_detected_heart_rate_matches_rate_class(conds, lo, hi):
    for r in records(conds, n=3):
        hr = 60.0 / np.median(rr_seconds(r.signal_mv))
        assert lo <= hr <= hi, (conds, hr, r.report)


def test_rr_irregularity_separates_afib_sinus_arrhythmia_and_sinus():
    cv = lambda rr: float(np.std(rr) / np.mean(rr))
    af = [cv(rr_seconds(r.signal_mv)) for r in records(["afib"], n=4, seed=1)]
    sr = [cv(rr_seconds(r.signal_mv)) for r in records(["sinus_normal"], n=4, seed=1)]
    sa = [cv(rr_seconds(r.signal_mv)) for r in records(["sinus_arrhythmia"], n=4, seed=1)]
    assert min(af) > 0.1, af
    assert max(sr) < 0.06, sr
    assert min(sa) > max(sr), (sa, sr)  # respiratory modulation shows, yet less than AF's chaos


def test_pvcs_break_the_rhythm_with_compensatory_pauses():
    for r in records(["sinus_normal", "bigeminy"], n=2, seed=2):
        rr = rr_seconds(r.signal_mv)
        short, long = rr[::2], rr[1::2]
        # alternating short coupling interval and long compensatory pause
        assert abs(np.median(short) - np.median(long)) > 0.15, rr


def test_second_and_third_degree_block_timing():
    """Mobitz II drops a beat: a pause of twice the cycle; Wenckebach's pause is shorter than
    two cycles (the PR lengthens before the drop); complete block escapes slowly and regularly."""
    for r in records(["sinus_normal", "mobitz2"], n=2, seed=9):
        rr = rr_seconds(r.signal_mv)
        assert 1.85 < rr.max() / np.median(rr) < 2.15, rr
    for r in records(["sinus_normal", "mobitz1"], n=2, seed=9):
        rr = rr_seconds(r.signal_mv)
        assert 1.3 < rr.max() / np.median(rr) < 1.9, rr
    for r in records(["avb3"], n=2, seed=9):
        rr = rr_seconds(r.signal_mv)
        assert 60.0 / np.median(rr) < 60 and rr.std() / rr.mean() < 0.05, rr


@pytest.mark.parametrize("conds", [["sinus_normal", "lbbb"], ["sinus_normal", "rbbb"], ["afib", "lbbb"],
                                   ["sinus_brady", "rbbb", "lafb"]])
def test_complete_bundle_branch_block_has_wide_qrs(conds):
    for r in records(conds, n=3, noise=False, seed=3):
        assert median_qrs_ms(r.signal_mv) >= 120, (conds, median_qrs_ms(r.signal_mv))


def test_normal_qrs_is_narrow():
    for r in records(["sinus_normal"], n=4, noise=False, seed=3):
        assert median_qrs_ms(r.signal_mv) < 115


def pr_ms(sig):
    """P onset (spatial magnitude above a quarter of the P peak) to QRS onset, median over beats."""
    bounds, mag = qrs_bounds(sig)
    prs = []
    for on, _ in bounds:
        if on < 260:
            continue
        win = mag[on - 250: on - 10]
        p_peak = int(np.argmax(win))
        thr = 0.25 * win[p_peak]
        k = p_peak
        while k > 0 and win[k - 1] > thr:
            k -= 1
        prs.append((len(win) + 10 - k) / FS * 1000)
    return float(np.median(prs))


def test_first_degree_block_prolongs_pr():
    block = [pr_ms(r.signal_mv) for r in records(["sinus_brady", "avb1"], n=4, noise=False, seed=4)]
    normal = [pr_ms(r.signal_mv) for r in records(["sinus_brady"], n=4, noise=False, seed=4)]
    assert min(block) > 200, block
    assert max(normal) < 210, normal
    assert min(block) > max(normal) - 20


def test_wpw_has_short_pr():
    assert max(pr_ms(r.signal_mv) for r in records(["sinus_brady", "wpw"], n=3, noise=False, seed=5)) < 125


def test_lvh_meets_sokolow_lyon_and_low_voltage_is_low():
    for r in records(["sinus_normal", "lvh"], n=3, noise=False, seed=6):
        s = r.signal_mv
        assert -s[6].min() + max(s[10].max(), s[11].max()) > 3.5  # SV1 + RV5/6
    for r in records(["sinus_normal", "low_voltage"], n=3, noise=False, seed=6):
        assert np.ptp(r.signal_mv[:6], axis=1).max() < 0.5


def test_inferior_infarct_localises_st_elevation():
    """Acute inferior MI: ST up in II, III, aVF and reciprocally down in aVL (J+60 ms)."""
    for r in records(["sinus_normal", "mi_inferior", "acute_mi"], n=3, noise=False, seed=7):
        s = r.signal_mv
        bounds, _ = qrs_bounds(s)
        st = np.median([s[:, b + 30] - s[:, a - 15] for a, b in bounds], axis=0)
        assert st[[1, 2, 5]].mean() > 0.1, st
        assert st[4] < 0, st


@pytest.mark.realdata
def test_amplitudes_are_on_the_scale_of_real_records(shared_dir):
    """Per-lead QRS swing of synthetic records within a factor of two of real 12-lead ECGs."""
    import wfdb

    def swing(s):
        return np.percentile(s, 99.5, axis=1) - np.percentile(s, 0.5, axis=1)

    real = [swing(wfdb.rdrecord(str(h.with_suffix(""))).p_signal.T)
            for h in sorted((shared_dir / "real-ecg/cinc2021").glob("*.hea"))]
    assert len(real) >= 10
    synth = [swing(r.signal_mv) for r in records(None, n=30, seed=12)]
    ratio = np.median(synth, axis=0) / np.median(real, axis=0)
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio
