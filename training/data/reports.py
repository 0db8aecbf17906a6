"""MIMIC-IV-ECG machine-report cleaning, exactly as the MERL preprocessing describes it."""

from __future__ import annotations

import re
from collections.abc import Iterable

REPORT_COLUMNS = tuple(f"report_{i}" for i in range(18))
_WS = re.compile(r"[\n\t\r]+")
_SPACES = re.compile(r" {2,}")
_EKG = re.compile(r"ekg", re.IGNORECASE)


def clean_mimic_report(fields: Iterable[object]) -> str:
    """``report_0..report_17`` -> one cleaned sentence string.

    Non-empty fields joined by ". ", EKG -> ECG, surrounding ``***``, ``=-`` and ``=``
    stripped, lower-cased, newlines/tabs to spaces, one final ".". Empty input -> "".
    """
    parts = []
    for f in fields:
        if f is None or (isinstance(f, float) and f != f):
            continue
        s = str(f).strip()
        if s and s.lower() != "nan":
            parts.append(s)
    text = ". ".join(parts)
    text = _EKG.sub("ECG", text)
    text = text.strip().strip("*").strip().strip("=-").strip("=").strip()
    text = _SPACES.sub(" ", _WS.sub(" ", text.lower())).strip()
    if not text:
        return ""
    return text if text.endswith(".") else text + "."
