"""Batched reads of one shard folder outside Ray Data: label table, and signals of a split.

Records are read only through the manifest (never a half-written folder) with pyarrow
dataset scans, in batches, so a 20k-record split never sits in memory as signals. Used by
zero-shot scoring and linear probing, which embed a split once rather than stream it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from merl.training.data.manifest import read_manifest

if TYPE_CHECKING:
    import pyarrow as pa

SIGNAL_COLUMNS = ["id", "fs", "signal", "signal_scale"]


def shard_dataset(shards_dir: str):
    import pyarrow.dataset as ds

    from merl.core.uri import absolute, filesystem

    manifest = read_manifest(shards_dir)
    if not manifest.shards:
        raise FileNotFoundError(f"{shards_dir}: the manifest lists no shard files")
    # A list of paths is read with the local filesystem unless told otherwise: name the
    # folder's filesystem so s3:// / gs:// shard folders scan too.
    fs, root = filesystem(absolute(shards_dir))
    return ds.dataset([f"{root.rstrip('/')}/{s.file}" for s in manifest.shards], format="parquet", filesystem=fs)


ALL_SPLITS = "all"  # the split name that selects every record of a folder (e.g. a small real set)


def read_label_table(shards_dir: str, splits: Sequence[str] | None = None) -> pa.Table:
    """``id``, ``source``, ``split``, ``labels`` of every record (optionally of some splits): no signals."""
    import pyarrow.dataset as ds

    flt = ds.field("split").isin(list(splits)) if splits else None
    return shard_dataset(shards_dir).to_table(columns=["id", "source", "split", "labels"], filter=flt)


def iter_signal_batches(
    shards_dir: str, split: str, ids: Sequence[str] | None = None, batch_size: int = 64
) -> Iterator[pa.RecordBatch]:
    """Record batches (id, fs, signal, signal_scale and, where the shards have it, lead_mask)
    of one split (``all``: every record), optionally only ``ids``."""
    import pyarrow.dataset as ds

    flt = None if split == ALL_SPLITS else ds.field("split") == split
    if ids is not None:
        id_flt = ds.field("id").isin(list(ids))
        flt = id_flt if flt is None else flt & id_flt
    dset = shard_dataset(shards_dir)
    columns = SIGNAL_COLUMNS + (["lead_mask"] if "lead_mask" in dset.schema.names else [])
    for batch in dset.to_batches(columns=columns, filter=flt, batch_size=batch_size):
        if batch.num_rows:
            yield batch
