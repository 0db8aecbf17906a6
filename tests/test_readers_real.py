"""Conformance on real PhysioNet records in ../shared/real-ecg (skipped where absent)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import wfdb

from merl.training.data.canonical import CanonConfig, canonicalize, canonicalize_masked
from merl.training.data.labels import load_scp_statements
from merl.training.data.readers import RecordError, RecordRef, make_reader
from merl.training.data.readers.cpsc2018 import read_cpsc_mat
from merl.training.data.readers.ptbxl import refs_from_table
from merl.training.data.readers.wfdb_reader import read_wfdb
from merl.training.data.schema import LEADS

pytestmark = pytest.mark.realdata


def test_cinc2021_all_records(shared_dir, monkeypatch):
    from merl.training.data.readers import wfdb_reader

    monkeypatch.setattr(wfdb_reader, "_read_with_wfdb", None)  # .mat 16x1+24: fast path only
    root = shared_dir / "real-ecg" / "cinc2021"
    reader = make_reader("wfdb", str(root), conditions_csv=str(shared_dir / "reference" / "csn_conditions.csv"))
    refs = reader.index(str(root)).refs
    assert len(refs) == 15
    keep_flat = CanonConfig(reject_flat_leads=False)
    for ref in refs:
        raw, ref = reader.read(ref)
        np.testing.assert_array_equal(raw.signal, wfdb.rdrecord(ref.path).p_signal.T)
        assert [n.lower() for n in raw.leads] == [n.lower() for n in LEADS]
        assert canonicalize(raw, keep_flat).shape == (12, 5000) and raw.fs == 500
        if ref.id == "JS20004":  # V2, V4, V6 are flat in the published record: masked, not quarantined
            sig, mask = canonicalize_masked(raw)
            assert [lead for lead, m in zip(LEADS, mask) if not m] == ["V2", "V4", "V6"]
            assert np.all(sig[~mask] == 0) and np.all(sig[mask].std(axis=1) > 0)
        assert ref.snomed and ref.age is not None and ref.sex in ("M", "F")
    by_id = {r.id: reader.read(r)[1] for r in refs}
    assert by_id["E07500"].snomed == ["67741000119109", "426177001"]
    assert by_id["E07500"].labels == ["SB"]  # 67741000119109 is not in the CSN table: no invented label
    assert by_id["HR06000"].labels == ["TWC", "SR"] and by_id["HR06000"].sex == "F"


def test_ptb_s0010_lower_case_leads_two_files_1000hz(shared_dir, monkeypatch):
    from merl.training.data.readers import wfdb_reader

    monkeypatch.setattr(wfdb_reader, "_read_with_wfdb", None)  # two format-16 files: fast path only
    path = shared_dir / "real-ecg" / "physionet-wfdb" / "s0010_re"
    raw = read_wfdb(path)
    ref = wfdb.rdrecord(str(path))
    np.testing.assert_array_equal(raw.signal, ref.p_signal.T)
    out = canonicalize(raw)
    assert out.shape == (12, 5000)
    # lead V6 ("v6", row 11 of 15) resampled 1000 -> 500 Hz tracks the source closely
    assert np.corrcoef(out[11, 100:-100], raw.signal[11, :10000:2][100:-100])[0, 1] > 0.99


def test_mitbih_100_missing_leads(shared_dir):
    path = shared_dir / "real-ecg" / "physionet-wfdb" / "100"
    raw = read_wfdb(path)
    np.testing.assert_array_equal(raw.signal, wfdb.rdrecord(str(path)).p_signal.T)
    assert raw.fs == 360 and raw.leads == ["MLII", "V5"]
    with pytest.raises(RecordError, match="missing leads"):
        canonicalize(raw, CanonConfig(zero_fill_missing_leads=False))
    out, mask = canonicalize_masked(raw)  # MLII is lead II, V5 is V5; the rest masked
    assert out.shape == (12, 5000) and [lead for lead, m in zip(LEADS, mask) if m] == ["II", "V5"]
    assert np.all(out[~mask] == 0) and np.any(out[1] != 0) and np.any(out[10] != 0)


def test_ptbxl_meta_rows(shared_dir, tmp_path):
    df = pd.read_csv(shared_dir / "real-ecg" / "ptbxl-meta" / "ptbxl_database_first520.csv")
    scp = load_scp_statements(shared_dir / "reference" / "ptbxl_scp_statements.csv")
    res = refs_from_table(df, tmp_path, "ptbxl", "filename_hr", scp)
    assert len(res.refs) == len(df) > 500 and not res.quarantined
    first = res.refs[0]
    assert first.id == "1" and first.labels[0] == "NORM" and first.path.endswith("records500/00000/00001_hr")
    assert {r.split for r in res.refs} == {"train", "val", "test"}
    assert all(c in scp.index for r in res.refs for c in r.labels)


def test_cpsc2018_original_mat(shared_dir):
    for name in ("A1980", "A1981"):
        data, age, sex = read_cpsc_mat(str(shared_dir / "real-ecg" / "cpsc2018" / f"{name}.mat"))
        assert data.shape[0] == 12 and data.shape[1] >= 3000 and sex in ("M", "F") and age is not None
        reader = make_reader("cpsc2018", "")
        raw, ref = reader.read(
            RecordRef(id=name, source="cpsc2018", path=str(shared_dir / "real-ecg" / "cpsc2018" / f"{name}.mat"))
        )
        assert canonicalize(raw).shape == (12, 5000)
