"""Zero-shot scoring with an exported bundle: ECGs x class prompts -> per-class probabilities.

Used by ``merl classify``. Inputs are one WFDB record (read and canonicalised with the
ingestion readers) or a prepared shard folder (every split). Scores come from
:mod:`merl.training.zeroshot`, the path training validation and ``merl evaluate`` use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from merl.training.data.schema import TARGET_FS
from merl.training.data.transforms import prepare_ecg_batch
from merl.training.export import Bundle
from merl.training.loss import MAX_LOGIT_SCALE
from merl.training.zeroshot import class_embeddings, zero_shot_scores


def load_inputs(path: str | Path) -> tuple[list[str], np.ndarray, int]:
    """(record ids, [N, 12, L] mV, fs) from a WFDB record path (no extension) or a shard folder
    (local or a URI)."""
    from merl.core.io import is_dir
    from merl.core.uri import is_uri

    if is_uri(path) or is_dir(path):
        import pyarrow.parquet as pq

        from merl.training.data.manifest import read_manifest
        from merl.training.data.transforms import batch_fs, decode_batch

        ids, sigs, fs = [], [], TARGET_FS
        for shard in read_manifest(str(path)).shard_paths(str(path)):
            tab = pq.read_table(shard, columns=["id", "fs", "signal", "signal_scale"]).to_pydict()
            ids += tab["id"]
            sigs.append(decode_batch(tab))
            fs = batch_fs(tab)
        return ids, np.concatenate(sigs) if sigs else np.zeros((0, 12, 0), np.float32), fs
    p = Path(path)
    record = p.with_suffix("") if p.suffix in (".hea", ".dat") else p
    if not record.with_suffix(".hea").is_file():
        raise FileNotFoundError(f"{path}: neither a shard folder (with manifest.json) nor a WFDB record (.hea)")
    from merl.training.data.canonical import canonicalize
    from merl.training.data.readers.wfdb_reader import read_wfdb

    sig = canonicalize(read_wfdb(record))
    return [record.name], sig[None].astype(np.float32), TARGET_FS


@torch.no_grad()
def score(bundle: Bundle, signals_mv: np.ndarray, fs: int, prompts: Mapping[str, str],
          batch_size: int = 64) -> np.ndarray:
    """Softmax over classes of the logit-scaled cosine similarity (ECG vs each class prompt): [N, C]."""
    model, cfg = bundle.model, bundle.config
    param = next(model.parameters())  # ECGs go where the weights are, in their dtype
    device, dtype = param.device, param.dtype
    text = class_embeddings(model, bundle.tokenizer, prompts, cfg.data.max_text_tokens)
    scale = model.logit_scale.detach().float().clamp(max=MAX_LOGIT_SCALE).exp()
    out = []
    for i in range(0, len(signals_mv), batch_size):
        x = torch.from_numpy(prepare_ecg_batch(signals_mv[i: i + batch_size], fs, cfg.data)).to(device, dtype)
        logits = zero_shot_scores(model.encode_ecg(x, normalize=True), text, scale)
        out.append(torch.softmax(logits, dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(prompts)), np.float32)
