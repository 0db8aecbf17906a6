"""Small on-disk fixtures in each published dataset layout (real WFDB/.mat files).

Signals are built in canonical lead order with a distinct offset per lead (lead k has mean
0.1*(k+1) mV) so a test can tell whether leads were reordered by name. Writers then store
them in each dataset's own lead order and naming.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from merl.training.data.schema import LEADS

MIMIC_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
PTBXL_NAMES = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
CSN_TABLE = (
    "Acronym Name,Full Name,Snomed_CT\n"
    "AF,Atrial Flutter,164890007\n"
    "AFIB,Atrial Fibrillation,164889003\n"
    "SB,Sinus Bradycardia,426177001\n"
    "SR,Sinus Rhythm,426783006\n"
    "LBBB,left bundle branch block,164909002\n"
    "LFBBB,left front bundle branch block,164909002\n"
)


def canonical_signal(n: int = 5000, fs: float = 500.0, seed: int = 0) -> np.ndarray:
    """(12, n) mV: lead k = 0.1*(k+1) offset + a sine + a little noise, rounded to 1 uV."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    offs = 0.1 * (np.arange(12)[:, None] + 1)
    sig = offs + 0.5 * np.sin(2 * np.pi * 1.2 * t)[None, :] + 0.01 * rng.standard_normal((12, n))
    return np.round(sig, 3)


def reorder(sig: np.ndarray, names: list[str]) -> np.ndarray:
    """Canonical (12, n) -> rows in the order of ``names`` (matched case-insensitively)."""
    idx = [[lead.lower() for lead in LEADS].index(n.lower()) for n in names]
    return sig[idx]


def write_wfdb(folder: Path, name: str, sig: np.ndarray, fs: float, names: list[str], comments=None, fmt="16") -> Path:
    """(n_leads, n) mV -> <folder>/<name>.hea/.dat (gain 1000/mV, baseline 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    k = sig.shape[0]
    wfdb.wrsamp(
        name, fs=fs, units=["mV"] * k, sig_name=list(names), p_signal=sig.T.astype(np.float64),
        fmt=[fmt] * k, adc_gain=[1000.0] * k, baseline=[0] * k, comments=comments or [], write_dir=str(folder),
    )
    return folder / name


def write_cinc_mat(folder: Path, name: str, sig: np.ndarray, fs: float, names: list[str], comments: list[str]) -> Path:
    """CinC/CSN style: ``<name>.mat`` (v4 matrix ``val`` int16, data at byte 24) + header."""
    folder.mkdir(parents=True, exist_ok=True)
    val = np.round(sig * 1000).astype("<i2")
    k, n = val.shape
    with open(folder / f"{name}.mat", "wb") as fh:
        fh.write(struct.pack("<5i", 30, k, n, 0, 4) + b"val\x00")
        fh.write(np.ascontiguousarray(val.T).tobytes())
    lines = [f"{name} {k} {int(fs)} {n}"]
    for i, lead in enumerate(names):
        lines.append(f"{name}.mat 16x1+24 1000.0(0)/mV 16 0 {int(val[i, 0])} 0 0 {lead}")
    lines += [f"# {c}" for c in comments]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder / name


def mimic_layout(root: Path, n: int = 6, seed: int = 0, short_report_ids=()) -> list[str]:
    """MIMIC-IV-ECG layout; returns study ids. Studies in ``short_report_ids`` get a 2-word report."""
    rows, mm = [], []
    for i in range(n):
        subj, study = f"1000{i:04d}", f"4{i:07d}"
        rel = f"files/p1000/p{subj}/s{study}/{study}"
        write_wfdb(root / Path(rel).parent, study, reorder(canonical_signal(seed=seed + i), MIMIC_ORDER), 500, MIMIC_ORDER)
        rows.append({"subject_id": subj, "study_id": study, "file_name": study, "ecg_time": "2180-07-23 08:44:00", "path": rel})
        reps = {f"report_{j}": "" for j in range(18)}
        if study in short_report_ids:
            reps["report_0"] = "Sinus rhythm"
        else:
            reps["report_0"] = "*** Sinus rhythm"
            reps["report_1"] = "Normal EKG ==="
        mm.append({"subject_id": subj, "study_id": study, "cart_id": "1", "ecg_time": "x", **reps, "bandwidth": "0.5-150 Hz"})
    pd.DataFrame(rows).to_csv(root / "record_list.csv", index=False)
    pd.DataFrame(mm).to_csv(root / "machine_measurements.csv", index=False)
    return [r["study_id"] for r in rows]


def ptbxl_layout(root: Path, n: int = 10, seed: int = 0) -> None:
    rows = []
    for i in range(1, n + 1):
        sig = canonical_signal(seed=seed + i)
        hr = f"records500/00000/{i:05d}_hr"
        lr = f"records100/00000/{i:05d}_lr"
        write_wfdb(root / Path(hr).parent, Path(hr).name, sig, 500, PTBXL_NAMES)
        write_wfdb(root / Path(lr).parent, Path(lr).name, sig[:, ::5], 100, PTBXL_NAMES)
        rows.append({
            "ecg_id": i, "patient_id": 100.0 + i, "age": 50 + i, "sex": i % 2, "report": "sinusrhythmus normales ekg",
            "scp_codes": "{'NORM': 100.0, 'SR': 0.0}" if i % 2 else "{'IMI': 50.0, 'ABQRS': 0.0}",
            "strat_fold": (i - 1) % 10 + 1, "filename_lr": lr, "filename_hr": hr,
        })
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    (root / "scp_statements.csv").write_text(
        ",description,diagnostic,form,rhythm,diagnostic_class,diagnostic_subclass\n"
        "NORM,normal ECG,1,,,NORM,NORM\nIMI,inferior MI,1,,,MI,IMI\nSR,sinus rhythm,,,1,,\nABQRS,abnormal QRS,,1,,,\n"
    )


def cpsc_mat_layout(root: Path, n: int = 6, seed: int = 0) -> None:
    """Original CPSC2018: A0001.mat with struct ECG {sex, age, data} + REFERENCE.csv."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    refs = []
    for i in range(1, n + 1):
        rid = f"A{i:04d}"
        sig = canonical_signal(n=3000 + 1000 * i, seed=seed + i)
        savemat(root / f"{rid}.mat", {"ECG": {"sex": "Male" if i % 2 else "Female", "age": 40 + i, "data": sig}})
        refs.append({"Recording": rid, "First_label": (i - 1) % 9 + 1, "Second_label": 1 if i == 2 else "", "Third_label": ""})
    pd.DataFrame(refs).to_csv(root / "REFERENCE.csv", index=False)


def csn_layout(root: Path, n: int = 6, seed: int = 0) -> None:
    dxs = ["426177001,164889003", "164890007", "426783006,999999999", "164909002", "426783006", "164889003"]
    for i in range(1, n + 1):
        name = f"JS{i:05d}"
        comments = [f"Age: {50 + i}" if i != 3 else "Age: NaN", f"Sex: {'Male' if i % 2 else 'Female'}",
                    f"Dx: {dxs[(i - 1) % len(dxs)]}", "Rx: Unknown", "Hx: Unknown", "Sx: Unknown"]
        write_cinc_mat(root / "WFDBRecords" / "01" / "010", name, canonical_signal(seed=seed + i), 500, list(LEADS), comments)
    (root / "ConditionNames_SNOMED-CT.csv").write_text(CSN_TABLE)
