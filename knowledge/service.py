"""The knowledge retriever and the CKEPE prompt chain as a Ray Serve HTTP application.

`merl knowledge query` spends seconds starting a process and loading the text encoder for a
retrieval that takes milliseconds; a service keeps the encoder warm (loaded once per replica)
so notebooks, labelling tools and scripts on the cluster pay only the retrieval.

* ``POST /query``   {text, k, filters, mmr, threshold} -> ranked passages (scores, codes, text)
* ``POST /prompts`` {labels | task, ontology, llm} -> {label: prompt} + provenance
* ``GET /healthz``, OpenAPI docs at ``/docs``

Requests name no files: the index is fixed when the service starts, and ``llm`` is a model
spec checked against the service's allow-list (empty by default: the offline composer).
A query that names a code or a term embeds its entry's expansion, which each replica embeds
once at start-up (``KnowledgeIndex.remember``); free-text queries arriving together are
embedded in one batch (``serve.batch``).
"""


import asyncio
import json
import logging
import os
import signal
import threading
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from merl.core.config import ConfigError, StrictModel
from merl.core.tasks import TASKS
from merl.knowledge.config import KnowledgeConfig
from merl.knowledge.retriever import FILTER_VALUES

log = logging.getLogger(__name__)

APP_NAME = "merl-knowledge"
MAX_K = 100
MAX_TEXT_CHARS = 2000
MAX_LABELS = 200
MAX_BODY_BYTES = 64 * 1024  # a query or a label list is a few hundred bytes; anything this big is a mistake

Ontology = Literal[FILTER_VALUES["ontology"]]  # type: ignore[valid-type]
Category = Literal[FILTER_VALUES["category"]]  # type: ignore[valid-type]
TaskName = Literal[tuple(TASKS)]  # type: ignore[valid-type]


class ServeConfig(StrictModel):
    """How the service is deployed (``merl knowledge serve`` options)."""

    host: str = Field("127.0.0.1", description="interface the HTTP proxy binds; loopback unless you mean to expose it")
    port: int = Field(8000, ge=1, le=65535)
    replicas: int = Field(1, ge=1, le=64)
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per replica; also its torch threads")
    max_batch_size: int = Field(16, ge=1, le=256, description="queries embedded in one forward pass")
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, le=1, description="how long a batch waits for more queries while others are in flight "
        "(a lone query never waits)"
    )
    allowed_llms: list[str] = Field([], description="LLM specs a /prompts request may name (provider:model)")
    app_name: str = APP_NAME


# -- request / response schemas ----------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filters(_Request):
    ontology: Optional[Ontology] = None
    category: Optional[Category] = None
    kind: Optional[Literal["entry", "user"]] = None


class QueryRequest(_Request):
    text: str = Field(..., max_length=MAX_TEXT_CHARS, description="a label code, a term or a free-text phrase")
    k: Optional[int] = Field(None, ge=1, le=MAX_K, description="passages to return (default: the service's config k)")
    filters: Filters = Filters()
    mmr: bool = Field(False, description="maximal marginal relevance (diverse passages)")
    threshold: Optional[float] = Field(None, ge=-1.0, le=1.0, description="minimum cosine similarity")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text must not be empty")
        return v


class QueryResponse(BaseModel):
    query: str
    k: int
    mmr: bool
    results: list[dict[str, Any]]


class PromptsRequest(_Request):
    labels: Optional[list[str]] = Field(None, min_length=1, max_length=MAX_LABELS, description="labels to prompt")
    task: Optional[TaskName] = Field(None, description="a benchmark task whose labels to prompt, instead of labels")
    ontology: Optional[Ontology] = Field(None, description="ontology of the labels (a task brings its own)")
    llm: Optional[str] = Field(None, max_length=200, description="chat model spec from the service's allow-list")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is not None and any(not s.strip() or len(s) > 100 for s in v):
            raise ValueError("labels must be non-empty strings of at most 100 characters")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> "PromptsRequest":
        if (self.task is None) == (self.labels is None):
            raise ValueError("give exactly one of labels or task")
        return self


class PromptsResponse(BaseModel):
    prompts: dict[str, str]
    provenance: dict[str, Any]


# -- the application ---------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = declared is not None and declared.isdigit() and int(declared) > self.max_bytes
        chunks: list[bytes] = []
        size, more = 0, not too_big
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            more = msg.get("more_body", False)
            too_big = size > self.max_bytes
            if too_big:
                break
        if too_big:
            body = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replayed, send)


def _one_line(errors: list[dict]) -> str:
    """FastAPI's validation errors as one line: ``k: Input should be less than or equal to 100``."""
    parts = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "; ".join(parts)


def make_fastapi():
    """The FastAPI ingress: one-line 422s for invalid requests, 413 for oversized bodies."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    api = FastAPI(title="merl knowledge service",
                  description="Knowledge retrieval and CKEPE class prompts over one knowledge index.")
    api.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"detail": _one_line(exc.errors())})

    @api.exception_handler(ConfigError)
    async def _config(request: Request, exc: ConfigError):
        return JSONResponse(status_code=422, content={"detail": " ".join(str(exc).split())})

    return api


def build_app(index: str, knowledge: KnowledgeConfig | None = None, serve_cfg: ServeConfig | None = None):
    """The Ray Serve application (bound, not yet running) serving the index at ``index``
    (a local path every replica can read, or a URI)."""
    from ray import serve

    knowledge = knowledge or KnowledgeConfig()
    serve_cfg = serve_cfg or ServeConfig()
    api = make_fastapi()

    @serve.deployment(name="KnowledgeService")
    @serve.ingress(api)
    class KnowledgeService:
        """One replica: the index, its warm text encoder and the CKEPE chain."""

        def __init__(self, index: str, knowledge: dict, serve_cfg: dict):
            import torch

            from merl.core.env import apply_defaults
            from merl.knowledge.index import KnowledgeIndex
            from merl.knowledge.retriever import code_expansions

            apply_defaults()  # offline or not as the driver was: ensure_ray forwards its HF_* settings
            self.cfg = KnowledgeConfig.model_validate(knowledge)
            self.serve_cfg = ServeConfig.model_validate(serve_cfg)
            torch.set_num_threads(max(1, int(self.serve_cfg.num_cpus)))
            self.index_name = index.rstrip("/").rsplit("/", 1)[-1]
            self.index = KnowledgeIndex.load(index)
            self.index.embeddings.embed_query("warm up")  # load the encoder now, not on the first request
            # Code and term queries embed an entry's expansion: compute those once, here.
            self.index.remember(code_expansions(self.index))
            self.index.lexical  # noqa: B018  (fit the TF-IDF once, before requests share it)
            self._embed_batch.set_max_batch_size(self.serve_cfg.max_batch_size)
            self.in_flight = 0
            self.batches = self.embedded = 0  # mean batch size = embedded / batches (in /healthz)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
        async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
            self.batches += 1
            self.embedded += len(texts)
            # On the event loop, not in a thread: in a thread the encoder's many small torch calls
            # each wait for the GIL behind the loop's other requests (measured under 8 clients:
            # free-text p50 143 ms in a thread, 74 ms here; p99 of all queries 212 -> 135 ms).
            return self.index.embeddings.embed_documents(texts)

        async def _embed(self, text: str) -> list[float]:
            # Serve forms a batch as soon as its first query arrives, so a batch must wait to
            # gather concurrent queries; a lone query (one client) never waits.
            self.in_flight += 1
            self._embed_batch.set_batch_wait_timeout_s(self.serve_cfg.batch_wait_timeout_s if self.in_flight > 1 else 0.0)
            try:
                return await self._embed_batch(text)
            finally:
                self.in_flight -= 1

        @api.get("/healthz")
        async def healthz(self) -> dict:
            return {"status": "ok", "index": self.index_name, "passages": len(self.index),
                    "embedding": self.index.manifest.get("embedding"), "pid": os.getpid(),
                    "batches": self.batches, "queries_embedded": self.embedded,
                    "vectors_remembered": self.index.remembered}

        @api.post("/query", response_model=QueryResponse)
        async def query(self, req: QueryRequest) -> QueryResponse:
            from merl.knowledge.retriever import KnowledgeRetriever, result_rows

            f = req.filters
            retriever = KnowledgeRetriever.from_config(
                self.index, self.cfg, k=req.k, mmr=True if req.mmr else None, score_threshold=req.threshold,
                ontology=f.ontology, category=f.category, kind=f.kind,
            )
            _, text = retriever.plan(req.text)
            vector = self.index.known_vector(text)
            if vector is None:
                vector = await self._embed(text)
            docs = retriever.retrieve(req.text, vector)  # FAISS + TF-IDF over the passages: well under a millisecond
            return QueryResponse(query=req.text, k=retriever.k, mmr=retriever.mmr, results=result_rows(docs))

        @api.post("/prompts", response_model=PromptsResponse)
        async def prompts(self, req: PromptsRequest) -> PromptsResponse:
            from merl.knowledge.ckepe import generate_prompts, prompt_labels, provenance

            if req.llm is not None and req.llm not in self.serve_cfg.allowed_llms:
                allowed = ", ".join(self.serve_cfg.allowed_llms) or "none: this service uses the offline composer"
                raise ConfigError(f"llm {req.llm!r} is not allowed here (allowed: {allowed})")
            labels, ontology = prompt_labels(req.task, req.labels, req.ontology)
            cfg = self.cfg.model_copy(deep=True)
            model = None
            if req.llm:
                from merl.knowledge.llm import make_chat_model

                cfg.llm.model = req.llm
                model = make_chat_model(cfg.llm)
            results = await asyncio.to_thread(generate_prompts, self.index, labels, ontology, req.task, cfg, model,
                                              cfg.llm.model)
            return PromptsResponse(prompts={lab: r.prompt for lab, r in results.items()},
                                   provenance=provenance(self.index_name, req.task, ontology, cfg.llm.model, cfg, results))

    return KnowledgeService.options(
        num_replicas=serve_cfg.replicas,
        ray_actor_options={"num_cpus": serve_cfg.num_cpus},
        max_ongoing_requests=max(32, 2 * serve_cfg.max_batch_size),
    ).bind(index, knowledge.model_dump(), serve_cfg.model_dump())


class KnowledgeServer:
    """Start the service on Ray (joining ``address``, else an embedded local cluster) and stop
    it again, ending only what it started: its application, and the embedded cluster if it
    brought one up (``serve.shutdown`` only then, so other apps on a shared cluster live on)."""

    def __init__(self, index: str, knowledge: KnowledgeConfig | None = None, serve_cfg: ServeConfig | None = None,
                 address: str | None = None, num_cpus: int | None = None):
        self.index, self.knowledge = index, knowledge or KnowledgeConfig()
        self.serve_cfg = serve_cfg or ServeConfig()
        self.address, self.num_cpus = address, num_cpus
        self.owns_ray = False
        self._running = False

    @property
    def url(self) -> str:
        host = self.serve_cfg.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
        return f"http://{host}:{self.serve_cfg.port}"

    def start(self) -> "KnowledgeServer":
        import ray
        from ray import serve

        from merl.core.io import is_file
        from merl.core.raysession import ensure_ray, target_address
        from merl.core.uri import join

        if not is_file(join(self.index, "manifest.json")):  # fail here in a second, not after replica retries
            raise FileNotFoundError(
                f"no knowledge index at {self.index} (missing manifest.json); build one with `merl knowledge build`"
            )
        self.owns_ray = not ray.is_initialized() and target_address(self.address) is None
        ensure_ray(self.address, self.num_cpus)
        quiet = {"log_level": "WARNING", "enable_access_log": False}
        serve.start(http_options={"host": self.serve_cfg.host, "port": self.serve_cfg.port}, logging_config=quiet)
        try:
            serve.run(build_app(self.index, self.knowledge, self.serve_cfg), name=self.serve_cfg.app_name,
                      route_prefix="/", logging_config=quiet)
        except Exception as e:  # Ray wraps a replica's start-up failure (bad index, no model) in its own types
            self._running = True
            self.stop()
            raise ConfigError(f"the knowledge service did not start: {_replica_error(e)}") from e
        self._running = True
        log.info("knowledge service %s at %s (%d replica(s))", self.serve_cfg.app_name, self.url, self.serve_cfg.replicas)
        return self

    def scale(self, replicas: int) -> None:
        """Redeploy the running application with ``replicas`` replicas (Serve replaces it in place)."""
        from ray import serve

        self.serve_cfg = self.serve_cfg.model_copy(update={"replicas": replicas})
        serve.run(build_app(self.index, self.knowledge, self.serve_cfg), name=self.serve_cfg.app_name, route_prefix="/",
                  logging_config={"log_level": "WARNING", "enable_access_log": False})

    def stop(self) -> None:
        import ray
        from ray import serve

        if not self._running:
            return
        self._running = False
        if self.owns_ray:
            serve.shutdown()
            ray.shutdown()
        else:
            serve.delete(self.serve_cfg.app_name)

    def __enter__(self) -> "KnowledgeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until Ctrl-C or SIGTERM (``ray job stop``), then stop."""
        done = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
        try:
            while not done.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop()


def _replica_error(e: BaseException) -> str:
    """The root cause of a failed deployment, in one line (Ray nests it in long reports)."""
    text = " ".join(str(e).split())
    for marker in ("ConfigError: ", "FileNotFoundError: "):
        if marker in text:
            return text.rsplit(marker, 1)[1][:400]
    return text[:400] or type(e).__name__
