"""The Python API (`merl.load`): raw signals and tensors in, the same scores as `merl classify`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from merl.training.config import ModelConfig, TrainConfig
from merl.training.data.config import DataConfig
from merl.training.export import save_bundle
from merl.training.model import build_model

LABELS = ["normal ecg", "atrial fibrillation", "left bundle branch block"]


@pytest.fixture(scope="module")
def api_model(tmp_path_factory):
    import merl

    cfg = TrainConfig(model=ModelConfig(width=8, freeze_text_layers=6, proj_dim=32, proj_hidden=32),
                      data=DataConfig(fs=100, n_samples=1000, max_text_tokens=32))
    torch.manual_seed(0)
    out = save_bundle(build_model(cfg.model, cfg.loss), cfg, tmp_path_factory.mktemp("bundle"))
    return merl.load(out), out


@pytest.fixture(scope="module")
def signals():
    return np.random.default_rng(0).normal(scale=0.5, size=(3, 12, 5000)).astype(np.float32)  # 10 s at 500 Hz, mV


def test_embed_ecg_is_encode_ecg_of_the_prepared_input(api_model, signals):
    model, _ = api_model
    x = model.prepare(signals, fs=500)
    assert x.shape == (3, 12, 1000) and x.min() >= 0 and x.max() <= 1
    emb = model.embed_ecg(signals, fs=500)
    assert emb.shape == (3, 32) and torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(emb, model.encode_ecg(torch.from_numpy(x), normalize=True), atol=1e-5)
    assert torch.allclose(model.embed_ecg(signals[0], fs=500), emb[:1], atol=1e-5)  # one record [12, L]
    raw = model.embed_ecg(signals, fs=500, normalize=False)
    assert torch.allclose(raw / raw.norm(dim=-1, keepdim=True), emb, atol=1e-5)
    assert model.probe_features(signals, fs=500).shape == (3, model.model.ecg_encoder.out_dim)


def test_classify_is_the_one_zero_shot_scorer(api_model, signals, tmp_path):
    from merl.training.infer import score

    model, _ = api_model
    res = model.classify(signals, fs=500, labels=LABELS)
    assert res.classes == LABELS and res.probs.shape == res.similarity.shape == (3, 3)
    cos = model.embed_ecg(signals, fs=500) @ model.embed_text(LABELS).t()
    assert np.allclose(res.similarity, cos.numpy(), atol=1e-5)
    scale = model.model.logit_scale.exp().item()
    assert np.allclose(res.probs, torch.softmax(scale * cos, dim=-1).numpy(), atol=1e-5)
    assert np.allclose(res.probs, score(model.bundle, signals, 500, {c: c for c in LABELS}), atol=1e-6)
    assert res.top() == [LABELS[i] for i in res.probs.argmax(axis=1)]
    prompts = {"NORM": "normal ecg", "AFIB": "atrial fibrillation", "CLBBB": "left bundle branch block"}
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(prompts))
    by_file = model.classify(signals, fs=500, prompts=path)
    assert by_file.classes == list(prompts) and np.allclose(by_file.probs, res.probs, atol=1e-6)


def test_classify_encodes_whole_prompts(api_model, signals):
    """A prompt longer than the reports' limit (data.max_text_tokens = 32) is encoded whole."""
    from merl.training.zeroshot import class_embeddings

    model, _ = api_model
    long = "atrial fibrillation, " + ", ".join(["irregularly irregular rhythm without distinct p waves"] * 5)
    res = model.classify(signals, fs=500, prompts={"AFIB": long, "NORM": "normal ecg"})
    whole = class_embeddings(model.model, model.tokenizer, [long, "normal ecg"])
    assert np.allclose(res.similarity, (model.embed_ecg(signals, fs=500) @ whole.t()).numpy(), atol=1e-5)
    cut = model.classify(signals, fs=500, prompts={"AFIB": long, "NORM": "normal ecg"}, max_prompt_tokens=32)
    assert not np.allclose(cut.similarity[:, 0], res.similarity[:, 0], atol=1e-4)


def test_tokenizer_and_encode_text(api_model):
    model, _ = api_model
    ids, mask = model.tokenize(["sinus rhythm", "atrial fibrillation " * 40])
    assert ids.shape[1] == 32  # the bundle's max_text_tokens
    z = model.encode_text(ids, mask, normalize=True)
    assert torch.allclose(z, model.embed_text(["sinus rhythm", "atrial fibrillation " * 40]), atol=1e-6)
    assert model.tokenizer is model.bundle.tokenizer and "resnet18" in repr(model)


def test_clear_errors(api_model, signals):
    model, _ = api_model
    with pytest.raises(ValueError, match="exactly one of labels"):
        model.classify(signals, fs=500)
    with pytest.raises(ValueError, match="exactly one of labels"):
        model.classify(signals, fs=500, labels=LABELS, prompts={"a": "b"})
    with pytest.raises(ValueError, match=r"\[N, 12, L\]"):
        model.embed_ecg(signals[:, :6], fs=500)


def test_cli_classify_prompts_file(api_model, tmp_path):
    """`merl classify --prompts`: a {class: prompt} file; a per-task file is refused, not misread."""
    from typer.testing import CliRunner

    from merl.cli import app
    from merl.core.config import ConfigError

    _, bundle = api_model
    record = tmp_path / "rec"
    import wfdb

    sig = np.random.default_rng(1).normal(scale=0.3, size=(5000, 12))
    wfdb.wrsamp("rec", fs=500, units=["mV"] * 12, sig_name=["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3",
                                                             "V4", "V5", "V6"], p_signal=sig, write_dir=str(tmp_path))
    flat, nested = tmp_path / "flat.json", tmp_path / "nested.json"
    flat.write_text(json.dumps({"NORM": "normal ecg", "AFIB": "atrial fibrillation"}))
    nested.write_text(json.dumps({"icbeb": {"NORM": "normal ecg"}}))
    run = lambda p: CliRunner().invoke(app, ["classify", "--model", str(bundle), "--input", str(record),
                                             "--prompts", str(p)])
    res = run(flat)
    assert res.exit_code == 0, res.output
    assert "NORM" in res.output and "AFIB" in res.output
    res = run(nested)
    assert isinstance(res.exception, ConfigError) and "say which task" in str(res.exception)


def test_import_merl_stays_light():
    code = ("import sys, merl, merl.core.config; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert callable(merl.load) and 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
