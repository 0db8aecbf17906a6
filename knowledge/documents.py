"""Turn knowledge entries and user files into LangChain ``Document`` passages.

An entry becomes several short passages rather than one long text: an overview (name,
synonyms, definition, subtypes) and one passage per diagnostic criterion, each prefixed
with the concept name. Short passages keep every criterion inside the encoder's token
window, so a phrase such as "notched R in V6" meets the criterion that says it.

User sources (markdown, text, PDF) are loaded with LangChain document loaders and split
with ``RecursiveCharacterTextSplitter``; their metadata carry ``kind: user`` and the file.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable
from pathlib import Path

from langchain_core.documents import Document

from merl.knowledge.schema import KnowledgeEntry

warnings.filterwarnings("ignore", message=r".*langchain-community.*", category=DeprecationWarning)

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".rst"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | PDF_SUFFIXES


def _entry_metadata(entry: KnowledgeEntry, source: str | None) -> dict:
    return {
        "kind": "entry",
        "concept_id": entry.id,
        "name": entry.name,
        "category": entry.category.value,
        "codes": {o: list(getattr(entry.codes, o)) for o in entry.codes.ontologies()},
        "ontologies": entry.codes.ontologies(),
        "source": source or f"knowledge/entries/{entry.category.value}.yaml",
        "provenance": entry.provenance,
    }


def entry_documents(entry: KnowledgeEntry, source: str | None = None) -> list[Document]:
    """Overview passage + one passage per criterion for one entry."""
    meta = _entry_metadata(entry, source)
    head = entry.name + (f" ({'; '.join(entry.synonyms)})" if entry.synonyms else "")
    overview = f"{head}. {entry.definition}"
    if entry.subtypes:
        overview += f" Subtypes: {'; '.join(entry.subtypes)}."
    docs = [Document(page_content=overview, metadata={**meta, "passage": "overview"}, id=f"{entry.id}#overview")]
    for i, crit in enumerate(entry.criteria):
        docs.append(
            Document(
                page_content=f"{entry.name}: {crit}",
                metadata={**meta, "passage": "criterion", "criterion": crit},
                id=f"{entry.id}#criterion{i}",
            )
        )
    return docs


def kb_documents(entries: Iterable[KnowledgeEntry], origin: dict[str, str] | None = None) -> list[Document]:
    origin = origin or {}
    out: list[Document] = []
    for e in entries:
        src = f"knowledge/entries/{origin[e.id]}" if e.id in origin else None
        out.extend(entry_documents(e, src))
    return out


def expand_sources(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus supported files found recursively under named folders."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES))
        elif p.is_file():
            if p.suffix.lower() not in SUPPORTED_SUFFIXES:
                from merl.core.config import ConfigError

                raise ConfigError(
                    f"{p}: unsupported document type {p.suffix!r}; supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"
                )
            out.append(p)
        else:
            raise FileNotFoundError(f"document source not found: {p}")
    return out


def load_source(path: Path) -> list[Document]:
    """One file -> raw LangChain documents (a PDF gives one per page)."""
    from langchain_community.document_loaders import PyPDFLoader, TextLoader

    loader = PyPDFLoader(str(path)) if path.suffix.lower() in PDF_SUFFIXES else TextLoader(str(path), encoding="utf-8")
    try:
        return loader.load()
    except Exception as e:  # loaders wrap decode/parse errors in various types
        from merl.core.config import ConfigError

        raise ConfigError(f"{path}: could not read document: {e}") from e


def user_documents(paths: Iterable[str | Path], chunk_size: int = 800, chunk_overlap: int = 120) -> list[Document]:
    """Load and split user sources into passages with ``kind: user`` metadata."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    out: list[Document] = []
    for path in expand_sources(paths):
        raw = [d for d in load_source(path) if d.page_content.strip()]
        tag = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        for i, chunk in enumerate(splitter.split_documents(raw)):
            meta = {
                "kind": "user",
                "source": str(path),
                "chunk": i,
                "ontologies": [],
                "codes": {},
            }
            if "page" in chunk.metadata:
                meta["page"] = int(chunk.metadata["page"])
            out.append(Document(page_content=chunk.page_content, metadata=meta, id=f"user:{tag}:{i}"))
    return out
