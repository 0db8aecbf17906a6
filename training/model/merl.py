"""The MERL dual encoder: ECG tower + text tower + projection heads + temperature."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from merl.training.model.heads import DropoutView, ECGProjection, TextProjection


def _unit(z: torch.Tensor) -> torch.Tensor:
    """L2-normalised rows, in float32: normalised in bf16 (DeepSpeed) they would be unit to ~3 digits only."""
    return F.normalize(z.float(), dim=-1)


class MERLModel(nn.Module):
    """``encode_ecg`` / ``encode_text`` give projected [B, D] embeddings; unit rows with
    ``normalize=True`` (OpenCLIP's convention), as zero-shot scoring needs.

    ``forward`` also returns the two dropout views of the (average-pooled) ECG features
    used by the uni-modal alignment loss, and the current logit scale.

    ``arch="paper"`` lays the heads out as the reference does: an ECG tower whose pooled
    output already is the embedding (its ResNet) needs no projection MLP; otherwise the MLP
    ends in BatchNorm (its ViT); the uni-modal views have no bias.
    """

    def __init__(self, ecg_encoder: nn.Module, text_encoder: nn.Module, proj_dim: int, proj_hidden: int,
                 dropout: float, temperature: float = 0.07, learnable_temperature: bool = True,
                 arch: str = "merl-ray"):
        super().__init__()
        paper = arch == "paper"
        self.arch = arch
        self.ecg_encoder = ecg_encoder
        self.text_encoder = text_encoder
        if getattr(ecg_encoder, "projected", False):
            self.ecg_proj = nn.Identity()
        else:
            self.ecg_proj = ECGProjection(ecg_encoder.out_dim, proj_hidden, proj_dim, final_bn=paper)
        self.text_proj = TextProjection(text_encoder.out_dim, proj_hidden, proj_dim)
        self.view1 = DropoutView(ecg_encoder.out_dim, proj_dim, dropout, bias=not paper)
        self.view2 = DropoutView(ecg_encoder.out_dim, proj_dim, dropout, bias=not paper)
        self.logit_scale = nn.Parameter(
            torch.tensor([math.log(1.0 / temperature)]), requires_grad=learnable_temperature
        )

    def encode_ecg(self, x: torch.Tensor, normalize: bool = False, lead_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``lead_mask`` [B, 12] bool in the row order of ``x`` (None: every lead present)."""
        pooled, _ = self.ecg_encoder(x, lead_mask)
        z = self.ecg_proj(pooled)
        return _unit(z) if normalize else z

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        z = self.text_proj(self.text_encoder(input_ids, attention_mask))
        return _unit(z) if normalize else z

    def probe_features(self, x: torch.Tensor, lead_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Frozen-encoder features for linear probing (before any projection head)."""
        return self.ecg_encoder.probe_features(x, lead_mask)

    def forward(self, ecg: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                lead_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        pooled, avg = self.ecg_encoder(ecg, lead_mask)
        return {
            "ecg": self.ecg_proj(pooled),
            "text": self.encode_text(input_ids, attention_mask),
            "ecg_view1": self.view1(avg),
            "ecg_view2": self.view2(avg),
            "logit_scale": self.logit_scale,
        }
