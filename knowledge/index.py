"""A FAISS index of knowledge passages, persisted without pickle.

On disk an index is a directory::

    INDEX/
      manifest.json    format, embedding model, dimension, index layout, file checksums
      index.faiss      the FAISS index (faiss.write_index, native format)
      docstore.jsonl   one passage per vector row: id, text, metadata (JSON)
      entries.json     the knowledge entries the passages came from (for code expansion)

Loading rebuilds a ``langchain_community`` FAISS vector store from these files, so the
search features (similarity, MMR, metadata filters, score threshold) are LangChain's, and
``allow_dangerous_deserialization`` is never needed. Vectors are L2-normalised and the
index uses inner product, so scores are cosine similarities in [-1, 1]. Saving writes a
temporary sibling directory and renames it into place: a failed build or save leaves the
previous index untouched.

The index may live at a URI (``s3://bucket/kb-index``): it is saved locally, then uploaded
file by file with ``manifest.json`` last (removed first when replacing an index), and loaded
from a temporary download, since FAISS reads local files. A folder without its manifest is
never read as an index.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from merl.core.config import ConfigError
from merl.core.io import is_file, listdir, local_copy, sha256_file, upload_dir
from merl.core.uri import is_uri, join, local_path
from merl.knowledge.config import IndexConfig
from merl.knowledge.kb import KnowledgeBase

log = logging.getLogger(__name__)
logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is not news
# The FAISS store and loaders we use live in langchain-community; its sunset notice is not actionable here.
warnings.filterwarnings("ignore", message=r".*langchain-community.*", category=DeprecationWarning)

FORMAT = "merl-knowledge-index/1"
FILES = ("index.faiss", "docstore.jsonl")
EMBED_CHUNK = 256  # passages embedded per progress step

MetadataFilter = Callable[[dict], bool]


def _new_faiss_index(dim: int, cfg: IndexConfig, train: np.ndarray | None):
    import faiss

    if cfg.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if cfg.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = cfg.hnsw_ef_search
        return index
    if train is None or len(train) == 0:
        raise ConfigError("an ivf index must be trained: build it with documents")
    nlist = max(1, min(cfg.ivf_nlist, len(train) // 39))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(train, dtype=np.float32))
    index.nprobe = min(cfg.ivf_nprobe, nlist)
    index.make_direct_map()  # MMR reconstructs candidate vectors
    return index


def _configure_loaded(index, cfg: IndexConfig) -> None:
    if cfg.kind == "hnsw":
        index.hnsw.efSearch = cfg.hnsw_ef_search
    elif cfg.kind == "ivf":
        index.nprobe = min(cfg.ivf_nprobe, index.nlist)


def embed_passages(embeddings: Embeddings, texts: Sequence[str], progress: bool = False) -> np.ndarray:
    """Embed in chunks (so long builds show progress) into a float32 matrix."""
    from tqdm.auto import tqdm

    chunks = range(0, len(texts), EMBED_CHUNK)
    rows: list[list[float]] = []
    for i in tqdm(chunks, desc="embedding passages", unit="chunk", disable=not progress or len(texts) <= EMBED_CHUNK):
        rows.extend(embeddings.embed_documents(list(texts[i : i + EMBED_CHUNK])))
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)


class LexicalIndex:
    """TF-IDF over the passages (rebuilt from the docstore, never persisted): exact clinical
    words such as "notched", "V6", "delta" that a small sentence encoder blurs. Words are
    normalised by ``merl.knowledge.text.tokens`` ("wide" and "broad" are one word)."""

    def __init__(self, texts: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        from merl.knowledge.text import tokens

        self.vectorizer = TfidfVectorizer(analyzer=tokens, sublinear_tf=True, dtype=np.float32)
        self.matrix = self.vectorizer.fit_transform(list(texts)).tocsr()  # rows are L2-normalised
        self._columns = self.matrix.tocsc()  # a query has a few words: read their columns only
        self._vocabulary = self.vectorizer.vocabulary_
        self._analyze = self.vectorizer.build_analyzer()
        self._idf = self.vectorizer.idf_.astype(np.float32)

    def scores(self, query: str) -> np.ndarray:
        """Cosine similarity of the query's TF-IDF vector to every passage: the vectorizer's
        own weighting (1 + log tf, times idf, L2-normalised), computed for the query's few words
        directly, since ``TfidfVectorizer.transform`` costs a millisecond per call."""
        counts: dict[int, int] = {}
        for t in self._analyze(query):
            col = self._vocabulary.get(t)
            if col is not None:
                counts[col] = counts.get(col, 0) + 1
        out = np.zeros(self.matrix.shape[0], dtype=np.float32)
        if not counts:
            return out
        cols = np.fromiter(counts, dtype=np.int64, count=len(counts))
        w = (np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(counts))) + 1) * self._idf[cols]
        w /= np.linalg.norm(w)
        for c, wc in zip(cols, w):
            lo, hi = self._columns.indptr[c], self._columns.indptr[c + 1]
            out[self._columns.indices[lo:hi]] += wc * self._columns.data[lo:hi]
        return out


class KnowledgeIndex:
    """FAISS passages + their LangChain vector store + the knowledge base they came from."""

    def __init__(self, store, embeddings: Embeddings, manifest: dict, kb: KnowledgeBase | None = None):
        self.store = store
        self.embeddings = embeddings
        self.manifest = manifest
        self.kb = kb
        self._lexical: LexicalIndex | None = None
        self._known: dict[str, list[float]] = {}  # text -> its embedding, see remember()

    @property
    def lexical(self) -> LexicalIndex:
        if self._lexical is None or self._lexical.matrix.shape[0] != len(self):
            self._lexical = LexicalIndex([d.page_content for d in self.documents()])
        return self._lexical

    # -- construction -------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        documents: Sequence[Document],
        embeddings: Embeddings,
        cfg: IndexConfig | None = None,
        kb: KnowledgeBase | None = None,
        embedding_name: str = "default",
        progress: bool = False,
    ) -> KnowledgeIndex:
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy

        cfg = cfg or IndexConfig()
        if not documents:
            raise ConfigError("nothing to index: no passages")
        vectors = embed_passages(embeddings, [d.page_content for d in documents], progress)
        index = _new_faiss_index(vectors.shape[1], cfg, vectors)
        store = FAISS(
            embedding_function=embeddings,
            index=index,
            docstore=InMemoryDocstore({}),
            index_to_docstore_id={},
            distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
        )
        manifest = {
            "format": FORMAT,
            "embedding": embedding_name,
            "dim": int(vectors.shape[1]),
            "index": cfg.model_dump(),
        }
        out = cls(store, embeddings, manifest, kb)
        out.add_embedded(documents, vectors)
        return out

    def add_embedded(self, documents: Sequence[Document], vectors: np.ndarray) -> None:
        """Append passages whose vectors are already computed (L2-normalised, index dimension)."""
        if vectors.shape != (len(documents), self.dim):
            raise ConfigError(f"expected vectors of shape ({len(documents)}, {self.dim}), got {tuple(vectors.shape)}")
        ids = [d.id or f"doc:{uuid.uuid4().hex}" for d in documents]
        clash = set(ids) & set(self.store.index_to_docstore_id.values())
        if clash or len(set(ids)) != len(ids):
            raise ConfigError(f"duplicate passage ids: {sorted(clash or {i for i in ids if ids.count(i) > 1})[:5]}")
        self.store.add_embeddings(
            list(zip([d.page_content for d in documents], vectors.tolist())),
            metadatas=[dict(d.metadata) for d in documents],
            ids=ids,
        )
        if self.manifest["index"]["kind"] == "ivf":
            self.store.index.make_direct_map()

    def add_documents(self, documents: Sequence[Document], progress: bool = False) -> int:
        """Embed and append passages (e.g. a user's guideline PDFs); returns how many."""
        if not documents:
            return 0
        self.add_embedded(documents, embed_passages(self.embeddings, [d.page_content for d in documents], progress))
        return len(documents)

    # -- embeddings computed ahead of queries ----------------------------------------------
    def remember(self, texts: Iterable[str]) -> int:
        """Embed ``texts`` now, one at a time as a query would be, and reuse the vectors when one
        is searched verbatim. A service does this at start-up for every entry's code expansion
        (what a code or term query embeds), so those queries skip the encoder. Returns how many
        texts were new."""
        new = [t for t in dict.fromkeys(texts) if t not in self._known]
        for t in new:
            self._known[t] = self.embeddings.embed_query(t)
        return len(new)

    def known_vector(self, text: str) -> list[float] | None:
        """The remembered embedding of ``text``, if :meth:`remember` computed it."""
        return self._known.get(text)

    @property
    def remembered(self) -> int:
        return len(self._known)

    # -- introspection ------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def __len__(self) -> int:
        return int(self.store.index.ntotal)

    def documents(self) -> list[Document]:
        """Passages in vector-row order."""
        ds = self.store.docstore
        return [ds.search(self.store.index_to_docstore_id[i]) for i in range(len(self))]

    # -- search -------------------------------------------------------------------------
    def search(
        self,
        query: str,
        k: int = 5,
        *,
        mmr: bool = False,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: MetadataFilter | None = None,
        score_threshold: float | None = None,
        lexical_weight: float = 0.0,
        vector: Sequence[float] | None = None,
    ) -> list[tuple[Document, float]]:
        """Top-``k`` passages for ``query``. With ``lexical_weight`` w > 0 (similarity search
        only) the score is ``(1 - w) * cosine + w * tfidf_cosine`` over the union of both
        top candidate lists; w = 0 is pure dense search. ``vector`` is ``query``'s embedding
        when the caller already has it (the service embeds queries in batches)."""
        if vector is None:
            vector = self.known_vector(query)
        vec = self.embeddings.embed_query(query) if vector is None else list(map(float, vector))
        if lexical_weight > 0 and not mmr:
            return self.hybrid_search(
                query, vec, k, lexical_weight, fetch_k=fetch_k, filter=filter, score_threshold=score_threshold
            )
        return self.search_by_vector(
            vec, k, mmr=mmr, fetch_k=fetch_k, lambda_mult=lambda_mult, filter=filter, score_threshold=score_threshold
        )

    def hybrid_search(
        self,
        query: str,
        vector: Sequence[float],
        k: int,
        lexical_weight: float,
        *,
        fetch_k: int = 20,
        filter: MetadataFilter | None = None,
        score_threshold: float | None = None,
    ) -> list[tuple[Document, float]]:
        n = len(self)
        if n == 0:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        lex = self.lexical.scores(query)
        ids = self.store.index_to_docstore_id
        pool = min(n, max(fetch_k, 4 * k))
        while True:
            dense_scores, rows = self.store.index.search(q, pool)
            dense = {int(r): float(s) for r, s in zip(rows[0], dense_scores[0]) if r >= 0}
            top_lex = np.argpartition(-lex, pool - 1)[:pool] if pool < n else np.arange(n)
            for r in map(int, top_lex):
                if r not in dense and lex[r] > 0:
                    dense[r] = float(np.dot(self.store.index.reconstruct(r), q[0]))
            scored = []
            for r, d in dense.items():
                doc = self.store.docstore.search(ids[r])
                if filter is not None and not filter(doc.metadata):
                    continue
                s = (1.0 - lexical_weight) * d + lexical_weight * float(lex[r])
                if score_threshold is None or s >= score_threshold:
                    scored.append((doc, s))
            scored.sort(key=lambda t: -t[1])
            if filter is None or len(scored) >= k or pool >= n:
                return scored[:k]
            pool = min(n, pool * 4)

    def search_by_vector(
        self,
        vector: Sequence[float],
        k: int = 5,
        *,
        mmr: bool = False,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: MetadataFilter | None = None,
        score_threshold: float | None = None,
    ) -> list[tuple[Document, float]]:
        """Top-``k`` passages with cosine scores; filtered searches widen the candidate pool
        until ``k`` passages pass the filter or the index is exhausted."""
        n = len(self)
        if n == 0:
            return []
        vec = list(map(float, vector))
        fk = min(n, max(fetch_k, k))
        while True:
            if mmr:
                hits = self.store.max_marginal_relevance_search_with_score_by_vector(
                    vec, k=k, fetch_k=fk, lambda_mult=lambda_mult, filter=filter
                )
                if score_threshold is not None:
                    hits = [(d, s) for d, s in hits if s >= score_threshold]
            else:
                kw = {"score_threshold": score_threshold} if score_threshold is not None else {}
                hits = self.store.similarity_search_with_score_by_vector(vec, k=k, filter=filter, fetch_k=fk, **kw)
            if filter is None or len(hits) >= k or fk >= n:
                return [(d, float(s)) for d, s in hits]
            fk = min(n, fk * 4)

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path | str:
        """Write the index directory atomically (temp sibling directory, then rename; at a URI,
        an upload with the manifest last). Returns the local Path or the URI."""
        import faiss

        if is_uri(path):
            uri = str(path)
            if not is_file(join(uri, "manifest.json")) and listdir(uri):
                raise ConfigError(f"{uri} exists and is not a knowledge index; refusing to overwrite it")
            with tempfile.TemporaryDirectory(prefix="merl-index-") as tmp:
                self.save(Path(tmp) / "index")
                upload_dir(Path(tmp) / "index", uri, last=["manifest.json"])
            log.info("uploaded knowledge index to %s", uri)
            return uri
        path = Path(local_path(path))
        if path.exists() and not (path / "manifest.json").is_file():
            if not path.is_dir() or any(path.iterdir()):
                raise ConfigError(f"{path} exists and is not a knowledge index; refusing to overwrite it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            faiss.write_index(self.store.index, str(tmp / "index.faiss"))
            with open(tmp / "docstore.jsonl", "w", encoding="utf-8") as fh:
                for d in self.documents():
                    fh.write(json.dumps({"id": d.id, "text": d.page_content, "metadata": d.metadata}, ensure_ascii=False))
                    fh.write("\n")
            files = list(FILES)
            if self.kb is not None:
                (tmp / "entries.json").write_text(self.kb.to_json(), encoding="utf-8")
                files.append("entries.json")
            manifest = {
                **self.manifest,
                "count": len(self),
                "faiss_version": faiss.__version__,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "sha256": {f: sha256_file(tmp / f) for f in files},
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            old = None
            if path.exists():
                old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(path, old)
            os.rename(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.manifest = manifest
        log.info("saved knowledge index (%d passages) to %s", len(self), path)
        return path

    @classmethod
    def load(cls, path: str | Path, embeddings: Embeddings | None = None, verify: bool = True) -> KnowledgeIndex:
        """Rebuild the vector store from the native FAISS file and JSON passages."""
        import faiss
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy

        from merl.knowledge.embeddings import make_embeddings

        if is_uri(path):
            if not is_file(join(path, "manifest.json")):
                raise FileNotFoundError(
                    f"no knowledge index at {path} (missing manifest.json); build one with `merl knowledge build`"
                )
            with local_copy(path) as local:
                return cls.load(local, embeddings, verify)
        path = Path(local_path(path))
        mpath = path / "manifest.json"
        if not mpath.is_file():
            raise FileNotFoundError(
                f"no knowledge index at {path} (missing manifest.json); build one with `merl knowledge build`"
            )
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise ConfigError(f"{path}: unsupported index format {manifest.get('format')!r} (expected {FORMAT})")
        if verify:
            for f, digest in manifest.get("sha256", {}).items():
                if not (path / f).is_file() or sha256_file(path / f) != digest:
                    raise ConfigError(f"{path / f}: missing or does not match its checksum in manifest.json")
        index = faiss.read_index(str(path / "index.faiss"))
        cfg = IndexConfig.model_validate(manifest["index"])
        _configure_loaded(index, cfg)
        docs: list[Document] = []
        with open(path / "docstore.jsonl", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                docs.append(Document(page_content=row["text"], metadata=row["metadata"], id=row["id"]))
        if len(docs) != index.ntotal:
            raise ConfigError(f"{path}: {len(docs)} passages but {index.ntotal} vectors; the index is corrupt")
        kb = None
        if (path / "entries.json").is_file():
            kb = KnowledgeBase.from_json((path / "entries.json").read_text(encoding="utf-8"))
        if embeddings is None:
            embeddings = make_embeddings(manifest["embedding"])
        store = FAISS(
            embedding_function=embeddings,
            index=index,
            docstore=InMemoryDocstore({d.id: d for d in docs}),
            index_to_docstore_id={i: d.id for i, d in enumerate(docs)},
            distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
        )
        return cls(store, embeddings, manifest, kb)


def metadata_filter(ontology: str | None = None, category: str | None = None, kind: str | None = None) -> MetadataFilter | None:
    """A metadata predicate: passages of concepts coded in ``ontology`` / of ``category`` / of ``kind``."""
    if not (ontology or category or kind):
        return None

    def keep(md: dict) -> bool:
        return (
            (ontology is None or ontology in md.get("ontologies", ()))
            and (category is None or md.get("category") == category)
            and (kind is None or md.get("kind") == kind)
        )

    return keep


def build_index(
    kb: KnowledgeBase | None,
    extra_sources: Iterable[str | Path] = (),
    cfg=None,
    embeddings: Embeddings | None = None,
    progress: bool = False,
) -> KnowledgeIndex:
    """Knowledge entries (+ user files) -> a built, unsaved index (config: ``KnowledgeConfig``)."""
    from merl.knowledge.config import KnowledgeConfig
    from merl.knowledge.documents import kb_documents, user_documents
    from merl.knowledge.embeddings import make_embeddings

    cfg = cfg or KnowledgeConfig()
    docs = kb_documents(kb.entries, kb.origin) if kb is not None else []
    docs += user_documents(list(extra_sources), cfg.chunk_size, cfg.chunk_overlap)
    emb = embeddings or make_embeddings(cfg.embedding, cfg.embedding_batch_size, cfg.embedding_max_length)
    return KnowledgeIndex.build(docs, emb, cfg.index, kb=kb, embedding_name=cfg.embedding, progress=progress)
