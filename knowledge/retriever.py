"""A LangChain retriever over the knowledge index with ontology-aware query expansion.

* A query that is exactly a label code ("CLBBB", "164909002", "LAFB/LPFB") or an entry id
  (or, failing that, a name, synonym or code up to case and hyphens: "lbbb", "a-fib") is
  looked up in the knowledge base; the concept's overview passage is ranked first
  (score 1.0, ``match: exact``) and the vector search runs on the concept's name and
  synonyms instead of the bare code, which a sentence encoder cannot read.
* Anything else ("wide QRS with notched R in V6") goes straight to vector search.

Every returned ``Document`` is a copy whose metadata add ``score``, ``rank`` and ``match``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from merl.knowledge.index import KnowledgeIndex, metadata_filter
from merl.knowledge.schema import ONTOLOGIES, Category, KnowledgeEntry

# The metadata a query may filter on, and the values each takes (the CLI and the service check these).
FILTER_VALUES: dict[str, tuple[str, ...]] = {
    "ontology": ONTOLOGIES,
    "category": tuple(c.value for c in Category),
    "kind": ("entry", "user"),
}


def expansion_text(entry: KnowledgeEntry) -> str:
    """What a code stands for, in words the encoder knows."""
    return "; ".join([entry.name, *entry.synonyms])


def code_expansions(index: KnowledgeIndex) -> list[str]:
    """The text a query that names one entry embeds, for every entry of the index."""
    return [expansion_text(e) for e in index.kb.entries] if index.kb is not None else []


class KnowledgeRetriever(BaseRetriever):
    """Hybrid retriever: exact code/term hits first, then cosine similarity (or MMR) passages."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: KnowledgeIndex
    k: int = 5
    mmr: bool = False
    fetch_k: int = 20
    lambda_mult: float = 0.5
    score_threshold: Optional[float] = None
    lexical_weight: float = 0.0
    ontology: Optional[str] = None  # restricts code expansion and filters passages by ontology
    category: Optional[str] = None
    kind: Optional[str] = None  # "entry" | "user"

    @classmethod
    def from_config(cls, index: KnowledgeIndex, cfg, **overrides) -> KnowledgeRetriever:
        base = dict(k=cfg.k, mmr=cfg.search == "mmr", fetch_k=cfg.fetch_k, lambda_mult=cfg.lambda_mult,
                    score_threshold=cfg.score_threshold, lexical_weight=cfg.lexical_weight)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(index=index, **base)

    def code_hits(self, query: str) -> list[KnowledgeEntry]:
        """Entries the query names exactly: a code (in the retriever's ontology, if set), an
        entry id, or else a name/synonym/code up to case, hyphens and spacing."""
        kb = self.index.kb
        if kb is None:
            return []
        q = query.strip()
        hits = {e.id: e for _, e in kb.matches(q, self.ontology)}
        if not hits and q in kb.by_id:
            hits[q] = kb.by_id[q]
        if not hits:
            hits = {e.id: e for e in kb.lookup_term(q) if self.ontology is None or self.ontology in e.codes.ontologies()}
        return list(hits.values())

    def plan(self, query: str) -> tuple[list[KnowledgeEntry], str]:
        """(entries the query names exactly, the text to embed for the vector search)."""
        entries = self.code_hits(query)
        return entries, "; ".join(expansion_text(e) for e in entries) if entries else query

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self.retrieve(query)

    def retrieve(self, query: str, vector: Optional[Sequence[float]] = None) -> list[Document]:
        """The ranked passages; ``vector`` is the embedding of ``plan(query)[1]`` when the caller
        computed it already (the service embeds many queries in one batch)."""
        keep = metadata_filter(self.ontology, self.category, self.kind)
        entries, text = self.plan(query)
        out: list[Document] = []
        seen: set[str] = set()
        for e in entries:
            doc = self.index.store.docstore.search(f"{e.id}#overview")
            if isinstance(doc, Document) and (keep is None or keep(doc.metadata)):
                out.append(self._tag(doc, 1.0, "exact", text))
                seen.add(doc.id)
        hits = self.index.search(
            text,
            k=self.k + len(seen),
            mmr=self.mmr,
            fetch_k=max(self.fetch_k, self.k + len(seen)),
            lambda_mult=self.lambda_mult,
            filter=keep,
            score_threshold=self.score_threshold,
            lexical_weight=self.lexical_weight,
            vector=vector,
        )
        for doc, score in hits:
            if doc.id not in seen:
                out.append(self._tag(doc, score, "vector", text))
                seen.add(doc.id)
        out = out[: max(self.k, len(entries))]
        for rank, d in enumerate(out, 1):
            d.metadata["rank"] = rank
        return out

    @staticmethod
    def _tag(doc: Document, score: float, match: str, query_text: str) -> Document:
        return Document(
            page_content=doc.page_content,
            metadata={**doc.metadata, "score": round(float(score), 6), "match": match, "query_text": query_text},
            id=doc.id,
        )


def result_rows(docs: list[Document]) -> list[dict]:
    """Retrieved passages as JSON-ready rows: what `merl knowledge query --json` prints and the
    service's ``POST /query`` returns."""
    return [
        {
            "rank": d.metadata["rank"],
            "score": d.metadata["score"],
            "match": d.metadata["match"],
            "concept_id": d.metadata.get("concept_id"),
            "name": d.metadata.get("name"),
            "codes": d.metadata.get("codes", {}),
            "source": d.metadata.get("source"),
            "id": d.id,
            "text": d.page_content,
        }
        for d in docs
    ]
