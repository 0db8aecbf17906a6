"""File-level helpers shared by the layout writers: WFDB header/signal, MAT v4, damage."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from merl.core.io import atomic_path

# Leads in the canonical order of SynthRecord.signal_mv.
CANONICAL = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
WFDB_NAN = -32768  # format-16 "invalid sample" value: read back as NaN


@dataclass
class Written:
    """What a writer returns for one record: its metadata row and bytes written."""

    row: dict
    nbytes: int
    record_id: str
    path: str  # relative to the corpus root, no extension
    detail: str = ""  # for damaged records: which lead was damaged, etc.


def write_file(path: Path, data: bytes) -> int:
    """Temp-and-rename: a crash never leaves a half-written record file under its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)


def write_csv(path: Path, df) -> int:
    """Atomic CSV (fsync + rename) via merl.core.io."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path.stat().st_size


def digitize(sig_mv: np.ndarray, gain: float) -> np.ndarray:
    """(nsig, n) mV -> int16 counts, clipped away from the NaN sentinel."""
    return np.clip(np.rint(sig_mv * gain), -32767, 32767).astype("<i2")


def _signed16(x: int) -> int:
    x %= 65536
    return x - 65536 if x > 32767 else x


def wfdb_header(record: str, fs: int, n: int, counts: np.ndarray, leads: list[str], spec: str,
                gain: str, time_date: str = "", comments: list[str] | tuple = ()) -> str:
    """WFDB header text; ``spec`` is the file-and-format prefix, e.g. ``'x.dat 16'``."""
    lines = [f"{record} {len(leads)} {fs} {n}" + (f" {time_date}" if time_date else "")]
    for j, lead in enumerate(leads):
        c = counts[j]
        init = int(c[0]) if len(c) else 0
        lines.append(f"{spec} {gain} 16 0 {init} {_signed16(int(c.astype(np.int64).sum()))} 0 {lead}")
    lines += [f"# {c}" if not c.startswith("#") else c for c in comments]
    return "\n".join(lines) + "\n"


def mat4_int16(counts: np.ndarray, name: str = "val") -> bytes:
    """MATLAB v4 file holding one int16 matrix (the PhysioNet/CinC ``.mat`` layout).

    The 20-byte header + ``val\\0`` puts the samples at byte 24, column-major, so WFDB reads
    the same file as format ``16x1+24``.
    """
    rows, cols = counts.shape
    header = np.array([30, rows, cols, 0, len(name) + 1], dtype="<i4").tobytes()
    return header + name.encode() + b"\0" + np.ascontiguousarray(counts.T, dtype="<i2").tobytes()


def damage_leads(counts: np.ndarray, leads: list[str], kind: str | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, list[str], int | None]:
    """Lead-level damage shared by all layouts: a NaN lead, a flat lead, or a lead missing
    from header and data. Returns (counts, leads, index of the damaged lead or None)."""
    if kind not in ("nan_lead", "flat_lead", "missing_lead"):
        return counts, list(leads), None
    j = int(rng.integers(counts.shape[0]))
    if kind == "missing_lead":
        return np.delete(counts, j, axis=0), [x for k, x in enumerate(leads) if k != j], j
    out = counts.copy()
    out[j] = WFDB_NAN if kind == "nan_lead" else 0
    return out, list(leads), j


def truncate(data: bytes) -> bytes:
    """Cut a file mid-sample, well short of what the header promises."""
    return data[: len(data) // 3 + 1]


def write_record_files(root: Path, rel: str, header: str, signal: bytes, ext: str, kind: str | None) -> int:
    """Signal file + WFDB header, damaged as ``kind`` says (truncated, garbage, header missing)."""
    if kind in ("truncated_dat", "truncated_mat"):
        signal = truncate(signal)
    elif kind == "garbage_mat":
        signal = GARBAGE
    n = write_file(root / f"{rel}{ext}", signal)
    if kind != "missing_hea":
        n += write_file(root / f"{rel}.hea", header.encode())
    return n


GARBAGE = b"MATLAB 5.0 MAT-file, garbage follows\x00" + bytes(range(256)) * 3
