"""1-D ViT ECG encoders (tiny/small/middle/base): patches along time, learned positions.

Sizes are the reference's (depth 12 for every size; heads x 64 = width). ``model.arch:
merl-ray`` prepends a CLS token and reads it out; ``paper`` (the reference) has no CLS token,
no patch-embedding bias, and reads out LayerNorm(mean of the patch tokens).
"""

from __future__ import annotations

import torch
from torch import nn

from merl.training.model.heads import interpolate_pos
from merl.training.model.leads import LeadAbsence, zero_masked

# (embed dim, depth, heads, mlp ratio): the reference's sizes.
SIZES = {
    "vit_tiny": (192, 12, 3, 4),
    "vit_small": (384, 12, 6, 4),
    "vit_middle": (512, 12, 8, 4),
    "vit_base": (768, 12, 12, 4),
}


class ViT1d(nn.Module):
    """12-lead ECG [B, 12, L] -> (pooled [B, C], mean of patch tokens [B, C]).

    ``cls_token=True`` (merl-ray): pooled = the CLS token after the final LayerNorm.
    ``cls_token=False`` (paper): both outputs are LayerNorm(mean of the patch tokens), which
    feeds the projection head and the uni-modal views alike, as in the reference.
    Pre-norm blocks (``nn.TransformerEncoderLayer``, GELU); ``n_pos`` positions (100 = 5000
    samples / patch 50) are interpolated for other lengths. ``lead_mask`` [B, 12]: absent rows
    are zeroed and, with ``lead_absence``, a learned vector per absent lead is added to every
    patch token (:mod:`merl.training.model.leads`).
    """

    def __init__(self, name: str = "vit_tiny", patch_size: int = 50, in_leads: int = 12, n_pos: int = 100,
                 cls_token: bool = True, patch_bias: bool = True, lead_absence: bool = True):
        super().__init__()
        dim, depth, heads, ratio = SIZES[name]
        self.patch = nn.Conv1d(in_leads, dim, patch_size, patch_size, bias=patch_bias)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.pos = nn.Parameter(torch.randn(n_pos + int(cls_token), dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim * ratio, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim
        self.absence = LeadAbsence(dim, in_leads) if lead_absence else None

    def probe_features(self, x: torch.Tensor, lead_mask: torch.Tensor | None = None) -> torch.Tensor:
        """What linear probing reads: the pooled output (CLS, or the reference's mean + LayerNorm)."""
        return self(x, lead_mask)[0]

    def forward(self, x: torch.Tensor, lead_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.patch(zero_masked(x, lead_mask)).transpose(1, 2)  # [B, T, C]
        offset = self.absence(lead_mask, tokens) if self.absence is not None else None
        if offset is not None:
            tokens = tokens + offset[:, None, :]
        if self.cls is None:
            tokens = tokens + interpolate_pos(self.pos, tokens.shape[1])
            pooled = self.norm(self.blocks(tokens).mean(dim=1))
            return pooled, pooled
        pos = torch.cat([self.pos[:1], interpolate_pos(self.pos[1:], tokens.shape[1])], dim=0)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1) + pos
        tokens = self.norm(self.blocks(tokens))
        return tokens[:, 0], tokens[:, 1:].mean(dim=1)
