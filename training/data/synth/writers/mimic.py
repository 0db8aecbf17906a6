"""MIMIC-IV-ECG v1.0 layout: record_list.csv, machine_measurements.csv, files/pNNNN/... WFDB."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from ..generate import SynthRecord
from .base import LayoutWriter, varied_rate
from .common import CANONICAL, Written, damage_leads, digitize, wfdb_header, write_csv, write_record_files

LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")  # aVF before aVL
ORDER = [CANONICAL.index(name) for name in LEADS]
GAIN = 200.0  # adu/mV (5 uV resolution)
N_REPORT = 18
MISSING = 29999  # the machine's "not measured" value
MEASURE_COLS = ["bandwidth", "filtering", "rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end",
                "t_end", "p_axis", "qrs_axis", "t_axis"]


class MimicWriter(LayoutWriter):
    name = "mimic"
    corrupt_kinds = ("truncated_dat", "missing_hea", "nan_lead", "flat_lead", "missing_lead", "empty_report")
    records_per_patient = 3

    def patient_id(self, pidx: int) -> str:
        return str(10000032 + 11 * pidx)

    def sampling_rate(self, rng: np.random.Generator, realism: float = 1.0) -> int:
        return varied_rate(rng, realism)

    def write(self, root: Path, i: int, rec: SynthRecord, corrupt: str | None,
              rng: np.random.Generator) -> Written:
        subject = int(rec.patient_id)
        study = 40000000 + (i * 7919) % 10_000_000
        rel = f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"
        when = datetime(2180, 1, 1) + timedelta(days=(subject * 37) % 3650 + 40 * (i % 3),
                                                minutes=int(rng.integers(0, 1440)))
        counts, leads, j = damage_leads(digitize(rec.signal_mv[ORDER], GAIN), LEADS, corrupt, rng)
        name = str(study)
        header = wfdb_header(name, rec.fs, counts.shape[1], counts, leads, f"{name}.dat 16", "200/mV",
                             when.strftime("%H:%M:%S %d/%m/%Y"))
        nbytes = write_record_files(root, rel, header, np.ascontiguousarray(counts.T).tobytes(), ".dat", corrupt)
        detail = LEADS[j] if j is not None else ""
        reports = [] if corrupt == "empty_report" else rec.statements[:N_REPORT]
        m = rec.measurements
        acq = rec.acquisition
        p_on = 40 + int(rng.integers(0, 30))
        has_p = m["pr_ms"] is not None
        qrs_on = p_on + int(m["pr_ms"]) if has_p else p_on + 150

        def val(x):
            return MISSING if x is None else int(round(x))

        row = {
            "subject_id": subject, "study_id": study, "file_name": name,
            "ecg_time": when.strftime("%Y-%m-%d %H:%M:%S"), "path": rel,
            "cart_id": 6000 + (subject % 977),
            **{f"report_{k}": (reports[k] if k < len(reports) else None) for k in range(N_REPORT)},
            "bandwidth": f"{acq['highpass_hz']:g}-{acq['lowpass_hz']:g} Hz" if acq else "0.05-150 Hz",
            "filtering": " ".join(([f"{acq['notch_hz']} Hz notch"] if acq.get("notch_hz") else [])
                                  + (["Baseline filter"] if acq.get("highpass_hz", 0) >= 0.3 else [])) or None,
            "rr_interval": val(m["rr_ms"]),
            "p_onset": p_on if has_p else MISSING,
            "p_end": p_on + val(m["p_ms"]) if has_p else MISSING,
            "qrs_onset": qrs_on, "qrs_end": qrs_on + val(m["qrs_ms"]), "t_end": qrs_on + val(m["qt_ms"]),
            "p_axis": val(m["p_axis"]), "qrs_axis": val(m["qrs_axis"]), "t_axis": val(m["t_axis"]),
        }
        return Written(row, nbytes, name, rel, detail)

    def finalize(self, root: Path, written: list[Written]) -> int:
        import pandas as pd

        cols = ["subject_id", "study_id", "cart_id", "ecg_time",
                *[f"report_{k}" for k in range(N_REPORT)], *MEASURE_COLS]
        df = pd.DataFrame([w.row for w in written], columns=[*cols, "file_name", "path"])
        n = write_csv(root / "record_list.csv", df[["subject_id", "study_id", "file_name", "ecg_time", "path"]])
        n += write_csv(root / "machine_measurements.csv", df[cols])
        return n
