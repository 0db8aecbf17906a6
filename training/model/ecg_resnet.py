"""1-D ResNet ECG encoders (ResNet18/34/50/101): the ``merl-ray`` variant and the reference's.

Blocks and stage layout are MERL's. ``ResNet1d`` (``model.arch: merl-ray``) adds a max-pool
to the stem and pools the raw last-stage features with a mean-query attention head.
``PaperResNet1d`` (``model.arch: paper``) is the reference: no stem max-pool (313 time steps
at 5000 samples), a 1x1 conv down to the embedding size, then a learned-query attention pool.
"""

from __future__ import annotations

import torch
from torch import nn

from merl.training.model.heads import AttentionPool1d, QueryAttentionPool1d
from merl.training.model.leads import LeadAbsence, zero_masked


class BasicBlock1d(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(planes)
        self.conv2 = nn.Conv1d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm1d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.down = _downsample(cin, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (self.down(x) if self.down is not None else x))


class Bottleneck1d(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(planes)
        self.conv2 = nn.Conv1d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm1d(planes)
        self.conv3 = nn.Conv1d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm1d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.down = _downsample(cin, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (self.down(x) if self.down is not None else x))


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv1d(cin, cout, 1, stride, bias=False), nn.BatchNorm1d(cout))


DEPTHS = {
    "resnet18": (BasicBlock1d, (2, 2, 2, 2)),
    "resnet34": (BasicBlock1d, (3, 4, 6, 3)),
    "resnet50": (Bottleneck1d, (3, 4, 6, 3)),
    "resnet101": (Bottleneck1d, (3, 4, 23, 3)),
}


class ResNet1d(nn.Module):
    """12-lead ECG [B, 12, L] -> (attention-pooled [B, C], average-pooled [B, C]).

    The attention-pooled vector feeds the cross-modal head, the average-pooled one the
    uni-modal dropout views (MERL's split). ``maxpool=False, pool=False`` gives the bare
    trunk of :class:`PaperResNet1d` (``features`` only). ``lead_mask`` [B, 12] (True =
    present): absent rows are zeroed and, with ``lead_absence``, a learned vector per absent
    lead is added after the stem convolution (:mod:`merl.training.model.leads`).
    """

    def __init__(self, name: str = "resnet18", width: int = 64, in_leads: int = 12,
                 maxpool: bool = True, pool: bool = True, lead_absence: bool = True):
        super().__init__()
        block, layers = DEPTHS[name]
        stem = [nn.Conv1d(in_leads, width, 7, 2, 3, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
        if maxpool:
            stem.append(nn.MaxPool1d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        stages, cin = [], width
        for i, n in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, stride=2 if (i > 0 and j == 0) else 1))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_dim = cin
        self.pool = AttentionPool1d(cin, num_heads=8 if cin % 8 == 0 else 1) if pool else None
        self.absence = LeadAbsence(width, in_leads) if lead_absence else None

    def features(self, x: torch.Tensor, lead_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Last-stage feature map [B, C, T]."""
        h = self.stem[0](zero_masked(x, lead_mask))
        offset = self.absence(lead_mask, h) if self.absence is not None else None
        if offset is not None:
            h = h + offset[:, :, None]
        return self.stages(self.stem[1:](h))

    def probe_features(self, x: torch.Tensor, lead_mask: torch.Tensor | None = None) -> torch.Tensor:
        """What linear probing reads: the attention-pooled features (``merl-ray``)."""
        return self(x, lead_mask)[0]

    def forward(self, x: torch.Tensor, lead_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x, lead_mask)  # [B, C, T]
        return self.pool(feats), feats.mean(dim=-1)


class PaperResNet1d(nn.Module):
    """The reference's ResNet tower: ECG [B, 12, L] -> (embedding [B, D], average-pooled [B, D]).

    ``backbone`` (stem without max-pool) -> 1x1 ``downconv`` to ``dim`` -> the learned-query
    attention pool (4 heads) + output linear gives the cross-modal embedding directly (no
    further projection MLP); the time average of the ``downconv`` output feeds the uni-modal
    views. Linear probing reads the time average of the backbone's own features. A lead mask
    zeroes absent rows only (no parameter beyond the reference's).
    """

    projected = True  # forward()[0] already is the cross-modal embedding

    def __init__(self, name: str = "resnet18", width: int = 64, in_leads: int = 12, dim: int = 256,
                 num_heads: int = 4, n_pos: int = 313):
        super().__init__()
        self.backbone = ResNet1d(name, width, in_leads, maxpool=False, pool=False, lead_absence=False)
        self.downconv = nn.Conv1d(self.backbone.out_dim, dim, 1)
        self.pool = QueryAttentionPool1d(dim, num_heads=num_heads, n_pos=n_pos)
        self.out_dim = dim

    def probe_features(self, x: torch.Tensor, lead_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.backbone.features(x, lead_mask).mean(dim=-1)

    def forward(self, x: torch.Tensor, lead_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.downconv(self.backbone.features(x, lead_mask))  # [B, D, T]
        return self.pool(feats), feats.mean(dim=-1)
