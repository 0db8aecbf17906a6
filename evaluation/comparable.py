"""Whether an evaluation run can stand beside the paper's figure, and why not.

The paper's 75.2 (MERL ResNet18 + CKEPE, mean zero-shot AUC over the six tasks) is a
number of one method on one input pipeline. A run is comparable only when it matches the
reference column of docs/fidelity.md where that changes the number: the ``paper``
architecture with a ResNet18 ECG tower and MedCPT text tower, the reference's input
(500 Hz x 5000, whole-record min-max, MIMIC lead order), the published test splits, the
CPSC2018 crop, real data on all six tasks, and whole prompts from a prompts file. Each
check reads what the run actually used: the bundle's config and the shard folders'
manifests, not the flags that were meant to produce them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from merl.core.tasks import TASKS
from merl.evaluation.zeroshot import ZeroShotResult
from merl.training.config import TrainConfig
from merl.training.data.manifest import Manifest

PAPER_TEXT_MODEL = "medcpt-query-encoder"  # ncbi/MedCPT-Query-Encoder, by name or a local copy's folder name
REFERENCE_PROMPT_TOKENS = 256  # the reference tokenises prompts to at most this many tokens
# sha256 of the paper's released CKEPE_prompt.json as canonical JSON (sorted keys): identifies
# the file without shipping it.
PAPER_PROMPTS_SHA256 = "301bb4140ea53d8cfa66ca3b4556dd6f8cbd719deeba3f536aca42a4b8d74c5c"

_PUBLISHED_LIST = {"cpsc2018", "csn"}  # sources whose published split is a record list


@dataclass
class RunFacts:
    """What an evaluation ran with: the bundle (None when a model was passed in directly), the
    shard folders' manifests, the split scored, the prompts file, and the results."""

    train_config: TrainConfig | None
    text_model: str = ""
    bundle_info: dict[str, Any] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)  # task -> manifest
    split: str = "test"
    prompts: str | None = None
    results: Sequence[ZeroShotResult] = ()


def prompts_fingerprint(path: str | Path) -> str:
    """sha256 of a prompts JSON (local or a URI) as canonical JSON (whitespace and key order do not count)."""
    from merl.core.io import read_text

    data = json.loads(read_text(path))
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def model_reasons(cfg: TrainConfig | None, text_model: str, info: Mapping[str, Any]) -> list[str]:
    """Differences of the model and its input from the reference's ResNet18 MERL."""
    if cfg is None:
        return ["model passed in without its bundle: its configuration is unknown"]
    m, d = cfg.model, cfg.data
    out = []
    if m.arch != "paper":
        out.append(f"model.arch={m.arch} (the paper's towers and heads: paper)")
    if m.ecg_encoder != "resnet18":
        out.append(f"ECG encoder {m.ecg_encoder} (the paper's 75.2 is ResNet18's)")
    if m.proj_dim != 256:
        out.append(f"model.proj_dim={m.proj_dim} (reference: 256)")
    if PAPER_TEXT_MODEL not in (text_model or m.text_model).lower():
        out.append(f"text model {text_model or m.text_model} (reference: MedCPT-Query-Encoder)")
    if m.text_pooling != "pooler":
        out.append(f"model.text_pooling={m.text_pooling} (reference: pooler)")
    if m.freeze_text_layers != "all":
        out.append(f"model.freeze_text_layers={m.freeze_text_layers} (reference: all, the text model frozen)")
    if m.text_cache:
        out.append("model.text_cache=true (reference: text features recomputed each step, with its frozen LM's dropout)")
    if (d.fs, d.n_samples) != (500, 5000):
        out.append(f"input {d.fs} Hz x {d.n_samples} (reference: 500 Hz x 5000)")
    if d.normalize != "minmax_record":
        out.append(f"data.normalize={d.normalize} (reference: minmax_record)")
    if d.lead_order != "mimic":
        out.append(f"data.lead_order={d.lead_order} (reference: mimic)")
    if info.get("encoder_only"):
        out.append("imported ECG encoder only: the heads are untrained")
    return out


def shard_reasons(task: str, manifest: Manifest) -> list[str]:
    """Differences of one task's shard folder from the published benchmark's data."""
    source = TASKS[task].source
    cfg, split = manifest.config, manifest.split
    out = []
    if manifest.dataset != source:
        out.append(f"{task}: shards of {manifest.dataset!r}, not prepared from {source}")
    mode = split.get("mode")
    if mode is None:  # prepared before the split was recorded: PTB-XL used strat_fold unless a file was given
        mode = "csv" if (cfg.get("split") or {}).get("csv") else "published" if source == "ptbxl" else "seeded"
    if mode != "published":
        what = "strat_fold" if source == "ptbxl" else "the published split list"
        out.append(f"{task}: split {mode} (the paper's: {what}; `merl data prepare --preset paper`)")
    elif source in _PUBLISHED_LIST:
        from merl.training.data.splits import published_split

        listed = sum(s == "test" for s in published_split(source).values())
        have = manifest.counts.by_split.get("test", 0)
        if have < listed:
            out.append(f"{task}: {listed - have} of the published split's {listed} test records are missing "
                       "(absent from the folder or quarantined)")
    if source == "ptbxl" and cfg.get("ptbxl_sampling", "hr") != "hr":
        out.append(f"{task}: PTB-XL records100 (the reference reads records500)")
    canon = cfg.get("canonical") or {}
    if source == "cpsc2018" and (float(canon.get("seconds", 10.0)) != 5.0 or canon.get("crop", "first") != "first"):
        out.append(f"{task}: CPSC2018 kept {canon.get('seconds', 10.0):g} s ({canon.get('crop', 'first')}); the "
                   "reference keeps the first 5 s zero-padded (canonical.seconds=5, `--preset paper`)")
    return out


def prompt_reasons(prompts: str | None, results: Sequence[ZeroShotResult]) -> list[str]:
    """Prompts that are not whole CKEPE-style prompts from a file."""
    if not prompts:
        return ["no prompts file: class names, not CKEPE prompts (`--prompts`)"]
    out = []
    for r in results:
        if r.defaulted_prompts:
            out.append(f"{r.task}: no prompt in {Path(prompts).name} for {', '.join(r.defaulted_prompts)}")
        if r.truncated_prompts:
            out.append(f"{r.task}: prompts cut to {r.prompt_token_limit} tokens: {', '.join(r.truncated_prompts)}")
        elif r.prompt_token_limit and r.prompt_token_limit < REFERENCE_PROMPT_TOKENS:
            out.append(f"{r.task}: prompt limit {r.prompt_token_limit} tokens (reference: {REFERENCE_PROMPT_TOKENS})")
    return out


def paper_comparability(facts: RunFacts) -> dict[str, Any]:
    """{"comparable": bool, "reasons": [...], "prompts": which prompts}: comparable when no
    reason is found. Whether the prompts are the paper's own file is reported, not required:
    `merl prompts` writes CKEPE prompts from this project's knowledge base."""
    reasons = []
    tasks = {r.task for r in facts.results}
    if any(r.synthetic for r in facts.results):
        reasons.append("synthetic data")
    if tasks != set(TASKS):
        reasons.append(f"{len(tasks)} of {len(TASKS)} tasks evaluated (the paper averages all six)")
    if facts.split != "test":
        reasons.append(f"split {facts.split} scored (the paper's figures are on test)")
    reasons += model_reasons(facts.train_config, facts.text_model, facts.bundle_info)
    for task in sorted(facts.manifests):
        reasons += shard_reasons(task, facts.manifests[task])
    reasons += prompt_reasons(facts.prompts, facts.results)
    if not facts.prompts:
        which = "class names"
    elif prompts_fingerprint(facts.prompts) == PAPER_PROMPTS_SHA256:
        which = "the paper's released CKEPE prompts"
    else:
        which = f"{Path(facts.prompts).name} (not the paper's released file)"
    return {"comparable": not reasons, "reasons": reasons, "prompts": which}
