"""Lead masks inside the ECG encoders: how a tower sees an ECG with fewer than 12 leads.

Two parts, the same in the ResNet and ViT families:

* **zeroing**: masked rows of the input are multiplied by 0 inside the encoder, so a masked
  lead's samples cannot reach the embedding whatever the caller fed (the data layer zeroes
  them too; this makes it a property of the model);
* **absence embedding** (:class:`LeadAbsence`, ``model.arch: merl-ray`` only): a learned
  vector per lead, summed over the leads that are *absent* and added to the first feature
  map (ResNet: after the stem convolution; ViT: to every patch token). Zeros alone cannot
  tell "lead absent" from "lead flat at 0 mV"; this signal can. It is zero-initialised and
  exactly zero for a 12-lead record, so 12-lead behaviour (and a model trained without lead
  dropout) is unchanged, and bundles written before it load with zeros.

``model.arch: paper`` (the reference's towers, for imported checkpoints) masks by zeroing only.
"""

from __future__ import annotations

import torch
from torch import nn

N_LEADS = 12
ABSENCE_KEY = "lead_absent.weight"  # state-dict key suffix of LeadAbsence


def full_mask(x: torch.Tensor) -> torch.Tensor:
    """An all-present mask [B, 12] for ``x`` [B, 12, L]."""
    return torch.ones(x.shape[0], x.shape[1], dtype=torch.bool, device=x.device)


def zero_masked(x: torch.Tensor, lead_mask: torch.Tensor | None) -> torch.Tensor:
    """``x`` [B, 12, L] with the rows ``lead_mask`` [B, 12] marks absent set to 0."""
    if lead_mask is None:
        return x
    return x * lead_mask.to(device=x.device, dtype=x.dtype)[:, :, None]


class LeadAbsence(nn.Module):
    """Learned per-lead vectors, summed over the absent leads: [B, 12] mask -> [B, dim]."""

    def __init__(self, dim: int, n_leads: int = N_LEADS):
        super().__init__()
        self.lead_absent = nn.Linear(n_leads, dim, bias=False)
        nn.init.zeros_(self.lead_absent.weight)

    def forward(self, lead_mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        """The offset for a batch shaped like ``like`` (None when every lead is present)."""
        if lead_mask is None:
            return None
        absent = (~lead_mask.to(device=like.device, dtype=torch.bool)).to(like.dtype)
        return self.lead_absent(absent)


def fill_missing_absence(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` plus zero :class:`LeadAbsence` weights the model has and ``state`` lacks
    (checkpoints and bundles written before lead masks: zeros are exactly their behaviour)."""
    own = model.state_dict()
    missing = {k: torch.zeros_like(v) for k, v in own.items() if k.endswith(ABSENCE_KEY) and k not in state}
    return {**state, **missing} if missing else state
