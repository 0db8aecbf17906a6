"""The Python API for notebooks and scripts: ``model = merl.load(BUNDLE)``.

A thin layer over an export bundle (:mod:`merl.training.export`) and the one zero-shot scorer
(:mod:`merl.training.zeroshot`, via :mod:`merl.training.infer`), so a notebook scores ECGs
exactly as ``merl classify`` and ``merl evaluate`` do. Two levels:

* tensors the model sees: ``encode_ecg(x)`` with ``x`` an already prepared float tensor
  [B, 12, L], ``encode_text(input_ids, attention_mask)``;
* raw signals in mV at any sampling rate, leads in the canonical order I, II, III, aVR, aVL,
  aVF, V1-V6 (:func:`read_ecgs` reads WFDB records and shards that way, with each record's
  lead mask), or any subset named by ``leads=["I", "II"]`` (rows in that order):
  ``embed_ecg(signals_mv, fs)`` and ``classify(signals_mv, fs, labels=... | prompts=...)``
  resample, crop/pad, normalise and order the leads as the bundle's config says
  (``prepare``), then embed / score. Absent leads are masked (``lead_mask``), never guessed.

``KnowledgeClient(url)`` queries a running knowledge service (`merl knowledge serve`):
``.query(text, k=...)`` and ``.prompts(task=... | labels=...)``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from merl.knowledge.client import KnowledgeClient, KnowledgeServiceError
from merl.training.export import Bundle, load_bundle

__all__ = ["MERL", "KnowledgeClient", "KnowledgeServiceError", "ZeroShotResult", "load", "read_ecgs"]

log = logging.getLogger(__name__)


@dataclass
class ZeroShotResult:
    """Zero-shot scores of N records against C classes (rows follow the input order)."""

    classes: list[str]
    prompts: list[str]
    probs: np.ndarray  # [N, C] softmax over classes of the logit-scaled cosine similarities
    similarity: np.ndarray  # [N, C] cosine similarities: what AUCs rank

    def top(self) -> list[str]:
        """The highest-scoring class of each record."""
        return [self.classes[i] for i in self.probs.argmax(axis=1)] if len(self.probs) else []


def _batch(signals_mv: Any, leads: Sequence[str] | str | None = None,
           lead_mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Signals [N, k, L] (or [k, L]) -> ([N, 12, L] canonical order, [N, 12] bool mask).

    ``leads`` names the k rows (aliases such as MLII allowed); without it k must be 12, in the
    canonical order. ``lead_mask`` [N, 12] (or [12]) marks canonical leads absent besides."""
    from merl.training.data.canonical import parse_leads
    from merl.training.data.schema import LEADS

    x = np.asarray(signals_mv.detach().cpu() if isinstance(signals_mv, torch.Tensor) else signals_mv,
                   dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    names = parse_leads(leads) if leads is not None else list(LEADS)
    if x.ndim != 3 or x.shape[1] != len(names):
        raise ValueError(f"expected ECG signals [N, {len(names)}, L] or [{len(names)}, L] in mV "
                         f"({'leads ' + ','.join(names) if leads is not None else 'the 12 leads'}), "
                         f"got shape {tuple(x.shape)}")
    if len(set(names)) != len(names):
        raise ValueError(f"leads named twice: {names}")
    out = np.zeros((x.shape[0], len(LEADS), x.shape[2]), np.float32)
    mask = np.zeros((x.shape[0], len(LEADS)), bool)
    rows = [LEADS.index(n) for n in names]
    out[:, rows] = x
    mask[:, rows] = True
    if lead_mask is not None:
        mask &= np.broadcast_to(np.asarray(lead_mask, dtype=bool), mask.shape)
    return np.where(mask[..., None], out, np.float32(0)), mask


class MERL:
    """A loaded MERL model (see :func:`load`). Attributes: ``model`` (the torch module, eval
    mode), ``tokenizer``, ``config`` (its TrainConfig: ``config.data`` says how signals are
    prepared), ``info`` (provenance of imported weights, else empty)."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.model = bundle.model
        self.tokenizer = bundle.tokenizer
        self.config = bundle.config
        self.info = bundle.info

    def __repr__(self) -> str:
        m, d = self.config.model, self.config.data
        return (f"MERL(arch={m.arch}, ecg_encoder={m.ecg_encoder}, dim={m.proj_dim}, "
                f"input={d.fs} Hz x {d.n_samples}, normalize={d.normalize}, device={self.device})")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> MERL:
        self.model.to(device)
        return self

    # -- tensors as the model sees them -------------------------------------------------
    @torch.no_grad()
    def encode_ecg(self, x: torch.Tensor, normalize: bool = False, lead_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Prepared ECG tensor [B, 12, L] (as :meth:`prepare` returns: normalised, rows in
        ``config.data.lead_order``) -> projected embedding [B, D] (unit rows with ``normalize``).
        ``lead_mask`` [B, 12] bool in the same row order (None: all present)."""
        mask = None if lead_mask is None else torch.as_tensor(lead_mask, dtype=torch.bool).to(self.device)
        return self.model.encode_ecg(torch.as_tensor(x, dtype=torch.float32).to(self.device), normalize=normalize,
                                     lead_mask=mask)

    @torch.no_grad()
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Token ids + mask [B, T] (from ``tokenizer`` / :meth:`tokenize`) -> projected embedding [B, D]."""
        return self.model.encode_text(input_ids.to(self.device), attention_mask.to(self.device), normalize=normalize)

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), truncated to the bundle's ``data.max_text_tokens``."""
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.config.data.max_text_tokens,
                             return_tensors="pt")
        return tok["input_ids"], tok["attention_mask"]

    def embed_text(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """Texts -> embeddings [N, D] (unit rows by default, as zero-shot scoring uses them)."""
        return self.encode_text(*self.tokenize(texts), normalize=normalize)

    # -- raw signals -------------------------------------------------------------------
    def prepare(self, signals_mv: Any, fs: int, leads: Sequence[str] | str | None = None,
                lead_mask: Any = None) -> np.ndarray:
        """[N, k, L] (or [k, L]) mV at ``fs`` Hz -> the float32 input the model was trained on
        ([N, 12, n], absent leads zero; :meth:`model_mask` gives the matching mask)."""
        from merl.training.data.transforms import prepare_ecg_batch

        x, mask = _batch(signals_mv, leads, lead_mask)
        return prepare_ecg_batch(x, fs, self.config.data, lead_mask=mask)

    def model_mask(self, n: int, leads: Sequence[str] | str | None = None, lead_mask: Any = None) -> np.ndarray:
        """The [n, 12] bool lead mask :meth:`encode_ecg` takes with :meth:`prepare`'s output."""
        from merl.training.data.transforms import model_lead_mask

        _, mask = _batch(np.zeros((n, 12 if leads is None else len(_names(leads)), 1), np.float32), leads, lead_mask)
        return model_lead_mask(mask, n, self.config.data)

    def embed_ecg(self, signals_mv: Any, fs: int, normalize: bool = True, batch_size: int = 64,
                  leads: Sequence[str] | str | None = None, lead_mask: Any = None) -> torch.Tensor:
        """Raw signals -> ECG embeddings [N, D] (unit rows by default). ``leads``: the names of the
        rows when they are not the 12 standard leads in order; ``lead_mask``: leads absent besides."""
        from merl.training.infer import embed_signals

        x, mask = _batch(signals_mv, leads, lead_mask)
        return embed_signals(self.bundle, x, fs, normalize=normalize, batch_size=batch_size, lead_mask=mask)

    def probe_features(self, signals_mv: Any, fs: int, batch_size: int = 64, leads: Sequence[str] | str | None = None,
                       lead_mask: Any = None) -> torch.Tensor:
        """Raw signals -> the frozen encoder's features for a linear probe [N, C]."""
        from merl.training.infer import embed_signals

        x, mask = _batch(signals_mv, leads, lead_mask)
        return embed_signals(self.bundle, x, fs, features="backbone", batch_size=batch_size, lead_mask=mask)

    def classify(self, signals_mv: Any, fs: int, labels: Sequence[str] | None = None,
                 prompts: Mapping[str, str] | str | Path | None = None, batch_size: int = 64,
                 max_prompt_tokens: int | None = None, leads: Sequence[str] | str | None = None,
                 lead_mask: Any = None) -> ZeroShotResult:
        """Zero-shot classification of raw signals against class names (``labels``, each its own
        prompt) or ``prompts`` ({class: prompt}, or a prompts JSON file such as `merl prompts` writes).
        ``leads`` names the signal rows (any subset, e.g. ``["MLII", "V5"]``); ``lead_mask``
        [N, 12] marks canonical leads absent (as :func:`read_ecgs` returns it).

        Prompts are encoded up to ``max_prompt_tokens``, by default the text model's maximum
        (not ``config.data.max_text_tokens``, the training reports' limit); a prompt still
        longer is cut with a warning."""
        from merl.training.infer import zero_shot
        from merl.training.zeroshot import load_prompts

        if (labels is None) == (prompts is None):
            raise ValueError("give exactly one of labels=[...] or prompts={class: prompt}")
        if prompts is None:
            class_prompts = {str(c): str(c) for c in labels}
        elif isinstance(prompts, (str, Path)):
            class_prompts = load_prompts(prompts)
        else:
            class_prompts = {str(k): str(v) for k, v in prompts.items()}
        if not class_prompts:
            raise ValueError("no classes given")
        if self.info.get("encoder_only"):
            log.warning("this bundle holds an imported ECG encoder only: its heads are untrained, "
                        "so zero-shot scores are meaningless (use probe_features)")
        x, mask = _batch(signals_mv, leads, lead_mask)
        sim, probs = zero_shot(self.bundle, x, fs, class_prompts, batch_size, max_prompt_tokens, lead_mask=mask)
        return ZeroShotResult(list(class_prompts), list(class_prompts.values()), probs, sim)


def _names(leads: Sequence[str] | str) -> list[str]:
    from merl.training.data.canonical import parse_leads

    return parse_leads(leads)


def read_ecgs(path: str | Path, leads: Sequence[str] | str | None = None):
    """Records from one WFDB record (path without extension) or a prepared shard folder (local
    or a URI): an ``EcgInputs`` with ``ids``, ``signals`` [N, 12, L] mV in the canonical lead
    order, ``fs`` and ``lead_mask`` [N, 12]; it unpacks as ``ids, signals, fs``. Leads are
    matched by header name (aliases such as MLII included), whatever order the file stores
    them in; absent ones are masked. ``leads`` ("I,II,V1"): use only these. Pass
    ``lead_mask=`` on to ``classify`` / ``embed_ecg``."""
    from merl.training.infer import load_inputs

    return load_inputs(path, leads)


def load(path: str | Path, device: str = "cpu") -> MERL:
    """Load an export bundle (`merl export` / `merl import-reference`; a local folder or a URI,
    downloaded first) for inference, offline."""
    return MERL(load_bundle(path, device=device))
