"""Knowledge retrieval: quality on a labelled query set, latency at 10k extra chunks, build time.

The query set (``bench/data/retrieval_queries.jsonl``) covers every label of the six tasks:
the label code (with its ontology), the wording of the public label tables (PTB-XL
``scp_statements.csv`` descriptions, CSN ``ConditionNames_SNOMED-CT.csv`` full names, typos
included), and hand-written clinician phrasings. Regenerate it with
``python -m bench.retrieval --make-queries`` after changing entries (ids are resolved from
the codes, so the expected answers follow the knowledge base).

Figures: recall@1, recall@5 and MRR over concepts (passages of one concept count once);
p50/p95 query latency (embedding + search) with 10,000 extra synthetic text chunks in the
index (embedded once per machine and cached as ``.npy`` under ``~/.cache/merl-ray/bench``),
on at most 2 CPU threads; the search part alone; index build time of the built-in base.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

QUERIES = Path(__file__).resolve().parent / "data" / "retrieval_queries.jsonl"
EXTRA_CHUNKS = 10_000
LATENCY_QUERIES = 200
log = logging.getLogger(__name__)

# Label descriptions of the published tables, for labels whose table is not the scp table.
SUPERCLASS_WORDING = {
    "NORM": "normal ECG", "MI": "myocardial infarction", "STTC": "ST/T change",
    "CD": "conduction disturbance", "HYP": "hypertrophy",
}
CPSC_WORDING = {
    "NORM": "normal", "AFIB": "atrial fibrillation", "1AVB": "first-degree atrioventricular block",
    "CLBBB": "left bundle branch block", "CRBBB": "right bundle branch block",
    "PAC": "premature atrial contraction", "VPC": "premature ventricular contraction",
    "STD": "ST-segment depression", "STE": "ST-segment elevated",
}

# Clinician phrasings: (query, ontology, code). Written independently of the entries' synonyms.
CLINICIAN = [
    ("wide QRS with notched R in V6", "scp", "CLBBB"),
    ("broad QRS, RSR' pattern in V1 and wide S in lead I", "scp", "CRBBB"),
    ("irregularly irregular rhythm with no P waves", "scp", "AFIB"),
    ("sawtooth flutter waves in the inferior leads", "scp", "AFLT"),
    ("narrow complex regular tachycardia at 180 bpm", "scp", "SVTAC"),
    ("heart rate over 100 with normal P waves", "scp", "STACH"),
    ("slow heart rate under 60 with sinus P waves", "scp", "SBRAD"),
    ("PR interval longer than 200 ms", "scp", "LPR"),
    ("short PR interval with a delta wave", "ptbxl_subclass", "WPW"),
    ("pacemaker spikes before each QRS", "scp", "PACE"),
    ("every other beat is a premature ventricular beat", "scp", "BIGU"),
    ("every third beat is an ectopic beat", "scp", "TRIGU"),
    ("early wide bizarre QRS without preceding P wave", "scp", "PVC"),
    ("early beat with abnormal P wave and narrow QRS", "scp", "PAC"),
    ("prolonged corrected QT interval", "scp", "LNGQT"),
    ("small QRS amplitudes in the limb leads", "scp", "LVOLT"),
    ("tall R waves in V5 and deep S in V1 meeting Sokolow-Lyon", "scp", "VCLVH"),
    ("downsloping ST segment depression", "scp", "STD"),
    ("ST segment elevation in contiguous leads", "scp", "STE"),
    ("inverted T waves", "scp", "INVT"),
    ("flattened low amplitude T waves", "scp", "LOWT"),
    ("scooped ST depression from digoxin", "scp", "DIG"),
    ("pathological Q waves", "scp", "QWAVE"),
    ("heart rate varying with respiration", "scp", "SARRH"),
    ("Q waves in II, III and aVF from an old infarct", "ptbxl_subclass", "IMI"),
    ("loss of R waves and Q waves in V1-V4", "ptbxl_subclass", "AMI"),
    ("tall R in V1 with ST depression V1-V3 from posterior infarction", "ptbxl_subclass", "PMI"),
    ("Q waves in I, aVL, V5 and V6 from infarction", "ptbxl_subclass", "LMI"),
    ("left axis deviation from anterior fascicle block", "ptbxl_subclass", "LAFB/LPFB"),
    ("broad notched P wave in lead II, P mitrale", "ptbxl_subclass", "LAO/LAE"),
    ("peaked tall P waves in II, P pulmonale", "ptbxl_subclass", "RAO/RAE"),
    ("right axis deviation with dominant R in V1", "ptbxl_subclass", "RVH"),
    ("QRS 110 ms with rSR' in V1", "ptbxl_subclass", "IRBBB"),
    ("QRS duration over 110 ms without a bundle branch block pattern", "ptbxl_subclass", "IVCD"),
    ("ST depression and T inversion in the anterior leads from ischaemia", "ptbxl_subclass", "ISCA"),
    ("ischaemic ST-T changes in II, III and aVF", "ptbxl_subclass", "ISCI"),
    ("delayed conduction from atria to ventricles", "ptbxl_subclass", "AVB"),
    ("normal 12-lead ECG without abnormality", "ptbxl_superclass", "NORM"),
    ("enlarged heart chambers on ECG voltage", "ptbxl_superclass", "HYP"),
    ("progressive PR prolongation until a dropped beat", "csn", "2AVB1"),
    ("QRS axis more negative than -30 degrees", "csn", "ALS"),
    ("QRS axis beyond +90 degrees", "csn", "ARS"),
    ("prominent U waves after the T wave", "csn", "UW"),
    ("J point elevation with slurring in young healthy men", "csn", "ERV"),
    ("regular atrial tachycardia with abnormal P wave morphology", "csn", "AT"),
    ("junctional escape beats after a pause", "csn", "JEB"),
    ("transition zone shifted to the left, late R wave progression", "csn", "CR"),
    ("early transition with tall R in V1-V2", "csn", "CCR"),
    ("wide escape complexes from the ventricle after a pause", "csn", "VEB"),
]


def _variants(text: str) -> list[str]:
    """Lower-cased variant (the tables mix cases); punctuation left as the tables write it."""
    return [text.lower()]


def make_queries(path: Path = QUERIES) -> int:
    """Build the labelled query set from the tasks, the public label tables and CLINICIAN."""
    import csv

    from merl.core.tasks import TASKS
    from merl.knowledge.kb import load_entries

    ref = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
    scp_desc, csn_desc = {}, {}
    with open(ref / "ptbxl_scp_statements.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            scp_desc[row[""].rstrip("_")] = row["description"]
    with open(ref / "csn_conditions.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            csn_desc[row["Acronym Name"]] = row["Full Name"]
    wording = {"scp": scp_desc, "ptbxl_subclass": scp_desc, "csn": csn_desc, "cpsc": CPSC_WORDING,
               "ptbxl_superclass": SUPERCLASS_WORDING}
    kb = load_entries()
    rows, seen = [], set()

    def add(query: str, ontology: str | None, code: str, kind: str) -> None:
        key = (query, ontology if kind == "code" else None)
        if key in seen:
            return
        seen.add(key)
        rows.append({"query": query, "ontology": ontology if kind == "code" else None,
                     "expected": kb.resolve(code, ontology).id, "kind": kind, "label": f"{ontology}:{code}"})

    for task in TASKS.values():
        for label in task.labels:
            add(label, task.ontology, label, "code")
            desc = wording[task.ontology].get(label)
            if desc:
                for v in _variants(desc):
                    add(v, task.ontology, label, "table")
    for query, onto, code in CLINICIAN:
        add(query, onto, code, "clinician")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)


def load_queries(path: Path = QUERIES) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def concept_ranking(retriever, query: dict, depth: int = 10) -> list[str]:
    """Distinct concept ids in retrieval order (user/filler chunks carry none)."""
    retriever.ontology = query.get("ontology")
    docs = retriever.invoke(query["query"])
    out: list[str] = []
    for d in docs:
        c = d.metadata.get("concept_id")
        if c and c not in out:
            out.append(c)
    return out[:depth]


def evaluate(retriever, queries: list[dict]) -> dict:
    hits1 = hits5 = 0
    rr = 0.0
    misses = []
    for q in queries:
        ranking = concept_ranking(retriever, q)
        rank = ranking.index(q["expected"]) + 1 if q["expected"] in ranking else None
        hits1 += rank == 1
        hits5 += rank is not None and rank <= 5
        rr += 1.0 / rank if rank else 0.0
        if rank != 1:
            misses.append((q["query"], q["expected"], ranking[:3]))
    n = len(queries)
    return {"recall_at_1": hits1 / n, "recall_at_5": hits5 / n, "mrr": rr / n, "n": n, "misses": misses}


_FINDINGS = ["ST depression", "T wave inversion", "QRS widening", "PR prolongation", "Q waves", "left axis deviation",
             "low voltage", "tall R waves", "premature beats", "irregular RR intervals", "U waves", "QT prolongation"]
_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
_CONTEXT = ["after exercise", "at rest", "on the follow-up tracing", "compared with the prior ECG",
            "in a patient with chest pain", "in an asymptomatic adult", "during the night", "after medication change"]


def filler_chunks(n: int, seed: int = 0) -> list[str]:
    """Deterministic, short, plausible report-like chunks standing in for a user's corpus."""
    rng = random.Random(seed)
    return [
        f"Note {i}: {rng.choice(_FINDINGS)} in {', '.join(rng.sample(_LEADS, 2))} {rng.choice(_CONTEXT)}, "
        f"rate {rng.randint(45, 140)} bpm."
        for i in range(n)
    ]


def filler_vectors(embeddings, chunks: list[str], model: str) -> np.ndarray:
    """Embed the filler once per machine: cached as .npy (no pickle) under ~/.cache/merl-ray."""
    import hashlib

    key = hashlib.sha256((model + "\n" + "\n".join(chunks)).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("MERL_CACHE_DIR", Path.home() / ".cache" / "merl-ray")) / "bench" / f"filler-{key}.npy"
    if cache.is_file():
        return np.load(cache, allow_pickle=False)
    from merl.core.io import atomic_path
    from merl.knowledge.index import embed_passages

    t0 = time.perf_counter()
    vectors = embed_passages(embeddings, chunks, progress=True)
    print(f"# embedded {len(chunks)} synthetic filler chunks in {time.perf_counter() - t0:.0f}s (cached at {cache})",
          file=sys.stderr)
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, vectors, allow_pickle=False)
    return vectors


def run(report, workdir: Path) -> None:
    import torch
    from langchain_core.documents import Document

    from merl.knowledge.config import KnowledgeConfig
    from merl.knowledge.embeddings import make_embeddings
    from merl.knowledge.index import KnowledgeIndex, build_index
    from merl.knowledge.kb import load_entries
    from merl.knowledge.retriever import KnowledgeRetriever

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    cfg = KnowledgeConfig()
    kb = load_entries()
    make_embeddings(cfg.embedding).embed_query("warm up")  # model load is not build time
    t0 = time.perf_counter()
    index = build_index(kb, cfg=cfg)
    index.save(workdir / "index")
    report("knowledge_index_build_s", time.perf_counter() - t0, "s")

    index = KnowledgeIndex.load(workdir / "index")
    retriever = KnowledgeRetriever.from_config(index, cfg, k=10)
    res = evaluate(retriever, load_queries())
    for q, exp, got in res["misses"]:
        log.info("miss: %r expected %s got %s", q, exp, got)
    print(f"# retrieval: {res['n']} queries, {len(res['misses'])} not at rank 1", file=sys.stderr)
    report("retrieval_recall_at_1", res["recall_at_1"], "fraction")
    report("retrieval_recall_at_5", res["recall_at_5"], "fraction")
    report("retrieval_mrr", res["mrr"], "fraction")

    # Latency with 10k extra chunks (synthetic filler text, embedded once per machine).
    chunks = filler_chunks(EXTRA_CHUNKS)
    vectors = filler_vectors(index.embeddings, chunks, cfg.embedding)
    index.add_embedded([Document(page_content=c, metadata={"kind": "user", "source": "synthetic-filler"}, id=f"filler:{i}")
                        for i, c in enumerate(chunks)], vectors)
    index.lexical  # noqa: B018  (fit once, outside the timed queries)
    retriever = KnowledgeRetriever.from_config(index, cfg, k=cfg.k)
    queries = [q["query"] for q in load_queries()]
    for q in queries[:5]:  # warm-up: first calls allocate and fill caches
        retriever.invoke(q)
    print(f"# latency on {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    times = []
    for i in range(LATENCY_QUERIES):
        q = queries[i % len(queries)]
        t = time.perf_counter()
        retriever.invoke(q)
        times.append((time.perf_counter() - t) * 1000)
    report("retrieval_p50_ms", float(np.percentile(times, 50)), "ms")
    report("retrieval_p95_ms", float(np.percentile(times, 95)), "ms")
    # The search part alone (query vectors precomputed): FAISS + TF-IDF + fusion + docstore.
    vectors = [index.embeddings.embed_query(q) for q in queries[:50]]
    search_ms = []
    for i in range(LATENCY_QUERIES):
        t = time.perf_counter()
        index.hybrid_search(queries[i % 50], vectors[i % 50], cfg.k, cfg.lexical_weight, fetch_k=cfg.fetch_k)
        search_ms.append((time.perf_counter() - t) * 1000)
    report("retrieval_search_only_p50_ms", float(np.percentile(search_ms, 50)), "ms")


if __name__ == "__main__":
    if "--make-queries" in sys.argv:
        print(f"wrote {make_queries()} queries to {QUERIES}")
    else:
        from bench.__main__ import report as _report

        logging.basicConfig(level=logging.INFO)
        run(_report, Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/merl-bench-retrieval"))
