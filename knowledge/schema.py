"""Schema of one knowledge-base entry (``knowledge/entries/<category>.yaml``) and the
cross-entry checks that make the base safe to resolve labels against.

An entry is one clinical concept: its name, synonyms, the codes it carries in each label
ontology, a definition, diagnostic criteria and provenance. Codes are matched exactly, so
a code may belong to at most one entry per ontology.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from merl.core.config import ConfigError

ONTOLOGIES: tuple[str, ...] = ("ptbxl_superclass", "ptbxl_subclass", "scp", "cpsc", "csn", "snomed")


class Category(str, Enum):
    normal = "normal"
    rhythm = "rhythm"
    conduction = "conduction"
    hypertrophy = "hypertrophy"
    infarction = "infarction"
    ischemia = "ischemia"
    st_t = "st_t"
    morphology = "morphology"
    axis = "axis"
    device = "device"
    other = "other"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _clean_list(values: list[str]) -> list[str]:
    out = [str(v).strip() for v in values]
    if any(not v for v in out):
        raise ValueError("empty string in list")
    return out


class Codes(_Strict):
    """Label codes of the concept, per ontology (all optional)."""

    scp: list[str] = []
    ptbxl_subclass: list[str] = []
    ptbxl_superclass: list[str] = []
    cpsc: list[str] = []
    csn: list[str] = []
    snomed: list[str] = []

    @field_validator(*ONTOLOGIES, mode="before")
    @classmethod
    def _lists(cls, v: list[str] | None) -> list[str]:
        return _clean_list(v or [])

    def items(self) -> Iterable[tuple[str, str]]:
        """(ontology, code) pairs."""
        for onto in ONTOLOGIES:
            for code in getattr(self, onto):
                yield onto, code

    def ontologies(self) -> list[str]:
        return [o for o in ONTOLOGIES if getattr(self, o)]


class KnowledgeEntry(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$", description="stable lowercase slug, unique across files")
    name: str = Field(min_length=1)
    category: Category
    synonyms: list[str] = []
    codes: Codes = Codes()
    definition: str = Field(min_length=1)
    criteria: list[str] = []
    subtypes: list[str] = []
    related: list[str] = []
    differential: list[str] = []
    provenance: str = Field(min_length=1)

    @field_validator("synonyms", "criteria", "subtypes", "related", "differential", mode="before")
    @classmethod
    def _lists(cls, v: list[str] | None) -> list[str]:
        return _clean_list(v or [])

    @field_validator("name", "definition", "provenance")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("must not be blank")
        return v


class KnowledgeBaseError(ConfigError):
    """The entries are individually valid but inconsistent together; message lists every problem."""


def check_entries(entries: list[KnowledgeEntry], origin: dict[str, str] | None = None) -> None:
    """Unique ids, no dangling ``related``/``differential`` ids, each code in one entry per ontology."""
    origin = origin or {}
    where = lambda eid: f"{eid} ({origin[eid]})" if eid in origin else eid
    problems: list[str] = []
    seen: dict[str, int] = defaultdict(int)
    for e in entries:
        seen[e.id] += 1
    problems += [f"duplicate id {i!r} ({n} entries)" for i, n in seen.items() if n > 1]
    ids = set(seen)
    for e in entries:
        for field in ("related", "differential"):
            for ref in getattr(e, field):
                if ref not in ids:
                    problems.append(f"{where(e.id)}: {field} id {ref!r} does not exist")
                elif ref == e.id:
                    problems.append(f"{where(e.id)}: {field} refers to itself")
    owners: dict[tuple[str, str], list[str]] = defaultdict(list)
    for e in entries:
        for onto, code in e.codes.items():
            if e.id not in owners[(onto, code)]:
                owners[(onto, code)].append(e.id)
    for (onto, code), eids in owners.items():
        if len(eids) > 1:
            problems.append(f"code {code!r} in ontology {onto!r} is claimed by several entries: {', '.join(map(where, eids))}")
    if problems:
        raise KnowledgeBaseError("inconsistent knowledge base:\n  " + "\n  ".join(problems))
