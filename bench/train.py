"""Training throughput (synthetic data).

* ``train_vs_pad256``: samples/s of our step (reports tokenised in the data pipeline, batch
  padded to its longest report) vs the reference's (tokenise inside the step, pad every
  report to 256 tokens). Same model (ResNet18-1D + MiniLM), batch 32, 2 threads, same run.
* ``train_text_cache_vs_recompute``: the same step with the whole text model frozen, its report
  features read from ``model.text_cache`` (every report seen before, as from the demo's third
  epoch on) vs recomputed by the frozen model each step.
* ``train_2_vs_1_workers``: Ray Train (DDP, gloo) samples/s with 2 workers vs 1 on this machine.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np

from bench.shards import REPORTS, write_shards

log = logging.getLogger(__name__)


def _median_step_s(model, ecg, ways: dict, steps: int) -> dict[str, float]:
    """Median seconds of one training step per way (``way(s)`` gives step ``s``'s token ids and
    mask), the ways alternated step by step so that all see the same machine load."""
    from merl.training.config import TrainConfig
    from merl.training.loop import build_optimizer
    from merl.training.loss import MERLLoss

    opt, _ = build_optimizer(model, TrainConfig())
    loss_fn = MERLLoss()
    times: dict[str, list[float]] = {name: [] for name in ways}
    for s in range(steps + 1):
        for name, way in ways.items():
            t0 = time.perf_counter()
            ids, mask = way(s)
            loss = loss_fn(model(ecg, ids, mask)).total
            opt.zero_grad()
            loss.backward()
            opt.step()
            if s:  # first step warms up allocators / kernels
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def _step_rates(batch: int = 32, steps: int = 6) -> dict[str, float]:
    """Samples/s of one step: ours, the reference's padding, and with a frozen text model whose
    features are cached or recomputed."""
    import torch

    from merl.core.textmodel import load_tokenizer
    from merl.training.config import ModelConfig, TrainConfig
    from merl.training.data.loader import pad_token_ids, tokenize
    from merl.training.model import build_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = TrainConfig()  # ResNet18 width 64 (MERL), MiniLM, 100 Hz x 1000
    rng = np.random.default_rng(0)
    texts = [REPORTS[i % len(REPORTS)] for i in rng.permutation(batch * (steps + 1))]
    ecg = torch.from_numpy(rng.random((batch, 12, cfg.data.n_samples), dtype=np.float32))
    tok = load_tokenizer(cfg.model.text_model)
    pre = tokenize(texts, cfg.model.text_model, cfg.data.max_text_tokens)  # done by Ray Data in training

    def reference(s):
        enc = tok(texts[s * batch:(s + 1) * batch], padding="max_length", max_length=256, truncation=True,
                  return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def ours(s):
        return pad_token_ids(pre[s * batch:(s + 1) * batch], int(tok.pad_token_id or 0))

    t = _median_step_s(build_model(cfg.model, cfg.loss), ecg, {"ours": ours, "reference": reference}, steps)

    frozen = build_model(ModelConfig(freeze_text_layers="all", text_cache=True), cfg.loss)
    text = frozen.text_encoder
    store = text.cache
    for s in range(steps + 1):  # every report seen once, as after the first epochs
        text(*ours(s))

    def with_cache(on: bool):
        def way(s):
            text.cache = store if on else None
            return ours(s)
        return way

    t.update(_median_step_s(frozen, ecg, {"cached": with_cache(True), "recomputed": with_cache(False)}, steps))
    return {name: batch / sec for name, sec in t.items()}


def _ray_rate(shards: Path, storage: Path, workers: int) -> float:
    from merl.training.config import TrainConfig
    from merl.training.trainer import fit

    cfg = TrainConfig.model_validate({
        "model": {"width": 32},
        "data": {"train_shards": str(shards), "batch_size": 16, "val_split": ""},
        "train": {"num_workers": workers, "max_steps": 10, "log_every": 2, "cpus_per_worker": 1 / workers},
        "checkpoint": {"storage_path": str(storage), "every_n_steps": 0},
    })
    fit(cfg, name=f"w{workers}", resume=False)
    rows = [json.loads(x) for x in (storage / f"w{workers}" / "logs" / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in rows if r["phase"] == "train" and "samples_per_s" in r][1:]
    return statistics.median(rates)


def _bench_shards(root: Path, n: int = 640) -> Path:
    return write_shards(root, n, per_shard=160)


def run(report, workdir: Path) -> None:
    workdir = Path(workdir)
    rates = _step_rates()
    report("train_samples_per_s_dynamic_pad_synthetic", rates["ours"], "samples/s")
    report("train_samples_per_s_pad256_synthetic", rates["reference"], "samples/s")
    report("train_vs_pad256", rates["ours"] / rates["reference"], "x")
    report("train_samples_per_s_frozen_text_cached_synthetic", rates["cached"], "samples/s")
    report("train_samples_per_s_frozen_text_recomputed_synthetic", rates["recomputed"], "samples/s")
    report("train_text_cache_vs_recompute", rates["cached"] / rates["recomputed"], "x")

    from merl.core.raysession import ensure_ray

    ray = ensure_ray(num_cpus=2)
    try:
        shards = _bench_shards(workdir / "shards")
        one = _ray_rate(shards, workdir / "runs", 1)
        two = _ray_rate(shards, workdir / "runs", 2)
    finally:
        ray.shutdown()
    report("train_ray_1_worker_samples_per_s_synthetic", one, "samples/s")
    report("train_ray_2_workers_samples_per_s_synthetic", two, "samples/s")
    report("train_2_vs_1_workers", two / one, "x")
