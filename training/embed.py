"""Stream one split of a shard folder through the ECG tower.

Each batch is prepared by :func:`merl.training.data.transforms.prepare_ecg_batch`, exactly
as in pretraining. Embeddings come back sorted by record id, so results do not depend on
the order the scanner yields batches in. Zero-shot scoring (:mod:`merl.training.zeroshot`)
and linear probing both embed through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from merl.training.data.scan import iter_signal_batches

if TYPE_CHECKING:
    import torch

    from merl.training.data.config import DataConfig


def device_dtype(model) -> tuple[torch.device, torch.dtype]:
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
    leads: np.ndarray | None = None,
) -> EcgEmbeddings:
    """ECG embeddings of a split: ``projected`` = unit-norm ``encode_ecg`` (zero-shot);
    ``backbone`` = ``model.probe_features``, the frozen encoder's features before any
    projection (linear probing; ``arch: paper`` = the reference's average-pooled features).

    Each record's own lead mask (shards written before masks: all present) is applied;
    ``leads`` (a (12,) bool mask in canonical order) further restricts every record to those
    leads, as if only they had been recorded (reduced-lead evaluation).

    The model is put in eval mode for the call and restored after (the train loop calls
    this between epochs).
    """
    import torch
    from tqdm.auto import tqdm

    from merl.training.data.transforms import batch_fs, decode_batch, decode_masks, model_lead_mask, prepare_ecg_batch

    device, dtype = device_dtype(model)
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
                masks = decode_masks(cols)
                if leads is not None:
                    masks &= np.asarray(leads, dtype=bool)[None]
                x = prepare_ecg_batch(decode_batch(cols), batch_fs(cols), data_cfg, lead_mask=masks)
                xt = torch.from_numpy(x).to(device=device, dtype=dtype)
                mt = torch.from_numpy(model_lead_mask(masks, len(masks), data_cfg)).to(device)
                if features == "backbone" and hasattr(model, "probe_features"):
                    z = model.probe_features(xt, mt)
                else:
                    z = model.encode_ecg(xt, normalize=True, lead_mask=mt)
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
