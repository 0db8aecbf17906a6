"""`merl import-reference`: MERL's released checkpoints -> a bundle that computes what the reference computes.

The checkpoints are built here in the reference's exact key layout (tests/data, one TSV per
encoder) with random values; the expected embeddings come from an independent functional
restatement of the reference forward pass (tests/reference_fixtures.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from merl.training.model.merl import MERLModel
from merl.training.model.registry import build_ecg_encoder
from merl.training.reference import (
    CheckpointLayoutError,
    convert_state_dict,
    guess_encoder,
    import_reference,
    load_reference_state_dict,
)
from tests.reference_fixtures import (
    ENCODERS,
    encoder_only,
    layout,
    make_tiny_bert,
    meta_state_dict,
    random_bert_state,
    random_state_dict,
    reference_ecg_embedding,
    reference_pooler_output,
    reference_resnet_features,
    reference_text_embedding,
    reference_vit_features,
)

ATOL = 1e-4


class _NoText(nn.Module):
    """Stands in for the 768-d text tower where only the ECG side and heads are checked."""

    out_dim = 768


def paper_heads_on_meta(encoder: str) -> MERLModel:
    with torch.device("meta"):
        return MERLModel(build_ecg_encoder(encoder, 64, "paper", 256), _NoText(), 256, 256, 0.1,
                         learnable_temperature=False, arch="paper")


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_reference_key_maps_onto_the_paper_model_with_its_shape(encoder):
    target = paper_heads_on_meta(encoder).state_dict()
    ref = meta_state_dict(encoder)
    out = convert_state_dict(ref, encoder, target)
    assert set(out) == set(target) - {"logit_scale"}  # every weight filled; the temperature is fixed, not saved
    assert all(out[k].shape == target[k].shape and out[k].dtype == target[k].dtype for k in out)
    dropped = set(ref) - {k for k in ref if not k.startswith("ecg_encoder.linear.")}
    assert len(out) == len(ref) - len(dropped)  # one-to-one: nothing merged, nothing left over
    assert dropped == ({"ecg_encoder.linear.weight", "ecg_encoder.linear.bias"} if encoder.startswith("resnet") else set())
    assert guess_encoder({k: tuple(v.shape) for k, v in ref.items()}) == encoder


@pytest.mark.parametrize("encoder", ["resnet50", "vit_small"])
def test_encoder_only_file_maps_onto_the_backbone(encoder):
    target = paper_heads_on_meta(encoder).state_dict()
    out = convert_state_dict(encoder_only(meta_state_dict(encoder)), encoder, target, encoder_only=True)
    prefix = "ecg_encoder.backbone." if encoder.startswith("resnet") else "ecg_encoder."
    assert set(out) == {k for k in target if k.startswith(prefix)}


def test_wrong_encoder_or_layout_is_one_clear_line():
    target = paper_heads_on_meta("vit_tiny").state_dict()
    with pytest.raises(CheckpointLayoutError, match=r"not a MERL vit_tiny whole-model checkpoint.*looks like a resnet18"):
        convert_state_dict(meta_state_dict("resnet18"), "vit_tiny", target)
    target = paper_heads_on_meta("resnet34").state_dict()
    with pytest.raises(CheckpointLayoutError, match=r"not a MERL resnet34 .*looks like a resnet18") as e:
        convert_state_dict(meta_state_dict("resnet18"), "resnet34", target)
    assert "\n" not in str(e.value)
    broken = meta_state_dict("resnet18")
    del broken["downconv.bias"]
    with pytest.raises(CheckpointLayoutError, match=r"1 weight\(s\) missing, e.g. 'ecg_encoder.downconv.bias'"):
        convert_state_dict(broken, "resnet18", paper_heads_on_meta("resnet18").state_dict())
    ours = paper_heads_on_meta("resnet18").state_dict()  # this project's own layout is not the reference's
    with pytest.raises(CheckpointLayoutError, match="match no reference key"):
        convert_state_dict(ours, "resnet18", ours)


def test_unpicklable_file_is_refused_without_unpickling(tmp_path):
    import argparse

    bad = tmp_path / "evil.pth"
    torch.save({"x": argparse.Namespace(a=1)}, bad)  # an object: loading it would need unpickling
    with pytest.raises(CheckpointLayoutError, match="weights_only=True"):
        load_reference_state_dict(bad)
    wrapped = tmp_path / "ddp.pth"
    torch.save({"epoch": 3, "model_state_dict": {"module.linear1.weight": torch.ones(2, 2)}}, wrapped)
    assert list(load_reference_state_dict(wrapped)) == ["linear1.weight"]


# --- numerical equivalence with the reference forward pass ----------------------------------

@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_medcpt")
    make_tiny_bert(folder, seed=0)
    return folder


def _reference_checkpoint(encoder: str, text_dir, seed: int) -> tuple[dict, dict]:
    sd = random_state_dict(encoder, seed=seed)
    lm = random_bert_state(text_dir, seed=seed + 100)  # differs from the text_dir model's own weights
    sd.update({f"lm_model.{k}": v for k, v in lm.items()})
    return sd, lm


@pytest.mark.parametrize("encoder", ["resnet18", "vit_tiny"])
def test_imported_bundle_computes_what_the_reference_computes(encoder, text_dir, tmp_path):
    import merl

    sd, lm = _reference_checkpoint(encoder, text_dir, seed=1)
    ckpt = tmp_path / f"{encoder}_ckpt.pth"
    torch.save(sd, ckpt)
    bundle = import_reference(ckpt, encoder, tmp_path / "bundle", text_model=str(text_dir))
    model = merl.load(bundle)
    assert model.config.model.arch == "paper" and model.info["encoder_only"] is False

    x = torch.rand(2, 12, 5000, generator=torch.Generator().manual_seed(2))  # min-max normalised input
    with torch.no_grad():
        expect_ecg = reference_ecg_embedding(sd, x)
    got_ecg = model.encode_ecg(x)
    assert got_ecg.shape == (2, 256)
    torch.testing.assert_close(got_ecg, expect_ecg, atol=ATOL, rtol=ATOL)

    ids, mask = model.tokenize(["sinus rhythm", "atrial fibrillation with left bundle branch block"])
    with torch.no_grad():
        expect_text = reference_text_embedding(sd, reference_pooler_output(text_dir, lm, ids, mask))
    torch.testing.assert_close(model.encode_text(ids, mask), expect_text, atol=ATOL, rtol=ATOL)
    # and the unit rows zero-shot scoring uses are those embeddings' directions
    unit = model.encode_ecg(x, normalize=True)
    torch.testing.assert_close(unit * expect_ecg.norm(dim=-1, keepdim=True), expect_ecg, atol=ATOL, rtol=ATOL)
    assert torch.allclose(model.model.logit_scale.exp(), torch.tensor([1 / 0.07]))

    # Raw signals (mV, leads in this project's canonical order) reach the model as the
    # reference's data pipeline would feed them: MIMIC's row order, whole-record min-max.
    sig = np.random.default_rng(5).normal(scale=0.4, size=(2, 12, 5000)).astype(np.float32)
    rows = sig[:, [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]]  # I II III aVR aVF aVL V1-V6
    lo, hi = rows.min(axis=(1, 2), keepdims=True), rows.max(axis=(1, 2), keepdims=True)
    with torch.no_grad():
        expect_raw = reference_ecg_embedding(sd, torch.from_numpy((rows - lo) / (hi - lo + 1e-8)))
    torch.testing.assert_close(model.embed_ecg(sig, fs=500, normalize=False), expect_raw, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("encoder", ["resnet18", "vit_tiny"])
def test_encoder_only_import_gives_the_reference_probe_features(encoder, text_dir, tmp_path):
    import merl
    from merl.cli import app

    sd = random_state_dict(encoder, seed=3)
    ckpt = tmp_path / f"{encoder}_encoder.pth"
    torch.save(encoder_only(sd), ckpt)
    res = CliRunner().invoke(app, ["import-reference", "--checkpoint", str(ckpt), "--ecg-encoder", encoder,
                                   "--text-model", str(text_dir), "--out", str(tmp_path / "b"), "--encoder-only"])
    assert res.exit_code == 0, res.output
    model = merl.load(tmp_path / "b")
    assert model.info["encoder_only"] is True
    x = torch.rand(2, 12, 5000, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expect = (reference_resnet_features(sd, x).mean(dim=-1) if encoder.startswith("resnet")
                  else reference_vit_features(sd, x))
        got = model.model.probe_features(x)
    torch.testing.assert_close(got, expect, atol=ATOL, rtol=ATOL)


def test_cli_refuses_another_layout_in_one_line(text_dir, tmp_path, capsys):
    import sys

    from merl.cli import main

    ckpt = tmp_path / "resnet18_ckpt.pth"
    torch.save({k: torch.zeros(s, dtype=d) for k, (s, d) in layout("resnet18").items()}, ckpt)
    argv = sys.argv
    sys.argv = ["merl", "import-reference", "--checkpoint", str(ckpt), "--ecg-encoder", "vit_base",
                "--text-model", str(text_dir), "--out", str(tmp_path / "b")]
    try:
        with pytest.raises(SystemExit) as e:
            main()
    finally:
        sys.argv = argv
    assert e.value.code == 2 and not (tmp_path / "b" / "model.safetensors").exists()
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "looks like a resnet18" in err
