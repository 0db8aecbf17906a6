"""1-D ViT ECG encoders (tiny/small/middle/base): patches along time, learned positions."""

from __future__ import annotations

import torch
from torch import nn

from merl.training.model.heads import interpolate_pos

# (embed dim, depth, heads, mlp ratio): MERL's sizes.
SIZES = {
    "vit_tiny": (192, 12, 3, 4),
    "vit_small": (384, 12, 6, 4),
    "vit_middle": (512, 8, 8, 4),
    "vit_base": (768, 12, 12, 4),
}


class ViT1d(nn.Module):
    """12-lead ECG [B, 12, L] -> (CLS token [B, C], mean of patch tokens [B, C])."""

    def __init__(self, name: str = "vit_tiny", patch_size: int = 50, in_leads: int = 12, n_pos: int = 100):
        super().__init__()
        dim, depth, heads, ratio = SIZES[name]
        self.patch = nn.Conv1d(in_leads, dim, patch_size, patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(n_pos + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim * ratio, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.patch(x).transpose(1, 2)  # [B, T, C]
        pos = torch.cat([self.pos[:1], interpolate_pos(self.pos[1:], tokens.shape[1])], dim=0)
        tokens = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1) + pos
        tokens = self.norm(self.blocks(tokens))
        return tokens[:, 0], tokens[:, 1:].mean(dim=1)
