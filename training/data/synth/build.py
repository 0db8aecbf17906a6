"""Write a whole synthetic corpus in a published layout, in parallel and deterministically.

Record ``i`` draws from its own generators seeded by ``(seed, i)`` (patients by
``(seed, patient)``), so the bytes written do not depend on how records are chunked or
how many worker processes run. Workers write the per-record files; the parent writes
the layout's tables, ``truth.jsonl`` (ground truth), ``corrupt.json`` and ``synthetic.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from merl.core.io import atomic_write_text

from .generate import SynthRecord, generate_record
from .writers import WRITERS
from .writers.common import Written

log = logging.getLogger(__name__)
LAYOUTS = tuple(WRITERS)


@dataclass
class SynthSummary:
    layout: str
    n_records: int
    n_corrupt: int
    bytes_written: int
    seconds: float
    out: str
    seed: int = 0
    realism: float = 1.0
    condition_counts: dict[str, int] = field(default_factory=dict)
    corrupt_kinds: dict[str, int] = field(default_factory=dict)


def corrupt_plan(layout: str, n: int, seed: int, fraction: float) -> dict[int, str]:
    """Which record indices get which damage (exactly round(fraction * n) of them)."""
    kinds = WRITERS[layout].corrupt_kinds
    k = int(round(fraction * n))
    if k == 0:
        return {}
    rng = np.random.default_rng([seed, 99])
    idx = np.sort(rng.choice(n, size=k, replace=False))
    # cycle through the kinds so every kind is planted once a few records are damaged
    start = int(rng.integers(len(kinds)))
    return {int(i): kinds[(start + j) % len(kinds)] for j, i in enumerate(idx)}


def _demographics(seed: int, pidx: int) -> tuple[float, str]:
    rng = np.random.default_rng([seed, 1, pidx])
    return float(int(np.clip(rng.normal(62, 16), 18, 95))), "M" if rng.random() < 0.52 else "F"


def record_at(layout: str, seed: int, i: int, realism: float = 1.0) -> tuple[SynthRecord, np.random.Generator]:
    """Record ``i`` of the corpus ``(layout, seed, realism)`` exactly as :func:`synthesize`
    writes it, with the writer's generator (ids, damage) positioned where the writer starts
    using it."""
    writer = WRITERS[layout]()
    pidx = i // writer.records_per_patient
    age, sex = _demographics(seed, pidx)
    wrng = np.random.default_rng([seed, 2, i])
    duration = writer.duration(wrng)
    fs = writer.sampling_rate(wrng, realism)
    rec = generate_record(np.random.default_rng([seed, 0, i]), duration_s=duration, age=age, sex=sex,
                          patient_id=writer.patient_id(pidx), prior=writer.prior, fs=fs, realism=realism)
    return rec, wrng


def _run_chunk(layout: str, root: str, seed: int, start: int, stop: int,
               corrupt: dict[int, str], realism: float = 1.0) -> list[tuple[Written, dict]]:
    writer = WRITERS[layout]()
    out = []
    for i in range(start, stop):
        rec, wrng = record_at(layout, seed, i, realism)
        w = writer.write(Path(root), i, rec, corrupt.get(i), wrng)
        truth = {"id": w.record_id, "path": w.path, "conditions": rec.conditions, "report": rec.report,
                 "scp": rec.scp, "cpsc": rec.cpsc, "csn": rec.csn, "snomed": rec.snomed,
                 "nuisances": rec.nuisances, "fs": rec.fs, "age": rec.age, "sex": rec.sex,
                 "acquisition": rec.acquisition, "report_style": rec.report_style}
        out.append((w, truth))
    return out


def synthesize(
    layout: str,
    out: str | Path,
    n: int,
    seed: int = 0,
    corrupt_fraction: float = 0.0,
    num_workers: int | None = None,
    realism: float = 1.0,
) -> SynthSummary:
    """Generate ``n`` synthetic records in ``layout`` (mimic | ptbxl | cpsc2018 | csn) under ``out``.

    ``realism`` scales the recording nuisances and sampling-rate variety (1: the default
    mix, 0: clean diagnostic recordings at 500 Hz; see docs/synthetic.md)."""
    if layout not in WRITERS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= corrupt_fraction <= 1.0:
        raise ValueError(f"corrupt_fraction must be in [0, 1], got {corrupt_fraction}")
    if realism < 0.0:
        raise ValueError(f"realism must be >= 0, got {realism}")
    t0 = time.perf_counter()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    plan = corrupt_plan(layout, n, seed, corrupt_fraction)
    workers = max(1, num_workers or os.cpu_count() or 1)
    size = max(20, min(500, math.ceil(n / (workers * 4)) if n else 1))
    bounds = [(s, min(n, s + size)) for s in range(0, n, size)]

    def args(b):
        return (layout, str(root), seed, b[0], b[1], {i: k for i, k in plan.items() if b[0] <= i < b[1]}, realism)

    results: list[tuple[Written, dict]] = []
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc=f"synthetic {layout}", unit="rec", disable=n < 200)
    if workers == 1 or len(bounds) <= 1:
        for b in bounds:
            results += _run_chunk(*args(b))
            bar.update(b[1] - b[0])
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(bounds)), mp_context=get_context("spawn")) as ex:
            for b, chunk in zip(bounds, ex.map(_run_chunk, *zip(*map(args, bounds)))):
                results += chunk
                bar.update(b[1] - b[0])
    bar.close()

    written = [w for w, _ in results]
    nbytes = sum(w.nbytes for w in written)
    nbytes += WRITERS[layout]().finalize(root, written)
    truth = "".join(json.dumps(t, sort_keys=True) + "\n" for _, t in results)
    atomic_write_text(root / "truth.jsonl", truth)
    corrupt = {"layout": layout, "seed": seed, "records": [
        {"id": written[i].record_id, "path": written[i].path, "kind": kind, "detail": written[i].detail}
        for i, kind in sorted(plan.items())]}
    atomic_write_text(root / "corrupt.json", json.dumps(corrupt, indent=1))
    summary = SynthSummary(
        layout=layout, n_records=n, n_corrupt=len(plan), bytes_written=nbytes + len(truth),
        seconds=time.perf_counter() - t0, out=str(root), seed=seed, realism=realism,
        condition_counts=dict(sorted(Counter(c for _, t in results for c in t["conditions"]).items())),
        corrupt_kinds=dict(Counter(plan.values())),
    )
    meta = {"synthetic": True, "generator": "merl.training.data.synth", **asdict(summary)}
    meta.pop("seconds")
    meta.pop("out")  # the folder is byte-for-byte the same wherever it is written
    atomic_write_text(root / "synthetic.json", json.dumps(meta, indent=1))
    log.info("synthetic %s: %d records (%d damaged) in %.1fs", layout, n, len(plan), summary.seconds)
    return summary
