"""Canonicalisation policies: leads by name, per-lead NaN repair, anti-aliased resampling, crop/pad."""

from __future__ import annotations

import numpy as np
import pytest
from ecg_fixtures import MIMIC_ORDER, canonical_signal, reorder

from merl.core.config import ConfigError, validate
from merl.training.data.canonical import CanonConfig, canonicalize, canonicalize_masked, repair_nonfinite, select_leads
from merl.training.data.readers import RawSignal, RecordError
from merl.training.data.schema import LEADS


def test_select_leads_by_name_case_insensitive_drops_extras():
    sig = canonical_signal(n=10)
    names = [n.lower() for n in MIMIC_ORDER] + ["vx"]
    stored = np.vstack([reorder(sig, MIMIC_ORDER), np.full((1, 10), 9.0)])
    out, present = select_leads(stored, names)
    np.testing.assert_array_equal(out, sig)
    assert present == list(range(12))


def test_missing_leads_zero_filled_or_quarantined():
    sig = canonical_signal(n=10)[:2]
    with pytest.raises(RecordError, match=r"missing leads: III, aVR"):
        select_leads(sig, ["I", "II"], zero_fill=False)
    out, present = select_leads(sig, ["I", "II"])
    np.testing.assert_array_equal(out[:2], sig)
    np.testing.assert_array_equal(out[2:], 0)
    assert present == [0, 1]
    with pytest.raises(RecordError, match=r"no recognisable lead \(has ECG1, X\)"):
        select_leads(sig, ["ECG1", "X"])  # nothing standard at all


def test_nan_repair_is_per_lead_along_time():
    # Lead 0 is flat at 1, lead 1 flat at 5: a repair that averaged across leads (the
    # reference's wrong axis) would put ~3 into the gap; per lead it must stay 1.
    sig = np.vstack([np.ones(100), np.full(100, 5.0), np.zeros((10, 100))])
    sig[0, 40:43] = [np.nan, np.inf, -np.inf]
    out = repair_nonfinite(sig, window=5)
    np.testing.assert_array_equal(out[0], np.ones(100))
    np.testing.assert_array_equal(out[1:], sig[1:])
    ramp = np.vstack([np.arange(100.0)] * 12)
    ramp[2, 30:70] = np.nan  # wider than the window: linear interpolation in the middle
    fixed = repair_nonfinite(ramp, window=3)
    assert np.all(np.isfinite(fixed)) and abs(fixed[2, 50] - 50.0) < 1e-9
    dead = np.zeros((12, 50))
    dead[7] = np.nan
    with pytest.raises(RecordError, match="all-NaN lead: V2"):
        repair_nonfinite(dead)


def test_flat_and_missing_leads_are_masked_not_quarantined():
    sig = canonical_signal(n=5000)
    sig[0] = 0.3
    out, mask = canonicalize_masked(RawSignal(sig, 500, list(LEADS)))
    assert not mask[0] and mask[1:].all() and np.all(out[0] == 0)
    kept, mask = canonicalize_masked(RawSignal(sig, 500, list(LEADS)), CanonConfig(reject_flat_leads=False))
    assert mask.all() and np.allclose(kept[0], 0.3)  # the reference keeps a constant lead as recorded
    two = canonical_signal(n=5000)[:2]
    out, mask = canonicalize_masked(RawSignal(two, 500, ["I", "II"]))
    assert np.all(out[2:] == 0) and mask.tolist() == [True, True] + [False] * 10
    with pytest.raises(RecordError, match="missing leads"):
        canonicalize(RawSignal(two, 500, ["I", "II"]), CanonConfig(zero_fill_missing_leads=False))
    with pytest.raises(RecordError, match="no usable lead"):
        canonicalize(RawSignal(np.ones((2, 5000)), 500, ["I", "II"]))


def test_resampling_is_anti_aliased_and_keeps_in_band_signal():
    fs = 1000
    t = np.arange(10 * fs) / fs
    tone = np.sin(2 * np.pi * 5 * t)
    alias = 0.5 * np.sin(2 * np.pi * 300 * t)  # above the 250 Hz Nyquist of 500 Hz
    raw = RawSignal(np.vstack([tone + alias] * 12), fs, list(LEADS))
    out = canonicalize(raw)
    expect = np.sin(2 * np.pi * 5 * np.arange(5000) / 500)
    assert out.shape == (12, 5000) and out.dtype == np.float32
    assert np.max(np.abs(out[0, 200:-200] - expect[200:-200])) < 0.02  # 300 Hz removed, not folded to 200 Hz


@pytest.mark.parametrize("fs", [257, 360])
def test_odd_rates_give_exact_length(fs):
    raw = RawSignal(np.random.default_rng(0).standard_normal((12, int(12 * fs))), fs, list(LEADS))
    assert canonicalize(raw).shape == (12, 5000)


def test_crop_policies_and_padding():
    n = 8000
    ramp = np.vstack([np.arange(n, dtype=float)] * 12)
    first = canonicalize(RawSignal(ramp, 500, list(LEADS)), CanonConfig(crop="first"))
    centre = canonicalize(RawSignal(ramp, 500, list(LEADS)), CanonConfig(crop="centre"))
    assert first[0, 0] == 0 and centre[0, 0] == 1500
    short = canonicalize(RawSignal(ramp, 500, list(LEADS)), CanonConfig(seconds=5))  # CPSC reference: 5 s + zeros
    assert short[0, 2499] == 2499 and np.all(short[:, 2500:] == 0)
    with pytest.raises(RecordError, match="shorter than 20 s"):
        canonicalize(RawSignal(ramp, 500, list(LEADS)), CanonConfig(min_seconds=20))


def test_invalid_canon_config_names_field():
    with pytest.raises(ConfigError, match="crop"):
        validate(CanonConfig, {"crop": "middle"})
