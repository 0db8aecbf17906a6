"""MIMIC-IV-ECG: ``record_list.csv`` + ``machine_measurements.csv`` + ``files/.../<study>``.

Reports are joined on ``study_id`` with one hash join over the two tables (O(n)); the
reference looked each record's row up with a full-table scan (quadratic).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from merl.training.data.readers.base import IndexResult, Quarantined, RawSignal, RecordRef, require_columns
from merl.training.data.readers.wfdb_reader import read_wfdb
from merl.training.data.reports import REPORT_COLUMNS, clean_mimic_report


class MimicReader:
    name = "mimic"

    def __init__(self, min_report_words: int = 4):
        self.min_report_words = min_report_words

    def index(self, root: str) -> IndexResult:
        rootp = Path(root)
        rl_path, mm_path = rootp / "record_list.csv", rootp / "machine_measurements.csv"
        for p in (rl_path, mm_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p} not found: {root} is not a MIMIC-IV-ECG root")
        require_columns(pd.read_csv(rl_path, nrows=0).columns, ["subject_id", "study_id", "path"], rl_path)
        rl = pd.read_csv(rl_path, dtype=str, usecols=["subject_id", "study_id", "path"])
        header = pd.read_csv(mm_path, nrows=0).columns
        require_columns(header, ["study_id", "report_0"], mm_path)
        cols = [c for c in REPORT_COLUMNS if c in header]
        mm = pd.read_csv(mm_path, dtype=str, usecols=["study_id", *cols], keep_default_na=False)
        mm = mm.drop_duplicates("study_id")
        mm["_report"] = [clean_mimic_report(r) for r in mm[cols].to_numpy(dtype=object)]
        df = rl.merge(mm[["study_id", "_report"]], on="study_id", how="left", validate="many_to_one")

        refs: list[RecordRef] = []
        bad: list[Quarantined] = []
        base = str(rootp)
        cols = [df[c].to_numpy(dtype=object) for c in ("study_id", "subject_id", "path", "_report")]
        for sid, subj, rel, rep in zip(*cols):
            path = os.path.join(base, rel)
            if not isinstance(rep, str):
                bad.append(Quarantined(sid, self.name, path, "no report in machine_measurements.csv"))
            elif not rep:
                bad.append(Quarantined(sid, self.name, path, "empty report"))
            elif len(rep.split()) < self.min_report_words:
                bad.append(Quarantined(sid, self.name, path, f"report shorter than {self.min_report_words} words"))
            else:
                refs.append(RecordRef(id=sid, source=self.name, path=path, report=rep, patient_id=subj or ""))
        return IndexResult(refs, bad)

    def read(self, ref: RecordRef) -> tuple[RawSignal, RecordRef]:
        raw = read_wfdb(ref.path)
        return raw, ref
