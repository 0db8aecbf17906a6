"""The text tower: any Hugging Face encoder by name or local path, mean-pooled, partly frozen."""

from __future__ import annotations

import logging

import torch
from torch import nn

from merl.core.textmodel import resolve_text_model

log = logging.getLogger(__name__)


def _layer_list(model: nn.Module, n_layers: int) -> nn.ModuleList | None:
    """The transformer's block list (BERT: encoder.layer; others: the ModuleList of that length)."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    return None


class TextEncoder(nn.Module):
    """Report text -> mean-pooled hidden state [B, H]; embeddings + first N layers frozen.

    Freezing the bottom of a pretrained clinical/biomedical encoder keeps its vocabulary
    knowledge and makes each step cheaper (no grads below the first trainable layer).
    """

    def __init__(self, name_or_path: str | None = None, freeze_layers: int = 0, config_only: bool = False):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        path = resolve_text_model(name_or_path)
        if config_only:  # weights come from a checkpoint (export bundle): skip the hub/pretrained load
            self.model = AutoModel.from_config(AutoConfig.from_pretrained(path))
        else:
            self.model = AutoModel.from_pretrained(path)
        self.out_dim = int(self.model.config.hidden_size)
        pooler = getattr(self.model, "pooler", None)
        if pooler is not None:  # unused (we mean-pool); frozen so DDP sees no param without grad
            pooler.requires_grad_(False)
        self.freeze(freeze_layers)

    def freeze(self, n: int) -> None:
        if n <= 0:
            return
        n_layers = int(getattr(self.model.config, "num_hidden_layers", 0))
        layers = _layer_list(self.model, n_layers)
        if layers is None:
            raise ValueError(f"cannot find the transformer layers of {type(self.model).__name__} to freeze")
        frozen = [self.model.get_input_embeddings(), *list(layers)[: min(n, n_layers)]]
        emb = getattr(self.model, "embeddings", None)
        if emb is not None:
            frozen.append(emb)
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)
        log.debug("froze embeddings + %d/%d text layers", min(n, n_layers), n_layers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
