"""Label aggregation: PTB-XL benchmarking protocol, CPSC numbers, CSN exact matching."""

from __future__ import annotations

import ast
import csv

import numpy as np
import pytest

from merl.core.tasks import TASKS
from merl.training.data.tasklabels import kept_labels, label_matrix, ptbxl_statements, record_labels

# ecg_id -> hand-checked labels against ptbxl_scp_statements.csv (likelihoods ignored).
EXPECTED = {
    39: {  # {'IMI': 15, 'LNGQT': 100, 'NST_': 100, 'DIG': 100, 'ABQRS': 0, 'SR': 0}
        "ptbxl_super_class": {"MI", "STTC"},
        "ptbxl_sub_class": {"IMI", "STTC", "NST"},
        "ptbxl_form": {"LNGQT", "NST", "DIG", "ABQRS"},
        "ptbxl_rhythm": {"SR"},
    },
    347: {  # LVH ISC_ LAO/LAE 1AVB NST_(0) LPR(0) SR(0) AFLT(0)
        "ptbxl_super_class": {"HYP", "STTC", "CD"},
        "ptbxl_sub_class": {"LVH", "ISC", "LAO/LAE", "AVB", "NST"},
        "ptbxl_form": {"NST", "LPR"},
        "ptbxl_rhythm": {"SR", "AFLT"},
    },
    305: {  # NDT LAFB NT_(0) SARRH(0)
        "ptbxl_super_class": {"STTC", "CD"},
        "ptbxl_sub_class": {"STTC", "LAFB/LPFB"},
        "ptbxl_form": {"NDT", "NT"},
        "ptbxl_rhythm": {"SARRH"},
    },
    2: {  # NORM(80) SBRAD(0): no form statement -> not in the form task
        "ptbxl_super_class": {"NORM"},
        "ptbxl_sub_class": {"NORM"},
        "ptbxl_form": set(),
        "ptbxl_rhythm": {"SBRAD"},
    },
}


def test_statement_table_counts_and_published_names():
    table = ptbxl_statements()
    assert len(table) == 71
    assert sum(s.diagnostic for s in table.values()) == 44
    assert sum(s.form for s in table.values()) == 19
    assert sum(s.rhythm for s in table.values()) == 12
    subclasses = {s.diagnostic_subclass for s in table.values() if s.diagnostic}
    assert subclasses == set(TASKS["ptbxl_sub_class"].labels)
    assert {s.diagnostic_class for s in table.values() if s.diagnostic} == set(TASKS["ptbxl_super_class"].labels)
    form = {c for c, s in table.items() if s.form}
    assert form == set(TASKS["ptbxl_form"].labels)
    assert {c for c, s in table.items() if s.rhythm} == set(TASKS["ptbxl_rhythm"].labels)


def test_statement_table_matches_published_csv(shared_dir):
    with open(shared_dir / "reference" / "ptbxl_scp_statements.csv") as f:
        rows = list(csv.DictReader(f))
    table = {s.code: s for s in ptbxl_statements().values()}
    assert set(table) == {r[""] for r in rows}
    for r in rows:
        s = table[r[""]]
        assert (s.diagnostic, s.form, s.rhythm) == (r["diagnostic"] == "1.0" or r["diagnostic"] == "1",
                                                    r["form"] in ("1", "1.0"), r["rhythm"] in ("1", "1.0"))
        assert s.diagnostic_class == r["diagnostic_class"]


@pytest.mark.realdata
def test_ptbxl_aggregation_on_real_metadata(shared_dir):
    path = shared_dir / "real-ecg" / "ptbxl-meta" / "ptbxl_database_first520.csv"
    with open(path, newline="") as f:
        rows = {int(r["ecg_id"]): ast.literal_eval(r["scp_codes"]) for r in csv.DictReader(f)}
    for ecg_id, expected in EXPECTED.items():
        codes = list(rows[ecg_id])
        for task_name, labels in expected.items():
            assert record_labels(TASKS[task_name], codes) == labels, (ecg_id, task_name)
            # Shards may store codes with or without the trailing underscore.
            stripped = [c.strip("_") for c in codes]
            assert record_labels(TASKS[task_name], stripped) == labels

    # Every record has a diagnostic or rhythm label; the form task keeps a subset only.
    all_codes = [list(c) for c in rows.values()]
    form = label_matrix(TASKS["ptbxl_form"], all_codes)
    sup = label_matrix(TASKS["ptbxl_super_class"], all_codes)
    assert 0 < len(form.rows) < len(sup.rows) <= len(all_codes)
    assert form.y.any(axis=1).all()
    assert not sup.unknown_codes


def test_label_matrix_keeps_only_records_with_task_labels():
    task = TASKS["ptbxl_rhythm"]
    m = label_matrix(task, [["NORM", "SR"], ["NORM"], ["AFIB", "PVC"], ["BOGUS"]])
    assert m.rows.tolist() == [0, 2]
    assert m.y[:, task.labels.index("SR")].tolist() == [1, 0]
    assert m.y[:, task.labels.index("AFIB")].tolist() == [0, 1]
    assert m.unknown_codes == {"BOGUS": 1}


def test_cpsc_names_and_reference_numbers():
    task = TASKS["icbeb"]
    assert record_labels(task, ["AFIB", "STE"]) == {"AFIB", "STE"}
    assert record_labels(task, ["2", "9"]) == {"AFIB", "STE"}  # REFERENCE.csv numbering


def test_csn_exact_matching_not_substring():
    task = TASKS["chapman"]
    assert record_labels(task, ["AFIB"]) == {"AFIB"}  # AF (flutter) is not set by AFIB
    assert record_labels(task, ["AF", "SB"]) == {"AF"}  # SB is not a chapman label
    assert record_labels(task, ["2AVB1"]) == {"2AVB1"}  # nor 2AVB


def test_csn_rare_labels_dropped_and_reported():
    task = TASKS["chapman"]
    codes = [["SR"]] * 12 + [["AFIB"]] * 10 + [["AF"]] * 9
    kept, dropped = kept_labels(task, codes)
    assert "SR" in kept and "AFIB" in kept and "AF" not in kept
    assert dropped["AF"] == 9 and dropped["WPW"] == 0
    m = label_matrix(task, codes, kept)
    assert len(m.rows) == 22 and m.labels == kept
    assert np.array_equal(m.y.sum(axis=0)[[kept.index("SR"), kept.index("AFIB")]], [12, 10])
    # Other tasks keep every label regardless of counts.
    assert kept_labels(TASKS["icbeb"], [["AFIB"]])[0] == list(TASKS["icbeb"].labels)
