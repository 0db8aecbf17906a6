"""CPSC2018 original layout: A0001.mat (struct ECG {sex, age, data}) + REFERENCE.csv."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from merl.core.tasks import CPSC_CLASSES

from ..generate import SynthRecord
from .base import LayoutWriter
from .common import CANONICAL, GARBAGE, Written, truncate, write_csv, write_file


class Cpsc2018Writer(LayoutWriter):
    name = "cpsc2018"
    prior = "cpsc"
    corrupt_kinds = ("garbage_mat", "truncated_mat", "nan_lead", "flat_lead", "missing_lead")

    def duration(self, rng: np.random.Generator) -> float:
        """6-60 s, most records 10-20 s as in the challenge data; whole samples at 500 Hz."""
        return float(np.round(np.clip(rng.lognormal(np.log(13.0), 0.45), 6.0, 60.0) * 500) / 500)

    def write(self, root: Path, i: int, rec: SynthRecord, corrupt: str | None,
              rng: np.random.Generator) -> Written:
        import scipy.io

        name = f"A{i + 1:04d}"
        data = rec.signal_mv.astype(np.float64)
        detail = ""
        if corrupt in ("nan_lead", "flat_lead", "missing_lead"):
            j = int(rng.integers(12))
            detail = CANONICAL[j]
            if corrupt == "missing_lead":
                data = np.delete(data, j, axis=0)
            else:
                data[j] = np.nan if corrupt == "nan_lead" else 0.0
        buf = io.BytesIO()
        ecg = {"sex": "Male" if rec.sex == "M" else "Female",
               "age": np.array([[int(rec.age)]], dtype=np.uint8), "data": data}
        scipy.io.savemat(buf, {"ECG": ecg}, format="5")
        blob = buf.getvalue()
        if corrupt == "garbage_mat":
            blob = GARBAGE
        elif corrupt == "truncated_mat":
            blob = truncate(blob)
        nbytes = write_file(root / f"{name}.mat", blob)
        nums = [CPSC_CLASSES.index(c) + 1 for c in rec.cpsc][:3]
        row = {"Recording": name, **{col: (nums[k] if k < len(nums) else None)
                                     for k, col in enumerate(("First_label", "Second_label", "Third_label"))}}
        return Written(row, nbytes, name, name, detail)

    def finalize(self, root: Path, written: list[Written]) -> int:
        import pandas as pd

        df = pd.DataFrame([w.row for w in written], columns=["Recording", "First_label", "Second_label", "Third_label"])
        for col in ("First_label", "Second_label", "Third_label"):
            df[col] = df[col].astype("Int64")
        return write_csv(root / "REFERENCE.csv", df)
