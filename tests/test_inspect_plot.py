"""`merl data inspect` summaries and the printout-style ECG plot, on shards built without Ray."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ecg_fixtures import canonical_signal, csn_layout

from merl.training.data.inspect import find_record, plot_record, summarize
from merl.training.data.manifest import QUARANTINE_NAME, Counts, Manifest, ShardInfo, write_manifest
from merl.training.data.plot import plot_ecg_grid
from merl.training.data.prepare import PrepareConfig, process_records
from merl.training.data.readers import make_reader
from merl.training.data.shards import write_shard


def test_summarize_find_and_plot(tmp_path):
    root, out = tmp_path / "csn", tmp_path / "shards"
    csn_layout(root, n=6)
    refs = make_reader("csn", str(root)).index(str(root)).refs
    for r in refs:
        r.split = "test" if r.id == "JS00006" else "train"
    rows, bad = process_records("csn", str(root), PrepareConfig(), [r.to_dict() for r in refs])
    sha = write_shard(out / "shard-00000.parquet", rows)
    bad.append({"id": "JS9", "source": "csn", "path": "x", "reason": "truncated signal file JS9.mat (3 of 5000 samples)"})
    (out / QUARANTINE_NAME).write_text("".join(json.dumps(b) + "\n" for b in bad))
    write_manifest(out, Manifest(dataset="csn", counts=Counts(records=6, quarantined=1, by_split={"train": 5, "test": 1}),
                                 shards=[ShardInfo(file="shard-00000.parquet", rows=6, sha256=sha)]))
    s = summarize(out)
    assert s["labels"]["train"]["SR"] == 2 and s["labels"]["test"] == {"AFIB": 1}
    assert s["quarantine_reasons"] == {"truncated signal file": 1}
    rec = find_record(out, "JS00002")
    assert rec["id"] == "csn:JS00002" and rec["signal_mv"].shape == (12, 5000)
    np.testing.assert_allclose(rec["signal_mv"], canonical_signal(seed=2), atol=1e-3)
    with pytest.raises(KeyError, match="JS99999"):
        find_record(out, "JS99999")
    png = plot_record(out, "csn:JS00001", tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_other_lead_sets_and_shape_errors(tmp_path):
    two = canonical_signal(n=3600, fs=360)[:2]
    assert plot_ecg_grid(two, 360, "MIT-BIH style", tmp_path / "two.png", leads=["MLII", "V5"]).stat().st_size > 5000
    with pytest.raises(ValueError, match="lead names"):
        plot_ecg_grid(two, 360, "bad", tmp_path / "bad.png")
