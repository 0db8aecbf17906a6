"""Names -> models: ``build_model(cfg.model)`` is the one constructor training and export use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from merl.training.model.ecg_resnet import DEPTHS, PaperResNet1d, ResNet1d
from merl.training.model.ecg_vit import SIZES, ViT1d

if TYPE_CHECKING:
    from torch import nn

    from merl.training.config import LossConfig, ModelConfig
    from merl.training.model.merl import MERLModel

ECG_ENCODERS: tuple[str, ...] = (*DEPTHS, *SIZES)
ARCHS: tuple[str, ...] = ("merl-ray", "paper")


def build_ecg_encoder(name: str, width: int = 64, arch: str = "merl-ray", proj_dim: int = 256) -> nn.Module:
    """The ECG tower ``name`` in ``arch`` (``paper``'s ResNet pools to ``proj_dim`` itself).
    ``merl-ray`` towers learn a lead-absence embedding; ``paper`` ones mask by zeroing only."""
    if arch not in ARCHS:
        raise ValueError(f"unknown model arch {arch!r}; choose one of {', '.join(ARCHS)}")
    paper = arch == "paper"
    if name in DEPTHS:
        return PaperResNet1d(name, width=width, dim=proj_dim) if paper else ResNet1d(name, width=width)
    if name in SIZES:
        return ViT1d(name, cls_token=not paper, patch_bias=not paper, lead_absence=not paper)
    raise ValueError(f"unknown ECG encoder {name!r}; choose one of {', '.join(ECG_ENCODERS)}")


def build_model(model_cfg: ModelConfig, loss_cfg: LossConfig | None = None, *,
                pretrained_text: bool = True) -> MERLModel:
    """Build MERL from config. ``pretrained_text=False`` builds the text tower from its config
    only (weights then come from a checkpoint / export bundle)."""
    from merl.training.config import LossConfig
    from merl.training.model.merl import MERLModel
    from merl.training.model.text import TextEncoder

    loss_cfg = loss_cfg or LossConfig()
    return MERLModel(
        build_ecg_encoder(model_cfg.ecg_encoder, model_cfg.width, model_cfg.arch, model_cfg.proj_dim),
        TextEncoder(model_cfg.text_model, model_cfg.freeze_text_layers, config_only=not pretrained_text,
                    pooling=model_cfg.text_pooling, cache=model_cfg.text_cache),
        proj_dim=model_cfg.proj_dim,
        proj_hidden=model_cfg.proj_hidden,
        dropout=model_cfg.dropout,
        temperature=loss_cfg.temperature,
        learnable_temperature=loss_cfg.learnable,
        arch=model_cfg.arch,
    )
