"""A small client of the knowledge service (`merl knowledge serve`), standard library only.

One keep-alive connection per thread, so a client may be shared by threads.

It loads no model and imports neither torch nor Ray, so a notebook or a labelling tool asks a
warm service in milliseconds::

    from merl import KnowledgeClient
    kc = KnowledgeClient("http://127.0.0.1:8000")
    kc.query("wide QRS with notched R in V6", k=3)["results"]
    kc.prompts(task="icbeb")["prompts"]
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any, Optional
from urllib.parse import urlparse

from merl.core.config import ConfigError


class KnowledgeServiceError(ConfigError):
    """The service refused a request (its one-line reason) or could not be reached."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class KnowledgeClient:
    """Calls ``POST /query``, ``POST /prompts`` and ``GET /healthz`` of a running service."""

    def __init__(self, url: str, timeout_s: float = 60.0):
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"knowledge service URL {url!r} must look like http://host:port")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._parsed = parsed
        self._prefix = parsed.path.rstrip("/")
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"KnowledgeClient({self.url!r})"

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's keep-alive connection (a new TCP connection per query would cost more
        than the retrieval on loopback)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._parsed.scheme == "https" else http.client.HTTPConnection
            conn = self._local.conn = cls(self._parsed.hostname, self._parsed.port, timeout=self.timeout_s)
        return conn

    def _call(self, path: str, body: Optional[dict] = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json", "accept": "application/json"}
        for attempt in (1, 2):  # once more on a fresh connection if the server closed the idle one
            conn = self._connection()
            try:
                conn.request("GET" if data is None else "POST", self._prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
                status, raw = resp.status, resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise self._unreachable(e) from None
            except OSError as e:
                conn.close()
                self._local.conn = None
                raise self._unreachable(e) from None
        if status >= 400:
            try:
                detail = json.loads(raw).get("detail", raw.decode(errors="replace"))
            except (ValueError, AttributeError):
                detail = raw.decode(errors="replace")[:300]
            raise KnowledgeServiceError(f"knowledge service: {status} {detail}", status)
        return json.loads(raw)

    def _unreachable(self, e: BaseException) -> KnowledgeServiceError:
        return KnowledgeServiceError(
            f"cannot reach the knowledge service at {self.url} ({e}); start it with `merl knowledge serve`"
        )

    def health(self) -> dict:
        """``{"status": "ok", "passages": ..., ...}`` from ``GET /healthz``."""
        return self._call("/healthz")

    def query(self, text: str, k: Optional[int] = None, filters: Optional[dict[str, str]] = None, mmr: bool = False,
              threshold: Optional[float] = None) -> dict[str, Any]:
        """``{"query", "k", "mmr", "results": [{rank, score, match, concept_id, name, codes, source, id, text}]}``;
        ``filters`` takes ontology / category / kind."""
        body: dict[str, Any] = {"text": text, "mmr": mmr, "filters": filters or {}}
        if k is not None:
            body["k"] = k
        if threshold is not None:
            body["threshold"] = threshold
        return self._call("/query", body)

    def prompts(self, labels: Optional[list[str]] = None, task: Optional[str] = None, ontology: Optional[str] = None,
                llm: Optional[str] = None) -> dict[str, Any]:
        """``{"prompts": {label: prompt}, "provenance": {...}}`` for a task's or a label list's classes."""
        body: dict[str, Any] = {k: v for k, v in dict(labels=labels, task=task, ontology=ontology, llm=llm).items()
                                if v is not None}
        return self._call("/prompts", body)
