"""`merl data prepare` end to end on a real local Ray cluster: shards, manifest, quarantine, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ecg_fixtures import MIMIC_ORDER, canonical_signal, cpsc_mat_layout, mimic_layout, reorder, write_wfdb
from typer.testing import CliRunner

from merl.core.config import ConfigError, load_config
from merl.core.io import sha256_file
from merl.training.data.manifest import read_manifest
from merl.training.data.prepare import PrepareConfig, assign_splits, prepare, process_records
from merl.training.data.readers import RecordRef, make_reader
from merl.training.data.schema import LEADS, SHARD_SCHEMA, decode_signal
from merl.training.data.shards import read_shard


def _damage_mimic(root):
    """Five bad studies among eight; returns {study id: expected reason prefix}."""
    mimic_layout(root, n=8, short_report_ids={"40000005"})
    rec = lambda s: root / "files" / "p1000" / f"p1000{int(s[-4:]):04d}" / f"s{s}"
    dat = rec("40000001") / "40000001.dat"
    dat.write_bytes(dat.read_bytes()[:5000])
    (rec("40000002") / "40000002.hea").unlink()
    sig = reorder(canonical_signal(seed=3), MIMIC_ORDER)
    sig[-1] = np.nan  # V6 entirely missing samples
    write_wfdb(rec("40000003"), "40000003", sig, 500, MIMIC_ORDER)
    write_wfdb(rec("40000004"), "40000004", sig[:11], 500, MIMIC_ORDER[:11])
    return {  # 40000003 (V6 all NaN) and 40000004 (no V6) are kept with V6 masked
        "40000001": "truncated signal file 40000001.dat",
        "40000002": "missing header file",
        "40000005": "report shorter than 4 words",
    }


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_prepare_quarantines_bad_records_and_resumes(tmp_path, ray_local):
    root, out = tmp_path / "mimic", tmp_path / "shards"
    expected_bad = _damage_mimic(root)
    cfg = PrepareConfig(records_per_shard=2)
    res = prepare("mimic", root, out, cfg)

    m = read_manifest(out)
    assert (m.counts.records, m.counts.quarantined) == (5, 3)
    assert sum(m.counts.by_split.values()) == 5
    q = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert {e["id"]: e["reason"] for e in q}.keys() == expected_bad.keys()
    for e in q:
        assert e["reason"].startswith(expected_bad[e["id"]]) and e["source"] == "mimic" and e["path"]
    assert "missing leads" not in res.quarantine_reasons

    ids, splits = [], {}
    for info in m.shards:
        path = out / info.file
        assert sha256_file(path) == info.sha256
        t = read_shard(path)  # checks the schema against the contract
        assert t.schema.equals(SHARD_SCHEMA, check_metadata=False) and t.num_rows == info.rows
        for row in t.to_pylist():
            ids.append(row["id"])
            splits[row["split"]] = splits.get(row["split"], 0) + 1
            sig = decode_signal(row["signal"], row["signal_scale"])
            assert sig.shape == (12, 5000)
            v6 = row["id"] not in ("mimic:40000003", "mimic:40000004")
            assert row["lead_mask"] == [True] * 11 + [v6]
            want = 0.1 * (np.arange(12) + 1) * np.array([1] * 11 + [v6])
            np.testing.assert_allclose(sig.mean(axis=1), want, atol=0.02)  # aVL/aVF by name; V6 masked = 0
            assert row["report"] == "sinus rhythm. normal ecg." and row["fs"] == 500
    assert sorted(ids) == ["mimic:40000000", "mimic:40000003", "mimic:40000004", "mimic:40000006", "mimic:40000007"]
    assert {k: v for k, v in m.counts.by_split.items() if v} == splits
    assert m.config["records_per_shard"] == 2

    # second run: every shard task is already done
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    again = prepare("mimic", root, out, cfg)
    assert again.written == 0 and again.skipped == len(list(out.glob("shard-*.done.json"))) == 4
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")} == mtimes
    assert read_manifest(out).counts == m.counts

    # a lost shard is redone, and only that one
    victim = out / m.shards[0].file
    victim.unlink()
    third = prepare("mimic", root, out, cfg)
    assert third.written == 1 and victim.is_file() and sha256_file(victim) == m.shards[0].sha256

    # CLI: a changed canonical policy redoes every task; inspect reads the result
    from merl.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["data", "prepare", "--dataset", "mimic", "--root", str(root), "--out", str(out),
                            "records_per_shard=2", "canonical.crop=centre"])
    assert r.exit_code == 0, r.output
    assert "3 records quarantined" in r.output
    assert read_manifest(out).config["canonical"]["crop"] == "centre"
    png = tmp_path / "ecg.png"
    r = runner.invoke(app, ["data", "inspect", str(out), "--plot", "40000006", "--out", str(png)])
    assert r.exit_code == 0, r.output
    assert "report shorter than 4 words" in r.output and png.stat().st_size > 10_000


def test_unreadable_mat_is_quarantined_without_ray(tmp_path):
    cpsc_mat_layout(tmp_path, n=2)
    (tmp_path / "A0002.mat").write_bytes(b"not a mat file at all")
    reader = make_reader("cpsc2018", str(tmp_path))
    refs = [r.to_dict() for r in reader.index(str(tmp_path)).refs]
    rows, bad = process_records("cpsc2018", str(tmp_path), PrepareConfig(), refs)
    assert [r["id"] for r in rows] == ["cpsc2018:A0001"]
    assert bad[0]["id"] == "A0002" and bad[0]["reason"].startswith("unreadable .mat")


def test_split_csv_and_seeded_split(tmp_path):
    mimic_layout(tmp_path, n=4)
    refs = make_reader("mimic", str(tmp_path)).index(str(tmp_path)).refs
    (tmp_path / "split.csv").write_text("id,split\n40000000,test\nmimic:40000001,val\n40000002,train\n")
    cfg = PrepareConfig(split={"csv": str(tmp_path / "split.csv")})
    out = assign_splits("mimic", refs, cfg.split)
    assert [(r.id, r.split) for r in refs] == [("40000000", "test"), ("40000001", "val"), ("40000002", "train")]
    assert [(d.id, d.reason) for d in out.excluded] == [("40000003", "not in split file")]
    assert out.summary == {"mode": "csv", "list": str(tmp_path / "split.csv"), "listed": 3, "matched": 3,
                           "excluded": 1, "listed_missing": 0}


def test_published_splits_ship_and_are_the_default_for_real_cpsc_and_csn(tmp_path):
    from ecg_fixtures import csn_layout

    from merl.training.data.splits import published_split

    icbeb, chapman = published_split("cpsc2018"), published_split("csn")
    count = lambda t: [sum(v == s for v in t.values()) for s in ("train", "val", "test")]
    assert count(icbeb) == [4950, 551, 1376] and count(chapman) == [16546, 1860, 4620]  # benchmarks.md
    cpsc_mat_layout(tmp_path / "cpsc", n=6)
    refs = make_reader("cpsc2018", str(tmp_path / "cpsc")).index(str(tmp_path / "cpsc")).refs
    out = assign_splits("cpsc2018", refs, PrepareConfig().split)  # auto
    assert out.summary["mode"] == "published" and out.summary["list"] == "published_splits/cpsc2018.csv"
    assert [r.split for r in refs] == [icbeb[r.id] for r in refs] and not out.excluded
    assert out.summary["listed_missing"] == 6877 - 6
    # CSN: JS00003, JS00004 and JS00006 are not in the paper's list: excluded and counted, not quarantined
    root = tmp_path / "csn"
    csn_layout(root)
    reader = make_reader("csn", str(root), conditions_csv=str(root / "ConditionNames_SNOMED-CT.csv"))
    refs = reader.index(str(root)).refs
    out = assign_splits("csn", refs, PrepareConfig().split)
    assert [r.id for r in refs] == ["JS00001", "JS00002", "JS00005"]
    assert [(d.id, d.reason) for d in out.excluded] == [(i, "not in the published split list")
                                                          for i in ("JS00003", "JS00004", "JS00006")]
    # a synthetic corpus only imitates the record names: seeded; asked explicitly: published
    refs = reader.index(str(root)).refs
    assert assign_splits("csn", refs, PrepareConfig().split, synthetic=True).summary["mode"] == "seeded"
    assert len(refs) == 6
    assert assign_splits("csn", refs, PrepareConfig(split={"mode": "published"}).split, synthetic=True).excluded
    with pytest.raises(ConfigError, match="none of the 6 records is in published_splits/csn.csv"):
        assign_splits("csn", [RecordRef(id=f"X{i}", source="csn", path=f"/x/X{i}") for i in range(6)],
                      PrepareConfig(split={"mode": "published"}).split)
    with pytest.raises(ConfigError, match="no published split for 'mimic'"):
        assign_splits("mimic", [], PrepareConfig(split={"mode": "published"}).split)
    with pytest.raises(ConfigError, match="split.csv is set"):
        load_config(PrepareConfig, None, ["split.mode=seeded", "split.csv=x.csv"])


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_paper_preset_prepares_cpsc_as_the_reference(tmp_path, ray_local):
    """--preset paper: the published split, and the first 5 s (2500 samples) zero-padded to 5000."""
    from merl.cli import app

    root, out = tmp_path / "cpsc", tmp_path / "shards"
    cpsc_mat_layout(root, n=3)
    r = CliRunner().invoke(app, ["data", "prepare", "--dataset", "cpsc2018", "--root", str(root), "--out", str(out),
                                 "--preset", "paper"])
    assert r.exit_code == 0, r.output
    assert "published (published_splits/cpsc2018.csv)" in r.output
    m = read_manifest(out)
    assert m.config["canonical"]["seconds"] == 5 and m.split["mode"] == "published"
    assert m.config["shard_order"] == "shuffled"
    rows = read_shard(out / m.shards[0].file).to_pylist()
    assert sorted(row["id"] for row in rows) == ["cpsc2018:A0001", "cpsc2018:A0002", "cpsc2018:A0003"]
    for row in rows:
        sig = decode_signal(row["signal"], row["signal_scale"])
        assert sig.shape == (12, 5000) and not sig[:, 2500:].any() and sig[:, :2500].any()
    from merl.training.data.prepare import preset_overrides

    assert preset_overrides("paper", "csn") == ["split.mode=published", "canonical.reject_flat_leads=false"]
    assert preset_overrides("default", "cpsc2018") == []


def test_invalid_config_names_the_field(tmp_path):

    # the example lists the defaults
    assert load_config(PrepareConfig, Path(__file__).parents[1] / "configs" / "prepare.yaml") == PrepareConfig()
    with pytest.raises(ConfigError, match="records_per_shard"):
        load_config(PrepareConfig, None, ["records_per_shard=0"])
    with pytest.raises(ConfigError, match=r"canonical\.crop"):
        load_config(PrepareConfig, None, ["canonical.crop=middle"])
    with pytest.raises(ConfigError, match="unknown field"):
        load_config(PrepareConfig, None, ["record_per_shard=10"])
    from merl.cli import app

    r = CliRunner().invoke(
        app,
        [
            "data",
            "prepare",
            "--dataset",
            "mimic",
            "--root",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "split.test_fraction=1.5",
        ],
    )
    assert isinstance(r.exception, ConfigError) and "split.test_fraction" in str(r.exception)


# synth corruption kind -> the quarantine reason it must produce ("{d}" = the damaged lead)
SYNTH_REASONS = {
    "truncated_dat": "truncated signal file",
    "truncated_mat": "truncated signal file",
    "missing_hea": "missing header file",
    "empty_report": "empty report",
    "garbage_mat": "unreadable .mat",
}
MASKED_KINDS = ("nan_lead", "flat_lead", "missing_lead")  # kept, with the damaged lead masked


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
@pytest.mark.parametrize("layout", ["mimic", "ptbxl", "cpsc2018", "csn"])
def test_prepare_synthetic_corpus_quarantines_exactly_the_damaged(tmp_path, ray_local, layout):
    synth = pytest.importorskip("merl.training.data.synth")
    root = tmp_path / layout
    synth.synthesize(layout, root, 30, seed=1, corrupt_fraction=0.2, num_workers=1)
    plan = {r["id"]: r for r in json.loads((root / "corrupt.json").read_text())["records"]}
    prepare(layout, root, tmp_path / "out", PrepareConfig(records_per_shard=8))
    q = {e["id"]: e["reason"] for e in map(json.loads, (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines())}
    short = "report shorter than 4 words"  # terse synthetic reports: checked at index time, before signals
    masked = {rid for rid, r in plan.items()
              if r["kind"] in MASKED_KINDS and not (layout == "cpsc2018" and r["kind"] == "missing_lead")}
    assert plan.keys() - masked <= q.keys() and all(q[k] == short for k in q.keys() - plan.keys())
    import pyarrow.dataset as pads

    files = [str(f) for f in sorted((tmp_path / "out").glob("shard-*.parquet"))]
    rows = pads.dataset(files, format="parquet").to_table(columns=["id", "lead_mask"]).to_pylist()
    stored = {row["id"].split(":", 1)[1]: row["lead_mask"] for row in rows}
    for rid, r in plan.items():
        d = LEADS[int(r["detail"])] if r["detail"].isdigit() else r["detail"]  # CPSC .mat: a row index
        if rid in masked:
            assert q.get(rid) == short or not stored[rid][LEADS.index(d)], (r, q.get(rid))
            continue
        want = SYNTH_REASONS.get(r["kind"], "").format(d=d)
        if layout == "cpsc2018" and r["kind"] == "missing_lead":
            want = "missing leads: ECG.data has 11 rows"  # no lead names in the file
        if layout == "cpsc2018" and r["kind"] == "truncated_mat":
            want = "unreadable .mat"  # a MATLAB 5 file: scipy cannot parse a cut-off one
        assert q[rid] == short or q[rid].startswith(want), (r, q[rid])
    m = read_manifest(tmp_path / "out")
    assert m.counts.records == 30 - len(q)


def test_unreachable_cluster_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    mimic_layout(tmp_path / "m", n=1)
    cmd = [
        sys.executable,
        "-c",
        "from merl.cli import main; main()",
        "data",
        "prepare",
        "--dataset",
        "mimic",
        "--root",
        str(tmp_path / "m"),
        "--out",
        str(tmp_path / "o"),
        "--address",
        "127.0.0.1:1",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "cannot reach the Ray cluster" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "manifest.json").exists()
