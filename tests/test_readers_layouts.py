"""Each published layout: index (metadata, labels, splits) and read, through make_reader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ecg_fixtures import PTBXL_NAMES, canonical_signal, cpsc_mat_layout, csn_layout, mimic_layout, ptbxl_layout, write_wfdb

from merl.training.data.canonical import canonicalize
from merl.training.data.readers import make_reader

EXPECTED_MEANS = 0.1 * (np.arange(12) + 1)


def _read_all(dataset, root, **kw):
    reader = make_reader(dataset, str(root), **kw)
    idx = reader.index(str(root))
    out = [reader.read(r) for r in idx.refs]
    return idx, out


def test_mimic_join_reports_and_reorder_leads_by_name(tmp_path):
    ids = mimic_layout(tmp_path, n=4, short_report_ids={"40000002"})
    idx, out = _read_all("mimic", tmp_path)
    assert [r.id for r in idx.refs] == [i for i in ids if i != "40000002"]
    assert [(q.id, q.reason) for q in idx.quarantined] == [("40000002", "report shorter than 4 words")]
    raw, ref = out[0]
    assert ref.report == "sinus rhythm. normal ecg." and ref.patient_id == "10000000"
    assert raw.leads[4:6] == ["aVF", "aVL"]  # MIMIC stores aVF before aVL
    canon = canonicalize(raw)
    np.testing.assert_allclose(canon.mean(axis=1), EXPECTED_MEANS, atol=0.02)  # aVL back in row 4


def test_mimic_join_is_by_study_id_not_row_order(tmp_path):
    mimic_layout(tmp_path, n=3)
    mm = pd.read_csv(tmp_path / "machine_measurements.csv", dtype=str)
    mm.loc[mm.study_id == "40000001", "report_0"] = "Atrial fibrillation with rapid ventricular response"
    mm.iloc[::-1].to_csv(tmp_path / "machine_measurements.csv", index=False)
    idx = make_reader("mimic", str(tmp_path)).index(str(tmp_path))
    rep = {r.id: r.report for r in idx.refs}
    assert rep["40000001"].startswith("atrial fibrillation with rapid")
    assert rep["40000000"] == "sinus rhythm. normal ecg."


@pytest.mark.parametrize("sampling,fs", [("hr", 500), ("lr", 100)])
def test_ptbxl_labels_folds_and_sampling(tmp_path, sampling, fs):
    ptbxl_layout(tmp_path, n=10)
    idx, out = _read_all("ptbxl", tmp_path, ptbxl_sampling=sampling)
    refs = {r.id: r for _, r in out}
    assert refs["1"].labels == ["NORM", "SR"] and refs["1"].label_weights == [100.0, 0.0]
    assert refs["2"].labels == ["IMI", "ABQRS"] and refs["2"].label_weights == [50.0, 0.0]
    assert (refs["9"].split, refs["10"].split, refs["3"].split) == ("val", "test", "train")
    assert (refs["1"].sex, refs["2"].sex, refs["1"].patient_id, refs["1"].age) == ("F", "M", "101", 51.0)
    assert refs["1"].report == "sinusrhythmus normales ekg"
    raw = out[0][0]
    assert raw.fs == fs and raw.leads == PTBXL_NAMES
    np.testing.assert_allclose(canonicalize(raw).mean(axis=1), EXPECTED_MEANS, atol=0.02)


def test_cpsc2018_original_mat(tmp_path):
    cpsc_mat_layout(tmp_path, n=3)
    (tmp_path / "A0003.mat").unlink()
    idx, out = _read_all("cpsc2018", tmp_path)
    assert [q.reason for q in idx.quarantined] == ["missing .mat file"]
    (raw1, r1), (raw2, r2) = out
    assert r1.labels == ["NORM"] and r2.labels == ["AFIB", "NORM"]
    assert (r1.age, r1.sex, r2.sex) == (41.0, "M", "F")
    np.testing.assert_allclose(raw1.signal, canonical_signal(n=4000, seed=1))
    canon = canonicalize(raw1)  # 8 s record: zero-padded at the end
    assert canon.shape == (12, 5000) and np.all(canon[:, 4000:] == 0)


def test_cpsc2018_wfdb_rewrite(tmp_path):
    rows = []
    for i in (1, 2):
        rel = f"records500/00000/{i:05d}_hr"
        write_wfdb(tmp_path / "records500" / "00000", f"{i:05d}_hr", canonical_signal(seed=i), 500, PTBXL_NAMES)
        rows.append({"ecg_id": i, "filename": rel, "age": 60, "sex": "Female", "patient_id": i, "strat_fold": 1,
                     "scp_codes": "{'STD_': 100}" if i == 1 else "{'AFIB': 100, 'STE_': 100}"})
    pd.DataFrame(rows).to_csv(tmp_path / "icbeb_database.csv", index=False)
    idx, out = _read_all("cpsc2018", tmp_path)
    assert [r.labels for _, r in out] == [["STD"], ["AFIB", "STE"]]
    assert all(r.split == "" for r in idx.refs)  # the benchmark's seeded split, not the folds
    assert out[0][1].sex == "F"


def test_csn_exact_snomed_mapping(tmp_path):
    csn_layout(tmp_path, n=6)
    _, out = _read_all("csn", tmp_path)
    refs = {r.id: r for _, r in out}
    assert refs["JS00001"].labels == ["SB", "AFIB"]
    assert refs["JS00002"].labels == ["AF"]  # atrial flutter: no substring match into AFIB
    assert refs["JS00006"].labels == ["AFIB"]  # and AFIB never implies AF
    assert refs["JS00003"].labels == ["SR"] and refs["JS00003"].snomed == ["426783006", "999999999"]
    assert refs["JS00003"].age is None  # "Age: NaN"
    assert refs["JS00004"].labels == ["LBBB", "LFBBB"]  # one id listed under two acronyms
    assert (refs["JS00001"].age, refs["JS00001"].sex, refs["JS00002"].sex) == (51.0, "M", "F")


def test_generic_wfdb_recursive_ids(tmp_path):
    write_wfdb(tmp_path / "a" / "b", "r1", canonical_signal(n=1000, fs=250, seed=1), 250, PTBXL_NAMES)
    write_wfdb(tmp_path, "r0", canonical_signal(seed=2)[:6], 500, PTBXL_NAMES[:6])
    idx, out = _read_all("wfdb", tmp_path)
    assert [r.id for r in idx.refs] == ["a/b/r1", "r0"]
    assert out[0][0].fs == 250 and len(out[1][0].leads) == 6


def test_missing_root_files_are_clear_errors(tmp_path):
    for ds in ("mimic", "ptbxl", "cpsc2018", "csn"):
        with pytest.raises(FileNotFoundError):
            make_reader(ds, str(tmp_path)).index(str(tmp_path))


def test_wrong_columns_are_layout_errors(tmp_path):
    from merl.core.config import ConfigError

    ptbxl_layout(tmp_path, n=2)
    pd.read_csv(tmp_path / "ptbxl_database.csv").drop(columns=["strat_fold"]).to_csv(tmp_path / "ptbxl_database.csv", index=False)
    with pytest.raises(ConfigError, match=r"missing column\(s\) \['strat_fold'\]"):
        make_reader("ptbxl", str(tmp_path)).index(str(tmp_path))
