"""``merl demo``: the main job end to end on an embedded local Ray cluster, synthetic corpus.

Each step is the very ``merl`` command a user would type (printed before it runs), so the
demo doubles as a worked example: synthesise the four corpora in their published layouts,
ingest them into shards on Ray, build the knowledge index and CKEPE prompts, pretrain with
Ray Train, export, and evaluate zero-shot on the six tasks with this project's CKEPE prompts,
with bare class names, and, when the file is at hand, with the paper's released CKEPE prompts
(``reference_prompts``: default ``../shared/reference/merl_ckepe_prompt.json``; merl does
not ship that file). Steps whose outputs exist are skipped, so an interrupted demo resumes.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from merl.core.config import StrictModel
from merl.core.tasks import TASKS


class DemoConfig(StrictModel):
    """Sizes of the synthetic corpora and the pretraining budget (laptop-sized by default)."""

    n_mimic: int = Field(9600, ge=64, description="pretraining pairs (MIMIC-IV-ECG layout)")
    n_ptbxl: int = Field(3000, ge=50, description="PTB-XL layout records (4 PTB-XL tasks; ~250 in the "
                                                        "test split)")
    n_cpsc2018: int = Field(600, ge=50, description="CPSC2018 layout records (icbeb task)")
    n_csn: int = Field(1000, ge=50, description="CSN layout records (chapman task)")
    seed: int = Field(0, description="first seed: corpus (synthesis) and training seeds derive from it")
    seeds: int = Field(1, ge=1, description="independent runs (seed, seed+1, ...): corpus, training and "
                                            "untrained control each; summarised as mean, sd, min and max")
    n_boot: int = Field(1000, ge=0, description="bootstrap resamples behind every AUC interval")
    train_config: str = Field("configs/demo.yaml", description="pretraining config")
    train_overrides: list[str] = Field(default_factory=list, description="key=value for the train config")
    val_tasks: list[str] = Field(default_factory=lambda: ["ptbxl_super_class", "icbeb"],
                                 description="zero-shot validation tasks scored each epoch")
    lead_set_tasks: list[str] = Field(default_factory=lambda: ["ptbxl_rhythm", "ptbxl_super_class"],
                                      description="tasks scored with reduced lead sets (the model trains with "
                                                  "data.lead_dropout from the train config); [] = none")
    lead_sets: str = Field("12,limb6,I+II,I,II", description="lead sets of the reduced-lead table")
    reference_prompts: str | None = Field(
        "auto", description="the paper's released prompt file ({label: prompt}) for a third evaluation; "
                            "auto = ../shared/reference/merl_ckepe_prompt.json if it exists; null = none",
    )


REFERENCE_PROMPTS = Path("..") / "shared" / "reference" / "merl_ckepe_prompt.json"


def reference_prompts_path(cfg: DemoConfig, cwd: Path | None = None) -> Path | None:
    """The paper's prompt file the demo evaluates with, or None (the column is left out).

    ``auto`` looks for :data:`REFERENCE_PROMPTS` beside the working directory, then beside
    the source checkout; a path given explicitly must exist.
    """
    if not cfg.reference_prompts:
        return None
    if cfg.reference_prompts != "auto":
        p = Path(cfg.reference_prompts)
        if not p.is_file():
            raise FileNotFoundError(f"reference prompts file {p} not found")
        return p.resolve()
    for base in (cwd or Path.cwd(), Path(__file__).resolve().parents[1]):
        if (base / REFERENCE_PROMPTS).is_file():
            return (base / REFERENCE_PROMPTS).resolve()
    return None


TASK_DATASET = {name: t.source for name, t in TASKS.items()}


@dataclass
class Step:
    name: str
    argv: list[str]
    done_when: Path | None = None  # skip if this path exists
    seconds: float = 0.0
    skipped: bool = False
    extra: dict = field(default_factory=dict)


def seed_dirs(cfg: DemoConfig, out: Path) -> dict[int, Path]:
    """Seed -> its run folder: ``out`` itself for a single seed, else ``out/seed<N>``."""
    seeds = [cfg.seed + k for k in range(cfg.seeds)]
    return {s: out if cfg.seeds == 1 else out / f"seed{s}" for s in seeds}


def shared_steps(out: Path) -> list[Step]:
    """Knowledge index and CKEPE prompts: deterministic, shared by every seed."""
    index = out / "knowledge_index"
    steps = [Step("knowledge build", ["knowledge", "build", "--out", str(index)], done_when=index)]
    prompts_dir = out / "prompts"
    for task in TASKS:
        steps.append(Step(f"prompts {task}", ["prompts", "--task", task, "--index", str(index),
                                              "--out", str(prompts_dir / f"{task}.json")],
                          done_when=prompts_dir / f"{task}.json"))
    steps.append(Step("merge prompts", [], done_when=prompts_dir / "all.json", extra={"merge": str(prompts_dir)}))
    return steps


def pretrain_steps(cfg: DemoConfig, out: Path, prompts: Path, seed: int) -> list[Step]:
    """Synthesise the four corpora, ingest them, pretrain (Ray Train) and export: the demo's
    model from synthetic data only, in ``out/model`` (``bench sim2real`` reuses this)."""
    raw, shards = out / "raw", out / "shards"
    steps: list[Step] = []
    sizes = {"mimic": cfg.n_mimic, "ptbxl": cfg.n_ptbxl, "cpsc2018": cfg.n_cpsc2018, "csn": cfg.n_csn}
    for i, (layout, n) in enumerate(sizes.items()):
        steps.append(Step(f"synth {layout}", ["data", "synth", "--layout", layout, "--out", str(raw / layout),
                                              "--n", str(n), "--seed", str(100 * seed + i)],
                          done_when=raw / layout / "synthetic.json"))
    for layout in sizes:
        steps.append(Step(f"prepare {layout}", ["data", "prepare", "--dataset", layout, "--root", str(raw / layout),
                                                "--out", str(shards / layout)],
                          done_when=shards / layout / "manifest.json"))
    eval_shards = {t: str(shards / TASK_DATASET[t]) for t in cfg.val_tasks}
    train_args = [
        "train", "--config", cfg.train_config, "--name", "merl-demo",
        f"data.train_shards={shards / 'mimic'}",
        f"checkpoint.storage_path={out / 'runs'}",
        f"eval.tasks=[{','.join(cfg.val_tasks)}]",
        "eval.shards={" + ",".join(f"{k}: {v}" for k, v in eval_shards.items()) + "}",
        f"eval.prompts={prompts}",
        f"train.seed={42 + seed}",
        *cfg.train_overrides,
    ]
    steps.append(Step("train", train_args, done_when=out / "runs" / "merl-demo" / "result.json"))
    model = out / "model"
    steps.append(Step("export", ["export", "--run", str(out / "runs" / "merl-demo"), "--out", str(model)],
                      done_when=model / "train_config.json"))
    return steps


def plan(cfg: DemoConfig, out: Path) -> list[Step]:
    """Every step of the demo: shared prompts, then per seed: corpus, pretraining, export, the
    untrained control, and one evaluation of each model with every prompt set (paired)."""
    steps = shared_steps(out)
    prompts = out / "prompts" / "all.json"
    reference = reference_prompts_path(cfg)
    compare = "compare_prompts={names: null" + (f", reference: {reference}" if reference is not None else "") + "}"
    multi = cfg.seeds > 1
    for seed, run_dir in seed_dirs(cfg, out).items():
        tag = f" [seed {seed}]" if multi else ""
        seed_steps = pretrain_steps(cfg, run_dir, prompts, seed)
        shards = run_dir / "shards"
        task_args = [a for t in TASKS for a in ("--task", f"{t}={shards / TASK_DATASET[t]}")]
        untrained = run_dir / "model_untrained"
        seed_steps.append(Step("export untrained control", [
            "export", "--run", str(run_dir / "runs" / "merl-demo"), "--untrained", "--seed", str(seed),
            "--out", str(untrained)], done_when=untrained / "train_config.json"))
        for name, model, folder in (("evaluate (CKEPE vs class names" + (" vs paper's prompts)" if reference else ")"),
                                     run_dir / "model", run_dir / "eval"),
                                    ("evaluate untrained control", untrained, run_dir / "eval_untrained")):
            seed_steps.append(Step(name, ["evaluate", "--model", str(model), *task_args, "--prompts", str(prompts),
                                          "--out", str(folder), "prompts_name=ckepe", compare,
                                          f"n_boot={cfg.n_boot}", f"boot_seed={seed}"],
                                   done_when=folder / "results.json"))
        if cfg.lead_set_tasks:
            folder = run_dir / "eval_leads"
            lead_args = [a for t in cfg.lead_set_tasks for a in ("--task", f"{t}={shards / TASK_DATASET[t]}")]
            seed_steps.append(Step("evaluate by lead set", [
                "evaluate", "--model", str(run_dir / "model"), *lead_args, "--prompts", str(prompts),
                "--lead-sets", cfg.lead_sets, "--out", str(folder), f"n_boot={cfg.n_boot}", f"boot_seed={seed}"],
                done_when=folder / "results.json"))
        for s in seed_steps:
            s.name += tag
        steps += seed_steps
    return steps


def merge_prompts(prompts_dir: Path) -> Path:
    """{task: {label: prompt}} from the per-task files, the shape evaluation reads."""
    from merl.core.io import atomic_write_text

    merged = {t: json.loads((prompts_dir / f"{t}.json").read_text()) for t in TASKS}
    path = prompts_dir / "all.json"
    atomic_write_text(path, json.dumps(merged, indent=2))
    return path


def run_step(step: Step, cwd: Path, announce=lambda command: None) -> None:
    """Run one step unless its output exists; ``announce`` is shown the command first."""
    if step.done_when is not None and step.done_when.exists():
        step.skipped = True
        return
    t0 = time.perf_counter()
    if "merge" in step.extra:
        merge_prompts(Path(step.extra["merge"]))
    else:
        argv = [sys.executable, "-m", "merl", *step.argv]
        announce(f"merl {shlex.join(step.argv)}")
        res = subprocess.run(argv, cwd=cwd)
        if res.returncode != 0:
            raise RuntimeError(f"demo step '{step.name}' failed (exit {res.returncode}): merl {shlex.join(step.argv)}")
    step.seconds = time.perf_counter() - t0


# prompt set name (as `merl evaluate` reports it) -> table column
PROMPT_KINDS = {"ckepe": "CKEPE prompts (merl)", "names": "class names", "reference": "paper's CKEPE prompts"}


def summarize_run(run_dir: Path) -> dict:
    """One seed's results (synthetic data): per task and average, macro AUC with its interval
    per prompt set, for the pretrained model and the untrained control, and the paired
    CKEPE - class names difference of the average."""
    out: dict = {"data": "synthetic", "tasks": {}, "average": {}, "untrained": {}, "paired": {}}
    path = run_dir / "eval" / "results.json"
    if path.is_file():
        res = json.loads(path.read_text())
        for kind, ps in res.get("prompt_sets", {}).items():
            for task, v in ps["tasks"].items():
                out["tasks"].setdefault(task, {})[kind] = {"auc": v["macro_auc"], "ci": v["macro_auc_ci"],
                                                           "n": v["n_records"]}
            out["average"][kind] = {"auc": ps["average_auc"], "ci": ps["average_auc_ci"]}
        for d in res.get("paired", []):
            out["paired"][f"{d['a']}-{d['b']}:{d['task']}"] = {k: d[k] for k in ("diff", "ci", "p")}
    path = run_dir / "eval_leads" / "results.json"
    if path.is_file():
        out["lead_sets"] = json.loads(path.read_text()).get("lead_sets", [])
    path = run_dir / "eval_untrained" / "results.json"
    if path.is_file():
        res = json.loads(path.read_text())
        for kind, ps in res.get("prompt_sets", {}).items():
            out["untrained"][kind] = {"auc": ps["average_auc"], "ci": ps["average_auc_ci"],
                                      "tasks": {t: v["macro_auc"] for t, v in ps["tasks"].items()}}
    return out


def spread(values: list) -> dict:
    """mean, sd (n-1), min, max of the finite values; n counts them."""
    import math

    import numpy as np

    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def summarize(cfg: DemoConfig, out: Path) -> dict:
    """Every seed's results and their spread across seeds (synthetic data)."""
    runs = {seed: summarize_run(d) for seed, d in seed_dirs(cfg, out).items()}
    kinds = [k for k in PROMPT_KINDS if any(k in r["average"] for r in runs.values())]
    tasks = list(dict.fromkeys(t for r in runs.values() for t in r["tasks"]))
    across: dict = {"tasks": {}, "average": {}, "untrained": {}, "ckepe_minus_names": {}}
    for task in tasks:
        across["tasks"][task] = {k: spread([r["tasks"].get(task, {}).get(k, {}).get("auc") for r in runs.values()])
                                 for k in kinds}
    for k in kinds:
        across["average"][k] = spread([r["average"].get(k, {}).get("auc") for r in runs.values()])
        across["untrained"][k] = spread([r["untrained"].get(k, {}).get("auc") for r in runs.values()])
    diffs = [r["paired"].get("ckepe-names:average", {}).get("diff") for r in runs.values()]
    across["ckepe_minus_names"] = {**spread(diffs), "seeds_ckepe_ge_names": sum(d is not None and d >= 0 for d in diffs)}
    return {"data": "synthetic", "seeds": {str(s): r for s, r in runs.items()}, "across_seeds": across,
            "kinds": kinds}
