"""`paper_comparison.comparable`: true only for a run that matches the paper's setup, with the
reasons listed otherwise (read from the bundle's config and the shards' manifests)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from merl.core.tasks import TASKS
from merl.evaluation.comparable import RunFacts, paper_comparability, prompts_fingerprint
from merl.evaluation.report import EvalReport
from merl.evaluation.zeroshot import ZeroShotResult
from merl.training.config import TrainConfig, paper_config
from merl.training.data.manifest import Counts, Manifest

PAPER_MANIFESTS = {
    "ptbxl": Manifest(dataset="ptbxl", config={"ptbxl_sampling": "hr", "canonical": {"seconds": 10.0, "crop": "first"}},
                      split={"mode": "published", "list": "strat_fold"}),
    "cpsc2018": Manifest(dataset="cpsc2018", config={"canonical": {"seconds": 5.0, "crop": "first"}},
                         split={"mode": "published", "listed": 6877, "matched": 6877, "listed_missing": 0},
                         counts=Counts(by_split={"train": 4950, "val": 551, "test": 1376})),
    "csn": Manifest(dataset="csn", config={"canonical": {"seconds": 10.0, "crop": "first"}},
                    split={"mode": "published", "listed": 23026, "matched": 23026, "listed_missing": 0},
                    counts=Counts(by_split={"train": 16546, "val": 1860, "test": 4620})),
}


def result(task: str, synthetic: bool = False, limit: int = 512, truncated=(), defaulted=()) -> ZeroShotResult:
    labels = list(TASKS[task].labels)
    z = np.zeros((0, len(labels)))
    return ZeroShotResult(task, "test", 10, labels, {}, 70.0, 50.0, 80.0, [], {}, {lab: lab for lab in labels},
                          synthetic, z, z, limit, list(truncated), list(defaulted))


def facts(tmp_path, **change) -> RunFacts:
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"NORM": "normal ecg"}))
    base = {"train_config": paper_config("resnet18", "/models/MedCPT-Query-Encoder"),
            "text_model": "/models/MedCPT-Query-Encoder",
            "manifests": {t: PAPER_MANIFESTS[TASKS[t].source] for t in TASKS},
            "split": "test", "prompts": str(prompts), "results": [result(t) for t in TASKS]}
    base.update(change)
    return RunFacts(**base)


def test_a_paper_faithful_run_is_comparable(tmp_path):
    check = paper_comparability(facts(tmp_path))
    assert check == {"comparable": True, "reasons": [], "prompts": "prompts.json (not the paper's released file)"}
    report = EvalReport(facts(tmp_path).results, paper_check=check)
    cmp = report.comparison()
    assert cmp["comparable"] and cmp["note"].startswith("matches the paper's setup")


def test_every_difference_is_a_reason(tmp_path):
    manifests = {t: PAPER_MANIFESTS[TASKS[t].source] for t in TASKS}
    manifests["icbeb"] = Manifest(dataset="cpsc2018", config={"canonical": {"seconds": 10.0, "crop": "first"}},
                                  split={"mode": "published", "listed_missing": 0},
                                  counts=Counts(by_split={"test": 1370}))
    manifests["chapman"] = Manifest(dataset="csn", config={}, split={"mode": "seeded"})
    results = [result(t, synthetic=t == "icbeb", limit=128 if t == "ptbxl_form" else 512,
                      truncated=["NORM"] if t == "ptbxl_super_class" else (),
                      defaulted=["AFIB"] if t == "chapman" else ()) for t in TASKS if t != "ptbxl_rhythm"]
    check = paper_comparability(facts(tmp_path, train_config=TrainConfig(), text_model="default", manifests=manifests,
                                      split="val", results=results))
    assert not check["comparable"]
    text = "\n".join(check["reasons"])
    for needle in ("synthetic data", "5 of 6 tasks", "split val scored", "model.arch=merl-ray", "text model default",
                   "model.text_pooling=mean", "input 100 Hz x 1000", "data.normalize=minmax", "data.lead_order=standard",
                   "icbeb: CPSC2018 kept 10 s", "icbeb: 6 of the published split's 1376 test records are missing",
                   "chapman: split seeded", "chapman: no prompt in prompts.json for AFIB",
                   "ptbxl_super_class: prompts cut to 512 tokens: NORM", "ptbxl_form: prompt limit 128 tokens"):
        assert needle in text, needle
    assert "no prompts file" in "\n".join(paper_comparability(facts(tmp_path, prompts=None))["reasons"])
    cached = paper_config("resnet18", "/models/MedCPT-Query-Encoder")
    cached.model.text_cache = True
    assert paper_comparability(facts(tmp_path, train_config=cached))["reasons"] == [
        "model.text_cache=true (reference: text features recomputed each step, with its frozen LM's dropout)"]
    enc = paper_config("vit_tiny", "ncbi/MedCPT-Query-Encoder")
    assert paper_comparability(facts(tmp_path, train_config=enc, bundle_info={"encoder_only": True}))["reasons"] == [
        "ECG encoder vit_tiny (the paper's 75.2 is ResNet18's)", "imported ECG encoder only: the heads are untrained"]
    # a report without run facts is never comparable, and says why
    cmp = EvalReport([result(t) for t in TASKS]).comparison()
    assert not cmp["comparable"] and "run configuration unknown" in cmp["note"]


def test_the_papers_prompt_file_is_recognised(shared_dir, tmp_path):
    path = shared_dir / "reference" / "merl_ckepe_prompt.json"
    if not path.is_file():
        pytest.skip("reference prompt file absent")
    copy = tmp_path / "CKEPE_prompt.json"
    copy.write_text(json.dumps(json.loads(path.read_text()), indent=4))  # other whitespace, same prompts
    assert prompts_fingerprint(copy) == prompts_fingerprint(path)
    check = paper_comparability(facts(tmp_path, prompts=str(copy)))
    assert check["comparable"] and check["prompts"] == "the paper's released CKEPE prompts"


def test_bundle_remembers_its_text_model(tmp_path):
    torch = pytest.importorskip("torch")
    from merl.training.config import ModelConfig
    from merl.training.export import load_bundle, save_bundle
    from merl.training.model import build_model

    cfg = TrainConfig(model=ModelConfig(width=8, proj_dim=32, proj_hidden=32))
    torch.manual_seed(0)
    out = save_bundle(build_model(cfg.model, cfg.loss), cfg, tmp_path / "b")
    b = load_bundle(out)
    assert b.text_model == "default" and b.config.model.text_model.endswith("text_model")
    again = save_bundle(b.model, b.config, tmp_path / "re-export")  # from a bundle's own copy: the name survives
    assert load_bundle(again).text_model == "default"
