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

    def sampling_rate(self, rng: np.random.Generator, realism: float = 1.0) -> int:
        """Acquisition rate of a record: 500 Hz where the layout fixes it (folder names,
        files without a rate field); layouts whose headers carry it vary it (see below)."""
        return 500

    def patient_id(self, pidx: int) -> str:
        return str(pidx + 1)

    def write(self, root: Path, i: int, rec: SynthRecord, corrupt: str | None,
              rng: np.random.Generator) -> Written:
        """Write record ``i``'s files (damaged as ``corrupt`` says); return its metadata row."""
        raise NotImplementedError

    def finalize(self, root: Path, written: list[Written]) -> int:
        """Write the layout's tables from all rows, in record order; return bytes written."""
        raise NotImplementedError


# Rates of real 12-lead archives (250 Hz monitors, 360 Hz Holter-style, 1000 Hz research
# carts) for layouts whose WFDB headers carry the rate; readers resample to 500 Hz.
SAMPLING_RATES = {250: 0.08, 360: 0.04, 500: 0.7, 1000: 0.18}


def varied_rate(rng: np.random.Generator, realism: float) -> int:
    """A rate drawn from :data:`SAMPLING_RATES`; ``realism`` scales the chance of not-500."""
    rates = np.array(list(SAMPLING_RATES))
    p = np.array(list(SAMPLING_RATES.values()))
    other = rates != 500
    p[other] *= min(1.0, realism)
    p[~other] = 1.0 - p[other].sum()
    return int(rates[int(rng.choice(len(rates), p=p))])
