"""Checkpoint format: safetensors / weights_only loads, checksums, fallback past a truncated one;
export bundle round trip and `merl classify` on a shard folder."""

from __future__ import annotations

import json

import pytest
import torch
from test_train_pipeline import make_ecg_shards
from typer.testing import CliRunner

from merl.training.checkpoint import (
    CorruptCheckpoint,
    TrainState,
    list_checkpoints,
    load_checkpoint,
    load_latest_valid,
    verify_checkpoint,
    write_checkpoint,
)
from merl.training.config import TrainConfig
from merl.training.loop import build_optimizer
from merl.training.model import build_model


@pytest.fixture(scope="module")
def tiny():
    cfg = TrainConfig.model_validate({"model": {"width": 8, "freeze_text_layers": 6, "proj_dim": 16, "proj_hidden": 16}})
    model = build_model(cfg.model, cfg.loss)
    opt, sched = build_optimizer(model, cfg)
    model(torch.randn(2, 12, 200), torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))
    sum(p.sum() for p in model.parameters() if p.requires_grad).backward()
    opt.step()
    sched.step()
    return cfg, model, opt, sched


def save(tmp, step, tiny):
    cfg, model, opt, sched = tiny
    d = tmp / f"checkpoint_step{step:08d}"
    write_checkpoint(d, rank=0, state=TrainState(step=step, epoch=1, samples_seen=step * 32), model=model,
                     optimizer_state=opt.state_dict(), scheduler_state=sched.state_dict(),
                     config_json=cfg.model_dump_json())
    return d


def test_checkpoint_round_trip_uses_safe_loaders(tmp_path, tiny):
    cfg, model, opt, _ = tiny
    d = save(tmp_path, 5, tiny)
    ck = load_checkpoint(d)
    assert ck.state.step == 5 and ck.state.samples_seen == 160
    for k, v in model.state_dict().items():
        assert torch.equal(ck.weights[k], v)
    torch.load(d / "optimizer.pt", weights_only=True)  # no pickled objects
    fresh_opt, _ = build_optimizer(build_model(cfg.model, cfg.loss), cfg)
    fresh_opt.load_state_dict(ck.optimizer)
    assert TrainConfig.model_validate(ck.config) == cfg
    assert json.loads((d / "COMPLETE.rank0.json").read_text())["files"].keys() >= {"model.safetensors", "state.json"}


def test_truncated_checkpoint_detected_and_previous_used(tmp_path, tiny):
    good = save(tmp_path, 10, tiny)
    bad = save(tmp_path, 20, tiny)
    w = bad / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])  # truncated upload
    with pytest.raises(CorruptCheckpoint, match="checksum"):
        verify_checkpoint(bad)
    half = save(tmp_path, 30, tiny)
    (half / "COMPLETE.rank0.json").unlink()  # writer died before finishing
    with pytest.raises(CorruptCheckpoint, match="incomplete"):
        verify_checkpoint(half)
    order = list_checkpoints(str(tmp_path))
    assert [p.rsplit("_step", 1)[1] for p in order] == ["00000030", "00000020", "00000010"]
    picked = load_latest_valid(order, str(tmp_path / "scratch"))
    assert picked is not None and picked.path == str(good) and picked.state.step == 10
    # file:// run folders are local: same order, loaded in place (no copy into scratch)
    order_uri = list_checkpoints(f"file://{tmp_path}")
    assert order_uri == [f"file://{p}" for p in order]
    assert load_latest_valid(order_uri, str(tmp_path / "scratch")).path == str(good)


def test_export_bundle_and_classify(tmp_path, tiny):
    from merl.cli import app
    from merl.training.export import export_checkpoint, load_bundle

    d = save(tmp_path, 3, tiny)
    out = export_checkpoint(d, tmp_path / "bundle")
    assert (out / "text_model" / "tokenizer.json").is_file() or (out / "text_model" / "vocab.txt").is_file()
    bundle = load_bundle(out)
    for k, v in tiny[1].state_dict().items():
        assert torch.equal(bundle.model.state_dict()[k], v)
    shards = make_ecg_shards(tmp_path / "shards", n_train=3, n_val=0, per_shard=3, n_samples=1000)
    res = CliRunner().invoke(app, ["classify", "--model", str(out), "--input", str(shards),
                                   "--labels", "normal ecg,atrial fibrillation", "--json", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    scores = json.loads((tmp_path / "s.json").read_text())["scores"]
    assert len(scores) == 3 and all(abs(sum(v.values()) - 1) < 1e-4 for v in scores.values())


def test_untrained_control_export_has_the_architecture_not_the_weights(tmp_path, tiny):
    """`merl export --untrained`: the run's model as training starts (the demo's control row)."""
    from merl.cli import app
    from merl.training.export import load_bundle

    d = save(tmp_path, 3, tiny)
    run = lambda out, seed: CliRunner().invoke(app, ["export", "--checkpoint", str(d), "--untrained", "--seed",
                                                     str(seed), "--out", str(tmp_path / out)])
    assert run("u0", 0).exit_code == 0 and run("u0b", 0).exit_code == 0 and run("u1", 1).exit_code == 0
    u0, u0b, u1 = (load_bundle(tmp_path / name) for name in ("u0", "u0b", "u1"))
    trained = tiny[1].state_dict()
    ecg_keys = [k for k in trained if k.startswith("ecg") and trained[k].is_floating_point()]
    assert ecg_keys and set(u0.model.state_dict()) == set(trained)  # same architecture
    assert all(not torch.equal(u0.model.state_dict()[k], trained[k]) for k in ecg_keys if trained[k].numel() > 1
               and trained[k].std() > 0)
    assert all(torch.equal(u0.model.state_dict()[k], u0b.model.state_dict()[k]) for k in trained)  # seeded
    assert any(not torch.equal(u0.model.state_dict()[k], u1.model.state_dict()[k]) for k in ecg_keys)
    assert json.loads((tmp_path / "u0" / "source.json").read_text())["untrained"] is True
