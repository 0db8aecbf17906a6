"""Chapman-Shaoxing-Ningbo v1.0.0 layout: WFDBRecords/NN/NNN/JSxxxxx.hea/.mat + SNOMED table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from merl.core.io import atomic_write_text

from ..generate import SynthRecord
from ..tables import CSN_CONDITIONS_CSV
from .base import LayoutWriter, varied_rate
from .common import CANONICAL, Written, damage_leads, digitize, mat4_int16, wfdb_header, write_record_files

GAIN = 1000.0
UNKNOWN_DX = "55930002"  # a code outside the CSN table, as some real headers carry


def record_path(k: int) -> str:
    """1-based record number -> ``WFDBRecords/01/010/JS00001`` (100 records per subfolder)."""
    sub = (k - 1) // 100
    return f"WFDBRecords/{sub // 10 + 1:02d}/{sub // 10 + 1:02d}{sub % 10}/JS{k:05d}"


class CsnWriter(LayoutWriter):
    name = "csn"
    prior = "csn"
    corrupt_kinds = ("garbage_mat", "truncated_mat", "missing_hea", "nan_lead", "flat_lead", "missing_lead")

    def sampling_rate(self, rng: np.random.Generator, realism: float = 1.0) -> int:
        return varied_rate(rng, realism)

    def write(self, root: Path, i: int, rec: SynthRecord, corrupt: str | None,
              rng: np.random.Generator) -> Written:
        rel = record_path(i + 1)
        name = rel.rsplit("/", 1)[1]
        counts, leads, j = damage_leads(digitize(rec.signal_mv, GAIN), CANONICAL, corrupt, rng)
        detail = CANONICAL[j] if j is not None else ""
        dx = list(rec.snomed) + ([UNKNOWN_DX] if rng.random() < 0.02 else [])
        age = "NaN" if rng.random() < 0.005 else str(int(rec.age))
        comments = [f"Age: {age}", f"Sex: {'Male' if rec.sex == 'M' else 'Female'}", f"Dx: {','.join(dx)}",
                    "Rx: Unknown", "Hx: Unknown", "Sx: Unknown"]
        header = wfdb_header(name, rec.fs, counts.shape[1], counts, leads, f"{name}.mat 16x1+24",
                             "1000.0(0)/mV", comments=comments)
        nbytes = write_record_files(root, rel, header, mat4_int16(counts), ".mat", corrupt)
        return Written({"record": name, "dx": ",".join(dx)}, nbytes, name, rel, detail)

    def finalize(self, root: Path, written: list[Written]) -> int:
        atomic_write_text(root / "ConditionNames_SNOMED-CT.csv", CSN_CONDITIONS_CSV)
        return len(CSN_CONDITIONS_CSV)
