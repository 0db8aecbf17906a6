"""Ray Data streaming from prepared shards to padded torch batches.

Decoding, resampling/normalisation and tokenisation run in Ray Data tasks (``map_batches``),
overlapping with training; reports are tokenised *without* padding and each training batch
is padded only to its own longest report (the reference padded every report to 256 tokens
inside the step). Rows of other splits are filtered right after the Parquet read, before any
decoding; rows with empty reports are dropped in ``preprocess_batch``.

Training order (``data.shuffle``, new every epoch): ``global`` reads the shard files in a
fresh seeded order each epoch (Ray reseeds the file shuffle per execution) and each worker
draws batches from a window of ``shuffle_buffer_rows`` rows. A window alone cannot separate
one patient's ECGs that sit next to each other on disk (two neighbours land in the same
batch with probability ~ batch/window instead of batch/records), so ``merl data prepare``
writes records in a seeded random order (``shard_order: shuffled``); on such shards batches
hold same-patient pairs about as rarely as a random permutation would
(:func:`same_patient_pairs`, ``python -m bench shuffle``).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.data.collate_fn import NumpyBatchCollateFn

from merl.training.data.manifest import read_manifest
from merl.training.data.transforms import (
    batch_fs,
    decode_batch,
    decode_masks,
    drop_leads,
    model_lead_mask,
    prepare_ecg_batch,
)

if TYPE_CHECKING:
    import ray.data
    import torch

    from merl.training.data.config import DataConfig

log = logging.getLogger(__name__)

READ_COLUMNS = ["id", "report", "split", "fs", "signal", "signal_scale", "lead_mask"]
PREPROCESS_ROWS = 64  # rows per preprocessing task output: the blocks the shuffle window is filled with


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
    """Shard rows -> {ecg [B,12,n] float32, lead_mask [B,12] bool (model row order), input_ids
    ragged int32, report, report_key int64}; other splits dropped.

    On the training split ``data.lead_dropout`` reduces some records' lead sets (a fresh
    draw every time a batch is prepared, so every epoch differs)."""
    keep = [i for i, (s, r) in enumerate(zip(batch["split"], batch["report"])) if s == split and r and str(r).strip()]
    if not keep:
        return {"ecg": np.zeros((0, 12, data_cfg.n_samples), np.float32), "lead_mask": np.zeros((0, 12), bool),
                "input_ids": np.empty(0, dtype=object), "report": np.empty(0, dtype=object),
                "report_key": np.zeros(0, np.int64)}
    cols = [k for k in ("signal", "signal_scale", "fs", "lead_mask") if k in batch]
    sub = {k: np.asarray(batch[k], dtype=object)[keep] for k in cols}
    reports = [str(batch["report"][i]) for i in keep]
    masks = decode_masks(sub)
    drop = data_cfg.lead_dropout
    if split == data_cfg.train_split and drop.p > 0:
        masks = drop_leads(masks, np.random.default_rng(), drop.p, drop.families, drop.keep)
    ecg = prepare_ecg_batch(decode_batch(sub), batch_fs(sub), data_cfg, lead_mask=masks)
    ids = np.empty(len(keep), dtype=object)
    ids[:] = tokenize(reports, text_model, data_cfg.max_text_tokens)
    return {"ecg": ecg, "lead_mask": model_lead_mask(masks, len(keep), data_cfg), "input_ids": ids,
            "report": np.asarray(reports, dtype=object), "report_key": report_keys(reports)}


def read_split(shards_dir: str, split: str, columns: list[str], *, shuffle_files: bool = False,
               seed: int = 0) -> ray.data.Dataset:
    """The rows of one manifest split (``columns`` only), streamed from its shards.

    ``shuffle_files``: the shard files in a seeded order that changes with every execution
    of the dataset (each training epoch), so no two epochs read the files alike.
    """
    import ray.data
    from ray.data.expressions import col

    from merl.training.data.shards import has_lead_mask

    manifest = read_manifest(shards_dir)
    paths = [s for s, info in zip(manifest.shard_paths(shards_dir), manifest.shards)
             if not info.splits or info.splits.get(split, 0) > 0]
    if not paths:
        raise ValueError(f"{shards_dir}: no shard holds split {split!r} (manifest splits: {manifest.counts.by_split})")
    if "lead_mask" in columns and not has_lead_mask(paths[0]):  # shards from before lead masks: all present
        columns = [c for c in columns if c != "lead_mask"]
    shuffle = ray.data.FileShuffleConfig(seed=seed, reseed_after_execution=True) if shuffle_files else None
    # Filter the split right after the read, before decoding/tokenising: the validation
    # stream would otherwise decode every training signal only to drop it.
    return ray.data.read_parquet(paths, columns=columns, shuffle=shuffle).filter(expr=col("split") == split)


def iter_shuffle_options(data_cfg: DataConfig, seed: int, epoch: int) -> dict[str, Any]:
    """``iter_batches`` / ``iter_torch_batches`` keywords for the training order of ``epoch``:
    the row window and its seed (a different draw every epoch)."""
    if data_cfg.shuffle == "none" or data_cfg.shuffle_buffer_rows == 0:
        return {}
    return {"local_shuffle_buffer_size": data_cfg.shuffle_buffer_rows,
            "local_shuffle_seed": (seed * 1_000_003 + epoch) % (2**31)}


def warn_if_index_ordered(shards_dir: str, data_cfg: DataConfig) -> bool:
    """Warn (and say True) when ``global`` shuffling meets shards written in index order,
    where one patient's ECGs sit together and the row window cannot pull them apart."""
    order = read_manifest(shards_dir).config.get("shard_order", "index")
    if data_cfg.shuffle == "global" and order != "shuffled":
        log.warning("%s: shards were written in index order (shard_order=%s): training batches will hold one "
                    "patient's ECGs together far more often than a random order would (false negatives for the "
                    "contrastive loss); re-run `merl data prepare`, which now writes records shuffled", shards_dir, order)
        return True
    return False


def build_dataset(shards_dir: str, split: str, data_cfg: DataConfig, text_model: str, *, shuffle_files: bool = False,
                  seed: int = 0) -> ray.data.Dataset:
    """A lazily streamed Ray Dataset of one manifest split, ready for :func:`collate`."""
    ds = read_split(shards_dir, split, READ_COLUMNS, shuffle_files=shuffle_files, seed=seed)
    return ds.map_batches(
        preprocess_batch,
        batch_format="numpy",
        batch_size=PREPROCESS_ROWS,
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
            "lead_mask": torch.as_tensor(np.ascontiguousarray(batch["lead_mask"], dtype=bool)),
            "input_ids": ids,
            "attention_mask": mask,
            "report_key": torch.as_tensor(np.asarray(batch["report_key"], dtype=np.int64)),
        }


def pad_id_for(text_model: str) -> int:
    tok = _tokenizer(text_model)
    return int(tok.pad_token_id if tok.pad_token_id is not None else 0)


def split_datasets(data_cfg: DataConfig, text_model: str, seed: int = 0) -> dict[str, ray.data.Dataset]:
    """{"train": ..., "val": ...} for ``TorchTrainer(datasets=...)`` (val only if configured).

    The training files are read in a new seeded order every epoch under ``shuffle: global``;
    validation is read in manifest order.
    """
    warn_if_index_ordered(data_cfg.train_shards, data_cfg)
    out = {"train": build_dataset(data_cfg.train_shards, data_cfg.train_split, data_cfg, text_model,
                                  shuffle_files=data_cfg.shuffle == "global", seed=seed)}
    if data_cfg.val_split:
        counts = read_manifest(data_cfg.train_shards).counts.by_split
        if counts.get(data_cfg.val_split, 1) > 0:
            out["val"] = build_dataset(data_cfg.train_shards, data_cfg.val_split, data_cfg, text_model)
    return out


def _with_signal_bytes(batch: dict[str, np.ndarray], n_values: int) -> dict[str, np.ndarray]:
    return {**batch, "ecg": np.zeros((len(batch["id"]), n_values), np.float32)}


def _same_patient_pairs(patients: np.ndarray) -> int:
    _, counts = np.unique(patients, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def same_patient_pairs(shards_dir: str, data_cfg: DataConfig, *, seed: int = 0, epochs: int = 2,
                       split: str = "train") -> dict[str, float]:
    """How often training batches pair two ECGs of one patient (false negatives for the
    contrastive loss), under ``data_cfg``'s shuffle, against a random permutation.

    Reads ids and patient ids through the same file order, block sizes and row window as the
    training loop, for ``epochs`` epochs of ``batch_size`` batches (last partial batch
    dropped, as in training). Returns ``pair_fraction`` (same-patient pairs / within-batch
    pairs) and ``expected_pair_fraction``, its expectation under a uniformly random
    permutation: sum_p k_p (k_p - 1) / (N (N - 1)) over patients with k_p records;
    ``batch_fraction`` / ``expected_batch_fraction``: batches holding at least one such pair
    (the latter by 200 seeded permutations); ``repeat_fraction``: the share of the last
    epoch's within-batch pairs that already shared a batch in the first (a fixed order: 1;
    independent permutations: (B - 1) / (N - 1), ``expected_repeat_fraction``). Records
    without a patient id count as their own patient.
    """
    ds = read_split(shards_dir, split, ["id", "patient_id", "split"], shuffle_files=data_cfg.shuffle == "global",
                    seed=seed)
    # Blocks as in training: PREPROCESS_ROWS rows of the prepared signal's size. Ray bundles
    # small outputs up to its minimum block size (1 MB), so a few light columns alone would
    # reach the window as one block of thousands of rows and overstate the mixing.
    ds = ds.map_batches(_with_signal_bytes, batch_format="numpy", batch_size=PREPROCESS_ROWS,
                        fn_kwargs={"n_values": 12 * data_cfg.n_samples})
    b = data_cfg.batch_size
    pairs = with_pair = n_batches = 0
    first: list[np.ndarray] = []
    batch_ids: list[list[np.ndarray]] = []
    for epoch in range(epochs):
        seen, ids = [], []
        for batch in ds.iter_batches(batch_size=b, batch_format="numpy", drop_last=True,
                                     prefetch_batches=data_cfg.prefetch, **iter_shuffle_options(data_cfg, seed, epoch)):
            pid = np.array([p if p else f"rec:{i}" for p, i in zip(batch["patient_id"], batch["id"])], dtype=object)
            k = _same_patient_pairs(pid)
            pairs, with_pair, n_batches = pairs + k, with_pair + (k > 0), n_batches + 1
            seen.append(pid)
            ids.append(np.asarray(batch["id"], dtype=object))
        first = first or seen
        batch_ids.append(ids)
    if not n_batches:
        raise ValueError(f"{shards_dir}: fewer than one batch of {b} {split} records")
    patients = np.concatenate(first)
    n = len(patients)
    _, counts = np.unique(patients, return_counts=True)
    expected = float((counts * (counts - 1)).sum() / (n * (n - 1))) if n > 1 else 0.0
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(200):
        perm = rng.permutation(patients)
        hits += sum(_same_patient_pairs(perm[i:i + b]) > 0 for i in range(0, n - b + 1, b))
    pair_fraction = pairs / (n_batches * b * (b - 1) / 2)
    before, last = _pair_set(batch_ids[0]), _pair_set(batch_ids[-1])
    return {"pair_fraction": pair_fraction, "expected_pair_fraction": expected,
            "ratio": pair_fraction / expected if expected else float("nan"),
            "batch_fraction": with_pair / n_batches, "expected_batch_fraction": hits / (200 * (n // b)),
            "repeat_fraction": len(before & last) / len(last) if last else float("nan"),
            "expected_repeat_fraction": (b - 1) / (n - 1) if n > 1 else float("nan"),
            "batches": n_batches, "records": n, "patients": len(counts)}


def _pair_set(batches: list[np.ndarray]) -> set[tuple[str, str]]:
    out = set()
    for ids in batches:
        s = sorted(map(str, ids))
        out.update((s[i], s[j]) for i in range(len(s)) for j in range(i + 1, len(s)))
    return out
