"""CSN (Chapman-Shaoxing-Ningbo): ``WFDBRecords/**/<JSxxxxx>.hea/.mat`` + the SNOMED table.

Labels come from each header's ``#Dx`` SNOMED ids, mapped to acronyms with
``ConditionNames_SNOMED-CT.csv`` by exact id (see :mod:`merl.training.data.labels`).
"""

from __future__ import annotations

from pathlib import Path

from merl.training.data.readers.base import IndexResult
from merl.training.data.readers.wfdb_reader import WfdbReader, index_folder

CONDITIONS_NAME = "ConditionNames_SNOMED-CT.csv"


class CsnReader(WfdbReader):
    name = "csn"

    def index(self, root: str) -> IndexResult:
        rootp = Path(root)
        recs_dir = rootp / "WFDBRecords"
        if not recs_dir.is_dir():
            raise FileNotFoundError(f"{recs_dir} not found: {root} is not a CSN root")
        if not self.conditions_csv or not Path(self.conditions_csv).is_file():
            raise FileNotFoundError(
                f"conditions table {self.conditions_csv} not found (needed to map SNOMED ids to labels)"
            )
        return index_folder(recs_dir, self.name, lambda p: p.name)
