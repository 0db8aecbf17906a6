"""The `paper` preset is the reference's method: parameter counts per part, whole-record
normalisation, a frozen text tower read through its pooler, a fixed temperature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from merl.core.config import ConfigError, load_config
from merl.training.config import ModelConfig, TrainConfig, paper_config
from merl.training.data.config import DataConfig
from merl.training.data.transforms import normalize, prepare_ecg_batch
from merl.training.loss import MERLLoss
from merl.training.model import build_model
from merl.training.model.merl import MERLModel
from merl.training.model.registry import build_ecg_encoder
from tests.reference_fixtures import ENCODERS, layout, make_tiny_bert, parameter_counts

REPO = Path(__file__).resolve().parents[1]


class _Text768(nn.Module):
    out_dim = 768


def _trainable(model: nn.Module, prefixes: tuple[str, ...]) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and n.startswith(prefixes))


@pytest.mark.parametrize("encoder", ENCODERS)
def test_trainable_parameters_per_part_equal_the_reference(encoder):
    """Parts as the reference counts them. Its ResNet ``ecg_encoder`` count includes a 10-class
    classifier the model never calls; the import drops it, so ours is that much smaller."""
    ref = parameter_counts()[encoder]
    with torch.device("meta"):
        m = MERLModel(build_ecg_encoder(encoder, 64, "paper", 256), _Text768(), 256, 256, 0.1,
                      learnable_temperature=False, arch="paper")
    shapes = layout(encoder)
    classifier = sum(int(np.prod(s)) for k, (s, _) in shapes.items() if k.startswith("ecg_encoder.linear."))
    if encoder.startswith("resnet"):
        parts = {"ecg_encoder": ("ecg_encoder.backbone.",), "head": ("ecg_encoder.downconv.", "ecg_encoder.pool.")}
        assert classifier == 10 * (m.ecg_encoder.backbone.out_dim + 1)
    else:
        parts = {"ecg_encoder": ("ecg_encoder.",), "head": ("ecg_proj.",)}
        assert classifier == 0
    assert _trainable(m, parts["ecg_encoder"]) == ref["ecg_encoder"] - classifier
    assert _trainable(m, parts["head"]) == ref["head"]
    assert _trainable(m, ("view1.", "view2.")) == ref["uni"]
    assert _trainable(m, ("text_proj.",)) == ref["proj_t"]
    assert _trainable(m, ("",)) == sum(ref.values()) - classifier  # nothing else trains (temperature fixed)


class _FrozenText(nn.Module):
    """A frozen 768-d text tower stand-in (token embeddings averaged)."""

    out_dim = 768

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 768).requires_grad_(False)

    def forward(self, input_ids, attention_mask):
        return self.emb(input_ids).mean(dim=1)


@pytest.mark.parametrize("encoder", ["resnet18", "vit_tiny"])
def test_every_trainable_parameter_gets_a_gradient(encoder):
    """DDP (find_unused_parameters=False) needs every trainable parameter in the loss."""
    torch.manual_seed(0)
    m = MERLModel(build_ecg_encoder(encoder, 64, "paper", 256), _FrozenText(), 256, 256, 0.1,
                  learnable_temperature=False, arch="paper")
    ids = torch.randint(0, 50, (3, 7))
    MERLLoss(2.0, 2.0)(m(torch.rand(3, 12, 1000), ids, torch.ones_like(ids))).total.backward()
    assert [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None] == []


def test_paper_resnet_sees_313_steps_at_5000_samples_and_other_lengths_work():
    enc = build_ecg_encoder("resnet18", 64, "paper", 256).eval()
    with torch.no_grad():
        assert enc.backbone.features(torch.zeros(1, 12, 5000)).shape == (1, 512, 313)
        z, uni = enc(torch.randn(2, 12, 1000))  # 63 steps: positions interpolated
        assert z.shape == uni.shape == (2, 256)
    vit = build_ecg_encoder("vit_middle", arch="paper")
    assert len(vit.blocks.layers) == 12 and vit.cls is None and vit.patch.bias is None


def test_whole_record_minmax():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 12, 500)).astype(np.float32) * np.linspace(0.1, 3, 12)[None, :, None]
    out = normalize(x, "minmax_record")
    assert np.allclose(out.min(axis=(1, 2)), 0) and np.allclose(out.max(axis=(1, 2)), 1)
    expect = (x - x.min(axis=(1, 2), keepdims=True)) / np.ptp(x, axis=(1, 2), keepdims=True)
    assert np.allclose(out, expect, atol=1e-6)  # the leads keep their relative amplitudes
    assert not np.allclose(normalize(x, "minmax"), out)  # per lead differs
    assert np.all(normalize(np.ones((1, 12, 50)), "minmax_record") == 0)  # flat record
    cfg = paper_config().data
    prepared = prepare_ecg_batch(x, 100, cfg)
    assert prepared.shape == (3, 12, 5000) and prepared.dtype == np.float32
    standard = prepare_ecg_batch(x, 100, cfg.model_copy(update={"lead_order": "standard"}))
    swap = [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]  # aVL, aVF -> aVF, aVL (MIMIC's order)
    assert np.array_equal(prepared, standard[:, swap])


@pytest.fixture(scope="module")
def tiny_paper_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_medcpt")
    make_tiny_bert(folder, layers=1)
    cfg = paper_config("resnet18", str(folder))
    from transformers import AutoTokenizer

    return build_model(cfg.model, cfg.loss), AutoTokenizer.from_pretrained(folder)


def test_text_tower_frozen_pooler_and_temperature_fixed(tiny_paper_model):
    model, tok = tiny_paper_model
    lm = model.text_encoder.model
    assert not any(p.requires_grad for p in lm.parameters())
    assert not model.logit_scale.requires_grad and torch.allclose(model.logit_scale.exp(), torch.tensor([1 / 0.07]))
    enc = tok(["sinus rhythm", "atrial fibrillation with left bundle branch block", "normal ecg"],
              padding=True, return_tensors="pt")
    ecg = torch.rand(3, 12, 1000)
    before = {n: p.detach().clone() for n, p in lm.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    out = model(ecg, enc["input_ids"], enc["attention_mask"])
    MERLLoss(2.0, 2.0)(out).total.backward()
    assert all(p.grad is None for p in lm.parameters()) and model.logit_scale.grad is None
    assert model.text_proj.net[0].weight.grad.abs().sum() > 0
    assert model.ecg_encoder.backbone.stem[0].weight.grad.abs().sum() > 0
    opt.step()
    assert all(torch.equal(p, before[n]) for n, p in lm.named_parameters())
    model.eval()
    with torch.no_grad():
        pooled = lm(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).pooler_output
        assert torch.allclose(model.text_encoder(enc["input_ids"], enc["attention_mask"]), pooled)


def test_paper_yaml_is_paper_config():
    """configs/pretrain_paper.yaml and the importer's config describe the same model, input and loss."""
    cfg = load_config(TrainConfig, REPO / "configs" / "pretrain_paper.yaml")
    ref = paper_config(cfg.model.ecg_encoder, cfg.model.text_model)
    assert cfg.model == ref.model and cfg.loss == ref.loss
    keys = ("fs", "n_samples", "normalize", "lead_order", "max_text_tokens")
    assert {k: getattr(cfg.data, k) for k in keys} == {k: getattr(ref.data, k) for k in keys}
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.T_0, cfg.optim.eta_min) == (1e-3, 1e-8, 5000, 1e-8)
    assert cfg.data.batch_size * cfg.train.num_workers == 1024
    assert len(cfg.eval.tasks) == 6


def test_config_choices_are_validated():
    assert ModelConfig(freeze_text_layers="all").freeze_text_layers == "all"
    with pytest.raises(ConfigError, match="model.arch"):
        load_config(TrainConfig, None, ["model.arch=clip"])
    with pytest.raises(ConfigError, match="freeze_text_layers"):
        load_config(TrainConfig, None, ["model.freeze_text_layers=-1"])
    with pytest.raises(ConfigError, match="multiple of 4"):
        load_config(TrainConfig, None, ["model.arch=paper", "model.proj_dim=18"])
    with pytest.raises(ConfigError, match="normalize"):
        load_config(TrainConfig, None, ["data.normalize=minmax_all"])
    assert DataConfig(normalize="minmax_record").normalize == "minmax_record"
