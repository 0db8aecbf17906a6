"""The fast WFDB path: header parsing and signal values identical to wfdb.rdrecord."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb
from ecg_fixtures import MIMIC_ORDER, PTBXL_NAMES, canonical_signal, write_cinc_mat, write_wfdb

from merl.training.data.readers import RecordError, wfdb_reader
from merl.training.data.readers.header import parse_header
from merl.training.data.readers.wfdb_reader import read_wfdb
from merl.training.data.schema import LEADS


@pytest.fixture
def fast_only(monkeypatch):
    """Fail if the wfdb fallback is used: these records must take the fast path."""

    def _no(*a, **k):
        raise AssertionError("fell back to wfdb.rdrecord")

    monkeypatch.setattr(wfdb_reader, "_read_with_wfdb", _no)


def _same_as_wfdb(path) -> np.ndarray:
    raw = read_wfdb(path)
    ref = wfdb.rdrecord(str(path))
    assert raw.leads == ref.sig_name
    assert raw.fs == ref.fs
    np.testing.assert_array_equal(raw.signal, ref.p_signal.T)  # exact, NaN positions included
    return raw.signal


def test_parse_header_fields():
    h = parse_header(
        "rec 3 360 1000\n"
        "rec.dat 16+24 2000(-5)/uV 16 7 0 0 0 lead I\n"
        "rec.dat 16 0 16 3\n"
        "rec.dat 212x2:1 200 11 1024 0 0 0 V1\n"
        "# Age: 60\n# Dx: 1,2\n"
    )
    a, b, c = h.signals
    assert (h.n_sig, h.fs, h.n_samples) == (3, 360.0, 1000)
    assert (a.byte_offset, a.gain, a.baseline, a.units, a.name) == (24, 2000.0, -5, "uV", "lead I")
    assert (b.gain, b.baseline, b.units) == (200.0, 3, "mV")  # gain 0 -> 200, baseline -> ADC zero
    assert (c.fmt, c.samps_per_frame, c.skew, c.baseline) == ("212", 2, 1, 1024)
    assert h.comments == ["Age: 60", "Dx: 1,2"]


def test_fmt16_matches_wfdb_with_reordered_leads(tmp_path, fast_only):
    sig = canonical_signal(seed=1)
    _same_as_wfdb(write_wfdb(tmp_path, "r1", sig, 500, MIMIC_ORDER))
    _same_as_wfdb(write_wfdb(tmp_path, "r2", sig[:, :1000], 100, PTBXL_NAMES))


def test_nan_samples_match_wfdb(tmp_path, fast_only):
    sig = canonical_signal(seed=2)
    sig[3, 100:110] = np.nan
    out = _same_as_wfdb(write_wfdb(tmp_path, "nan", sig, 500, list(LEADS)))
    assert np.isnan(out[3, 100:110]).all() and np.isfinite(out[2]).all()


def test_cinc_mat_offset_24_matches_wfdb(tmp_path, fast_only):
    path = write_cinc_mat(tmp_path, "JS00001", canonical_signal(seed=3), 500, list(LEADS), ["Dx: 426783006"])
    out = _same_as_wfdb(path)
    assert out.shape == (12, 5000)


def test_format_212_falls_back_to_wfdb(tmp_path):
    sig = canonical_signal(n=720, fs=360, seed=4)[:2]
    raw = read_wfdb(write_wfdb(tmp_path, "p212", sig, 360, ["MLII", "V5"], fmt="212"))
    ref = wfdb.rdrecord(str(tmp_path / "p212"))
    np.testing.assert_array_equal(raw.signal, ref.p_signal.T)
    assert raw.leads == ["MLII", "V5"]


def test_microvolt_units_become_millivolts(tmp_path, fast_only):
    sig = canonical_signal(n=500, seed=5)
    wfdb.wrsamp("uv", fs=500, units=["uV"] * 12, sig_name=list(LEADS), p_signal=sig.T * 1000, fmt=["16"] * 12,
                adc_gain=[1.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    raw = read_wfdb(tmp_path / "uv")
    np.testing.assert_allclose(raw.signal, sig, atol=1e-9)


def test_truncated_and_missing_files_raise_record_errors(tmp_path):
    path = write_wfdb(tmp_path, "t", canonical_signal(seed=6), 500, list(LEADS))
    dat = tmp_path / "t.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    with pytest.raises(RecordError, match="truncated signal file t.dat"):
        read_wfdb(path)
    dat.unlink()
    with pytest.raises(RecordError, match="missing signal file"):
        read_wfdb(path)
    with pytest.raises(RecordError, match="missing header file"):
        read_wfdb(tmp_path / "nothing")
    (tmp_path / "g.hea").write_text("garbage\n")
    with pytest.raises(RecordError, match="unreadable header"):
        read_wfdb(tmp_path / "g")


def test_garbage_cinc_mat_is_rejected(tmp_path, fast_only):
    path = write_cinc_mat(tmp_path, "JS1", canonical_signal(seed=7), 500, list(LEADS), [])
    blob = bytearray((tmp_path / "JS1.mat").read_bytes())
    blob[:4] = b"MATL"  # same size, wrong header
    (tmp_path / "JS1.mat").write_bytes(bytes(blob))
    with pytest.raises(RecordError, match="unreadable .mat"):
        read_wfdb(path)
