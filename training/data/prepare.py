"""``merl data prepare``: dataset folder -> Parquet shards + manifest, as a Ray Data pipeline.

The driver builds the record index (CSV joins / directory listing, O(n), no signal I/O),
assigns splits, and cuts the index into deterministic shard tasks of ``records_per_shard``
records. A Ray Data pipeline (``from_items(tasks).map(process_shard)``) then streams the
tasks through workers: each reads and canonicalises its records, writes its shard
atomically plus a completion sidecar, and returns the shard info and quarantine entries.
The driver writes ``quarantine.jsonl`` and, last, ``manifest.json``.

Re-running with the same inputs and config skips tasks whose sidecar fingerprint and shard
checksum still match, so an interrupted run resumes where it stopped. On a multi-node
cluster ``out`` must be on storage every node can write: a shared volume, or an object
store URI (``s3://bucket/shards``, ``gs://...``) written through pyarrow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from merl.core.config import ConfigError, StrictModel
from merl.core.io import atomic_write_text, listdir, makedirs, remove
from merl.core.uri import absolute, join
from merl.training.data.canonical import CanonConfig, canonicalize_masked
from merl.training.data.manifest import MANIFEST_NAME, QUARANTINE_NAME, Counts, Manifest, ShardInfo, write_manifest
from merl.training.data.readers import DATASETS, Quarantined, RecordError, RecordRef, make_reader
from merl.training.data.schema import SPLITS, CanonicalRecord
from merl.training.data.shards import SHARD_GLOB, done_path, is_complete, shard_name, write_done, write_shard
from merl.training.data.splits import DEFAULT_FRACTIONS, PUBLISHED_SPLITS, load_split_csv, published_split, seeded_split

log = logging.getLogger(__name__)


class SplitConfig(StrictModel):
    """How records get their split (docs/data.md, "Splits")."""

    mode: Literal["auto", "published", "seeded", "csv"] = Field(
        "auto",
        description="auto = csv if split.csv is set, else the paper's list for real CPSC2018/CSN, strat_fold for "
                    "PTB-XL, seeded otherwise (synthetic corpora included); published = the paper's split "
                    "(CPSC2018/CSN lists shipped with merl, PTB-XL strat_fold); seeded = a seeded split by patient; "
                    "csv = split.csv",
    )
    seed: int = Field(42, description="seed of the random split")
    test_fraction: float | None = Field(
        None, ge=0, lt=1, description="test share; None = dataset default (CPSC/CSN/wfdb 0.2, MIMIC 0)"
    )
    val_fraction: float | None = Field(
        None, ge=0, lt=1, description="val share of the rest; None = dataset default (0.1, MIMIC 0.02)"
    )
    by_patient: bool = Field(True, description="split by patient id where the dataset has one")
    csv: str | None = Field(None, description="split file (columns id, split); overrides everything")

    @model_validator(mode="after")
    def _csv_mode(self) -> SplitConfig:
        if self.mode == "csv" and not self.csv:
            raise ValueError("split.mode=csv needs split.csv (a file with columns id, split)")
        if self.csv and self.mode not in ("auto", "csv"):
            raise ValueError(f"split.csv is set but split.mode is {self.mode!r}: use one of them")
        return self


class PrepareConfig(StrictModel):
    """Every knob of `merl data prepare` (see configs/prepare.yaml)."""

    records_per_shard: int = Field(2048, ge=1, description="records per Parquet shard (one Ray task each)")
    limit: int | None = Field(None, ge=1, description="only the first N indexed records (smoke runs)")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the embedded local Ray cluster (ignored with --address)")
    concurrency: int | None = Field(None, ge=1, description="max shard tasks running at once (None: Ray decides)")
    compression: Literal["zstd", "snappy", "none"] = "zstd"
    ptbxl_sampling: Literal["hr", "lr"] = Field("hr", description="PTB-XL records500 (hr) or records100 (lr)")
    min_report_words: int = Field(4, ge=0, description="MIMIC reports with fewer words are quarantined")
    conditions_csv: str | None = Field(
        None, description="SNOMED conditions table for csn/wfdb (csn default: <root>/ConditionNames_SNOMED-CT.csv)"
    )
    shard_order: Literal["shuffled", "index"] = Field(
        "shuffled",
        description="record order across shards: shuffled = a seeded permutation (split.seed), so one patient's "
                    "ECGs are spread over the corpus and training batches mix patients (data.shuffle); "
                    "index = the dataset's listing order (one patient's records side by side)",
    )
    canonical: CanonConfig = Field(default_factory=CanonConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)


PRESETS = ("default", "paper")


def preset_overrides(preset: str, dataset: str) -> list[str]:
    """``key=value`` items a named preset sets for ``dataset``: applied over a ``--config``
    file, under explicit overrides. ``paper`` = the reference's downstream inputs: the
    published splits (CPSC2018/CSN lists, PTB-XL strat_fold) with every record they name
    (a constant lead does not quarantine a record), PTB-XL at 500 Hz, and CPSC2018's first
    5 s zero-padded to 10 s (the reference's 2500 of 5000 samples)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if preset == "default":
        return []
    items = []
    if dataset in PUBLISHED_SPLITS or dataset == "ptbxl":
        # every record the published splits name stays in (the reference kept constant leads)
        items += ["split.mode=published", "canonical.reject_flat_leads=false"]
    if dataset == "ptbxl":
        items.append("ptbxl_sampling=hr")
    if dataset == "cpsc2018":
        items += ["canonical.seconds=5", "canonical.crop=first"]
    return items


@dataclass
class PrepareResult:
    manifest: Manifest
    out: str  # absolute local path or URI
    written: int = 0
    skipped: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _reader(dataset: str, root: str, cfg: PrepareConfig):
    return make_reader(
        dataset,
        root,
        ptbxl_sampling=cfg.ptbxl_sampling,
        min_report_words=cfg.min_report_words,
        conditions_csv=cfg.conditions_csv,
    )


@dataclass
class SplitOutcome:
    """What :func:`assign_splits` did: records it left out and a summary for the manifest."""

    excluded: list[Quarantined] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def resolve_split_mode(dataset: str, cfg: SplitConfig, synthetic: bool = False) -> str:
    """The split mode ``auto`` stands for, checked against the dataset.

    ``auto`` picks the paper's list for real CPSC2018/CSN folders: the benchmark's figures
    are defined on it, and a re-drawn split gives nothing in return (neither dataset has
    patient ids to group by). Synthetic corpora only imitate the real record names, so
    they get the seeded split.
    """
    mode = cfg.mode
    if mode == "auto":
        mode = "csv" if cfg.csv else "published" if dataset == "ptbxl" or (
            dataset in PUBLISHED_SPLITS and not synthetic) else "seeded"
    if mode == "published" and dataset not in PUBLISHED_SPLITS and dataset != "ptbxl":
        raise ConfigError(f"split.mode=published: no published split for {dataset!r} "
                          f"(lists ship for {', '.join(PUBLISHED_SPLITS)}; PTB-XL uses strat_fold)")
    if mode == "seeded" and dataset == "ptbxl":
        raise ConfigError("split.mode=seeded: PTB-XL always uses its official strat_fold (or give split.csv)")
    return mode


def _apply_table(refs: list[RecordRef], table: dict[str, str], reason: str) -> list[Quarantined]:
    kept, dropped = [], []
    for r in refs:
        s = table.get(r.id) or table.get(r.uid) or table.get(Path(r.path).stem)  # id, source:id or file name
        if s is None:
            dropped.append(Quarantined(r.id, r.source, r.path, reason))
        else:
            r.split = s
            kept.append(r)
    refs[:] = kept
    return dropped


def assign_splits(dataset: str, refs: list[RecordRef], cfg: SplitConfig, synthetic: bool = False) -> SplitOutcome:
    """Set ``ref.split`` in place; records a split list leaves out are removed from ``refs``
    and returned as ``excluded`` (they are readable, so not quarantined)."""
    mode = resolve_split_mode(dataset, cfg, synthetic)
    summary: dict[str, Any] = {"mode": mode}
    if mode == "csv" or (mode == "published" and dataset != "ptbxl"):
        if mode == "csv":
            table, summary["list"], reason = load_split_csv(cfg.csv), str(cfg.csv), "not in split file"
        else:
            table, summary["list"] = published_split(dataset), f"published_splits/{PUBLISHED_SPLITS[dataset]}"
            reason = "not in the published split list"
        n_before = len(refs)
        excluded = _apply_table(refs, table, reason)
        if n_before and not refs:
            raise ConfigError(
                f"{dataset}: none of the {n_before} records is in {summary['list']} (ids such as "
                f"{', '.join(sorted(table)[:2])}): this folder names its records differently (e.g. CPSC2018's "
                "icbeb_database.csv re-write numbers them by ecg_id). Prepare the original layout, give --split-csv, "
                "or use --split seeded")
        summary.update(listed=len(table), matched=len(refs), excluded=len(excluded),
                       listed_missing=len(table) - len(refs))
        if excluded:
            log.info("%s: %d of %d records are not in %s: excluded", dataset, len(excluded), n_before, summary["list"])
        if len(table) > len(refs):
            log.warning("%s: %d records of %s are not in this folder", dataset, len(table) - len(refs), summary["list"])
        return SplitOutcome(excluded, summary)
    if mode == "published":  # PTB-XL: the reader set strat_fold
        summary["list"] = "strat_fold"
        return SplitOutcome([], summary)
    todo = [r for r in refs if not r.split]
    if todo:
        test_f, val_f = DEFAULT_FRACTIONS.get(dataset, (0.2, 0.1))
        test_f = cfg.test_fraction if cfg.test_fraction is not None else test_f
        val_f = cfg.val_fraction if cfg.val_fraction is not None else val_f
        groups = [(r.patient_id if cfg.by_patient and r.patient_id else f"rec:{r.id}") for r in todo]
        for r, s in zip(todo, seeded_split(groups, test_f, val_f, cfg.seed)):
            r.split = s
        summary.update(seed=cfg.seed, test_fraction=test_f, val_fraction=val_f,
                       by_patient=cfg.by_patient and any(r.patient_id for r in todo))
    return SplitOutcome([], summary)


def shard_order(n: int, order: str, seed: int) -> list[int]:
    """Positions of the indexed records in shard order: a seeded permutation, or as indexed.

    Datasets list records by patient (MIMIC-IV-ECG by subject folder), and a training
    reader's shuffle window cannot pull neighbours apart, so the shards carry the shuffle.
    """
    if order == "index":
        return list(range(n))
    import numpy as np

    return np.random.default_rng([seed, n]).permutation(n).tolist()


def _fingerprint(dataset: str, cfg: PrepareConfig, refs: list[dict]) -> str:
    content = {"dataset": dataset, "canonical": cfg.canonical.model_dump(), "compression": cfg.compression, "refs": refs}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def build_tasks(dataset: str, refs: list[RecordRef], cfg: PrepareConfig) -> list[dict[str, Any]]:
    """Deterministic shard tasks: consecutive index slices of ``records_per_shard``."""
    tasks = []
    n = cfg.records_per_shard
    for i in range(0, len(refs), n):
        chunk = [r.to_dict() for r in refs[i : i + n]]
        tasks.append(
            {"index": i // n, "file": shard_name(i // n), "refs": chunk, "fingerprint": _fingerprint(dataset, cfg, chunk)}
        )
    return tasks


def process_records(dataset: str, root: str, cfg: PrepareConfig, refs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Read + canonicalise records: (shard rows, quarantine entries). Never raises per record."""
    reader = _reader(dataset, root, cfg)
    rows: list[dict] = []
    bad: list[dict] = []
    for d in refs:
        ref = RecordRef.from_dict(d)
        try:
            raw, ref = reader.read(ref)
            sig, mask = canonicalize_masked(raw, cfg.canonical)
        except RecordError as e:
            bad.append(Quarantined(ref.id, ref.source, ref.path, e.reason).to_dict())
            continue
        except Exception as e:  # noqa: BLE001 - one damaged record must never end the job
            bad.append(Quarantined(ref.id, ref.source, ref.path, f"unreadable record: {type(e).__name__}: {e}").to_dict())
            continue
        rec = CanonicalRecord(
            id=ref.uid,
            source=ref.source,
            signal=sig,
            report=ref.report,
            labels=ref.labels,
            label_weights=ref.label_weights,
            snomed=ref.snomed,
            patient_id=ref.patient_id,
            age=ref.age,
            sex=ref.sex,
            split=ref.split,
            lead_mask=mask,
        )
        rows.append(rec.to_row())
    return rows, bad


def process_shard(row: dict[str, Any], dataset: str, root: str, out: str, cfg_json: str) -> dict[str, Any]:
    """Ray Data map function: one task -> one shard file + sidecar; returns the sidecar."""
    task = json.loads(row["task"])
    cfg = PrepareConfig.model_validate_json(cfg_json)
    rows, bad = process_records(dataset, root, cfg, task["refs"])
    path = join(out, task["file"])
    info = None
    if rows:
        sha = write_shard(path, rows, cfg.compression)
        splits: dict[str, int] = {}
        for r in rows:
            splits[r["split"]] = splits.get(r["split"], 0) + 1
        masked = sum(not all(r["lead_mask"]) for r in rows)
        info = ShardInfo(file=task["file"], rows=len(rows), sha256=sha, splits=splits, masked=masked).model_dump()
    else:
        remove(path)
    done = {"index": task["index"], "fingerprint": task["fingerprint"], "shard": info, "quarantined": bad}
    write_done(path, done)
    return {"done": json.dumps(done)}


def _remove_stale(out: str, n_tasks: int) -> None:
    """Shards of an earlier run with more tasks than this one are not part of this dataset."""
    for name in listdir(out, SHARD_GLOB):
        try:
            idx = int(name.removesuffix(".parquet").split("-")[1])
        except (IndexError, ValueError):
            continue
        if idx >= n_tasks:
            remove(join(out, name))
            remove(done_path(join(out, name)))


def prepare(
    dataset: str,
    root: str | Path,
    out: str | Path,
    cfg: PrepareConfig | None = None,
    address: str | None = None,
) -> PrepareResult:
    """Run the whole ingestion; returns the manifest written to ``out/manifest.json``."""
    cfg = cfg or PrepareConfig()
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    t0 = time.perf_counter()
    root, out = str(Path(root).resolve()), absolute(out)
    makedirs(out)

    idx = _reader(dataset, root, cfg).index(root)
    refs = idx.refs[: cfg.limit] if cfg.limit else idx.refs
    quarantined = [q.to_dict() for q in idx.quarantined]
    split = assign_splits(dataset, refs, cfg.split, synthetic=(Path(root) / "synthetic.json").is_file())
    refs = [refs[i] for i in shard_order(len(refs), cfg.shard_order, cfg.split.seed)]
    tasks = build_tasks(dataset, refs, cfg)
    log.info("%s: %d records indexed, %d shard tasks", dataset, len(refs), len(tasks))

    done: dict[int, dict] = {}
    pending = []
    for t in tasks:
        prev = is_complete(join(out, t["file"]), t["fingerprint"])
        if prev is not None:
            done[t["index"]] = prev
        else:
            pending.append(t)
    skipped = len(done)
    if pending:
        # Until this run's manifest exists the folder must not look complete to a reader.
        remove(join(out, MANIFEST_NAME))
    _remove_stale(out, len(tasks))
    if pending:
        from merl.core.raysession import ensure_ray

        ray = ensure_ray(address, cfg.num_cpus)
        ds = ray.data.from_items([{"task": json.dumps(t)} for t in pending], override_num_blocks=len(pending))
        ds = ds.map(
            process_shard,
            fn_kwargs={"dataset": dataset, "root": root, "out": out, "cfg_json": cfg.model_dump_json()},
            num_cpus=1,
            concurrency=cfg.concurrency,
        )
        for row in ds.iter_rows():
            d = json.loads(row["done"])
            done[d["index"]] = d

    counts = Counts(by_split={s: 0 for s in SPLITS})
    shards: list[ShardInfo] = []
    for i in sorted(done):
        d = done[i]
        quarantined.extend(d["quarantined"])
        if d["shard"]:
            info = ShardInfo.model_validate(d["shard"])
            shards.append(info)
            counts.records += info.rows
            counts.masked += info.masked
            for s, n in info.splits.items():
                counts.by_split[s] = counts.by_split.get(s, 0) + n
    counts.quarantined = len(quarantined)
    counts.excluded = len(split.excluded)
    atomic_write_text(join(out, QUARANTINE_NAME), "".join(json.dumps(q) + "\n" for q in quarantined))
    manifest = Manifest(
        dataset=dataset,
        counts=counts,
        shards=shards,
        config={"dataset": dataset, "root": root, **cfg.model_dump(mode="json")},
        split=split.summary,
    )
    write_manifest(out, manifest)
    reasons: dict[str, int] = {}
    for q in quarantined:
        key = reason_group(q["reason"])
        reasons[key] = reasons.get(key, 0) + 1
    return PrepareResult(manifest, out, len(pending), skipped, reasons, time.perf_counter() - t0)


def reason_group(reason: str) -> str:
    """'truncated signal file x.dat (10 of 5000 samples)' -> 'truncated signal file'."""
    for sep in (":", " ("):
        reason = reason.split(sep, 1)[0]
    words = reason.split()
    if words[:3] == ["truncated", "signal", "file"] or words[:3] == ["missing", "signal", "file"]:
        return " ".join(words[:3])
    return reason.strip()
