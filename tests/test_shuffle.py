"""Training order: batches should hold one patient's ECGs together no more often than a
random permutation would (they are false negatives for the contrastive loss)."""

from __future__ import annotations

import pytest

from bench.shuffle import BATCH, measure, patient_shards
from merl.training.data.config import DataConfig
from merl.training.data.loader import iter_shuffle_options
from merl.training.data.prepare import shard_order


def test_shard_order_is_a_seeded_permutation():
    order = shard_order(1000, "shuffled", 42)
    assert sorted(order) == list(range(1000)) and order != list(range(1000))
    assert order == shard_order(1000, "shuffled", 42) != shard_order(1000, "shuffled", 43)
    assert shard_order(5, "index", 42) == [0, 1, 2, 3, 4]


def test_iter_options_reseed_every_epoch():
    cfg = DataConfig(batch_size=16)
    assert cfg.shuffle == "global" and cfg.shuffle_buffer_rows == 1024
    a, b = iter_shuffle_options(cfg, 42, 0), iter_shuffle_options(cfg, 42, 1)
    assert a["local_shuffle_buffer_size"] == 1024 and a["local_shuffle_seed"] != b["local_shuffle_seed"]
    assert iter_shuffle_options(DataConfig(shuffle="none"), 42, 0) == {}


@pytest.mark.slow
def test_global_shuffle_is_as_rare_as_a_random_permutation(ray_local, tmp_path):
    shuffled = patient_shards(tmp_path / "shuffled", "shuffled")
    index = patient_shards(tmp_path / "index", "index")
    new = measure(shuffled, "global")  # what training does now: prepare's order + global shuffle
    old = measure(index, "window_4_batches")  # before: index-ordered shards, a 4-batch window
    assert new["expected_pair_fraction"] == pytest.approx(old["expected_pair_fraction"], rel=0.05)
    assert new["batches"] >= 4000 // BATCH
    assert new["ratio"] < 1.5, new
    assert old["ratio"] > 5, old
    # a fresh order every epoch: few of epoch 2's batch-mates were batch-mates in epoch 1
    assert new["repeat_fraction"] < 5 * new["expected_repeat_fraction"], new
