"""Pooling and projection heads: attention pooling over time, the ECG MLP (BN), the text MLP (GELU).

``AttentionPool1d`` (mean-token query) is this project's ``merl-ray`` head;
``QueryAttentionPool1d`` is the reference's (learned query token), used by ``model.arch: paper``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def interpolate_pos(pos: torch.Tensor, length: int) -> torch.Tensor:
    """[N, C] learned positions -> [length, C] by linear interpolation (any input length works)."""
    if pos.shape[0] == length:
        return pos
    return F.interpolate(pos.t().unsqueeze(0), size=length, mode="linear", align_corners=False)[0].t()


class AttentionPool1d(nn.Module):
    """CLIP-style attention pooling over time: the mean token attends to all positions."""

    def __init__(self, dim: int, num_heads: int = 8, n_pos: int = 64):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(n_pos + 1, dim) / dim**0.5)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, C]
        tokens = feats.transpose(1, 2)  # [B, T, C]
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        pos = torch.cat([self.pos[:1], interpolate_pos(self.pos[1:], tokens.shape[1] - 1)], dim=0)
        tokens = tokens + pos.unsqueeze(0).to(tokens.dtype)
        out, _ = self.attn(tokens[:, :1], tokens, tokens, need_weights=False)
        return out[:, 0]


class QueryAttentionPool1d(nn.Module):
    """The reference's pooling head: a learned query token attends over [query; time steps].

    Positions (``n_pos`` time steps + 1 for the query; 313 = a 5000-sample record through the
    stem-without-max-pool ResNet) are added to every token, and the query token gets its
    position once more before that, as the reference computes it. Other lengths interpolate
    the time-step positions. Output: ``proj(attention)`` [B, dim].
    """

    def __init__(self, dim: int, num_heads: int = 4, n_pos: int = 313):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, n_pos + 1, dim) / dim)
        self.query = nn.Parameter(torch.randn(1, 1, dim))
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, C]
        tokens = feats.transpose(1, 2)  # [B, T, C]
        pos = self.pos[0]
        pos = torch.cat([pos[:1], interpolate_pos(pos[1:], tokens.shape[1])], dim=0).to(tokens.dtype)
        query = (self.query[0] + pos[:1]).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([query, tokens], dim=1) + pos.unsqueeze(0)
        out, _ = self.attn(tokens[:, :1], tokens, tokens, need_weights=False)
        return self.proj(out[:, 0])


class ECGProjection(nn.Module):
    """ECG head: Linear -> BatchNorm -> ReLU -> Linear, plus a final BatchNorm with
    ``final_bn`` (the reference ViT head ends in one; ``merl-ray`` does not)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, final_bn: bool = False):
        super().__init__()
        layers = [nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)]
        if final_bn:
            layers.append(nn.BatchNorm1d(out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TextProjection(nn.Module):
    """Text head: Linear -> GELU -> Linear (MERL's ``proj_t``)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DropoutView(nn.Module):
    """One uni-modal ECG view: Linear then dropout (two independent views are contrasted).

    ``bias=False`` as in the reference; ``merl-ray`` keeps a bias."""

    def __init__(self, in_dim: int, out_dim: int, p: float, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=bias)
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear(x))
