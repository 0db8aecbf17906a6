"""Condition prior and compatibility, labels in every task ontology, reports, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from merl.core.tasks import CPSC_CLASSES, TASKS
from merl.training.data.synth import generate_record
from merl.training.data.synth import labels as L
from merl.training.data.synth.conditions import ALL_CONDITIONS, RHYTHMS, SINUS, compatible, sample_conditions
from merl.training.data.synth.tables import csn_snomed, scp_statements

IMPOSSIBLE = [{"afib", "avb1"}, {"afib", "aflutter"}, {"lbbb", "rbbb"}, {"wpw", "avb1"}, {"wpw", "mobitz1"},
              {"afib", "mobitz2"}, {"avb3", "avb1"}, {"paced", "lbbb"}, {"afib", "pac"}]


def test_prior_is_realistic_and_never_impossible():
    rng = np.random.default_rng(0)
    draws = [set(sample_conditions(rng)) for _ in range(3000)]
    normal = np.mean([d == {"sinus_normal"} for d in draws])
    assert 0.36 < normal < 0.46
    assert all(len(d & set(RHYTHMS)) == 1 for d in draws)
    assert all(compatible(d) for d in draws)
    for bad in IMPOSSIBLE:
        assert not any(bad <= d for d in draws)
        assert not compatible(bad | ({"sinus_normal"} if not bad & set(RHYTHMS) else set()))
    assert compatible({"afib", "lbbb"}) and compatible({"sinus_normal", "rbbb", "lafb", "avb1"})
    seen = set().union(*draws)
    assert len(seen) > 0.9 * len(ALL_CONDITIONS)


def _with_rhythm(cond: str) -> list[str]:
    if cond in RHYTHMS:
        return [cond]
    if cond == "acute_mi":
        return ["sinus_normal", "mi_inferior", "acute_mi"]
    return ["sinus_normal", cond]


@pytest.mark.parametrize("cond", ALL_CONDITIONS)
def test_every_condition_generates_with_valid_labels(cond):
    conds = _with_rhythm(cond)
    assert compatible(set(conds))
    r = generate_record(np.random.default_rng(3), conditions=conds)
    assert r.signal_mv.shape == (12, 5000) and np.isfinite(r.signal_mv).all()
    assert set(r.scp) <= set(scp_statements()) and all(0 <= v <= 100 for v in r.scp.values())
    assert set(r.cpsc) <= set(CPSC_CLASSES) and len(r.cpsc) <= 3
    assert set(r.csn) <= set(csn_snomed()) and r.snomed == list(dict.fromkeys(csn_snomed()[a] for a in r.csn))
    for code in L.SCP[cond]:
        assert code in r.scp
    assert r.report.endswith(".") and r.report == r.report.lower()


def test_claimed_task_coverage_is_really_emitted():
    """Every label docs/synthetic.md claims appears in the records of the conditions mapping to it."""
    rng = np.random.default_rng(5)
    emitted: dict[str, set[str]] = {o: set() for o in ("ptbxl_superclass", "ptbxl_subclass", "scp", "cpsc", "csn")}
    for cond in ALL_CONDITIONS:
        r = generate_record(rng, conditions=_with_rhythm(cond), duration_s=4.0)
        for code in r.scp:
            for onto, label in L._ptbxl_views(code).items():
                emitted[onto].add(label)
        emitted["cpsc"] |= set(r.cpsc)
        emitted["csn"] |= set(r.csn)
    for esc in ("junctional", "ventricular"):
        emitted["csn"] |= set(L.csn_labels(["avb3"], esc))
    for name, (produced, missing) in L.task_coverage().items():
        onto = TASKS[name].ontology
        assert set(produced) <= emitted[onto], (name, set(produced) - emitted[onto])
        assert len(produced) >= 0.9 * len(TASKS[name].labels) - 1, (name, missing)


def test_labels_follow_clinical_meaning():
    rng = np.random.default_rng(7)
    normal = generate_record(rng, conditions=["sinus_normal"])
    assert "NORM" in normal.scp and normal.cpsc == ["NORM"] and normal.csn == ["SR"]
    af = generate_record(rng, conditions=["afib", "lbbb"])
    assert {"AFIB", "CLBBB"} <= set(af.scp) and "NORM" not in af.scp
    assert set(af.cpsc) == {"AFIB", "CLBBB"} and {"AFIB", "LBBB"} <= set(af.csn)
    assert "fibrillation" in af.report or "afib" in af.report
    assert "bundle branch block" in af.report or "lbbb" in af.report
    brady = generate_record(rng, conditions=["sinus_brady"])
    assert {"NORM", "SBRAD"} <= set(brady.scp) and brady.csn == ["SB"]


def test_reports_are_machine_style_and_mostly_long_enough():
    rng = np.random.default_rng(11)
    recs = [generate_record(rng, duration_s=2.0) for _ in range(300)]
    words = np.array([len(r.report.split()) for r in recs])
    assert (words >= 4).mean() > 0.85 and (words < 4).sum() >= 1  # a few exercise the drop rule
    assert all(r.report and r.report == r.report.lower() and not r.report.startswith("*") for r in recs)
    assert any("EKG" in " ".join(r.statements) for r in recs)  # raw fields need the EKG->ECG cleaning
    summaries = {s for r in recs for s in ("normal ecg", "borderline ecg", "abnormal ecg") if s in r.report}
    assert summaries == {"normal ecg", "borderline ecg", "abnormal ecg"}
    for r in recs:
        if set(r.conditions) == {"sinus_normal"}:
            assert "abnormal" not in r.report
        rhythm = next(c for c in r.conditions if c in RHYTHMS)
        if rhythm in SINUS - {"sinus_arrhythmia"}:
            assert "sinus" in r.report


def test_cli_synth_prints_a_synthetic_summary(tmp_path):
    from merl.cli import app

    res = CliRunner().invoke(app, ["data", "synth", "--layout", "ptbxl", "--out", str(tmp_path), "--n", "8",
                                   "--seed", "2", "--corrupt-fraction", "0.25", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "synthetic" in res.output
    assert len(json.loads((tmp_path / "corrupt.json").read_text())["records"]) == 2
    assert json.loads((tmp_path / "synthetic.json").read_text())["synthetic"] is True
    bad = CliRunner().invoke(app, ["data", "synth", "--layout", "xml", "--out", str(tmp_path), "--n", "1"])
    assert bad.exit_code != 0


def test_docs_coverage_table_matches_the_generator():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "synthetic.md").read_text()
    for name, (produced, missing) in L.task_coverage().items():
        row = next(line for line in doc.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1].split(": ", 1)[1].split() == produced, name
        assert (cells[2].split() if cells[2] != "-" else []) == missing, name
