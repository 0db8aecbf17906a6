"""The knowledge service under load (loopback only, bounded in count and time).

A real `merl knowledge serve` application (Ray Serve, embedded local cluster, one replica of
``num_cpus=1``) over the bundled knowledge index, asked over real HTTP by
:class:`merl.knowledge.client.KnowledgeClient` with the labelled retrieval queries:

* one client, sequential: at most ``SEQUENTIAL_QUERIES`` queries -> ``serve_query_p50_ms``, and
  the free-text queries alone (no code or term the index knows) -> ``serve_query_p50_ms_free_text``;
* ``CLIENTS`` concurrent clients for ``WINDOW_S`` s -> ``serve_queries_per_s_8_clients``,
  ``serve_query_p99_ms_8_clients``, the ratio to one client's rate (what batching the
  embedding of concurrent queries buys) and the mean batch size the replica saw; the same ratio
  for ``GET /healthz`` (``serve_healthz_8_vs_1_client``), the ceiling Serve itself allows here;
* on a machine with >= 4 cores, the same load on 2 replicas -> ``serve_2_vs_1_replicas``.

``serve_errors`` counts failed requests over all phases. Figures depend on what else the
machine runs: the load average is printed beside them. Where ``/proc/stat`` exists, the share of
all cores the machine was busy during each phase and the CPU time per query follow; one
client keeping a fraction ``b`` of the machine busy caps the 8-vs-1 ratio at ``1/b``
(``serve_8_vs_1_cpu_ceiling``), whatever the service does, if a query's CPU cost stays put.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

SEQUENTIAL_QUERIES = 200
SEQUENTIAL_MAX_S = 20.0
CLIENTS = 8
WINDOW_S = 20.0



def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores from ``/proc/stat``; None where there is none."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of all cores busy between two :func:`_cpu_ticks` readings."""
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _load(url: str, queries: list[str], clients: int, window_s: float, max_queries: int | None = None,
          health: bool = False):
    """(latencies in ms, errors, elapsed s) of ``clients`` threads asking in a loop until the window ends
    (``GET /healthz`` instead of the queries with ``health``)."""
    from merl.knowledge.client import KnowledgeClient, KnowledgeServiceError

    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + window_s

    def worker(offset: int) -> None:
        client = KnowledgeClient(url, timeout_s=30)
        i = offset
        while time.perf_counter() < deadline and (max_queries is None or len(lat) < max_queries):
            t = time.perf_counter()
            try:
                client.health() if health else client.query(queries[i % len(queries)])
                ok = True
            except KnowledgeServiceError:
                ok = False
            with lock:
                if ok:
                    lat.append((time.perf_counter() - t) * 1000)
                else:
                    errors[0] += 1
            i += clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return lat, errors[0], time.perf_counter() - t0


def run(report, workdir: Path) -> None:
    from bench.retrieval import load_queries
    from merl.core.raysession import free_port
    from merl.knowledge.client import KnowledgeClient
    from merl.knowledge.index import KnowledgeIndex, build_index
    from merl.knowledge.kb import load_entries
    from merl.knowledge.retriever import KnowledgeRetriever
    from merl.knowledge.service import KnowledgeServer, ServeConfig

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    index = workdir / "index"
    if not (index / "manifest.json").is_file():
        build_index(load_entries()).save(index)
    queries = [q["query"] for q in load_queries()]
    retriever = KnowledgeRetriever(index=KnowledgeIndex.load(str(index)))
    free_text = [q for q in queries if not retriever.plan(q)[0]]
    cores = os.cpu_count() or 1
    with KnowledgeServer(str(index), serve_cfg=ServeConfig(port=free_port(), replicas=1, num_cpus=1)) as server:
        _load(server.url, queries, 1, 30.0, max_queries=10)  # warm-up: first requests allocate and fill caches
        print(f"# serve: {cores} cores, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
        c0 = _cpu_ticks()
        lat1, err1, t1 = _load(server.url, queries, 1, SEQUENTIAL_MAX_S, max_queries=SEQUENTIAL_QUERIES)
        busy1 = _busy(c0, _cpu_ticks())
        qps1 = len(lat1) / t1
        report("serve_query_p50_ms", float(np.percentile(lat1, 50)), "ms")
        report("serve_queries_per_s_1_client", qps1, "queries/s")
        # Code and term queries reuse vectors computed at start-up; free text runs the encoder.
        latf, errf, _ = _load(server.url, free_text, 1, SEQUENTIAL_MAX_S, max_queries=min(100, 2 * len(free_text)))
        report("serve_query_p50_ms_free_text", float(np.percentile(latf, 50)), "ms")
        client = KnowledgeClient(server.url)
        before = client.health()
        c0 = _cpu_ticks()
        lat8, err8, t8 = _load(server.url, queries, CLIENTS, WINDOW_S)
        busy8 = _busy(c0, _cpu_ticks())
        after = client.health()
        qps8 = len(lat8) / t8
        batches = after["batches"] - before["batches"]
        report("serve_mean_batch_size_8_clients",
               (after["queries_embedded"] - before["queries_embedded"]) / batches if batches else float("nan"), "queries")
        report("serve_queries_per_s_8_clients", qps8, "queries/s")
        report("serve_query_p99_ms_8_clients", float(np.percentile(lat8, 99)) if lat8 else float("nan"), "ms")
        report("serve_8_vs_1_client_throughput", qps8 / qps1 if qps1 else float("nan"), "x")
        if busy1 and busy8 and qps1 and qps8:
            report("serve_machine_busy_1_client", busy1, "fraction")
            report("serve_machine_busy_8_clients", busy8, "fraction")
            report("serve_cpu_ms_per_query_1_client", 1000 * busy1 * cores / qps1, "ms")
            report("serve_cpu_ms_per_query_8_clients", 1000 * busy8 * cores / qps8, "ms")
            report("serve_8_vs_1_cpu_ceiling", 1 / busy1, "x")
        # The same ratio for a request that does no work: what Serve's proxy and replica allow here.
        h1, errh1, th1 = _load(server.url, queries, 1, 5.0, health=True)
        h8, errh8, th8 = _load(server.url, queries, CLIENTS, 5.0, health=True)
        report("serve_healthz_8_vs_1_client", (len(h8) / th8) / (len(h1) / th1) if h1 else float("nan"), "x")
        errors = err1 + errf + err8 + errh1 + errh8
        if cores >= 4:
            server.scale(2)
            _load(server.url, queries, CLIENTS, 5.0)  # warm-up of the new replicas
            lat2, err2, t2 = _load(server.url, queries, CLIENTS, WINDOW_S)
            errors += err2
            report("serve_2_vs_1_replicas", (len(lat2) / t2) / qps8 if qps8 else float("nan"), "x")
        else:
            print(f"# serve_2_vs_1_replicas skipped: {cores} cores (os.cpu_count() < 4); a second replica would "
                  "only share the same cores with the first and the clients", file=sys.stderr)
        report("serve_errors", errors, "requests")


if __name__ == "__main__":
    import logging

    from bench.__main__ import report as _report
    from merl.core.env import apply_defaults

    logging.basicConfig(level=logging.WARNING)
    apply_defaults(offline=True)
    run(_report, Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/merl-bench-serve"))
