"""Real 2-worker Ray Train runs on CPU (gloo): DeepSpeed ZeRO-2 learning, resume, worker failure.

Tiny on purpose (short synthetic records, ResNet18 at width 16, MiniLM with 5 of 6 layers
frozen) so the three runs together stay around three minutes on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_train_pipeline import make_ecg_shards

from merl.training.checkpoint import list_checkpoints, load_checkpoint, safe_torch_loads
from merl.training.config import TrainConfig

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray_train")]  # one worker, one Ray cluster


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_ecg_shards(tmp_path_factory.mktemp("shards"), n_train=1536, n_val=32, per_shard=256, n_samples=1000)


def tiny_cfg(shards: Path, storage: Path, **sections) -> TrainConfig:
    data = {
        "model": {"width": 16, "freeze_text_layers": 5, "proj_dim": 64, "proj_hidden": 64},
        "data": {"train_shards": str(shards), "batch_size": 16, "fs": 100, "n_samples": 200},
        "train": {"epochs": 1, "num_workers": 2, "backend": "ddp", "log_every": 4, "cpus_per_worker": 0.5},
        "checkpoint": {"storage_path": str(storage), "every_n_steps": 0, "keep": 3},
        "tracking": "none",  # MLflow end to end: tests/test_tracking.py
    }
    for key, values in sections.items():
        data[key] = {**data.get(key, {}), **values}
    return TrainConfig.model_validate(data)


def rows(run_dir: Path, phase: str) -> list[dict]:
    lines = (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["phase"] == phase]


def zero_adam_steps(ckpt, rank: int) -> set[int]:
    """Adam step counts in one rank's ZeRO partition of a DeepSpeed checkpoint (ZeRO 1-3)."""
    import torch

    path = Path(ckpt.deepspeed_dir) / "state" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt"
    with safe_torch_loads():
        osd = torch.load(path, map_location="cpu", weights_only=True)["optimizer_state_dict"]
    base = osd.get("base_optimizer_state") or osd["optimizer_state_dict"]  # ZeRO 1-2 / ZeRO-3
    return {int(s["step"]) for s in base["state"].values()}


def test_deepspeed_zero2_two_workers_learns(ray_local, shards, tmp_path):
    from merl.training.trainer import fit

    cfg = tiny_cfg(shards, tmp_path, train={"backend": "deepspeed", "zero_stage": 2, "max_steps": 48, "log_every": 2},
                   optim={"lr": 2e-3})
    result = fit(cfg, name="ds", resume=False)
    assert result.error is None
    train = rows(tmp_path / "ds", "train")
    first, last = train[0]["loss"], sum(r["loss"] for r in train[-3:]) / 3
    assert last < first - 1.0, f"loss did not fall: {first:.3f} -> {last:.3f}"
    val = rows(tmp_path / "ds", "val")[-1]
    chance = 1 / val["val_distinct_reports"]
    assert val["val_top1"] >= chance + 0.35, f"held-out retrieval top-1 {val['val_top1']} vs chance {chance}"
    ckpt = load_checkpoint(result.checkpoint.path)  # safetensors + weights_only load, checksums verified
    assert ckpt.state.backend == "deepspeed" and ckpt.state.step == 48
    for rank in (0, 1):  # DeepSpeed's own checkpoint: one ZeRO partition per rank, merged by Ray
        assert zero_adam_steps(ckpt, rank) == {48}
        listed = json.loads((Path(ckpt.path) / f"COMPLETE.rank{rank}.json").read_text())["files"]
        assert f"deepspeed/state/zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" in listed


def _adam_steps(opt_state: dict) -> set[int]:
    return {int(s["step"]) for s in opt_state["state"].values()}


def test_stopped_run_resumes_with_step_optimizer_and_lr(ray_local, shards, tmp_path):
    from merl.training.trainer import fit

    cfg = tiny_cfg(shards, tmp_path, train={"max_steps": 4, "epochs": 5}, optim={"T_0": 6})
    fit(cfg, name="resume")
    first = load_checkpoint(list_checkpoints(str(tmp_path / "resume"))[0])
    assert first.state.step == 4 and _adam_steps(first.optimizer) == {4}
    cfg.train.max_steps = 8
    result = fit(cfg, name="resume")  # same name: continues the run
    final = load_checkpoint(result.checkpoint.path)
    assert final.state.step == 8
    assert _adam_steps(final.optimizer) == {8}  # Adam moments continued, not restarted
    assert final.scheduler["last_epoch"] == 8  # LR schedule continued (T_0=6: warm restart passed)
    second_run_steps = [r["step"] for r in rows(tmp_path / "resume", "train")]
    assert second_run_steps == sorted(second_run_steps) and second_run_steps[-1] == 8
    assert final.state.samples_seen == 8 * 32


def test_killed_worker_recovers_from_checkpoint(ray_local, shards, tmp_path):
    from merl.training.trainer import fit

    marker = tmp_path / "crashed.txt"
    cfg = tiny_cfg(shards, tmp_path, train={"backend": "deepspeed", "zero_stage": 2, "max_steps": 7, "epochs": 5},
                   checkpoint={"every_n_steps": 3, "max_failures": 1})
    result = fit(cfg, name="crash", loop_config_extra={
        "test_crash_once": {"rank": 1, "step": 5, "marker": str(marker)}})
    assert marker.exists(), "the fault hook did not fire"
    assert result.error is None
    final = load_checkpoint(result.checkpoint.path)
    assert final.state.step == 7 and final.state.samples_seen == 7 * 32
    assert zero_adam_steps(final, 1) == {7}  # rank 1's ZeRO partition resumed from step 3 and continued
