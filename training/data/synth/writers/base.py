"""What every layout writer provides (one module per published layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..generate import SynthRecord
from .common import Written


class LayoutWriter:
    """One published dataset layout. Subclasses fill the class attributes and methods."""

    name: str = ""
    prior: str = "general"  # condition prior: general | cpsc | csn
    corrupt_kinds: tuple[str, ...] = ()
    records_per_patient: int = 1

    def duration(self, rng: np.random.Generator) -> float:
        return 10.0

    def patient_id(self, pidx: int) -> str:
        return str(pidx + 1)

    def write(self, root: Path, i: int, rec: SynthRecord, corrupt: str | None,
              rng: np.random.Generator) -> Written:
        """Write record ``i``'s files (damaged as ``corrupt`` says); return its metadata row."""
        raise NotImplementedError

    def finalize(self, root: Path, written: list[Written]) -> int:
        """Write the layout's tables from all rows, in record order; return bytes written."""
        raise NotImplementedError
