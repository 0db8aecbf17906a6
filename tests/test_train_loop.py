"""Train-loop pieces without a Ray cluster: batches reach the model's device (the check Ray
itself uses, on a fake ``meta`` device), and only validated checkpoints carry a score."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_train_pipeline import make_ecg_shards

from merl.training.config import TrainConfig
from merl.training.data.config import DataConfig


@pytest.fixture(scope="module")
def collated(tmp_path_factory):
    from merl.training.data.loader import Collate, pad_id_for, preprocess_batch

    root = make_ecg_shards(tmp_path_factory.mktemp("shards"), n_train=6, n_val=0, per_shard=6, n_samples=1000)
    batch = {k: np.asarray(v, dtype=object) for k, v in pq.read_table(root / "shard-00000.parquet").to_pydict().items()}
    out = preprocess_batch(batch, split="train", data_cfg=DataConfig(fs=100, n_samples=200), text_model="default")
    return out, Collate(pad_id_for("default"))(out)


def test_collated_batch_is_one_ray_moves_to_the_device(collated):
    """Ray moves a collate output to the worker's GPU only if it passes ``is_tensor_batch_type``;
    a list of report strings beside the tensors once left every batch on the CPU."""
    from ray.data._internal.utils.torch_utils import DefaultFinalizeFn
    from ray.data.collate_fn import NumpyBatchCollateFn, is_tensor_batch_type

    from merl.training.data.loader import Collate

    raw, batch = collated
    assert issubclass(Collate, NumpyBatchCollateFn)  # Ray feeds it numpy batches, no deprecated plain callable
    assert is_tensor_batch_type(batch), {k: type(v) for k, v in batch.items()}
    moved = DefaultFinalizeFn(torch.device("meta"))(batch).data  # what iter_torch_batches(device=...) runs
    assert {k: v.device.type for k, v in moved.items()} == dict.fromkeys(batch, "meta")
    # report identity survives as keys: equal texts, equal keys (across processes: a content hash)
    reports = list(raw["report"])
    keys = batch["report_key"].tolist()
    assert all((reports[i] == reports[j]) == (keys[i] == keys[j]) for i in range(len(keys)) for j in range(len(keys)))


def test_loop_moves_a_stray_cpu_batch_and_says_so(collated, caplog):
    from merl.training import loop

    _, batch = collated
    loop._warned_device = False
    with caplog.at_level(logging.WARNING, logger="merl.train"):
        out = loop.to_device(batch, "meta")
        again = loop.to_device(out, torch.device("meta"))
    assert all(v.device.type == "meta" for v in out.values())
    assert all(again[k] is out[k] for k in out)  # already there: untouched
    assert sum("not a tensor batch" in r.message for r in caplog.records) == 1


class _Stepper:
    """The Stepper protocol over a plain module: enough to drive run_epoch and report."""

    on_every_rank = False

    def __init__(self, model, cfg):
        from merl.training.loop import build_optimizer

        self.module = model
        self.optimizer, self.scheduler = build_optimizer(model, cfg)

    def cast_input(self, ecg):
        return ecg

    def forward(self, ecg, ids, mask, lead_mask=None):
        return self.module(ecg, ids, mask, lead_mask)

    def backward_step(self, loss):
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        return True

    def lr(self):
        return self.optimizer.param_groups[0]["lr"]

    def full_weights(self):
        return self.module.state_dict()

    def save(self, directory, rank):
        return []


class _Shard:
    def __init__(self, batches):
        self.batches = batches

    def iter_torch_batches(self, **_):
        return iter(self.batches)


def test_mid_epoch_checkpoints_carry_no_validation_score(tmp_path, monkeypatch):
    """Ray ranks checkpoints by SCORE: one written mid-epoch must not inherit the last
    validation's score (it was never validated), or it could be kept as "best"."""
    import ray.train

    from merl.training import loop
    from merl.training.checkpoint import TrainState
    from merl.training.data.loader import Collate
    from merl.training.loss import MERLLoss
    from merl.training.metrics_log import MetricsLogger
    from merl.training.model import build_model

    cfg = TrainConfig.model_validate({
        "model": {"width": 8, "freeze_text_layers": 6, "proj_dim": 16, "proj_hidden": 16},
        "data": {"batch_size": 2}, "checkpoint": {"every_n_steps": 2}, "train": {"log_every": 100}})
    model = build_model(cfg.model, cfg.loss)
    reports = []
    monkeypatch.setattr(ray.train, "report", lambda metrics, checkpoint=None, **_: reports.append((metrics, checkpoint)))
    batch = {"ecg": torch.randn(2, 12, 200), "input_ids": torch.ones(2, 4, dtype=torch.long),
             "attention_mask": torch.ones(2, 4, dtype=torch.long), "report_key": torch.tensor([1, 2])}
    state = TrainState(epoch=1, step=10, best_score=-0.5)  # epoch 0 was validated: best score -0.5
    w = loop._Worker(cfg, 0, 1, torch.device("cpu"), _Stepper(model, cfg), state, MetricsLogger(None), Collate())
    loop.run_epoch(w, _Shard([batch] * 4), MERLLoss())
    assert [m["step"] for m, _ in reports] == [12]  # not 14: the epoch's last step gets the validated one
    for metrics, ckpt in reports:
        assert ckpt is not None  # a checkpoint ...
        assert metrics[loop.SCORE] == loop.NO_SCORE  # ... ranked below every validated one
        assert not any(k.startswith("val_") for k in metrics)
    loop.report(w, {"val_loss": 0.25, loop.SCORE: -0.25}, with_checkpoint=True)  # after validation
    assert reports[-1][0][loop.SCORE] == -0.25 and reports[-1][1] is not None
