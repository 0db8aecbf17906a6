"""MERL's objective: cross-modal CLIP alignment + uni-modal alignment of two dropout views.

Negatives come from the *global* batch: embeddings are all-gathered across workers with a
gradient-preserving all_gather, and each worker scores its own rows against every column
(OpenCLIP's "local loss"), so the summed gradients equal those of the global-batch loss.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

MAX_LOGIT_SCALE = math.log(100.0)  # temperature never below 0.01


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All-gather ``x`` [B, D] across workers keeping the autograd graph; returns (all, offset of my rows)."""
    if not _distributed():
        return x, 0
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0), dist.get_rank() * x.shape[0]


def clip_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor,
              gather: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE between row-paired ``a`` and ``b`` (unnormalised) over the global batch.

    ``gather=False`` scores the local batch only (validation, where batches may be ragged).
    Returns (loss, local logits a->all b) so callers can log retrieval accuracy.
    """
    a = F.normalize(a.float(), dim=-1)
    b = F.normalize(b.float(), dim=-1)
    all_a, offset = gather_with_grad(a) if gather else (a, 0)
    all_b, _ = gather_with_grad(b) if gather else (b, 0)
    scale = logit_scale.float().clamp(max=MAX_LOGIT_SCALE).exp()
    labels = torch.arange(a.shape[0], device=a.device) + offset
    logits_ab = scale * a @ all_b.t()
    logits_ba = scale * b @ all_a.t()
    loss = (F.cross_entropy(logits_ab, labels) + F.cross_entropy(logits_ba, labels)) / 2
    return loss, logits_ab


@dataclass
class LossOutput:
    total: torch.Tensor
    clip: torch.Tensor
    uni: torch.Tensor
    top1: float
    top5: float


class MERLLoss(torch.nn.Module):
    """``weight_clip * CLIP(ecg, text) + weight_uni * CLIP(view1, view2)``."""

    def __init__(self, weight_clip: float = 1.0, weight_uni: float = 1.0):
        super().__init__()
        self.weight_clip = weight_clip
        self.weight_uni = weight_uni

    def forward(self, out: dict[str, torch.Tensor]) -> LossOutput:
        scale = out["logit_scale"]
        l_clip, logits = clip_loss(out["ecg"], out["text"], scale)
        l_uni, _ = clip_loss(out["ecg_view1"], out["ecg_view2"], scale)
        total = self.weight_clip * l_clip + self.weight_uni * l_uni
        offset = dist.get_rank() * logits.shape[0] if _distributed() else 0
        labels = torch.arange(logits.shape[0], device=logits.device) + offset
        acc = topk_accuracy(logits.detach(), labels, ks=(1, 5))
        return LossOutput(total, l_clip.detach(), l_uni.detach(), acc[1], acc[5])


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    """Fraction of rows whose target column is among the top-k scores."""
    out = {}
    for k in ks:
        k_eff = min(k, logits.shape[1])
        hits = (logits.topk(k_eff, dim=1).indices == targets.unsqueeze(1)).any(dim=1)
        out[k] = float(hits.float().mean()) if len(hits) else 0.0
    return out


def retrieval_accuracy(ecg: torch.Tensor, text: torch.Tensor, reports: Sequence[Hashable], ks=(1, 5)) -> dict[int, float]:
    """ECG -> report retrieval over *distinct* reports (texts or report keys) of a held-out set.

    Identical reports (same findings) are one candidate, so a hit is "retrieved the text of
    this ECG's report" and chance is 1 / number of distinct reports.
    """
    uniq: dict[str, int] = {}
    targets = torch.tensor([uniq.setdefault(r, len(uniq)) for r in reports])
    first = {}
    for i, r in enumerate(reports):
        first.setdefault(r, i)
    cand = F.normalize(text[[first[r] for r in uniq]].float(), dim=-1)
    logits = F.normalize(ecg.float(), dim=-1) @ cand.t()
    return topk_accuracy(logits, targets, ks)
