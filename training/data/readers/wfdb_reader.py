"""Reading WFDB records fast, and the generic reader for any folder of WFDB records.

Format-16 signals (MIMIC-IV-ECG, PTB-XL, PTB, and the CinC/CSN ``.mat`` files, which are
format 16 at byte offset 24) are read with one ``np.fromfile`` per signal file and scaled
exactly as ``wfdb`` does: ``(digital - baseline) / gain`` in float64, with the format's
invalid-sample value (-32768) as NaN. Anything else (format 212, 80, multiple samples per
frame, skew, multi-segment records) goes through ``wfdb.rdrecord``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from merl.training.data.labels import SnomedMap, parse_dx
from merl.training.data.readers.base import IndexResult, Quarantined, RawSignal, RecordError, RecordRef
from merl.training.data.readers.header import Header, UnsupportedHeader, comment_fields, read_header

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nu": 1.0}
_FMT16_NAN = -32768


def _unit_factor(units: str) -> float:
    return _UNIT_TO_MV.get(units.strip().lower(), 1.0)


def _fast_path_ok(h: Header) -> bool:
    return bool(h.signals) and all(
        s.fmt == "16" and s.samps_per_frame == 1 and s.skew == 0 for s in h.signals
    )


def _check_mat4(path: str, n_chans: int) -> None:
    """A CinC ``.mat`` must be a MATLAB v4 int16 matrix with one row per channel."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    if len(head) < 20:
        raise RecordError("unreadable .mat: shorter than a MATLAB v4 header")
    mtype, rows, _cols, imag, _namelen = np.frombuffer(head, dtype="<i4")
    if mtype != 30 or rows != n_chans or imag != 0:
        raise RecordError(f"unreadable .mat: not a MATLAB v4 int16 matrix with {n_chans} rows")


def _read_fmt16(record_path: str, h: Header) -> np.ndarray:
    """(n_sig, n_samples) float64 physical values, identical to wfdb's p_signal.T."""
    folder = os.path.dirname(record_path)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, s in enumerate(h.signals):
        groups.setdefault((s.file, s.byte_offset), []).append(i)
    n = h.n_samples
    out: np.ndarray | None = None
    for (fname, offset), chans in groups.items():
        path = os.path.join(folder, fname)
        try:
            size = os.path.getsize(path)
        except OSError:
            raise RecordError(f"missing signal file {fname}") from None
        if fname.endswith(".mat"):
            _check_mat4(path, len(chans))
        avail = (size - offset) // (2 * len(chans))
        if n is None:
            n = avail
        if avail < n:
            raise RecordError(f"truncated signal file {fname} ({max(avail, 0)} of {n} samples)")
        d = np.fromfile(path, dtype="<i2", count=n * len(chans), offset=offset).reshape(n, len(chans)).T
        if out is None:
            out = np.empty((h.n_sig, n), dtype=np.float64)
        base = np.array([h.signals[c].baseline for c in chans], dtype=np.float64)[:, None]
        gain = np.array([h.signals[c].gain for c in chans], dtype=np.float64)[:, None]
        p = (d.astype(np.float64) - base) / gain  # same float64 operations as wfdb's dac()
        invalid = d == _FMT16_NAN
        if invalid.any():
            p[invalid] = np.nan
        out[chans] = p
    assert out is not None
    return out


def _read_with_wfdb(record_path: str) -> tuple[np.ndarray, float, list[str], list[str], list[str]]:
    import wfdb

    try:
        rec = wfdb.rdrecord(record_path, physical=True)
    except FileNotFoundError as e:
        raise RecordError(f"missing signal file {Path(str(e.filename or '')).name}") from None
    except Exception as e:  # noqa: BLE001 - wfdb raises bare ValueError/IndexError on damaged files
        raise RecordError(f"unreadable record: {type(e).__name__}: {e}") from None
    if rec.p_signal is None:
        raise RecordError("unreadable record: no signal")
    if rec.sig_len and rec.p_signal.shape[0] < rec.sig_len:
        raise RecordError(f"truncated signal file ({rec.p_signal.shape[0]} of {rec.sig_len} samples)")
    return rec.p_signal.T.astype(np.float64), float(rec.fs), list(rec.sig_name), list(rec.units), list(rec.comments)


def read_wfdb(record_path: str | Path) -> RawSignal:
    """Read a WFDB record into mV: the fast path where it applies, ``wfdb`` otherwise."""
    record_path = str(record_path)
    header: Header | None
    try:
        header = read_header(record_path)
    except UnsupportedHeader:
        header = None
    if header is not None and _fast_path_ok(header):
        sig = _read_fmt16(record_path, header)
        units = [s.units for s in header.signals]
        names = [s.name for s in header.signals]
        fs, comments = header.fs, header.comments
    else:
        sig, fs, names, units, comments = _read_with_wfdb(record_path)
    factors = np.array([_unit_factor(u) for u in units])
    if np.any(factors != 1.0):
        sig = sig * factors[:, None]
    return RawSignal(signal=sig, fs=fs, leads=names, comments=comments)


def apply_header_metadata(ref: RecordRef, comments: list[str], snomed: SnomedMap | None) -> RecordRef:
    """Fill age/sex/labels from CinC/CSN-style ``# Key: value`` comments (if present)."""
    fields = comment_fields(comments)
    if ref.age is None and "age" in fields:
        try:
            age = float(fields["age"])
            ref.age = age if np.isfinite(age) else None
        except ValueError:
            ref.age = None
    if not ref.sex and "sex" in fields:
        s = fields["sex"].strip().lower()
        ref.sex = "M" if s in ("m", "male") else "F" if s in ("f", "female") else ""
    if "dx" in fields and not ref.snomed:
        codes = parse_dx(fields["dx"])
        ref.snomed = codes
        if snomed is not None:
            ref.labels = snomed.map(codes)
            ref.label_weights = [100.0] * len(ref.labels)
    return ref


def list_records(root: str | Path) -> tuple[list[Path], list[Path]]:
    """(every ``*.hea`` under ``root`` without extension, ``.mat`` signal files without a header).

    Sorted, so the index (and the shard tasks cut from it) is deterministic. A CinC/CSN
    ``.mat`` always has a same-named header; one without is a record whose header was lost.
    """
    heads = sorted(p.with_suffix("") for p in Path(root).rglob("*.hea"))
    known = set(heads)
    orphans = sorted(p.with_suffix("") for p in Path(root).rglob("*.mat") if p.with_suffix("") not in known)
    return heads, orphans


def index_folder(root: Path, source: str, rid) -> IndexResult:
    """Refs for every header under ``root``; header-less ``.mat`` files are quarantined."""
    heads, orphans = list_records(root)
    refs = [RecordRef(id=rid(p), source=source, path=str(p)) for p in heads]
    bad = [Quarantined(rid(p), source, f"{p}.mat", "missing header file") for p in orphans]
    return IndexResult(refs, bad)


class WfdbReader:
    """Any folder of WFDB records, recursively (CinC 2020/2021 headers included).

    Record id = path relative to the root, without extension. ``conditions_csv`` (the CSN
    ``ConditionNames_SNOMED-CT.csv``) turns ``#Dx`` SNOMED ids into acronyms.
    """

    name = "wfdb"

    def __init__(self, conditions_csv: str | None = None):
        self.conditions_csv = conditions_csv
        self._snomed: SnomedMap | None = None

    @property
    def snomed(self) -> SnomedMap | None:
        if self._snomed is None and self.conditions_csv:
            self._snomed = SnomedMap.from_csv(self.conditions_csv)
        return self._snomed

    def index(self, root: str) -> IndexResult:
        rootp = Path(root)
        if not rootp.is_dir():
            raise FileNotFoundError(f"dataset root {root} does not exist")
        return index_folder(rootp, self.name, lambda p: p.relative_to(rootp).as_posix())

    def read(self, ref: RecordRef) -> tuple[RawSignal, RecordRef]:
        raw = read_wfdb(ref.path)
        return raw, apply_header_metadata(ref, raw.comments, self.snomed)
