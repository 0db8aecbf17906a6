"""The Python API for notebooks and scripts: ``model = merl.load(BUNDLE)``.

A thin layer over an export bundle (:mod:`merl.training.export`) and the one zero-shot scorer
(:mod:`merl.training.zeroshot`, via :mod:`merl.training.infer`), so a notebook scores ECGs
exactly as ``merl classify`` and ``merl evaluate`` do. Two levels:

* tensors the model sees: ``encode_ecg(x)`` with ``x`` an already prepared float tensor
  [B, 12, L], ``encode_text(input_ids, attention_mask)``;
* raw signals in mV at any sampling rate, leads in the canonical order I, II, III, aVR, aVL,
  aVF, V1-V6 (:func:`read_ecgs` reads WFDB records and shards that way):
  ``embed_ecg(signals_mv, fs)`` and ``classify(signals_mv, fs, labels=... | prompts=...)``
  resample, crop/pad, normalise and order the leads as the bundle's config says
  (``prepare``), then embed / score.

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


def _batch(signals_mv: Any) -> np.ndarray:
    x = np.asarray(signals_mv.detach().cpu() if isinstance(signals_mv, torch.Tensor) else signals_mv,
                   dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] != 12:
        raise ValueError(f"expected ECG signals [N, 12, L] or [12, L] in mV, got shape {tuple(x.shape)}")
    return x


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
    def encode_ecg(self, x: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Prepared ECG tensor [B, 12, L] (as :meth:`prepare` returns: normalised, rows in
        ``config.data.lead_order``) -> projected embedding [B, D] (unit rows with ``normalize``)."""
        return self.model.encode_ecg(torch.as_tensor(x, dtype=torch.float32).to(self.device), normalize=normalize)

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
    def prepare(self, signals_mv: Any, fs: int) -> np.ndarray:
        """[N, 12, L] (or [12, L]) mV at ``fs`` Hz -> the float32 input the model was trained on."""
        from merl.training.data.transforms import prepare_ecg_batch

        return prepare_ecg_batch(_batch(signals_mv), fs, self.config.data)

    def embed_ecg(self, signals_mv: Any, fs: int, normalize: bool = True, batch_size: int = 64) -> torch.Tensor:
        """Raw signals -> ECG embeddings [N, D] (unit rows by default)."""
        from merl.training.infer import embed_signals

        return embed_signals(self.bundle, _batch(signals_mv), fs, normalize=normalize, batch_size=batch_size)

    def probe_features(self, signals_mv: Any, fs: int, batch_size: int = 64) -> torch.Tensor:
        """Raw signals -> the frozen encoder's features for a linear probe [N, C]."""
        from merl.training.infer import embed_signals

        return embed_signals(self.bundle, _batch(signals_mv), fs, features="backbone", batch_size=batch_size)

    def classify(self, signals_mv: Any, fs: int, labels: Sequence[str] | None = None,
                 prompts: Mapping[str, str] | str | Path | None = None, batch_size: int = 64,
                 max_prompt_tokens: int | None = None) -> ZeroShotResult:
        """Zero-shot classification of raw signals against class names (``labels``, each its own
        prompt) or ``prompts`` ({class: prompt}, or a prompts JSON file such as `merl prompts` writes).

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
        sim, probs = zero_shot(self.bundle, _batch(signals_mv), fs, class_prompts, batch_size, max_prompt_tokens)
        return ZeroShotResult(list(class_prompts), list(class_prompts.values()), probs, sim)


def read_ecgs(path: str | Path) -> tuple[list[str], np.ndarray, int]:
    """(record ids, signals [N, 12, L] in mV with leads in the canonical order, fs) from one
    WFDB record (path without extension) or a prepared shard folder (local or a URI): input for
    ``embed_ecg`` and ``classify``. Leads are matched by name, whatever order the file stores them in."""
    from merl.training.infer import load_inputs

    return load_inputs(path)


def load(path: str | Path, device: str = "cpu") -> MERL:
    """Load an export bundle (`merl export` / `merl import-reference`; a local folder or a URI,
    downloaded first) for inference, offline."""
    return MERL(load_bundle(path, device=device))
