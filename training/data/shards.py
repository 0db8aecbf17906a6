"""Writing and reading shard files atomically, with a per-shard completion sidecar.

``shard-00012.parquet`` is renamed into place only once fully written; its sidecar
``shard-00012.done.json`` (written after it, also atomically) records the task fingerprint,
the file's sha256 and the task's quarantine entries. A re-run skips a task whose sidecar
matches the new task's fingerprint and whose file still has the recorded checksum.
Shard paths may be local or URIs (``s3://...``): :mod:`merl.core.io` writes and reads both.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from merl.core.io import atomic_path, atomic_write_text, is_file, read_text, sha256_file
from merl.training.data.schema import SHARD_SCHEMA, SHARD_SCHEMA_NO_MASK, rows_to_table

SHARD_GLOB = "shard-*.parquet"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def done_path(shard_path: str | os.PathLike) -> str:
    """``.../shard-00012.parquet`` -> ``.../shard-00012.done.json`` (a string: the path may be a URI)."""
    head, sep, name = str(shard_path).rpartition("/")
    return head + sep + name.replace(".parquet", ".done.json")


# The signal column holds unique ~120 kB blobs: dictionary encoding and min/max statistics
# are useless for it and made Parquet writing ~10x slower than reading + canonicalising.
_SMALL_COLUMNS = [f.name for f in SHARD_SCHEMA if f.name != "signal"]


def write_shard(path: str | os.PathLike, rows: list[dict], compression: str = "zstd") -> str:
    """Write rows as one Parquet shard atomically; return its sha256."""
    table = rows_to_table(rows)
    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression=None if compression == "none" else compression,
            use_dictionary=_SMALL_COLUMNS,
            write_statistics=_SMALL_COLUMNS,
        )
        sha = sha256_file(tmp)  # of the bytes about to be published: no read back from remote storage
    return sha


def read_shard(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    table = pq.read_table(path, columns=columns)
    if columns is None and not any(table.schema.equals(s, check_metadata=False)
                                   for s in (SHARD_SCHEMA, SHARD_SCHEMA_NO_MASK)):
        raise ValueError(f"{path}: schema does not match the shard contract (re-run `merl data prepare`)")
    return table


def has_lead_mask(path: str | os.PathLike) -> bool:
    """Whether a shard file carries the ``lead_mask`` column (shards written before lead
    masks do not: every lead counts as present)."""
    from merl.core.uri import absolute, filesystem

    fs, local = filesystem(absolute(str(path)))
    return "lead_mask" in pq.read_schema(local, filesystem=fs).names


def write_done(shard_path: str | os.PathLike, record: dict[str, Any]) -> None:
    atomic_write_text(done_path(shard_path), json.dumps(record))


def read_done(shard_path: str | os.PathLike) -> dict[str, Any] | None:
    try:
        return json.loads(read_text(done_path(shard_path)))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_complete(shard_path: str | os.PathLike, fingerprint: str) -> dict[str, Any] | None:
    """The sidecar of a finished task with this fingerprint whose file is intact, else None."""
    done = read_done(shard_path)
    if not done or done.get("fingerprint") != fingerprint:
        return None
    info = done.get("shard")
    if info is None:  # every record of the task was quarantined: nothing to verify
        return done
    if not is_file(shard_path) or sha256_file(shard_path) != info.get("sha256"):
        return None
    return done
