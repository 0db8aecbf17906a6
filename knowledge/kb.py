"""Load the knowledge base and resolve dataset labels to its entries by exact code.

``load_entries()`` reads every ``<category>.yaml`` under ``knowledge/entries`` (or a user
directory), validates each entry and the base as a whole, and returns a
:class:`KnowledgeBase`. Resolution is exact and ontology-aware: ``AF`` in CSN is atrial
flutter, never a substring match of ``AFIB`` (one of the reference defects).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import ValidationError

from merl.core.config import ConfigError, format_validation_error
from merl.knowledge.schema import ONTOLOGIES, KnowledgeBaseError, KnowledgeEntry, check_entries

ENTRIES_DIR = Path(__file__).resolve().parent / "entries"


def normalize_term(text: str) -> str:
    """'Left Bundle-Branch  Block' -> 'left bundle branch block' (for synonym lookup, not codes)."""
    return " ".join(text.lower().replace("-", " ").replace("_", " ").split())


class UnknownLabelError(ConfigError):
    """A label/code that no entry carries (message names the ontology and near matches)."""


class KnowledgeBase:
    """Validated entries plus an exact ``(ontology, code) -> entry`` index."""

    def __init__(self, entries: Iterable[KnowledgeEntry], origin: dict[str, str] | None = None):
        self.entries: list[KnowledgeEntry] = list(entries)
        check_entries(self.entries, origin)
        self.origin = dict(origin or {})
        self.by_id = {e.id: e for e in self.entries}
        self._codes: dict[tuple[str, str], KnowledgeEntry] = {}
        for e in self.entries:
            for onto, code in e.codes.items():
                self._codes[(onto, code)] = e

        self._terms: dict[str, list[KnowledgeEntry]] = {}
        for e in self.entries:
            for term in (e.name, *e.synonyms, *(c for _, c in e.codes.items())):
                bucket = self._terms.setdefault(normalize_term(term), [])
                if e not in bucket:
                    bucket.append(e)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def get(self, concept_id: str) -> KnowledgeEntry:
        try:
            return self.by_id[concept_id]
        except KeyError:
            raise UnknownLabelError(f"no knowledge entry with id {concept_id!r}") from None

    def matches(self, code: str, ontology: str | None = None) -> list[tuple[str, KnowledgeEntry]]:
        """All ``(ontology, entry)`` pairs whose code equals ``code`` exactly (one per ontology at most)."""
        code = code.strip()
        ontos = [ontology] if ontology else ONTOLOGIES
        return [(o, self._codes[(o, code)]) for o in ontos if (o, code) in self._codes]

    def lookup_term(self, text: str) -> list[KnowledgeEntry]:
        """Entries whose name, synonym or code equals ``text`` up to case, hyphens and spacing."""
        return list(self._terms.get(normalize_term(text), ()))

    def resolve(self, code: str, ontology: str | None = None) -> KnowledgeEntry:
        """The one entry carrying ``code`` (in ``ontology`` when given; else in any, or as an entry id).

        Raises :class:`UnknownLabelError` when nothing matches or, without an ontology, when
        the code means different concepts in different ontologies.
        """
        if ontology is not None and ontology not in ONTOLOGIES:
            raise UnknownLabelError(f"unknown ontology {ontology!r}; known: {', '.join(ONTOLOGIES)}")
        hits = self.matches(code, ontology)
        if not hits and ontology is None and code.strip() in self.by_id:
            return self.by_id[code.strip()]
        distinct = {e.id: e for _, e in hits}
        if len(distinct) == 1:
            return next(iter(distinct.values()))
        if len(distinct) > 1:
            detail = ", ".join(f"{o}: {e.id}" for o, e in hits)
            raise UnknownLabelError(f"code {code!r} is ambiguous across ontologies ({detail}); pass an ontology")
        known = sorted({c for (o, c) in self._codes if ontology in (None, o)})
        near = difflib.get_close_matches(code, known, n=3)
        scope = f"ontology {ontology!r}" if ontology else "any ontology"
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise UnknownLabelError(f"label {code!r} is not a code of any knowledge entry in {scope}{hint}")

    def resolve_labels(self, labels: Iterable[str], ontology: str | None = None) -> dict[str, KnowledgeEntry]:
        """``{label: entry}``; every unresolvable label is reported in one error."""
        out: dict[str, KnowledgeEntry] = {}
        errors: list[str] = []
        for label in labels:
            try:
                out[label] = self.resolve(label, ontology)
            except UnknownLabelError as e:
                errors.append(str(e))
        if errors:
            raise UnknownLabelError(f"{len(errors)} label(s) do not resolve:\n  " + "\n  ".join(errors))
        return out

    def for_task(self, task_name: str) -> dict[str, KnowledgeEntry]:
        """``{label: entry}`` for every label of a benchmark task, through the task's ontology."""
        from merl.core.tasks import get_task

        try:
            task = get_task(task_name)
        except KeyError as e:
            raise UnknownLabelError(str(e.args[0])) from None
        return self.resolve_labels(task.labels, task.ontology)

    def to_json(self) -> str:
        return json.dumps([e.model_dump(mode="json") for e in self.entries], indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> KnowledgeBase:
        return cls(KnowledgeEntry.model_validate(d) for d in json.loads(text))


def _load_file(path: Path) -> list[KnowledgeEntry]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise KnowledgeBaseError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise KnowledgeBaseError(f"{path}: top level must be a list of entries, got {type(data).__name__}")
    out = []
    for i, item in enumerate(data):
        label = f"{path.name} entry #{i + 1}" + (f" ({item.get('id')})" if isinstance(item, dict) and "id" in item else "")
        try:
            entry = KnowledgeEntry.model_validate(item)
        except ValidationError as e:
            raise KnowledgeBaseError(format_validation_error(e, label)) from None
        if entry.category.value != path.stem:
            raise KnowledgeBaseError(
                f"{label}: category {entry.category.value!r} does not match its file {path.name!r} "
                f"(entries of category X live in X.yaml)"
            )
        out.append(entry)
    return out


def load_entries(directory: str | Path | None = None) -> KnowledgeBase:
    """Read and validate every ``*.yaml`` under ``directory`` (default: the bundled entries)."""
    root = Path(directory) if directory else ENTRIES_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"knowledge entries directory not found: {root}")
    files = sorted(root.glob("*.yaml"))
    if not files:
        raise KnowledgeBaseError(f"no *.yaml entry files in {root}")
    entries: list[KnowledgeEntry] = []
    origin: dict[str, str] = {}
    for f in files:
        for e in _load_file(f):
            entries.append(e)
            origin.setdefault(e.id, f.name)
    return KnowledgeBase(entries, origin)
