"""DeepSpeed-native checkpoints on CPU (gloo): a ZeRO-2 run resumes on fewer workers through
DeepSpeed's universal checkpoint, and a ZeRO-3 run learns, validates and exports.

Same tiny setup as ``test_train_ray`` (whose helpers it reuses), one Ray cluster at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_pipeline import CLASSES, make_ecg_shards
from test_train_ray import rows, tiny_cfg, zero_adam_steps

from merl.training.checkpoint import list_checkpoints, load_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray_train")]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_ecg_shards(tmp_path_factory.mktemp("shards"), n_train=1536, n_val=32, per_shard=256, n_samples=1000)


def test_zero2_run_resumes_on_one_worker_with_step_lr_and_moments(ray_local, shards, tmp_path):
    from merl.training.loop import lr_lambda
    from merl.training.trainer import fit

    cfg = tiny_cfg(shards, tmp_path, train={"backend": "deepspeed", "zero_stage": 2, "max_steps": 4, "epochs": 5,
                                            "log_every": 1}, optim={"T_0": 6, "warmup_steps": 2})
    fit(cfg, name="reshard")
    first = load_checkpoint(list_checkpoints(str(tmp_path / "reshard"))[0])
    assert (first.state.step, first.state.world_size) == (4, 2)
    cfg.train.num_workers, cfg.train.max_steps = 1, 8
    result = fit(cfg, name="reshard")  # same run, half the workers: ZeRO partitions re-cut by DeepSpeed
    assert result.error is None
    final = load_checkpoint(result.checkpoint.path)
    assert (final.state.step, final.state.world_size) == (8, 1)
    train = rows(tmp_path / "reshard", "train")
    assert [r["step"] for r in train] == list(range(1, 9))  # 1-4 on two workers, 5-8 on one
    schedule = lr_lambda(cfg.optim)  # the uninterrupted schedule (warmup, then a restart at step 8)
    assert [r["lr"] for r in train] == pytest.approx([cfg.optim.lr * schedule(s) for s in range(1, 9)])
    assert zero_adam_steps(final, 0) == {8}  # Adam moments carried over, not restarted at step 4
    assert final.state.samples_seen == 4 * 32 + 4 * 16


def test_zero3_two_workers_learns_validates_and_exports(ray_local, shards, tmp_path):
    from merl.training.embed import embed_ecgs
    from merl.training.export import export_checkpoint, load_bundle
    from merl.training.model import build_model
    from merl.training.trainer import fit
    from merl.training.zeroshot import class_embeddings, zero_shot_scores

    cfg = tiny_cfg(shards, tmp_path, train={"backend": "deepspeed", "zero_stage": 3, "max_steps": 48, "log_every": 2},
                   optim={"lr": 2e-3})
    result = fit(cfg, name="z3", resume=False)
    assert result.error is None
    train = rows(tmp_path / "z3", "train")
    first, last = train[0]["loss"], sum(r["loss"] for r in train[-3:]) / 3
    assert last < first - 1.0, f"loss did not fall: {first:.3f} -> {last:.3f}"
    val = rows(tmp_path / "z3", "val")[-1]  # validation on gathered ZeRO-3 weights
    assert val["val_top1"] >= 1 / val["val_distinct_reports"] + 0.35, val

    ckpt = load_checkpoint(result.checkpoint.path)
    assert ckpt.state.zero_stage == 3 and zero_adam_steps(ckpt, 1) == {48}
    for rank in (0, 1):  # weights partitioned: each rank saved its own slice ...
        listed = json.loads((Path(ckpt.path) / f"COMPLETE.rank{rank}.json").read_text())["files"]
        assert f"deepspeed/state/zero_pp_rank_{rank}_mp_rank_00_model_states.pt" in listed
    full = build_model(cfg.model, cfg.loss, pretrained_text=False).state_dict()  # ... and rank 0 the gathered whole
    assert {k: tuple(v.shape) for k, v in ckpt.weights.items()} == {k: tuple(v.shape) for k, v in full.items()}

    bundle = load_bundle(export_checkpoint(result.checkpoint.path, tmp_path / "bundle"))
    emb = embed_ecgs(bundle.model, str(shards), "val", bundle.config.data, progress=False)
    assert emb.emb.shape == (32, cfg.model.proj_dim) and np.isfinite(emb.emb).all()
    labels = list(CLASSES)
    reports = [CLASSES[lab][2] for lab in labels]
    truth = np.array([int(i.split(":")[1]) % len(labels) for i in emb.ids])  # make_ecg_shards cycles the labels
    scores = zero_shot_scores(torch.from_numpy(emb.emb), class_embeddings(bundle.model, bundle.tokenizer, reports))
    acc = float((scores.argmax(1).numpy() == truth).mean())
    assert acc >= 1 / len(labels) + 0.35, f"exported model retrieves reports at {acc:.2f}"


def test_bf16_engine_trains_batchnorm_in_one_process(tmp_path, monkeypatch):
    """DeepSpeed bf16 casts parameters only: BatchNorm buffers must follow, or backward fails.

    The GPU check found it (``Expected running_mean to have type BFloat16``); the same
    mismatch fails on the CPU, so the engine is built here with bf16 on, on one gloo rank.
    The second step reads ``model.text_cache``'s features, which must be in the engine's dtype
    too (the projection's weights are bf16).
    """
    import torch.distributed as dist

    from merl.core.raysession import free_port
    from merl.training.loop import _DeepSpeedStepper
    from merl.training.model import build_model

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    cfg = tiny_cfg(tmp_path, tmp_path, train={"backend": "deepspeed", "zero_stage": 2, "bf16": "on", "num_workers": 1},
                   model={"freeze_text_layers": "all", "text_cache": True})
    model = build_model(cfg.model, cfg.loss, pretrained_text=False)
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        stepper = _DeepSpeedStepper(model, cfg, world_size=1, scratch=str(tmp_path / "ds"))
        bn = next(m for m in stepper.module.modules() if isinstance(m, torch.nn.BatchNorm1d))
        assert bn.weight.dtype == bn.running_mean.dtype == torch.bfloat16
        ecg = torch.randn(4, 12, 200)
        ids = torch.randint(5, 100, (4, 16))
        before = bn.running_mean.clone()
        for _ in range(2):
            out = stepper.forward(ecg, ids, torch.ones_like(ids))
            stepper.backward_step(out["ecg"].float().pow(2).mean() + out["text"].float().pow(2).mean())
        assert not torch.equal(before, bn.running_mean)  # the forward updated the stats, in bf16
        assert len(model.text_encoder.cache) == 4  # computed in the first step, read in the second
    finally:
        dist.destroy_process_group()
