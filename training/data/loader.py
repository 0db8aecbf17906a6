"""Ray Data streaming from prepared shards to padded torch batches.

Decoding, resampling/normalisation and tokenisation run in Ray Data tasks (``map_batches``),
overlapping with training; reports are tokenised *without* padding and each training batch
is padded only to its own longest report (the reference padded every report to 256 tokens
inside the step). Rows of other splits are filtered right after the Parquet read, before any
decoding; rows with empty reports are dropped in ``preprocess_batch``.
"""

from __future__ import annotations

import functools
import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.data.collate_fn import NumpyBatchCollateFn

from merl.training.data.manifest import read_manifest
from merl.training.data.transforms import batch_fs, decode_batch, prepare_ecg_batch

if TYPE_CHECKING:
    import ray.data
    import torch

    from merl.training.data.config import DataConfig

READ_COLUMNS = ["id", "report", "split", "fs", "signal", "signal_scale"]


@functools.lru_cache(maxsize=4)
def _tokenizer(name_or_path: str):
    from merl.core.textmodel import load_tokenizer

    return load_tokenizer(name_or_path)


def tokenize(texts: list[str], text_model: str, max_tokens: int) -> list[np.ndarray]:
    """Unpadded token ids (int32), truncated to ``max_tokens``."""
    enc = _tokenizer(text_model)(list(texts), truncation=True, max_length=max_tokens, padding=False)
    return [np.asarray(ids, dtype=np.int32) for ids in enc["input_ids"]]


def report_keys(reports: list[str]) -> np.ndarray:
    """A stable 64-bit id per report text (int64), equal across workers and processes.

    Validation ranks retrieval over *distinct* reports; carrying this id as a tensor keeps
    every collated batch all-tensor, which Ray needs to move it to the GPU.
    """
    return np.array([int.from_bytes(hashlib.blake2b(r.encode("utf-8"), digest_size=8).digest(), "little", signed=True)
                     for r in reports], dtype=np.int64)


def preprocess_batch(batch: dict[str, Any], *, split: str, data_cfg: DataConfig, text_model: str) -> dict[str, Any]:
    """Shard rows -> {ecg [B,12,n] float32, input_ids ragged int32, report, report_key int64}; other splits dropped."""
    keep = [i for i, (s, r) in enumerate(zip(batch["split"], batch["report"])) if s == split and r and str(r).strip()]
    if not keep:
        return {"ecg": np.zeros((0, 12, data_cfg.n_samples), np.float32),
                "input_ids": np.empty(0, dtype=object), "report": np.empty(0, dtype=object),
                "report_key": np.zeros(0, np.int64)}
    sub = {k: np.asarray(batch[k], dtype=object)[keep] for k in ("signal", "signal_scale", "fs")}
    reports = [str(batch["report"][i]) for i in keep]
    ecg = prepare_ecg_batch(decode_batch(sub), batch_fs(sub), data_cfg)
    ids = np.empty(len(keep), dtype=object)
    ids[:] = tokenize(reports, text_model, data_cfg.max_text_tokens)
    return {"ecg": ecg, "input_ids": ids, "report": np.asarray(reports, dtype=object), "report_key": report_keys(reports)}


def build_dataset(shards_dir: str, split: str, data_cfg: DataConfig, text_model: str) -> ray.data.Dataset:
    """A lazily streamed Ray Dataset of one manifest split, ready for :func:`collate`."""
    import ray.data

    manifest = read_manifest(shards_dir)
    paths = [s for s, info in zip(manifest.shard_paths(shards_dir), manifest.shards)
             if not info.splits or info.splits.get(split, 0) > 0]
    if not paths:
        raise ValueError(f"{shards_dir}: no shard holds split {split!r} (manifest splits: {manifest.counts.by_split})")
    from ray.data.expressions import col

    # Filter the split right after the read, before decoding/tokenising: the validation
    # stream would otherwise decode every training signal only to drop it.
    ds = ray.data.read_parquet(paths, columns=READ_COLUMNS).filter(expr=col("split") == split)
    return ds.map_batches(
        preprocess_batch,
        batch_format="numpy",
        batch_size=64,
        fn_kwargs={"split": split, "data_cfg": data_cfg, "text_model": text_model},
    )


def pad_token_ids(seqs: list[np.ndarray] | np.ndarray, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged ids -> (input_ids, attention_mask) padded to the longest sequence of *this* batch."""
    import torch

    longest = max((len(s) for s in seqs), default=1)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.from_numpy(np.array(s, dtype=np.int64))
        mask[i, : len(s)] = 1
    return ids, mask


class Collate(NumpyBatchCollateFn):
    """``iter_torch_batches`` collate_fn: dynamic padding; tensors only (picklable for Ray).

    Ray moves a collated batch to the worker's device only if it is all tensors
    (``ray.data.collate_fn.is_tensor_batch_type``); a list beside them (e.g. report strings)
    would leave the whole batch on the CPU. Reports travel as ``report_key`` ids.
    """

    def __init__(self, pad_id: int = 0):
        super().__init__()
        self.pad_id = pad_id

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        import torch

        ids, mask = pad_token_ids(list(batch["input_ids"]), self.pad_id)
        return {
            "ecg": torch.as_tensor(np.ascontiguousarray(batch["ecg"]), dtype=torch.float32),
            "input_ids": ids,
            "attention_mask": mask,
            "report_key": torch.as_tensor(np.asarray(batch["report_key"], dtype=np.int64)),
        }


def pad_id_for(text_model: str) -> int:
    tok = _tokenizer(text_model)
    return int(tok.pad_token_id if tok.pad_token_id is not None else 0)


def split_datasets(data_cfg: DataConfig, text_model: str) -> dict[str, ray.data.Dataset]:
    """{"train": ..., "val": ...} for ``TorchTrainer(datasets=...)`` (val only if configured)."""
    out = {"train": build_dataset(data_cfg.train_shards, data_cfg.train_split, data_cfg, text_model)}
    if data_cfg.val_split:
        counts = read_manifest(data_cfg.train_shards).counts.by_split
        if counts.get(data_cfg.val_split, 1) > 0:
            out["val"] = build_dataset(data_cfg.train_shards, data_cfg.val_split, data_cfg, text_model)
    return out
