"""TrainConfig validation, the shipped configs, the DeepSpeed config derived from it, the CLI's errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from merl.core.config import ConfigError, load_config
from merl.training.config import TrainConfig
from merl.training.loop import deepspeed_config, lr_lambda

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["pretrain_laptop", "pretrain_paper"])
def test_shipped_configs_validate(name):
    cfg = load_config(TrainConfig, REPO / "configs" / f"{name}.yaml")
    assert cfg.model.ecg_encoder == "resnet18"
    if name == "pretrain_paper":
        assert (cfg.data.fs, cfg.data.n_samples, cfg.data.batch_size, cfg.train.num_workers) == (500, 5000, 128, 8)
        assert cfg.train.backend == "deepspeed" and cfg.train.zero_stage == 2 and cfg.train.epochs == 21
        assert cfg.model.arch == "paper" and cfg.optim.grad_clip == 0.0


def test_bad_values_are_clear_errors():
    with pytest.raises(ConfigError, match="train.backend"):
        load_config(TrainConfig, None, ["train.backend=horovod"])
    with pytest.raises(ConfigError, match=r"zero_optimization.stage \(use train.zero_stage\)"):
        load_config(TrainConfig, None, ["train.backend=deepspeed", "train.deepspeed={zero_optimization: {stage: 1}}"])
    with pytest.raises(ConfigError, match="no shard folder for task"):
        load_config(TrainConfig, None, ["eval.tasks=[icbeb]"])
    with pytest.raises(ConfigError, match="unknown field"):
        load_config(TrainConfig, None, ["optim.learning_rate=1"])


def test_deepspeed_config_follows_train_config():
    cfg = load_config(TrainConfig, None, ["train.backend=deepspeed", "train.zero_stage=1", "optim.grad_accum=2",
                                          "optim.grad_clip=1.5", "data.batch_size=8"])
    ds = deepspeed_config(cfg, world_size=4)
    assert ds["zero_optimization"]["stage"] == 1 and ds["gradient_accumulation_steps"] == 2
    assert ds["train_batch_size"] == 64 and ds["gradient_clipping"] == 1.5
    assert ds["bf16"]["enabled"] is False  # CPU: bf16 "auto" stays off


def test_bf16_switch_reads_yaml_on_and_off(tmp_path):
    # YAML 1.1 reads a bare `on` as true: the switch must still mean what was written.
    assert load_config(TrainConfig, None, ["train.bf16=on"]).train.bf16 == "on"
    (tmp_path / "c.yaml").write_text("train:\n  bf16: off\n")
    assert load_config(TrainConfig, tmp_path / "c.yaml").train.bf16 == "off"
    with pytest.raises(ConfigError, match="train.bf16"):
        load_config(TrainConfig, None, ["train.bf16=sometimes"])


def test_bf16_native_follows_the_cpu(monkeypatch):
    from merl.training import loop

    native = load_config(TrainConfig, None, ["train.bf16=native"])
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: True)
    assert loop.use_bf16(native) and deepspeed_config(native, 1)["data_types"]["buffer_dtype"] == "bf16"
    assert not loop.use_bf16(load_config(TrainConfig, None, []))  # auto: GPU only
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: False)
    assert not loop.use_bf16(native) and not deepspeed_config(native, 1)["bf16"]["enabled"]


def test_user_deepspeed_dict_is_merged_and_zero3_allowed():
    cfg = load_config(TrainConfig, None, [
        "train.backend=deepspeed", "train.zero_stage=3",
        "train.deepspeed={zero_optimization: {offload_optimizer: {device: cpu}, reduce_bucket_size: 1000}}"])
    ds = deepspeed_config(cfg, world_size=2)
    assert ds["zero_optimization"] == {"stage": 3, "offload_optimizer": {"device": "cpu"}, "reduce_bucket_size": 1000}
    assert ds["train_batch_size"] == 2 * cfg.data.batch_size


def test_schedule_warmup_then_cosine_restarts():
    cfg = load_config(TrainConfig, None, ["optim.warmup_steps=2", "optim.T_0=4"]).optim
    f = lr_lambda(cfg)
    assert f(0) == 0.5 and f(1) == 1.0 and f(2) == 1.0  # warmup, then the cosine starts at the peak
    assert f(4) < 0.6 and f(6) == 1.0  # restart after T_0 steps


def test_cli_reports_missing_shards_cleanly(tmp_path):
    from merl.cli import app

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  train_shards: {tmp_path / 'none'}\n")
    res = CliRunner().invoke(app, ["train", "--config", str(cfg), "train.num_workers=1"])
    assert isinstance(res.exception, FileNotFoundError) and "merl data prepare" in str(res.exception)


def test_both_steppers_implement_the_stepper_protocol():
    """The loop asks a stepper, never which backend it is: both must offer every method."""
    from merl.training.loop import Stepper, _DDPStepper, _DeepSpeedStepper

    methods = [n for n, v in vars(Stepper).items() if callable(v) and not n.startswith("_")]
    assert {"cast_input", "forward", "backward_step", "lr", "evaluating", "full_weights", "save", "load"} <= set(methods)
    for cls in (_DDPStepper, _DeepSpeedStepper):
        assert all(callable(getattr(cls, n, None)) for n in methods), cls
        assert isinstance(cls.on_every_rank, bool)
