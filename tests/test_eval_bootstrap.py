"""Bootstrap intervals for every AUC and the paired test of two prompt sets (merl.training.metrics)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from eval_fixtures import write_shards
from sklearn.metrics import roc_auc_score

from merl.training.metrics import (
    bootstrap_aucs,
    mean_draws,
    paired_difference,
    percentile_interval,
    resample_counts,
    weighted_auc,
)


def test_weighted_auc_is_sklearn_on_every_resample_ties_included():
    rng = np.random.default_rng(0)
    n = 60
    y = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n) + y, 1)  # rounded: many ties
    assert weighted_auc(y, s, np.ones((1, n)))[0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    counts = resample_counts(n, 20, seed=3)
    assert counts.shape == (20, n) and np.all(counts.sum(axis=1) == n)
    got = weighted_auc(y, s, counts)
    for row, auc in zip(counts, got):
        idx = np.repeat(np.arange(n), row.astype(int))
        assert auc == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)


def test_resamples_with_one_label_value_are_skipped_and_seeded():
    rng = np.random.default_rng(1)
    n = 30
    y = np.zeros((n, 3), dtype=np.uint8)
    y[:, 0] = rng.integers(0, 2, n)
    y[0, 1] = 1  # one positive: most resamples lack it
    s = rng.normal(size=(n, 3)) + y
    counts = resample_counts(n, 500, seed=7)
    boot = bootstrap_aucs(y, s, ["a", "rare", "none"], counts)
    missing = counts[:, 0] == 0  # record 0 (the only 'rare' positive) not drawn
    assert missing.any() and np.isnan(boot.per_class["rare"][missing]).all()
    assert np.isfinite(boot.per_class["rare"][~missing]).all()
    assert np.isnan(boot.per_class["none"]).all()  # degenerate in the full sample: left out
    # the macro draw skips 'rare' where it has no AUC, and averages both classes where it has one
    np.testing.assert_allclose(boot.macro[missing], boot.per_class["a"][missing])
    np.testing.assert_allclose(boot.macro[~missing], (boot.per_class["a"] + boot.per_class["rare"])[~missing] / 2)
    again = bootstrap_aucs(y, s, ["a", "rare", "none"], resample_counts(n, 500, seed=7))
    np.testing.assert_array_equal(again.macro, boot.macro)
    lo, hi = boot.class_interval("a")
    assert lo < 100 * roc_auc_score(y[:, 0], s[:, 0]) < hi
    assert math.isnan(percentile_interval(np.full(4, np.nan))[0])


def test_interval_narrows_with_more_records():
    rng = np.random.default_rng(2)

    def width(n):
        y = rng.integers(0, 2, (n, 1))
        s = rng.normal(size=(n, 1)) + y
        lo, hi = bootstrap_aucs(y, s, ["x"], resample_counts(n, 400, 0)).macro_interval()
        return hi - lo

    assert width(2000) < width(50) / 3


def test_paired_difference():
    rng = np.random.default_rng(3)
    n = 200
    y = rng.integers(0, 2, (n, 2))
    good = rng.normal(size=(n, 2)) + 2 * y
    bad = rng.normal(size=(n, 2)) + 0.2 * y
    counts = resample_counts(n, 1000, 0)
    a, b = bootstrap_aucs(y, good, ["p", "q"], counts), bootstrap_aucs(y, bad, ["p", "q"], counts)
    d = paired_difference(a.macro, b.macro, 80.0, 55.0)
    assert d["diff"] == 25.0 and d["ci"][0] > 0 and d["p"] < 0.01 and d["n_boot"] == 1000
    same = paired_difference(a.macro, a.macro, 80.0, 80.0)
    assert same["ci"] == [0.0, 0.0] and same["p"] == 1.0
    np.testing.assert_allclose(mean_draws([a.macro, b.macro]), (a.macro + b.macro) / 2)


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from merl.training.config import ModelConfig, TrainConfig
    from merl.training.data.config import DataConfig
    from merl.training.export import save_bundle
    from merl.training.model.registry import build_model

    tiny = ModelConfig(ecg_encoder="resnet18", width=8, proj_dim=32, proj_hidden=32)
    torch.manual_seed(0)
    data_cfg = DataConfig(fs=100, n_samples=1000, max_text_tokens=32)
    return str(save_bundle(build_model(tiny), TrainConfig(model=tiny, data=data_cfg),
                           tmp_path_factory.mktemp("b") / "bundle"))


def test_evaluate_reports_intervals_and_paired_prompt_sets(bundle, tmp_path):
    from typer.testing import CliRunner

    from merl.cli import app

    shards = write_shards(tmp_path / "shards", n_per_split=(12, 9, 30))
    prompts = tmp_path / "mine.json"
    prompts.write_text(json.dumps({"NORM": "normal ecg", "MI": "myocardial infarction", "SR": "sinus rhythm"}))
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, [
        "evaluate", "--model", bundle, "--task", f"ptbxl_super_class={shards}", "--task", f"ptbxl_rhythm={shards}",
        "--prompts", str(prompts), "--out", str(out), "compare_prompts={names: null}", "n_boot=300",
        "batch_size=16"], terminal_width=220)
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    for z in data["zeroshot"]:
        lo, hi = z["macro_auc_ci"]
        assert lo <= z["macro_auc"] <= hi and z["n_boot"] == 300
        for lab, m in z["per_class"].items():
            if m["auc"] is not None:
                assert m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1], lab
    lo, hi = data["zeroshot_average_auc_ci"]
    assert lo <= data["zeroshot_average_auc"] <= hi
    assert set(data["prompt_sets"]) == {"mine", "names"}
    assert data["prompt_sets"]["names"]["prompts"] is None
    pairs = {(p["a"], p["b"], p["task"]): p for p in data["paired"]}
    assert set(pairs) == {("mine", "names", t) for t in ("ptbxl_super_class", "ptbxl_rhythm", "average")}
    for p in pairs.values():
        assert 0 <= p["p"] <= 1 and p["ci"][0] <= p["diff"] <= p["ci"][1]
    sets = data["prompt_sets"]
    assert pairs[("mine", "names", "ptbxl_super_class")]["diff"] == pytest.approx(
        sets["mine"]["tasks"]["ptbxl_super_class"]["macro_auc"] - sets["names"]["tasks"]["ptbxl_super_class"]["macro_auc"])
    z = data["zeroshot"][0]
    assert f"{z['macro_auc']:.1f} [{z['macro_auc_ci'][0]:.1f}, {z['macro_auc_ci'][1]:.1f}]" in res.output
    assert "Paired bootstrap" in res.output

    # the same seed gives the same intervals; the names set scored alone matches its paired twin
    res = CliRunner().invoke(app, ["evaluate", "--model", bundle, "--task", f"ptbxl_super_class={shards}",
                                   "--out", str(tmp_path / "alone"), "n_boot=300"])
    assert res.exit_code == 0, res.output
    alone = json.loads((tmp_path / "alone" / "results.json").read_text())["zeroshot"][0]
    assert alone["macro_auc_ci"] == sets["names"]["tasks"]["ptbxl_super_class"]["macro_auc_ci"]


def test_split_all_and_own_label_set(bundle, tmp_path):
    from merl.core.config import ConfigError
    from merl.core.tasks import get_task
    from merl.evaluation.config import EvalConfig
    from merl.evaluation.run import run_evaluation
    from merl.training.data.tasklabels import task_with_labels

    shards = write_shards(tmp_path / "shards", n_per_split=(6, 3, 3))
    cfg = EvalConfig(model=bundle, tasks={"ptbxl_rhythm": str(shards)}, split="all", n_boot=50, plots=False,
                     labels={"ptbxl_rhythm": ["SR", "AFIB"]}, out=str(tmp_path / "eval"))
    report, _ = run_evaluation(cfg)
    z = report.zeroshot[0]
    assert z.n_records == 12 and z.labels == ["SR", "AFIB"]  # every split; the two asked-for labels
    assert z.y_true.sum(axis=0).tolist() == [8, 4]
    assert task_with_labels(get_task("chapman"), ["SR", "ST", "SB"]).labels == ("SR", "ST", "SB")  # SB: CSN, not chapman
    with pytest.raises(ConfigError):
        task_with_labels(get_task("ptbxl_rhythm"), ["SB"])


def test_one_embedding_pass_serves_every_task_and_prompt_set(bundle, tmp_path):
    from merl.evaluation.zeroshot import evaluate_zeroshot
    from merl.training.export import load_bundle

    shards = str(write_shards(tmp_path / "shards", n_per_split=(3, 3, 9)))
    b = load_bundle(bundle)
    cache: dict = {}
    for task in ("ptbxl_super_class", "ptbxl_rhythm"):
        cached = evaluate_zeroshot(b.model, b.tokenizer, task, shards, b.config.data, split="test", n_boot=20,
                                   ecg_cache=cache)
        plain = evaluate_zeroshot(b.model, b.tokenizer, task, shards, b.config.data, split="test", n_boot=20)
        np.testing.assert_allclose(cached.scores, plain.scores, atol=1e-6)
        assert cached.macro_auc_ci == plain.macro_auc_ci
    assert list(cache) == [(shards, "test", None)]  # embedded once (all leads)


def test_linear_probe_aucs_carry_intervals():
    from merl.evaluation.linear_probe import probe

    rng = np.random.default_rng(4)
    y_tr, y_te = rng.integers(0, 2, (120, 2)), rng.integers(0, 2, (80, 2))
    x_tr = rng.normal(size=(120, 6)) + y_tr @ np.ones((2, 6))
    x_te = rng.normal(size=(80, 6)) + y_te @ np.ones((2, 6))
    fits = probe(x_tr, y_tr, x_te, y_te, ["a", "b"], fractions=(0.5, 1.0), n_boot=300, boot_seed=1)
    for f in fits:
        lo, hi = f.macro_auc_ci
        assert lo <= f.macro_auc <= hi and hi - lo > 0
        assert all(f.per_class_auc_ci[k][0] <= f.per_class_auc[k] <= f.per_class_auc_ci[k][1] for k in "ab")
