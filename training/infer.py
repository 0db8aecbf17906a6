"""Zero-shot scoring with an exported bundle: ECGs x class prompts -> per-class probabilities.

Used by :mod:`merl.api` (the Python API, and through it ``merl classify``). Inputs are one
WFDB record (read and canonicalised with the ingestion readers) or a prepared shard folder
(every split). Scores come from
:mod:`merl.training.zeroshot`, the path training validation and ``merl evaluate`` use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from merl.core.config import ConfigError
from merl.training.data.canonical import leads_mask, parse_leads
from merl.training.data.schema import LEADS, TARGET_FS
from merl.training.data.transforms import model_lead_mask, prepare_ecg_batch
from merl.training.embed import device_dtype
from merl.training.export import Bundle
from merl.training.loss import MAX_LOGIT_SCALE
from merl.training.zeroshot import class_embeddings, zero_shot_scores

log = logging.getLogger(__name__)


@dataclass
class EcgInputs:
    """Records ready for scoring: ids, [N, 12, L] mV in the canonical lead order (masked leads
    zero), their sampling rate, and [N, 12] bool lead masks (True = recorded and usable).

    Unpacks as ``ids, signals, fs`` (the tuple :func:`load_inputs` returned before masks)."""

    ids: list[str]
    signals: np.ndarray
    fs: int
    lead_mask: np.ndarray

    def __iter__(self) -> Iterator:
        return iter((self.ids, self.signals, self.fs))

    def leads_of(self, i: int) -> list[str]:
        """The lead names record ``i`` is scored with."""
        return [lead for lead, m in zip(LEADS, self.lead_mask[i]) if m]


def _read_record(record: Path, leads: list[str] | None):
    """One WFDB record -> (signal, mask). ``leads``: the header's names when none of them is a
    standard lead and the counts agree (the file's rows, in order), else the leads kept."""
    from merl.training.data.canonical import canonicalize_masked, lead_index, names_found
    from merl.training.data.readers.base import RecordError
    from merl.training.data.readers.wfdb_reader import read_wfdb

    try:
        raw = read_wfdb(record)
        if leads and len(leads) == len(raw.leads) and all(lead_index(n) is None for n in raw.leads):
            raw.leads = list(leads)
            leads = None
        sig, mask = canonicalize_masked(raw)
    except RecordError as e:
        raise ConfigError(f"{record.name}: {e.reason}") from None
    if leads:
        mask = mask & leads_mask(leads)
        if not mask.any():
            raise ConfigError(f"{record.name}: none of the leads {', '.join(leads)} is usable "
                              f"(has {names_found(raw.leads)})")
        sig = np.where(mask[:, None], sig, np.float32(0))
    return sig, mask


def load_inputs(path: str | Path, leads: str | Sequence[str] | None = None) -> EcgInputs:
    """:class:`EcgInputs` from a WFDB record path (no extension; leads matched by header name,
    aliases included) or a shard folder (local or a URI; each record's stored lead mask).

    ``leads`` (``"I,II,V1"`` or a list): score with these leads only; for a WFDB record whose
    header names no standard lead, the names of its rows in file order."""
    from merl.core.io import is_dir
    from merl.core.uri import is_uri

    names = parse_leads(leads) if leads else None
    if is_uri(path) or is_dir(path):
        from merl.training.data.manifest import read_manifest
        from merl.training.data.scan import shard_dataset
        from merl.training.data.transforms import batch_fs, decode_batch, decode_masks

        read_manifest(str(path))  # a clear error for a folder that is no prepared shard folder
        dset = shard_dataset(str(path))
        columns = ["id", "fs", "signal", "signal_scale"] + (["lead_mask"] if "lead_mask" in dset.schema.names else [])
        ids, sigs, masks, fs = [], [], [], TARGET_FS
        for batch in dset.to_batches(columns=columns):
            tab = batch.to_pydict()
            if not tab["id"]:
                continue
            ids += tab["id"]
            sigs.append(decode_batch(tab))
            masks.append(decode_masks(tab))
            fs = batch_fs(tab)
        mask = np.concatenate(masks) if masks else np.zeros((0, 12), bool)
        if names:
            mask &= leads_mask(names)[None]
            if len(mask) and not mask.any(axis=1).all():
                log.warning("%d of %d records have none of the leads %s: their scores carry no signal",
                            int((~mask.any(axis=1)).sum()), len(mask), ",".join(names))
        sig = np.concatenate(sigs) if sigs else np.zeros((0, 12, 0), np.float32)
        return EcgInputs(ids, np.where(mask[..., None], sig, np.float32(0)), fs, mask)
    p = Path(path)
    record = p.with_suffix("") if p.suffix in (".hea", ".dat") else p
    if not record.with_suffix(".hea").is_file():
        raise FileNotFoundError(f"{path}: neither a shard folder (with manifest.json) nor a WFDB record (.hea)")
    sig, mask = _read_record(record, names)
    return EcgInputs([record.name], sig[None].astype(np.float32), TARGET_FS, mask[None])


@torch.no_grad()
def embed_signals(bundle: Bundle, signals_mv: np.ndarray, fs: int, *, normalize: bool = True,
                  features: str = "projected", batch_size: int = 64,
                  lead_mask: np.ndarray | None = None) -> torch.Tensor:
    """[N, 12, L] mV at ``fs`` -> float32 [N, D] on the CPU, each batch prepared as in pretraining
    (``prepare_ecg_batch`` with the bundle's data config). ``lead_mask`` [N, 12] bool, canonical
    order (None: all present). ``features="backbone"``: the frozen encoder's linear-probing
    features instead of the projected embedding."""
    model, cfg = bundle.model, bundle.config
    device, dtype = device_dtype(model)  # ECGs go where the weights are, in their float type
    masks = np.ones(signals_mv.shape[:2], bool) if lead_mask is None else np.asarray(lead_mask, dtype=bool)
    out = []
    for i in range(0, len(signals_mv), batch_size):
        m = masks[i: i + batch_size]
        x = torch.from_numpy(prepare_ecg_batch(signals_mv[i: i + batch_size], fs, cfg.data, lead_mask=m))
        x = x.to(device=device, dtype=dtype)
        mt = torch.from_numpy(model_lead_mask(m, len(m), cfg.data)).to(device)
        z = (model.probe_features(x, mt) if features == "backbone"
             else model.encode_ecg(x, normalize=normalize, lead_mask=mt))
        out.append(z.float().cpu())
    return torch.cat(out) if out else torch.zeros((0, cfg.model.proj_dim))


@torch.no_grad()
def zero_shot(bundle: Bundle, signals_mv: np.ndarray, fs: int, prompts: Mapping[str, str] | list[str],
              batch_size: int = 64, max_prompt_tokens: int | None = None,
              lead_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cosine similarities [N, C], softmax over classes of the logit-scaled similarities [N, C]).

    Prompts are encoded up to ``max_prompt_tokens`` (default: the text model's maximum; a cut
    prompt is logged), not the training reports' ``data.max_text_tokens``.
    """
    model = bundle.model
    text = class_embeddings(model, bundle.tokenizer, prompts, max_prompt_tokens).cpu()
    ecg = embed_signals(bundle, signals_mv, fs, normalize=True, batch_size=batch_size, lead_mask=lead_mask)
    scale = model.logit_scale.detach().float().clamp(max=MAX_LOGIT_SCALE).exp().cpu()
    cosine = zero_shot_scores(ecg, text)
    probs = torch.softmax(scale * cosine, dim=-1)
    return cosine.numpy(), probs.numpy()


def score(bundle: Bundle, signals_mv: np.ndarray, fs: int, prompts: Mapping[str, str],
          batch_size: int = 64, lead_mask: np.ndarray | None = None) -> np.ndarray:
    """Softmax over classes of the logit-scaled cosine similarity (ECG vs each class prompt): [N, C]."""
    return zero_shot(bundle, signals_mv, fs, prompts, batch_size, lead_mask=lead_mask)[1]
