"""A fast WFDB header parser (plain string operations).

``wfdb.rdheader`` spends most of a record's read time building pandas structures for a
dozen signal lines; this parser does the same job with ``str.split`` and two small regexes.
It understands single-segment headers (the ECG datasets); anything it does not
(multi-segment records) raises :class:`UnsupportedHeader` and the caller falls back to
``wfdb``. Field semantics follow the WFDB header specification: missing gain -> 200,
gain 0 -> 200, missing baseline -> ADC zero, missing units -> mV.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from merl.training.data.readers.base import RecordError

DEFAULT_GAIN = 200.0
_FMT = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_GAIN = re.compile(r"^([-+0-9.eE]+)(?:\((-?\d+)\))?(?:/(\S+))?$")


class UnsupportedHeader(Exception):
    """Valid WFDB, but outside what the fast path handles (use wfdb instead)."""


@dataclass
class SignalSpec:
    file: str
    fmt: str
    samps_per_frame: int = 1
    skew: int = 0
    byte_offset: int = 0
    gain: float = DEFAULT_GAIN
    baseline: int = 0
    units: str = "mV"
    adc_zero: int = 0
    name: str = ""


@dataclass
class Header:
    record_name: str
    n_sig: int
    fs: float
    n_samples: int | None
    signals: list[SignalSpec] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def comment_fields(comments: list[str]) -> dict[str, str]:
    """``# Key: value`` comments (CinC/CSN style) as a dict with lower-case keys."""
    out: dict[str, str] = {}
    for c in comments:
        if ":" in c:
            k, v = c.split(":", 1)
            out.setdefault(k.strip().lower(), v.strip())
    return out


def _parse_signal_line(line: str) -> SignalSpec:
    parts = line.split(None, 8)
    if len(parts) < 2:
        raise RecordError(f"unreadable header: signal line {line!r} has no format field")
    m = _FMT.match(parts[1])
    if not m:
        raise RecordError(f"unreadable header: bad format field {parts[1]!r}")
    spec = SignalSpec(
        file=parts[0],
        fmt=m.group(1),
        samps_per_frame=int(m.group(2) or 1),
        skew=int(m.group(3) or 0),
        byte_offset=int(m.group(4) or 0),
    )
    adc_zero = int(parts[4]) if len(parts) > 4 else 0
    spec.adc_zero = adc_zero
    spec.baseline = adc_zero
    if len(parts) > 2:
        g = _GAIN.match(parts[2])
        if not g:
            raise RecordError(f"unreadable header: bad gain field {parts[2]!r}")
        gain = float(g.group(1))
        spec.gain = gain if gain != 0 else DEFAULT_GAIN
        if g.group(2) is not None:
            spec.baseline = int(g.group(2))
        if g.group(3):
            spec.units = g.group(3)
    if len(parts) > 8:
        spec.name = parts[8].strip()
    return spec


def parse_header(text: str) -> Header:
    """Parse header text; raise RecordError for garbage, UnsupportedHeader for multi-segment."""
    comments: list[str] = []
    lines: list[str] = []
    for raw in text.splitlines():
        s = raw.strip()
        if not s:
            continue
        if s.startswith("#"):
            comments.append(s[1:].strip())
        else:
            lines.append(s)
    if not lines:
        raise RecordError("unreadable header: no record line")
    rec = lines[0].split()
    if "/" in rec[0]:
        raise UnsupportedHeader("multi-segment record")
    try:
        n_sig = int(rec[1])
        fs = float(rec[2].split("/")[0].split("(")[0]) if len(rec) > 2 else 250.0
        n_samples = int(rec[3]) if len(rec) > 3 else None
    except (IndexError, ValueError):
        raise RecordError(f"unreadable header: bad record line {lines[0]!r}") from None
    signals = [_parse_signal_line(s) for s in lines[1 : 1 + n_sig]]
    if len(signals) != n_sig:
        raise RecordError(f"unreadable header: declares {n_sig} signals but lists {len(signals)}")
    return Header(rec[0], n_sig, fs, n_samples, signals, comments)


def read_header(record_path: str | Path) -> Header:
    """Read and parse ``<record_path>.hea``."""
    hea = Path(f"{record_path}.hea")
    try:
        text = hea.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise RecordError("missing header file") from None
    return parse_header(text)
