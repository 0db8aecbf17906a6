"""Synthetic corpora in the published layouts read back with the standard tools (wfdb, scipy,
pandas) to the same signals and labels; byte-identical for a seed whatever the worker count;
planted damage is real and listed in corrupt.json."""

from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import wfdb

from merl.core.tasks import CPSC_CLASSES
from merl.training.data.reports import clean_mimic_report
from merl.training.data.synth import record_at, synthesize

N = 6


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return {layout: synthesize(layout, root / layout, N, seed=11, num_workers=1)
            for layout in ("mimic", "ptbxl", "cpsc2018", "csn")}


def test_mimic_roundtrip(corpora):
    s = corpora["mimic"]
    root = Path(s.out)
    rl = pd.read_csv(root / "record_list.csv")
    mm = pd.read_csv(root / "machine_measurements.csv")
    assert list(rl.columns) == ["subject_id", "study_id", "file_name", "ecg_time", "path"]
    assert [f"report_{k}" for k in range(18)] == [c for c in mm.columns if c.startswith("report_")]
    assert {"rr_interval", "p_onset", "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis", "cart_id"} <= set(mm.columns)
    assert len(rl) == N and (rl.study_id.values == mm.study_id.values).all()
    for i, row in rl.iterrows():
        rec, _ = record_at("mimic", 11, i)
        assert re.fullmatch(r"files/p\d{4}/p\d{8}/s\d{8}/\d{8}", row.path)
        assert row.path.startswith(f"files/p{str(row.subject_id)[:4]}/p{row.subject_id}/s{row.study_id}/")
        r = wfdb.rdrecord(str(root / row.path))
        assert r.sig_name == ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
        assert (r.fs, r.sig_len, r.fmt[0]) == (rec.fs, 10 * rec.fs, "16")  # 250-1000 Hz: readers resample
        want = rec.signal_mv[[0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]].T  # aVF before aVL on disk
        np.testing.assert_allclose(r.p_signal, want, atol=0.5 / 200 + 1e-6)
        fields = [f for f in mm.loc[i, [f"report_{k}" for k in range(18)]] if isinstance(f, str)]
        assert clean_mimic_report(fields) == rec.report
        assert str(rec.patient_id) == str(row.subject_id)


def test_ptbxl_roundtrip(corpora):
    root = Path(corpora["ptbxl"].out)
    db = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    assert len(db.columns) == 27 and db.strat_fold.between(1, 10).all()
    stm = pd.read_csv(root / "scp_statements.csv", index_col=0)
    assert len(stm) == 71 and {"diagnostic_class", "diagnostic_subclass", "form", "rhythm"} <= set(stm.columns)
    for i, (ecg_id, row) in enumerate(db.iterrows()):
        rec, _ = record_at("ptbxl", 11, i)
        codes = ast.literal_eval(row.scp_codes)
        assert codes == rec.scp and set(codes) <= set(stm.index)
        hr = wfdb.rdrecord(str(root / row.filename_hr))
        lr = wfdb.rdrecord(str(root / row.filename_lr))
        assert hr.sig_name == ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
        assert (hr.fs, hr.sig_len, lr.fs, lr.sig_len) == (500, 5000, 100, 1000)
        np.testing.assert_allclose(hr.p_signal, rec.signal_mv.T, atol=0.5e-3 + 1e-6)
        # 100 Hz version: decimated, no aliasing of the 50/60 Hz hum (compare band-limited)
        assert np.corrcoef(lr.p_signal[:, 1], hr.p_signal[::5, 1])[0, 1] > 0.95
        assert row.filename_hr == f"records500/{(ecg_id // 1000) * 1000:05d}/{ecg_id:05d}_hr"


def test_cpsc2018_roundtrip_and_real_struct_shape(corpora, shared_dir):
    root = Path(corpora["cpsc2018"].out)
    ref = pd.read_csv(root / "REFERENCE.csv")
    assert list(ref.columns) == ["Recording", "First_label", "Second_label", "Third_label"]
    real = scipy.io.loadmat(shared_dir / "real-ecg/cpsc2018/A1980.mat")["ECG"]
    for i, row in ref.iterrows():
        rec, _ = record_at("cpsc2018", 11, i)
        m = scipy.io.loadmat(root / f"{row.Recording}.mat")["ECG"]
        assert m.shape == real.shape and m.dtype.names == real.dtype.names
        e = m[0, 0]
        assert e["data"].shape[0] == 12 and 3000 <= e["data"].shape[1] <= 30000
        assert e["data"].dtype == real[0, 0]["data"].dtype and e["age"].dtype == real[0, 0]["age"].dtype
        np.testing.assert_allclose(e["data"], rec.signal_mv, atol=1e-6)
        assert e["sex"][0] in ("Male", "Female") and int(e["age"][0, 0]) == int(rec.age)
        labels = [CPSC_CLASSES[int(v) - 1] for v in row[1:] if not pd.isna(v)]
        assert labels == rec.cpsc and labels


def test_csn_roundtrip_and_header_style(corpora, shared_dir):
    root = Path(corpora["csn"].out)
    names = pd.read_csv(root / "ConditionNames_SNOMED-CT.csv")
    assert list(names.columns) == ["Acronym Name", "Full Name", "Snomed_CT"]
    real = (shared_dir / "real-ecg/cinc2021/JS20000.hea").read_text().splitlines()
    pattern = lambda line: re.sub(r"-?\d+", "N", line.split(" ", 1)[1])
    for i in range(N):
        rec, _ = record_at("csn", 11, i)
        base = root / "WFDBRecords/01/010" / f"JS{i + 1:05d}"
        lines = base.with_suffix(".hea").read_text().splitlines()
        assert [pattern(x) for x in lines[1:13]] == [pattern(x) for x in real[1:13]]
        assert [x.split(":")[0] for x in lines[13:]] == [x.split(":")[0] for x in real[13:]]
        r = wfdb.rdrecord(str(base))
        np.testing.assert_allclose(r.p_signal, rec.signal_mv.T, atol=0.5e-3 + 1e-6)
        assert scipy.io.loadmat(base.with_suffix(".mat"))["val"].dtype == np.int16
        dx = [c for c in r.comments if c.startswith("Dx:")][0][3:].strip().split(",")
        assert set(rec.snomed) <= set(dx)
        acr = set(names[names.Snomed_CT.astype(str).isin(dx)]["Acronym Name"])
        assert set(rec.csn) <= acr


def test_bytes_identical_whatever_the_worker_count(tmp_path):
    a = synthesize("csn", tmp_path / "a", 45, seed=5, corrupt_fraction=0.1, num_workers=1)
    b = synthesize("csn", tmp_path / "b", 45, seed=5, corrupt_fraction=0.1, num_workers=2)
    assert a.n_records == b.n_records == 45
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    c = synthesize("csn", tmp_path / "c", 45, seed=6, num_workers=1)
    assert tree_digest(tmp_path / "a") != tree_digest(Path(c.out))


@pytest.mark.parametrize("layout", ["mimic", "ptbxl", "cpsc2018", "csn"])
def test_planted_damage_is_real_and_listed(tmp_path, layout):
    s = synthesize(layout, tmp_path, 12, seed=2, corrupt_fraction=0.5, num_workers=1)
    plan = json.loads((tmp_path / "corrupt.json").read_text())
    assert s.n_corrupt == len(plan["records"]) == 6
    for entry in plan["records"]:
        base, kind = tmp_path / entry["path"], entry["kind"]
        if layout == "cpsc2018":
            if kind in ("garbage_mat", "truncated_mat"):
                with pytest.raises(Exception):  # noqa: B017 - scipy's error type varies with the damage
                    scipy.io.loadmat(base.with_suffix(".mat"))
                continue
            data = scipy.io.loadmat(base.with_suffix(".mat"))["ECG"][0, 0]["data"]
        elif kind == "missing_hea":
            assert not base.with_suffix(".hea").exists()
            continue
        elif kind == "empty_report":
            mm = pd.read_csv(tmp_path / "machine_measurements.csv", dtype={"study_id": str})
            assert mm.loc[mm.study_id == entry["id"], [f"report_{k}" for k in range(18)]].isna().all(axis=None)
            continue
        elif kind in ("truncated_dat", "truncated_mat", "garbage_mat"):
            with pytest.raises(Exception):  # noqa: B017 - wfdb's error type varies with the damage
                wfdb.rdrecord(str(base))
            continue
        else:
            data = wfdb.rdrecord(str(base)).p_signal.T
        if kind == "nan_lead":
            assert np.isnan(data).all(axis=1).sum() == 1
        elif kind == "flat_lead":
            assert (np.ptp(data, axis=1) == 0).sum() == 1
        elif kind == "missing_lead":
            assert data.shape[0] == 11


@pytest.mark.parametrize("layout", ["mimic", "ptbxl", "cpsc2018", "csn"])
def test_empty_corpus_still_has_its_tables(tmp_path, layout):
    s = synthesize(layout, tmp_path, 0, num_workers=1)
    assert s.n_records == 0 and json.loads((tmp_path / "corrupt.json").read_text())["records"] == []
    table = {"mimic": "record_list.csv", "ptbxl": "ptbxl_database.csv", "cpsc2018": "REFERENCE.csv",
             "csn": "ConditionNames_SNOMED-CT.csv"}[layout]
    assert (tmp_path / table).stat().st_size > 0


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown layout"):
        synthesize("xml", tmp_path, 1)
    with pytest.raises(ValueError, match="corrupt_fraction"):
        synthesize("csn", tmp_path, 1, corrupt_fraction=1.5)
