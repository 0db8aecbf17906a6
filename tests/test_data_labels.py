"""Report cleaning, label normalisation and split policies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from merl.core.config import ConfigError
from merl.training.data.labels import SnomedMap, cpsc_labels, parse_dx, parse_scp_codes
from merl.training.data.reports import clean_mimic_report
from merl.training.data.splits import load_split_csv, seeded_split


def test_clean_mimic_report():
    fields = ["*** Sinus rhythm", "Possible Left atrial enlargement\t", "", np.nan, "Abnormal EKG ==="] + [""] * 13
    assert clean_mimic_report(fields) == "sinus rhythm. possible left atrial enlargement. abnormal ecg."
    assert clean_mimic_report(["=- Normal\nECG."]) == "normal ecg."
    assert clean_mimic_report(["", None, np.nan]) == ""


def test_parse_scp_codes_is_literal_only():
    assert parse_scp_codes("{'NORM': 100.0, 'SR': 0}") == {"NORM": 100.0, "SR": 0.0}
    assert parse_scp_codes("") == {} and parse_scp_codes(float("nan")) == {}
    for bad in ("__import__('os').system('true')", "['NORM']", "{'NORM': 'x'}"):
        with pytest.raises(ValueError):
            parse_scp_codes(bad)


def test_snomed_exact_and_cpsc_numbers(tmp_path):
    (tmp_path / "c.csv").write_text("Acronym Name,Full Name,Snomed_CT\nAF,flutter,164890007\nAFIB,fib,164889003\n")
    m = SnomedMap.from_csv(tmp_path / "c.csv")
    assert m.map(parse_dx(" 164889003, ,12345")) == ["AFIB"]
    assert m.map(["164890007"]) == ["AF"]
    assert cpsc_labels(["1", "", float("nan"), 9]) == ["NORM", "STE"]
    with pytest.raises(ValueError):
        cpsc_labels([10])


def test_seeded_split_by_group_deterministic():
    groups = [f"p{i // 3}" for i in range(3000)]
    a = seeded_split(groups, 0.2, 0.1, seed=42)
    assert a == seeded_split(list(groups), 0.2, 0.1, seed=42)
    assert a != seeded_split(groups, 0.2, 0.1, seed=1)
    by_group = {}
    for g, s in zip(groups, a):
        assert by_group.setdefault(g, s) == s  # one patient, one split
    n = pd.Series(list(by_group.values())).value_counts()
    assert (n["test"], n["val"], n["train"]) == (200, 80, 720)


def test_split_csv_validation(tmp_path):
    (tmp_path / "ok.csv").write_text("id,split\nA0001,train\nA0002,test\n")
    assert load_split_csv(tmp_path / "ok.csv") == {"A0001": "train", "A0002": "test"}
    (tmp_path / "bad.csv").write_text("id,split\nA0001,holdout\n")
    with pytest.raises(ConfigError, match="holdout"):
        load_split_csv(tmp_path / "bad.csv")
