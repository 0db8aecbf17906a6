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

    n_mimic: int = Field(2400, ge=64, description="pretraining pairs (MIMIC-IV-ECG layout)")
    n_ptbxl: int = Field(1500, ge=50, description="PTB-XL layout records (4 PTB-XL tasks)")
    n_cpsc2018: int = Field(600, ge=50, description="CPSC2018 layout records (icbeb task)")
    n_csn: int = Field(1000, ge=50, description="CSN layout records (chapman task)")
    seed: int = 0
    train_config: str = Field("configs/demo.yaml", description="pretraining config")
    train_overrides: list[str] = Field(default_factory=list, description="key=value for the train config")
    val_tasks: list[str] = Field(default_factory=lambda: ["ptbxl_super_class", "icbeb"],
                                 description="zero-shot validation tasks scored each epoch")
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


def plan(cfg: DemoConfig, out: Path) -> list[Step]:
    raw, shards = out / "raw", out / "shards"
    steps: list[Step] = []
    sizes = {"mimic": cfg.n_mimic, "ptbxl": cfg.n_ptbxl, "cpsc2018": cfg.n_cpsc2018, "csn": cfg.n_csn}
    for i, (layout, n) in enumerate(sizes.items()):
        steps.append(Step(f"synth {layout}", ["data", "synth", "--layout", layout, "--out", str(raw / layout),
                                              "--n", str(n), "--seed", str(cfg.seed + i)],
                          done_when=raw / layout / "synthetic.json"))
    for layout in sizes:
        steps.append(Step(f"prepare {layout}", ["data", "prepare", "--dataset", layout, "--root", str(raw / layout),
                                                "--out", str(shards / layout)],
                          done_when=shards / layout / "manifest.json"))
    index = out / "knowledge_index"
    steps.append(Step("knowledge build", ["knowledge", "build", "--out", str(index)], done_when=index))
    prompts_dir = out / "prompts"
    for task in TASKS:
        steps.append(Step(f"prompts {task}", ["prompts", "--task", task, "--index", str(index),
                                              "--out", str(prompts_dir / f"{task}.json")],
                          done_when=prompts_dir / f"{task}.json"))
    eval_shards = {t: str(shards / TASK_DATASET[t]) for t in cfg.val_tasks}
    train_args = [
        "train", "--config", cfg.train_config, "--name", "merl-demo",
        f"data.train_shards={shards / 'mimic'}",
        f"checkpoint.storage_path={out / 'runs'}",
        f"eval.tasks=[{','.join(cfg.val_tasks)}]",
        "eval.shards={" + ",".join(f"{k}: {v}" for k, v in eval_shards.items()) + "}",
        f"eval.prompts={prompts_dir / 'all.json'}",
        *cfg.train_overrides,
    ]
    steps.append(Step("merge prompts", [], done_when=prompts_dir / "all.json", extra={"merge": str(prompts_dir)}))
    steps.append(Step("train", train_args, done_when=out / "runs" / "merl-demo" / "result.json"))
    model = out / "model"
    steps.append(Step("export", ["export", "--run", str(out / "runs" / "merl-demo"), "--out", str(model)],
                      done_when=model / "train_config.json"))
    task_args = [a for t in TASKS for a in ("--task", f"{t}={shards / TASK_DATASET[t]}")]
    steps.append(Step("evaluate (CKEPE prompts)", ["evaluate", "--model", str(model), *task_args,
                                                   "--prompts", str(prompts_dir / "all.json"),
                                                   "--out", str(out / "eval_ckepe")],
                      done_when=out / "eval_ckepe" / "results.json"))
    steps.append(Step("evaluate (class names)", ["evaluate", "--model", str(model), *task_args,
                                                 "--out", str(out / "eval_names")],
                      done_when=out / "eval_names" / "results.json"))
    reference = reference_prompts_path(cfg)
    if reference is not None:
        steps.append(Step("evaluate (paper's prompts)", ["evaluate", "--model", str(model), *task_args,
                                                          "--prompts", str(reference),
                                                          "--out", str(out / "eval_reference")],
                          done_when=out / "eval_reference" / "results.json"))
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


# summary key -> results folder suffix and table column
PROMPT_KINDS = {"ckepe": "CKEPE prompts (merl)", "names": "class names", "reference": "paper's CKEPE prompts"}


def summarize(out: Path) -> dict:
    """Average zero-shot AUC per prompt kind (this project's CKEPE prompts, class names, the
    paper's released prompts if evaluated), per task (synthetic data)."""
    summary: dict = {"data": "synthetic", "tasks": {}}
    for kind in PROMPT_KINDS:
        path = out / f"eval_{kind}" / "results.json"
        if not path.is_file():
            continue
        res = json.loads(path.read_text())
        for z in res.get("zeroshot", []):
            summary["tasks"].setdefault(z["task"], {})[kind] = z.get("macro_auc")
        summary[f"average_auc_{kind}"] = res.get("zeroshot_average_auc")
    return summary
