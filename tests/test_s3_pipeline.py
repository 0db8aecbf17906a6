"""prepare -> train -> export -> evaluate (and classify), and a Tune search, with every output on s3://.

The commands run as a user types them (in process, through the CLI) against a real
S3-compatible server on loopback; Ray Data reads the shards and Ray Train persists the
checkpoints at the s3:// locations themselves, its workers reaching the server through the
AWS variables they inherit. Only the raw dataset folder is local (the readers take WFDB files
from disk). Tiny on purpose: 48 short synthetic PTB-XL records, one worker, two steps.
"""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from merl.cli import app
from merl.core import io
from merl.core.uri import join

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray_train")]


def _ok(res):
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    return res


def test_prepare_train_export_evaluate_all_on_s3(s3, ray_local, tmp_path):
    from merl.training.checkpoint import list_checkpoints, load_latest_valid
    from merl.training.data.manifest import read_manifest
    from merl.training.data.prepare import PrepareConfig, prepare
    from merl.training.data.synth import synthesize

    runner = CliRunner()
    base = s3.uri("e2e")
    shards, runs, model, evals = (join(base, p) for p in ("shards", "runs", "model", "eval"))
    raw = tmp_path / "raw"
    synthesize("ptbxl", raw, 48, seed=3, num_workers=1)

    # prepare: shards + sidecars + quarantine + manifest (last) on s3; a re-run resumes from them
    _ok(runner.invoke(app, ["data", "prepare", "--dataset", "ptbxl", "--root", str(raw), "--out", shards,
                            "records_per_shard=16", "num_cpus=1"]))
    manifest = read_manifest(shards)
    assert manifest.counts.records == 48 and len(manifest.shards) == 3
    assert io.listdir(shards, "shard-*.parquet") == [s.file for s in manifest.shards]
    assert len(io.listdir(shards, "*.done.json")) == 3 and io.is_file(join(shards, "quarantine.jsonl"))
    again = prepare("ptbxl", raw, shards, PrepareConfig(records_per_shard=16))
    assert (again.written, again.skipped) == (0, 3) and again.out == shards

    prompts = join(base, "prompts.json")
    io.atomic_write_text(prompts, json.dumps({"ptbxl_super_class": {
        "NORM": "normal ecg", "MI": "myocardial infarction", "STTC": "st-t change",
        "CD": "conduction disturbance", "HYP": "hypertrophy"}}))

    # train: Ray Train persists checkpoints to s3; result.json names them by s3:// URI
    cfg = {
        "model": {"width": 16, "freeze_text_layers": 5, "proj_dim": 32, "proj_hidden": 32},
        "data": {"train_shards": shards, "batch_size": 8, "fs": 100, "n_samples": 200},
        "train": {"epochs": 1, "max_steps": 2, "num_workers": 1, "cpus_per_worker": 1, "log_every": 1},
        "checkpoint": {"storage_path": runs, "every_n_steps": 1, "keep": 2},
        "eval": {"tasks": ["ptbxl_super_class"], "shards": {"ptbxl_super_class": shards}, "prompts": prompts,
                 "batch_size": 8},
    }
    cfg_path = tmp_path / "train.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    _ok(runner.invoke(app, ["train", "--config", str(cfg_path), "--name", "e2e"]))
    run = join(runs, "e2e")
    summary = json.loads(io.read_text(join(run, "result.json")))
    assert summary["run_dir"] == run and summary["best_checkpoint"].startswith(f"{run}/checkpoint_step")
    ckpts = list_checkpoints(run)
    assert ckpts and all(c.startswith(f"{run}/checkpoint_step") for c in ckpts)
    loaded = load_latest_valid(ckpts, str(tmp_path / "scratch"))  # downloaded, checksums verified
    assert loaded is not None and loaded.state.step == 2
    assert "val_zeroshot_auc" in summary["metrics"]  # the worker scored the s3 eval shards

    # export: bundle uploaded with train_config.json last
    _ok(runner.invoke(app, ["export", "--run", run, "--out", model]))
    assert {"model.safetensors", "train_config.json", "text_model"} <= set(io.listdir(model))

    # evaluate: bundle, shards and prompts read from s3; results and plots written there
    res = _ok(runner.invoke(app, ["evaluate", "--model", model, "--task", f"ptbxl_super_class={shards}",
                                  "--prompts", prompts, "--out", evals, "batch_size=8"]))
    assert "SYNTHETIC" in res.output
    results = json.loads(io.read_text(join(evals, "results.json")))
    zs = results["zeroshot"][0]
    assert zs["task"] == "ptbxl_super_class" and zs["n_records"] > 0 and zs["synthetic"]
    assert zs["prompts"]["MI"] == "myocardial infarction"
    assert io.listdir(join(evals, "plots")) == ["ptbxl_super_class_auc.png", "ptbxl_super_class_roc.png"]

    scores = join(base, "scores.json")
    _ok(runner.invoke(app, ["classify", "--model", model, "--input", shards, "--labels", "normal ecg,atrial fibrillation",
                            "--json", scores]))
    assert len(json.loads(io.read_text(scores))["scores"]) == 48


def test_tune_results_and_trial_runs_on_s3(s3, ray_local, tmp_path):
    from eval_fixtures import write_shards

    from merl.core.config import validate
    from merl.training.config import TrainConfig
    from merl.training.tune import load_tune_config, run_tune

    base_uri = s3.uri("tune")
    shards = join(base_uri, "shards")
    io.upload_dir(write_shards(tmp_path / "shards", n_per_split=(8, 6, 3)), shards, last=["manifest.json"])
    storage = join(base_uri, "results")
    base = {
        "model": {"width": 8, "proj_dim": 16, "proj_hidden": 16, "freeze_text_layers": 6},
        "data": {"train_shards": shards, "val_split": "", "fs": 100, "n_samples": 1000, "batch_size": 4,
                 "max_text_tokens": 32, "prefetch": 0},
        "train": {"epochs": 1, "num_workers": 1, "log_every": 1, "cpus_per_worker": 0.5},
        "checkpoint": {"storage_path": storage},
        "eval": {"tasks": ["ptbxl_super_class"], "shards": {"ptbxl_super_class": shards}, "split": "val", "batch_size": 8},
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump({
        "base": "base.yaml", "search": {"loss.temperature": {"type": "choice", "values": [0.1]}},
        "num_samples": 1, "storage_path": storage, "name": "t"}))
    outcome = run_tune(load_tune_config(tmp_path / "tune.yaml"))
    assert len(outcome.rows) == 1 and outcome.rows[0]["iterations"] == 1
    assert outcome.best_config_path == join(storage, "t", "best_config.yaml")
    best = validate(TrainConfig, yaml.safe_load(io.read_text(outcome.best_config_path)), source="best")
    assert best.loss.temperature == 0.1 and best.data.train_shards == shards
    assert io.is_dir(join(storage, "t"))  # Tune's experiment state
    (trial_run,) = io.listdir(join(storage, "t-runs"))  # the trial's Ray Train run and its checkpoint
    assert any(n.startswith("checkpoint_step") for n in io.listdir(join(storage, "t-runs", trial_run)))
