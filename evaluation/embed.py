"""Stream a shard folder through the ECG tower, and class prompts through the text tower.

Records are read only through the manifest (never a half-written folder) with pyarrow
dataset scans, in batches, so a 20k-record split never sits in memory as signals. Each
batch is prepared by :func:`merl.training.data.transforms.prepare_ecg_batch`, exactly as in
pretraining. Embeddings come back sorted by record id, so results do not depend on the
order the scanner yields batches in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from merl.training.data.manifest import read_manifest

if TYPE_CHECKING:
    import pyarrow as pa
    import torch

    from merl.training.data.config import DataConfig

log = logging.getLogger(__name__)

SIGNAL_COLUMNS = ["id", "fs", "signal", "signal_scale"]


def _dataset(shards_dir: str):
    import pyarrow.dataset as ds

    manifest = read_manifest(shards_dir)
    paths = manifest.shard_paths(shards_dir)
    if not paths:
        raise FileNotFoundError(f"{shards_dir}: the manifest lists no shard files")
    return ds.dataset(paths, format="parquet")


def read_label_table(shards_dir: str, splits: Sequence[str] | None = None) -> pa.Table:
    """``id``, ``source``, ``split``, ``labels`` of every record (optionally of some splits): no signals."""
    import pyarrow.dataset as ds

    flt = ds.field("split").isin(list(splits)) if splits else None
    return _dataset(shards_dir).to_table(columns=["id", "source", "split", "labels"], filter=flt)


def iter_signal_batches(
    shards_dir: str, split: str, ids: Sequence[str] | None = None, batch_size: int = 64
) -> Iterator[pa.RecordBatch]:
    """Record batches (id, fs, signal, signal_scale) of one split, optionally only ``ids``."""
    import pyarrow.dataset as ds

    flt = ds.field("split") == split
    if ids is not None:
        flt = flt & ds.field("id").isin(list(ids))
    for batch in _dataset(shards_dir).to_batches(columns=SIGNAL_COLUMNS, filter=flt, batch_size=batch_size):
        if batch.num_rows:
            yield batch


def _device_dtype(model) -> tuple[torch.device, torch.dtype]:
    """Where the model's weights live and their float type (bf16 under DeepSpeed bf16)."""
    import torch

    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


@dataclass
class EcgEmbeddings:
    ids: np.ndarray  # (N,) str, sorted
    emb: np.ndarray  # (N, D) float32


def embed_ecgs(
    model,
    shards_dir: str,
    split: str,
    data_cfg: DataConfig,
    ids: Sequence[str] | None = None,
    batch_size: int = 64,
    features: Literal["projected", "backbone"] = "projected",
    progress: bool = True,
) -> EcgEmbeddings:
    """ECG embeddings of a split: ``projected`` = L2-normalised ``encode_ecg`` (zero-shot);
    ``backbone`` = the frozen encoder's pooled features before projection (linear probing).

    The model is put in eval mode for the call and restored after (the train loop calls
    this between epochs).
    """
    import torch
    from tqdm.auto import tqdm

    from merl.training.data.transforms import batch_fs, decode_batch, prepare_ecg_batch

    device, dtype = _device_dtype(model)
    was_training = model.training
    model.eval()
    out_ids: list[str] = []
    out_emb: list[np.ndarray] = []
    total = len(ids) if ids is not None else None
    bar = tqdm(total=total, desc=f"embed {split}", unit="ecg", disable=not progress, leave=False)
    try:
        with torch.inference_mode():
            for batch in iter_signal_batches(shards_dir, split, ids, batch_size):
                cols = batch.to_pydict()
                x = prepare_ecg_batch(decode_batch(cols), batch_fs(cols), data_cfg)
                xt = torch.from_numpy(x).to(device=device, dtype=dtype)
                if features == "backbone" and hasattr(model, "ecg_encoder"):
                    z, _ = model.ecg_encoder(xt)
                else:
                    z = torch.nn.functional.normalize(model.encode_ecg(xt).float(), dim=-1)
                out_emb.append(z.float().cpu().numpy())
                out_ids.extend(cols["id"])
                bar.update(len(cols["id"]))
    finally:
        bar.close()
        model.train(was_training)
    if not out_ids:
        return EcgEmbeddings(np.array([], dtype=object), np.zeros((0, 0), dtype=np.float32))
    id_arr = np.array(out_ids, dtype=object)
    order = np.argsort(id_arr, kind="stable")
    return EcgEmbeddings(id_arr[order], np.concatenate(out_emb)[order])


def embed_texts(model, tokenizer, texts: Sequence[str], max_tokens: int = 128, batch_size: int = 64) -> np.ndarray:
    """L2-normalised projected text embeddings [len(texts), D] (prompts padded per batch only)."""
    import torch

    device, _ = _device_dtype(model)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tok = tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=True,
                                max_length=max_tokens, return_tensors="pt")
                z = model.encode_text(tok["input_ids"].to(device), tok["attention_mask"].to(device))
                out.append(torch.nn.functional.normalize(z.float(), dim=-1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
