"""Dataset readers: one per published layout, all yielding the same RecordRef/RawSignal."""

from __future__ import annotations

from pathlib import Path

from merl.training.data.readers.base import IndexResult, LayoutError, Quarantined, RawSignal, Reader, RecordError, RecordRef

DATASETS = ("mimic", "ptbxl", "cpsc2018", "csn", "wfdb")


def make_reader(
    dataset: str,
    root: str,
    *,
    ptbxl_sampling: str = "hr",
    min_report_words: int = 4,
    conditions_csv: str | None = None,
) -> Reader:
    """The reader for ``dataset``; cheap to construct, so Ray workers build their own."""
    if dataset == "mimic":
        from merl.training.data.readers.mimic import MimicReader

        return MimicReader(min_report_words=min_report_words)
    if dataset == "ptbxl":
        from merl.training.data.readers.ptbxl import PtbxlReader

        return PtbxlReader(sampling=ptbxl_sampling)
    if dataset == "cpsc2018":
        from merl.training.data.readers.cpsc2018 import Cpsc2018Reader

        return Cpsc2018Reader()
    if dataset == "csn":
        from merl.training.data.readers.csn import CONDITIONS_NAME, CsnReader

        return CsnReader(conditions_csv or str(Path(root) / CONDITIONS_NAME))
    if dataset == "wfdb":
        from merl.training.data.readers.wfdb_reader import WfdbReader

        return WfdbReader(conditions_csv)
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


__all__ = [
    "DATASETS",
    "IndexResult",
    "LayoutError",
    "Quarantined",
    "RawSignal",
    "Reader",
    "RecordError",
    "RecordRef",
    "make_reader",
]
