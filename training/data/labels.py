"""Label normalisation: PTB-XL SCP codes, SNOMED CT -> CSN acronyms, CPSC2018 class numbers.

Every mapping here is an exact lookup. The reference implementation marked a CSN label
present when its acronym was a *substring* of the record's acronym string (``'AF' in
'AFIB'``), which invents labels; here a SNOMED id maps to an acronym only through the
conditions table, and ids the table does not know stay in ``snomed`` without a label.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pandas as pd

from merl.core.tasks import CPSC_CLASSES
from merl.training.data.readers.base import require_columns


def parse_scp_codes(text: str) -> dict[str, float]:
    """PTB-XL ``scp_codes`` (a Python dict literal) -> {code: likelihood}.

    ``ast.literal_eval`` only accepts literals, so a malicious cell cannot run code.
    """
    if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
        return {}
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"scp_codes {text!r} is not a dict literal: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"scp_codes {text!r} is not a dict literal")
    out: dict[str, float] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, (int, float)):
            raise ValueError(f"scp_codes {text!r}: entries must be str -> number")
        out[k] = float(v)
    return out


def load_scp_statements(path: str | Path) -> pd.DataFrame:
    """``scp_statements.csv`` indexed by statement code (the unnamed first column)."""
    df = pd.read_csv(path, index_col=0)
    df.index = df.index.astype(str).str.strip()
    return df


class SnomedMap:
    """SNOMED CT id -> acronym(s) from ``ConditionNames_SNOMED-CT.csv``, exact ids only.

    A few ids are listed under several acronyms in the published table (e.g. 164909002
    under LBBB, LBBBB and LFBBB); such an id yields every acronym the table gives it.
    """

    def __init__(self, mapping: dict[str, list[str]]):
        self.mapping = mapping

    @classmethod
    def from_csv(cls, path: str | Path) -> SnomedMap:
        df = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
        df.columns = [c.strip() for c in df.columns]
        require_columns(df.columns, ["Acronym Name", "Snomed_CT"], path)
        mapping: dict[str, list[str]] = {}
        for acr, code in zip(df["Acronym Name"], df["Snomed_CT"]):
            if isinstance(acr, str) and isinstance(code, str) and acr.strip() and code.strip():
                mapping.setdefault(code.strip(), []).append(acr.strip())
        return cls(mapping)

    def map(self, codes: list[str]) -> list[str]:
        """Acronyms of the known ids, in order, without duplicates."""
        out: list[str] = []
        for c in codes:
            for acr in self.mapping.get(c, ()):
                if acr not in out:
                    out.append(acr)
        return out


def parse_dx(value: str) -> list[str]:
    """A header ``Dx`` field (``426177001,164934002``) -> list of ids, blanks dropped."""
    return [c.strip() for c in str(value).split(",") if c.strip()]


def cpsc_labels(numbers) -> list[str]:
    """REFERENCE.csv label numbers (1..9, blanks/NaN skipped) -> class names, unique, in order."""
    out: list[str] = []
    for n in numbers:
        if n is None or (isinstance(n, float) and math.isnan(n)) or str(n).strip() == "":
            continue
        k = int(float(n))
        if not 1 <= k <= len(CPSC_CLASSES):
            raise ValueError(f"CPSC2018 label {n!r} outside 1..{len(CPSC_CLASSES)}")
        name = CPSC_CLASSES[k - 1]
        if name not in out:
            out.append(name)
    return out
