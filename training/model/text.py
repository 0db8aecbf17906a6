"""The text tower: any Hugging Face encoder by name or local path, pooled, partly or wholly frozen."""

from __future__ import annotations

import contextlib
import logging
from typing import Literal

import torch
from torch import nn

from merl.core.textmodel import resolve_text_model

log = logging.getLogger(__name__)

FreezeSpec = int | Literal["all"]


def _layer_list(model: nn.Module, n_layers: int) -> nn.ModuleList | None:
    """The transformer's block list (BERT: encoder.layer; others: the ModuleList of that length)."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    return None


class TextEncoder(nn.Module):
    """Report text -> [B, H]: ``pooling="mean"`` (mean of the last hidden state over the
    attention mask) or ``"pooler"`` (the model's pooler output, e.g. BERT's tanh(dense(CLS)),
    as the reference reads MedCPT).

    ``freeze_layers=N`` freezes the embeddings + first N layers: it keeps a pretrained
    clinical/biomedical encoder's vocabulary knowledge and makes each step cheaper.
    ``"all"`` freezes the whole model (pooler included) and runs it without autograd, as the
    reference does; only the projection head above it trains. Dropout still follows
    train/eval mode, as in the reference (its frozen LM stays in train mode while training).

    ``cache=True`` (only with ``"all"``): while training, each report's pooled features are
    computed once, in eval mode, and reused every later epoch. A frozen model's output for a
    report never changes apart from dropout, and its forward pass is most of a CPU training
    step; the price is that the frozen LM's dropout no longer varies the text features.
    """

    def __init__(self, name_or_path: str | None = None, freeze_layers: FreezeSpec = 0, config_only: bool = False,
                 pooling: Literal["mean", "pooler"] = "mean", cache: bool = False):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        path = resolve_text_model(name_or_path)
        if config_only:  # weights come from a checkpoint (export bundle): skip the hub/pretrained load
            self.model = AutoModel.from_config(AutoConfig.from_pretrained(path))
        else:
            self.model = AutoModel.from_pretrained(path)
        self.out_dim = int(self.model.config.hidden_size)
        self.pooling = pooling
        pooler = getattr(self.model, "pooler", None)
        if pooling == "pooler" and pooler is None:
            raise ValueError(f"text model {name_or_path!r} ({type(self.model).__name__}) has no pooler; "
                             "use model.text_pooling=mean")
        if pooling == "mean" and pooler is not None:  # unused: frozen so DDP sees no param without grad
            pooler.requires_grad_(False)
        self.frozen = freeze_layers == "all"
        if cache and not self.frozen:
            raise ValueError("the text feature cache needs the whole text model frozen (freeze_text_layers='all')")
        self.cache: dict[bytes, torch.Tensor] | None = {} if cache else None
        if self.frozen:
            self.model.requires_grad_(False)
        else:
            self.freeze(int(freeze_layers))

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
        if self.cache is not None and self.training:
            return self._cached(input_ids, attention_mask)
        return self._encode(input_ids, attention_mask)

    def _cached(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled features from the cache, computing (in eval mode) only the reports not seen yet;
        a report is its token ids without the padding."""
        keys = [ids[mask].numpy().tobytes() for ids, mask in zip(input_ids.cpu(), attention_mask.bool().cpu())]
        new = [k for k in dict.fromkeys(keys) if k not in self.cache]
        if new:
            row_of: dict[bytes, int] = {}
            for i, k in enumerate(keys):
                row_of.setdefault(k, i)
            rows = [row_of[k] for k in new]
            self.model.eval()
            try:
                feats = self._encode(input_ids[rows], attention_mask[rows])
            finally:
                self.model.train()
            self.cache.update(zip(new, feats.detach()))  # in the dtype the text model computes (bf16 under DeepSpeed)
        return torch.stack([self.cache[k] for k in keys])

    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
