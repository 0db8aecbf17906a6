"""``merl data inspect``: what a shard folder holds, from its manifest, shards and quarantine."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from merl.core.io import is_file, read_text
from merl.core.uri import join
from merl.training.data.manifest import QUARANTINE_NAME, read_manifest
from merl.training.data.prepare import reason_group
from merl.training.data.schema import decode_signal
from merl.training.data.shards import read_shard


def summarize(shards: str | Path) -> dict[str, Any]:
    """Counts, per-split counts, label frequencies per split, quarantine reasons grouped."""
    root = str(shards)  # a local folder or a URI
    m = read_manifest(root)
    labels: dict[str, Counter] = {}
    for path in m.shard_paths(root):
        t = read_shard(path, columns=["labels", "split"])
        for labs, split in zip(t.column("labels").to_pylist(), t.column("split").to_pylist()):
            labels.setdefault(split, Counter()).update(labs or [])
    reasons: Counter = Counter()
    qpath = join(root, QUARANTINE_NAME)
    if is_file(qpath):
        for line in read_text(qpath).splitlines():
            if line.strip():
                reasons[reason_group(json.loads(line)["reason"])] += 1
    return {
        "dataset": m.dataset,
        "created": m.created,
        "records": m.counts.records,
        "quarantined": m.counts.quarantined,
        "by_split": dict(m.counts.by_split),
        "shards": len(m.shards),
        "labels": {s: dict(c.most_common()) for s, c in labels.items()},
        "quarantine_reasons": dict(reasons.most_common()),
    }


def find_record(shards: str | Path, record_id: str) -> dict[str, Any]:
    """One shard row by id (``source:id`` or the dataset's own id) with its decoded signal."""
    root = str(shards)
    m = read_manifest(root)
    ids = [record_id] if ":" in record_id else [f"{m.dataset}:{record_id}"]
    for path in m.shard_paths(root):
        t = pq.read_table(path, filters=pc.field("id").isin(ids))
        if t.num_rows:
            row = t.slice(0, 1).to_pylist()[0]
            row["signal_mv"] = decode_signal(row.pop("signal"), row["signal_scale"])
            return row
    raise KeyError(f"record {record_id!r} is not in {shards} (ids look like {m.dataset}:<record id>)")


def render(summary: dict[str, Any], console=None, top: int = 20) -> None:
    """Rich tables of a :func:`summarize` result."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"{summary['dataset']} shards ({summary['shards']} files, created {summary['created']})")
    for col in ("records", "quarantined", *summary["by_split"]):
        t.add_column(col, justify="right")
    t.add_row(str(summary["records"]), str(summary["quarantined"]), *[str(v) for v in summary["by_split"].values()])
    console.print(t)
    splits = [s for s in ("train", "val", "test") if summary["labels"].get(s)]
    totals: Counter = Counter()
    for s in splits:
        totals.update(summary["labels"][s])
    if totals:
        lt = Table(title=f"label frequencies (top {top})")
        lt.add_column("label")
        for s in splits:
            lt.add_column(s, justify="right")
        for lab, _ in totals.most_common(top):
            lt.add_row(lab, *[str(summary["labels"][s].get(lab, 0)) for s in splits])
        console.print(lt)
    if summary["quarantine_reasons"]:
        qt = Table(title="quarantine reasons")
        qt.add_column("reason")
        qt.add_column("records", justify="right")
        for reason, n in summary["quarantine_reasons"].items():
            qt.add_row(reason, str(n))
        console.print(qt)


def plot_record(shards: str | Path, record_id: str, out_png: str | Path) -> Path:
    from merl.training.data.plot import plot_ecg_grid

    row = find_record(shards, record_id)
    report = row["report"] if len(row["report"]) <= 90 else row["report"][:87] + "..."
    title = "  ".join(x for x in (f"{row['id']} [{row['split']}]", ", ".join(row["labels"][:6]), report) if x)
    return plot_ecg_grid(np.asarray(row["signal_mv"]), row["fs"], title, out_png)
