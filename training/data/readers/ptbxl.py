"""PTB-XL: ``ptbxl_database.csv`` + ``scp_statements.csv`` + ``records500``/``records100``.

Labels are the SCP codes with their likelihoods (``scp_codes`` parsed with
``ast.literal_eval``), the report is the database's free text, and the split is the
official ``strat_fold`` (1-8 train, 9 val, 10 test).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from merl.training.data.labels import load_scp_statements, parse_scp_codes
from merl.training.data.readers.base import IndexResult, Quarantined, RawSignal, RecordRef, require_columns
from merl.training.data.readers.wfdb_reader import read_wfdb

log = logging.getLogger(__name__)


def fold_to_split(fold) -> str:
    """PTB-XL ``strat_fold`` -> split name (the published benchmark protocol)."""
    f = int(float(fold))
    if not 1 <= f <= 10:
        raise ValueError(f"strat_fold {fold!r} outside 1..10")
    return "test" if f == 10 else "val" if f == 9 else "train"


def _age(v) -> float | None:
    try:
        a = float(v)
    except (TypeError, ValueError):
        return None
    return a if math.isfinite(a) else None


def _sex(v) -> str:
    """PTB-XL codes sex as 0 = male, 1 = female; the CPSC re-write as text."""
    s = str(v).strip().lower()
    if s in ("0", "0.0", "m", "male"):
        return "M"
    if s in ("1", "1.0", "f", "female"):
        return "F"
    return ""


def refs_from_table(
    df: pd.DataFrame,
    root: Path,
    source: str,
    filename_col: str,
    scp: pd.DataFrame | None = None,
    official_split: bool = True,
) -> IndexResult:
    """Rows of a PTB-XL-style database table -> refs (also used for the CPSC re-write)."""
    need = ["ecg_id", "scp_codes", filename_col] + (["strat_fold"] if official_split else [])
    require_columns(df.columns, need, f"{root} database table")
    refs: list[RecordRef] = []
    bad: list[Quarantined] = []
    unknown: set[str] = set()
    has_report = "report" in df.columns
    for row in df.itertuples(index=False):
        d = row._asdict()
        rid = str(int(float(d["ecg_id"])))
        path = str(root / str(d[filename_col]).strip())
        try:
            codes = parse_scp_codes(d.get("scp_codes"))
            split = fold_to_split(d["strat_fold"]) if official_split else ""
        except (ValueError, KeyError) as e:
            bad.append(Quarantined(rid, source, path, f"bad metadata: {e}"))
            continue
        if scp is not None:
            unknown.update(c for c in codes if c not in scp.index)
        pid = d.get("patient_id")
        refs.append(
            RecordRef(
                id=rid,
                source=source,
                path=path,
                report=str(d["report"]).strip() if has_report and isinstance(d["report"], str) else "",
                labels=list(codes),
                label_weights=list(codes.values()),
                patient_id="" if pid is None or pd.isna(pid) else str(int(float(pid))),
                age=_age(d.get("age")),
                sex=_sex(d.get("sex")),
                split=split,
            )
        )
    if unknown:
        log.warning("%s: SCP codes not in scp_statements.csv (kept as is): %s", source, sorted(unknown))
    return IndexResult(refs, bad)


class PtbxlReader:
    name = "ptbxl"

    def __init__(self, sampling: str = "hr"):
        if sampling not in ("hr", "lr"):
            raise ValueError(f"PTB-XL sampling must be 'hr' (500 Hz) or 'lr' (100 Hz), got {sampling!r}")
        self.sampling = sampling

    def index(self, root: str) -> IndexResult:
        rootp = Path(root)
        db = rootp / "ptbxl_database.csv"
        if not db.is_file():
            raise FileNotFoundError(f"{db} not found: {root} is not a PTB-XL root")
        scp_path = rootp / "scp_statements.csv"
        scp = load_scp_statements(scp_path) if scp_path.is_file() else None
        df = pd.read_csv(db)
        return refs_from_table(df, rootp, self.name, f"filename_{self.sampling}", scp)

    def read(self, ref: RecordRef) -> tuple[RawSignal, RecordRef]:
        raw = read_wfdb(ref.path)
        return raw, ref
