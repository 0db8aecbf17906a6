"""Model zoo shapes, gradients reaching both towers, frozen text layers staying frozen."""

from __future__ import annotations

import pytest
import torch

from merl.core.textmodel import load_tokenizer
from merl.training.config import LossConfig, ModelConfig
from merl.training.loss import MERLLoss
from merl.training.model import build_model
from merl.training.model.registry import build_ecg_encoder


@pytest.mark.parametrize("name,width,arch", [("resnet18", 8, "merl-ray"), ("resnet34", 8, "merl-ray"),
                                             ("resnet50", 8, "merl-ray"), ("resnet101", 8, "merl-ray"),
                                             ("vit_tiny", 0, "merl-ray"), ("resnet18", 8, "paper"), ("vit_tiny", 0, "paper")])
def test_ecg_encoders_any_length(name, width, arch):
    enc = build_ecg_encoder(name, width or 64, arch, proj_dim=32)
    for length in (500, 1000):
        pooled, avg = enc(torch.randn(2, 12, length))
        assert pooled.shape == avg.shape == (2, enc.out_dim)


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown ECG encoder 'resnet9'.*resnet18"):
        build_ecg_encoder("resnet9")
    with pytest.raises(ValueError, match="unknown model arch 'clip'"):
        build_ecg_encoder("resnet18", arch="clip")


@pytest.fixture(scope="module")
def model_and_batch():
    cfg = ModelConfig(width=8, freeze_text_layers=4, proj_dim=32, proj_hidden=32)
    model = build_model(cfg, LossConfig())
    tok = load_tokenizer()
    enc = tok(["sinus rhythm", "atrial fibrillation with rapid response", "left bundle branch block", "normal ecg"],
              padding=True, return_tensors="pt")
    return model, (torch.randn(4, 12, 1000), enc["input_ids"], enc["attention_mask"])


def test_encode_shapes_and_unnormalised(model_and_batch):
    model, (ecg, ids, mask) = model_and_batch
    model.eval()
    z_e, z_t = model.encode_ecg(ecg), model.encode_text(ids, mask)
    model.train()
    assert z_e.shape == z_t.shape == (4, 32)
    assert not torch.allclose(z_e.norm(dim=-1), torch.ones(4))  # projected, NOT normalised


def test_gradients_reach_both_towers_and_frozen_layers_stay_frozen(model_and_batch):
    model, batch = model_and_batch
    text = model.text_encoder.model
    frozen_before = {n: p.detach().clone() for n, p in text.named_parameters() if not p.requires_grad}
    assert any(".layer.3." in n for n in frozen_before) and not any(".layer.4." in n for n in frozen_before)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.zero_grad()
    MERLLoss()(model(*batch)).total.backward()
    assert model.ecg_encoder.stem[0].weight.grad.abs().sum() > 0
    assert text.encoder.layer[5].attention.self.query.weight.grad.abs().sum() > 0
    assert model.logit_scale.grad is not None
    assert all(p.grad is None for n, p in text.named_parameters() if n in frozen_before)
    opt.step()
    for n, p in text.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), f"frozen {n} changed"


def test_fixed_temperature_is_not_trained():
    m = build_model(ModelConfig(width=8, freeze_text_layers=6, proj_dim=16, proj_hidden=16),
                    LossConfig(learnable=False, temperature=0.05))
    assert not m.logit_scale.requires_grad
    assert torch.allclose(m.logit_scale.exp(), torch.tensor([20.0]))


def test_encode_normalize_gives_unit_rows_of_the_same_direction(model_and_batch):
    model, (ecg, ids, mask) = model_and_batch
    model.eval()
    with torch.no_grad():
        raw_e, raw_t = model.encode_ecg(ecg), model.encode_text(ids, mask)
        unit_e, unit_t = model.encode_ecg(ecg, normalize=True), model.encode_text(ids, mask, normalize=True)
    model.train()
    for raw, unit in ((raw_e, unit_e), (raw_t, unit_t)):
        assert unit.dtype == torch.float32
        assert torch.allclose(unit.norm(dim=-1), torch.ones(len(unit)), atol=1e-5)
        assert torch.allclose(unit * raw.norm(dim=-1, keepdim=True), raw, atol=1e-5)


def test_text_cache_computes_each_report_once_in_eval_mode(monkeypatch):
    """``model.text_cache``: a frozen text model's features for a report are computed once
    (eval mode, whatever the batch's padding) and reused; the projection above still trains."""
    model = build_model(ModelConfig(width=8, freeze_text_layers="all", text_cache=True, proj_dim=16, proj_hidden=16))
    tok = load_tokenizer()
    reports = ["sinus rhythm", "atrial fibrillation with rapid response", "left bundle branch block"]
    short = tok(reports[:2], padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        expected = model.text_encoder(short["input_ids"], short["attention_mask"])
    model.train()
    first = model.text_encoder(short["input_ids"], short["attention_mask"])
    assert len(model.text_encoder.cache) == 2
    assert torch.allclose(first, expected, atol=1e-5)  # eval mode: the frozen LM's dropout is off

    calls = []
    forward = model.text_encoder.model.forward

    def counted(*args, **kwargs):
        calls.append(len(kwargs["input_ids"]))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model.text_encoder.model, "forward", counted)
    wider = tok(reports, padding=True, return_tensors="pt")  # the first two padded to another width
    again = model.text_encoder(wider["input_ids"], wider["attention_mask"])
    assert calls == [1]  # only the new report went through the text model
    assert torch.allclose(again[:2], first, atol=1e-6) and len(model.text_encoder.cache) == 3

    out = model(torch.randn(3, 12, 1000), wider["input_ids"], wider["attention_mask"])
    MERLLoss()(out).total.backward()
    assert model.text_proj.net[0].weight.grad.abs().sum() > 0
    assert calls == [1]


def test_text_cache_needs_a_frozen_text_model():
    from merl.core.config import ConfigError, load_config
    from merl.training.config import TrainConfig

    with pytest.raises(ConfigError, match="text_cache needs model.freeze_text_layers=all"):
        load_config(TrainConfig, None, ["model.text_cache=true", "model.freeze_text_layers=5"])
    with pytest.raises(ConfigError, match="ZeRO-3"):
        load_config(TrainConfig, None, ["model.text_cache=true", "model.freeze_text_layers=all",
                                        "train.backend=deepspeed", "train.zero_stage=3"])
