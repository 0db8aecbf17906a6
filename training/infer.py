"""Zero-shot scoring with an exported bundle: ECGs x class prompts -> per-class probabilities.

Used by :mod:`merl.api` (the Python API, and through it ``merl classify``). Inputs are one
WFDB record (read and canonicalised with the ingestion readers) or a prepared shard folder
(every split). Scores come from
:mod:`merl.training.zeroshot`, the path training validation and ``merl evaluate`` use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from merl.training.data.schema import TARGET_FS
from merl.training.data.transforms import prepare_ecg_batch
from merl.training.embed import device_dtype
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
def embed_signals(bundle: Bundle, signals_mv: np.ndarray, fs: int, *, normalize: bool = True,
                  features: str = "projected", batch_size: int = 64) -> torch.Tensor:
    """[N, 12, L] mV at ``fs`` -> float32 [N, D] on the CPU, each batch prepared as in pretraining
    (``prepare_ecg_batch`` with the bundle's data config). ``features="backbone"``: the
    frozen encoder's linear-probing features instead of the projected embedding."""
    model, cfg = bundle.model, bundle.config
    device, dtype = device_dtype(model)  # ECGs go where the weights are, in their float type
    out = []
    for i in range(0, len(signals_mv), batch_size):
        x = torch.from_numpy(prepare_ecg_batch(signals_mv[i: i + batch_size], fs, cfg.data))
        x = x.to(device=device, dtype=dtype)
        z = model.probe_features(x) if features == "backbone" else model.encode_ecg(x, normalize=normalize)
        out.append(z.float().cpu())
    return torch.cat(out) if out else torch.zeros((0, cfg.model.proj_dim))


@torch.no_grad()
def zero_shot(bundle: Bundle, signals_mv: np.ndarray, fs: int, prompts: Mapping[str, str] | list[str],
              batch_size: int = 64, max_prompt_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cosine similarities [N, C], softmax over classes of the logit-scaled similarities [N, C]).

    Prompts are encoded up to ``max_prompt_tokens`` (default: the text model's maximum; a cut
    prompt is logged), not the training reports' ``data.max_text_tokens``.
    """
    model = bundle.model
    text = class_embeddings(model, bundle.tokenizer, prompts, max_prompt_tokens).cpu()
    ecg = embed_signals(bundle, signals_mv, fs, normalize=True, batch_size=batch_size)
    scale = model.logit_scale.detach().float().clamp(max=MAX_LOGIT_SCALE).exp().cpu()
    cosine = zero_shot_scores(ecg, text)
    probs = torch.softmax(scale * cosine, dim=-1)
    return cosine.numpy(), probs.numpy()


def score(bundle: Bundle, signals_mv: np.ndarray, fs: int, prompts: Mapping[str, str],
          batch_size: int = 64) -> np.ndarray:
    """Softmax over classes of the logit-scaled cosine similarity (ECG vs each class prompt): [N, C]."""
    return zero_shot(bundle, signals_mv, fs, prompts, batch_size)[1]
