"""CPSC2018 (ICBEB 2018): the original ``.mat`` release or the PTB-XL-style WFDB re-write.

Original: ``A0001.mat`` .. with a MATLAB struct ``ECG`` {sex, age, data (12 x N mV, 500 Hz,
standard lead order)} and ``REFERENCE.csv`` (label numbers 1..9). Re-write:
``icbeb_database.csv`` (PTB-XL style, ``scp_codes`` with the classes) + ``records500/``.
The benchmark split is seeded (20% test, 10% of the rest val), not the re-write's folds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from merl.training.data.labels import cpsc_labels
from merl.training.data.readers.base import IndexResult, Quarantined, RawSignal, RecordError, RecordRef, require_columns
from merl.training.data.readers.ptbxl import _age, _sex, refs_from_table
from merl.training.data.readers.wfdb_reader import read_wfdb
from merl.training.data.schema import LEADS

CPSC_FS = 500.0


def read_cpsc_mat(path: str) -> tuple[np.ndarray, float | None, str]:
    """(12, N) mV signal, age, sex from an original CPSC2018 ``.mat`` file."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except FileNotFoundError:
        raise RecordError("missing .mat file") from None
    except Exception as e:  # noqa: BLE001 - scipy raises ValueError/TypeError/OSError on damaged files
        raise RecordError(f"unreadable .mat: {type(e).__name__}: {e}") from None
    ecg = mat.get("ECG")
    if ecg is None or not hasattr(ecg, "data"):
        raise RecordError("unreadable .mat: no ECG struct with a data field")
    data = np.asarray(ecg.data, dtype=np.float64)
    if data.ndim != 2:
        raise RecordError(f"unreadable .mat: ECG.data has shape {data.shape}, expected (12, N)")
    if data.shape[0] != len(LEADS):  # the file has no lead names: which one is absent is unknowable
        raise RecordError(f"missing leads: ECG.data has {data.shape[0]} rows, expected 12")
    return data, _age(getattr(ecg, "age", None)), _sex(getattr(ecg, "sex", ""))


class Cpsc2018Reader:
    name = "cpsc2018"

    def index(self, root: str) -> IndexResult:
        rootp = Path(root)
        if (rootp / "icbeb_database.csv").is_file():
            df = pd.read_csv(rootp / "icbeb_database.csv")
            col = "filename_hr" if "filename_hr" in df.columns else "filename"
            res = refs_from_table(df, rootp, self.name, col, official_split=False)
            for r in res.refs:  # the re-write spells STD/STE with PTB-XL's trailing underscore
                r.labels = [c.rstrip("_") for c in r.labels]
            return res
        ref_csv = rootp / "REFERENCE.csv"
        if not ref_csv.is_file():
            raise FileNotFoundError(
                f"{root}: neither REFERENCE.csv (original CPSC2018) nor icbeb_database.csv (WFDB re-write)"
            )
        mats = {p.stem: p for p in rootp.rglob("*.mat")}
        df = pd.read_csv(ref_csv, dtype=str, encoding="utf-8-sig")
        df.columns = [c.strip() for c in df.columns]
        require_columns(df.columns, ["Recording"], ref_csv)
        label_cols = [c for c in df.columns if c != "Recording"]
        refs: list[RecordRef] = []
        bad: list[Quarantined] = []
        for row in df.itertuples(index=False):
            rid = str(row.Recording).strip()
            path = mats.get(rid)
            if path is None:
                bad.append(Quarantined(rid, self.name, str(rootp / f"{rid}.mat"), "missing .mat file"))
                continue
            try:
                labels = cpsc_labels([getattr(row, c) for c in label_cols])
            except ValueError as e:
                bad.append(Quarantined(rid, self.name, str(path), f"bad label: {e}"))
                continue
            refs.append(RecordRef(id=rid, source=self.name, path=str(path), labels=labels, label_weights=[100.0] * len(labels)))
        return IndexResult(refs, bad)

    def read(self, ref: RecordRef) -> tuple[RawSignal, RecordRef]:
        if ref.path.endswith(".mat"):
            data, age, sex = read_cpsc_mat(ref.path)
            ref.age, ref.sex = age, sex
            return RawSignal(signal=data, fs=CPSC_FS, leads=list(LEADS)), ref
        raw = read_wfdb(ref.path)
        return raw, ref
