"""What every dataset reader hands the pipeline: record references, raw signals, errors.

A reader has two halves with different costs. ``index`` runs once on the driver and only
touches the dataset's CSV tables / directory listing (O(n), no signal I/O), producing
:class:`RecordRef` rows that already carry metadata, labels and the split. ``read`` runs in
Ray workers, once per record, and returns a :class:`RawSignal` in physical units with the
lead names from the file; canonicalisation is the same for every dataset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from merl.core.config import ConfigError


class LayoutError(ConfigError):
    """The dataset root does not match the chosen layout (a table lacks a column ...).

    A ConfigError, so the CLI shows the message instead of a traceback: the fix is a
    different ``--dataset``/``--root``, not a code change.
    """


def require_columns(columns, need, path) -> None:
    missing = [c for c in need if c not in set(columns)]
    if missing:
        raise LayoutError(f"{path}: missing column(s) {missing}; has {list(columns)}")


class RecordError(Exception):
    """A record that cannot be used; ``reason`` becomes its quarantine entry."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class RecordRef:
    """One record as the index knows it (plain data: it travels to Ray workers as JSON)."""

    id: str  # record id inside its dataset (study_id, ecg_id, A0001, JS00001 ...)
    source: str  # mimic | ptbxl | cpsc2018 | csn | wfdb
    path: str  # absolute record path without extension (WFDB) or the .mat file (CPSC original)
    report: str = ""
    labels: list[str] = field(default_factory=list)
    label_weights: list[float] = field(default_factory=list)
    snomed: list[str] = field(default_factory=list)
    patient_id: str = ""
    age: float | None = None
    sex: str = ""
    split: str = ""  # "" = assigned later by the seeded split policy

    @property
    def uid(self) -> str:
        return f"{self.source}:{self.id}"

    def to_dict(self) -> dict[str, Any]:
        # shallow copy with fresh lists: dataclasses.asdict's deep copy dominates index time at 800k records
        d = dict(self.__dict__)
        for k in ("labels", "label_weights", "snomed"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecordRef:
        return cls(**d)


@dataclass
class RawSignal:
    """A record as read from disk: physical values in mV, lead names as in the file."""

    signal: np.ndarray  # (n_leads, n_samples) float64, mV; NaN where the file marks gaps
    fs: float
    leads: list[str]
    comments: list[str] = field(default_factory=list)


@dataclass
class Quarantined:
    id: str
    source: str
    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class IndexResult:
    refs: list[RecordRef]
    quarantined: list[Quarantined] = field(default_factory=list)


class Reader(Protocol):
    """The reader protocol (see module docstring)."""

    name: str

    def index(self, root: str) -> IndexResult: ...

    def read(self, ref: RecordRef) -> tuple[RawSignal, RecordRef]:
        """Signal of ``ref`` plus the ref updated with anything only the file knows
        (header ``#Dx`` labels, age, sex)."""
        ...
