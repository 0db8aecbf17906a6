"""Each benchmark task's label matrix from the ``labels`` column of a shard folder.

PTB-XL follows the PTB-XL benchmarking protocol (Strodthoff et al. 2020,
``utils.compute_label_aggregations``): a record's SCP codes are aggregated through the
statement table into diagnostic superclasses (``diagnostic_class``), diagnostic subclasses
(``diagnostic_subclass``), form statements (``form`` flag) or rhythm statements (``rhythm``
flag). Like the protocol, every code of a record counts **whatever its likelihood**
(``label_weights``; e.g. ``'SR': 0.0`` still sets SR): the likelihood is ignored, not
thresholded. Codes are matched by their published name, i.e. without the leading/trailing
underscores of ``scp_statements.csv`` (``NST_`` -> ``NST``, subclass ``_AVB`` -> ``AVB``),
so shards that keep or strip the underscore read the same.

CPSC2018 and CSN labels are matched exactly against the task's label names (the reference
implementation's substring match set ``AF`` for every ``AFIB`` record; not here). For CSN,
labels with fewer than 10 records in the whole folder are dropped, as the benchmark does.

A task keeps only the records that carry at least one of its (kept) labels.

This sits in the data layer, not in ``merl.evaluation``, because training-time zero-shot
validation needs the same labels as ``merl evaluate``.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np

from merl.core.config import ConfigError
from merl.core.tasks import CPSC_CLASSES, Task

log = logging.getLogger(__name__)

# Minimum number of positive records (whole folder, all splits) for a label to be kept.
MIN_RECORDS: dict[str, int] = {"chapman": 10}

# How each PTB-XL task aggregates SCP codes.
_PTBXL_AGGREGATION = {
    "ptbxl_super_class": "superclass",
    "ptbxl_sub_class": "subclass",
    "ptbxl_form": "form",
    "ptbxl_rhythm": "rhythm",
}


def published_name(code: str) -> str:
    """``NST_`` -> ``NST``, ``_AVB`` -> ``AVB``: the name used in the published label columns."""
    return code.strip().strip("_")


@dataclass(frozen=True)
class Statement:
    """One row of the PTB-XL SCP statement table (``training/data/ptbxl_statements.csv``)."""

    code: str  # as in scp_statements.csv, underscores included
    description: str
    diagnostic: bool
    form: bool
    rhythm: bool
    diagnostic_class: str
    diagnostic_subclass: str


@lru_cache(maxsize=1)
def ptbxl_statements() -> dict[str, Statement]:
    """The 71 SCP statements keyed by published name (no underscores)."""
    text = resources.files("merl.training.data").joinpath("ptbxl_statements.csv").read_text()
    out: dict[str, Statement] = {}
    for row in csv.DictReader(text.splitlines()):
        st = Statement(
            code=row["code"],
            description=row["description"],
            diagnostic=row["diagnostic"] == "1",
            form=row["form"] == "1",
            rhythm=row["rhythm"] == "1",
            diagnostic_class=row["diagnostic_class"],
            diagnostic_subclass=published_name(row["diagnostic_subclass"]),
        )
        out[published_name(st.code)] = st
    return out


@lru_cache(maxsize=1)
def label_vocabulary() -> frozenset[str]:
    """Every code a prompt file may name (published spelling): the six tasks' labels, the 71
    PTB-XL statements with their diagnostic classes and subclasses, the CPSC2018 classes and
    the CSN condition acronyms. A prompts key outside it is a typo or a foreign code."""
    from merl.core.tasks import TASKS
    from merl.training.data.synth.tables import csn_snomed

    out = {lab for t in TASKS.values() for lab in t.labels} | set(CPSC_CLASSES) | set(csn_snomed())
    for code, st in ptbxl_statements().items():
        out |= {code, st.diagnostic_class, st.diagnostic_subclass}
    return frozenset(published_name(c) for c in out if c)


def ptbxl_labels(aggregation: str, codes: Iterable[str], unknown: Counter | None = None) -> set[str]:
    """Aggregate one record's SCP codes (``superclass|subclass|form|rhythm``)."""
    table = ptbxl_statements()
    out: set[str] = set()
    for raw in codes:
        st = table.get(published_name(raw))
        if st is None:
            if unknown is not None:
                unknown[raw] += 1
            continue
        if aggregation == "superclass" and st.diagnostic and st.diagnostic_class:
            out.add(st.diagnostic_class)
        elif aggregation == "subclass" and st.diagnostic and st.diagnostic_subclass:
            out.add(st.diagnostic_subclass)
        elif aggregation == "form" and st.form:
            out.add(published_name(st.code))
        elif aggregation == "rhythm" and st.rhythm:
            out.add(published_name(st.code))
    return out


def record_labels(task: Task, codes: Iterable[str], unknown: Counter | None = None) -> set[str]:
    """The task labels one record carries (a subset of ``task.labels``)."""
    codes = [c for c in (codes or []) if c is not None]
    if task.source == "ptbxl":
        found = ptbxl_labels(_PTBXL_AGGREGATION[task.name], codes, unknown)
    elif task.source == "cpsc2018":
        # Class names; REFERENCE.csv numbers 1..9 are accepted too.
        found = {
            CPSC_CLASSES[int(c) - 1] if c.strip().isdigit() and 1 <= int(c) <= 9 else c.strip()
            for c in codes
        }
    else:
        found = {c.strip() for c in codes}  # exact acronym match, never substrings
    return found & set(task.labels)


@dataclass
class LabelMatrix:
    """Binary labels of the records a task keeps.

    ``rows`` indexes the input records that were kept (those with at least one kept label).
    """

    task: str
    labels: list[str]
    y: np.ndarray  # (n_kept, n_labels) uint8
    rows: np.ndarray  # (n_kept,) int64 indices into the input sequence
    dropped: dict[str, int] = field(default_factory=dict)  # label -> records, below minimum
    unknown_codes: dict[str, int] = field(default_factory=dict)


def label_matrix(
    task: Task,
    codes_per_record: Sequence[Iterable[str]],
    labels: Sequence[str] | None = None,
) -> LabelMatrix:
    """Binary (records x labels) matrix for ``labels`` (default: all task labels)."""
    labels = list(task.labels if labels is None else labels)
    index = {lab: j for j, lab in enumerate(labels)}
    unknown: Counter = Counter()
    y = np.zeros((len(codes_per_record), len(labels)), dtype=np.uint8)
    for i, codes in enumerate(codes_per_record):
        for lab in record_labels(task, codes, unknown):
            j = index.get(lab)
            if j is not None:
                y[i, j] = 1
    rows = np.flatnonzero(y.any(axis=1)) if labels else np.zeros(0, dtype=np.int64)
    if unknown:
        log.warning("%s: codes not in the PTB-XL statement table (ignored): %s", task.name, dict(unknown))
    return LabelMatrix(task.name, labels, y[rows], rows.astype(np.int64), {}, dict(unknown))


def kept_labels(
    task: Task, codes_per_record: Sequence[Iterable[str]], min_records: int | None = None
) -> tuple[list[str], dict[str, int]]:
    """Task labels with at least ``min_records`` positive records; and the dropped ones.

    ``codes_per_record`` should span the whole folder (all splits), as the benchmark counts
    before splitting. ``min_records`` defaults to :data:`MIN_RECORDS` (10 for CSN, else 0).
    """
    minimum = MIN_RECORDS.get(task.name, 0) if min_records is None else min_records
    counts = Counter()
    for codes in codes_per_record:
        counts.update(record_labels(task, codes))
    kept = [lab for lab in task.labels if counts[lab] >= minimum]
    dropped = {lab: counts[lab] for lab in task.labels if counts[lab] < minimum}
    if dropped:
        log.info("%s: labels with fewer than %d records dropped: %s", task.name, minimum, dropped)
    return kept, dropped


@dataclass
class SplitLabels:
    ids: np.ndarray  # (n,) record ids of the kept records, sorted
    matrix: LabelMatrix


def accepted_sources(task: Task) -> set[str]:
    """Shard sources a task can score: its own; for CSN tasks also any WFDB folder (``merl data
    prepare --dataset wfdb``), whose SNOMED ``#Dx:`` codes map to the same CSN acronyms."""
    return {task.source, "wfdb"} if task.source == "csn" else {task.source}


def task_with_labels(task: Task, labels: Sequence[str]) -> Task:
    """``task`` scoring ``labels`` instead of its published label set.

    A CSN task may name any CSN condition acronym (``csn_conditions.csv``; e.g. ``SB``, which
    the published chapman set lacks); other tasks a subset of their labels, since their
    labels are aggregations of the source's codes."""
    from dataclasses import replace

    from merl.training.data.synth.tables import csn_snomed

    labels = [published_name(lab) for lab in labels]
    allowed = set(csn_snomed()) | set(task.labels) if task.source == "csn" else set(task.labels)
    bad = [lab for lab in labels if lab not in allowed]
    if bad or not labels:
        what = "CSN condition acronyms" if task.source == "csn" else f"labels of {task.name}"
        raise ConfigError(f"{task.name}: labels {bad or '[]'} are not {what}")
    return replace(task, labels=tuple(dict.fromkeys(labels)))


def split_labels(task: Task, shards_dir: str, split: str, min_records: int | None = None) -> SplitLabels:
    """The task's label matrix for one split (``all``: every record; rare labels counted over
    the whole folder, at least ``min_records`` positives, default :data:`MIN_RECORDS`)."""
    from merl.training.data.scan import ALL_SPLITS, read_label_table

    table = read_label_table(shards_dir)
    sources = set(table.column("source").unique().to_pylist())
    if table.num_rows and not sources & accepted_sources(task):
        raise ConfigError(f"task {task.name} reads {task.source} records, but {shards_dir} holds "
                         f"{', '.join(sorted(sources))} records; pass the {task.source} shard folder")
    codes_all = table.column("labels").to_pylist()
    kept, dropped = kept_labels(task, codes_all, min_records)
    splits = np.array(table.column("split").to_pylist(), dtype=object)
    ids = np.array(table.column("id").to_pylist(), dtype=object)
    in_split = np.arange(len(ids)) if split == ALL_SPLITS else np.flatnonzero(splits == split)
    order = in_split[np.argsort(ids[in_split], kind="stable")]
    lm = label_matrix(task, [codes_all[i] for i in order], kept)
    lm.dropped = dropped
    return SplitLabels(ids[order][lm.rows], lm)
