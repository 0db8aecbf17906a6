"""``merl evaluate`` config (YAML or flags): what to evaluate, on which shards, where to write."""

from __future__ import annotations

from pydantic import Field, field_validator

from merl.core.config import StrictModel
from merl.core.tasks import TASKS
from merl.evaluation.linear_probe import DEFAULT_FRACTIONS


class EvalConfig(StrictModel):
    model: str = Field(description="export bundle directory (`merl export` / training output)")
    tasks: dict[str, str] = Field(description="task name -> prepared shard folder (with manifest.json)")
    prompts: str | None = Field(None, description="prompts JSON {label: prompt} or {task: {label: prompt}}; "
                                                  "default: each label's preferred name")
    split: str = Field("test", description="split scored zero-shot; `all` = every record of the folder "
                                           "(e.g. a prepared folder of real records without splits)")
    prompts_name: str | None = Field(None, description="name of the `prompts` set in comparisons; default: "
                                                       "the file's stem, or `class_names` without a file")
    compare_prompts: dict[str, str | None] = Field(
        default_factory=dict, description="more prompt sets scored on the same records, name -> prompts JSON "
                                          "(null = class names); each pair of sets gets a paired bootstrap test")
    labels: dict[str, list[str]] = Field(
        default_factory=dict, description="task -> labels scored instead of its published set (CSN tasks: any "
                                          "CSN condition acronym, e.g. {chapman: [SR, ST, SB]})")
    min_records: int | None = Field(None, ge=1, description="minimum positive records for a label to be scored; "
                                                            "default: the benchmark's (10 for chapman, else 1)")
    n_boot: int = Field(1000, ge=0, description="bootstrap resamples of the records for every AUC interval "
                                                "(0 = no intervals)")
    ci_level: float = Field(0.95, gt=0, lt=1, description="confidence level of the intervals")
    boot_seed: int = Field(0, description="seed of the bootstrap resamples (per task: the same for every "
                                          "prompt set, so comparisons are paired)")
    max_prompt_tokens: int | None = Field(
        None, ge=8, description="tokens of each class prompt encoded; default: the text model's maximum "
                                "(a prompt still longer is cut, logged and counted in results.json)",
    )
    batch_size: int = Field(64, ge=1)
    device: str = Field("cpu", description="torch device, e.g. cpu, cuda, cuda:1")
    linear_probe: bool = Field(False, description="also linear-probe the frozen ECG encoder")
    probe_fractions: list[float] = Field(list(DEFAULT_FRACTIONS), description="train fractions for probing")
    probe_train_split: str = "train"
    seed: int = Field(42, description="seed of the probing subsamples")
    out: str = Field("runs/eval", description="output folder: results.json, plots/")
    plots: bool = Field(True, description="write ROC curve and per-class AUC PNGs")
    leads: str | None = Field(None, description="score with only these leads of every record, e.g. 'I,II,V1' "
                                                "(default: every lead a record has)")
    lead_sets: list[str] = Field(
        default_factory=list,
        description="also score zero-shot with each lead set: 12, limb6, chest6, or names joined by + (I+II); "
                    "results.json lead_sets, a table and plots/lead_sets.png",
    )

    @field_validator("leads")
    @classmethod
    def _leads(cls, v: str | None) -> str | None:
        from merl.training.data.canonical import parse_leads

        return ",".join(parse_leads(v)) if v else None

    @field_validator("lead_sets", mode="before")
    @classmethod
    def _lead_sets(cls, v):
        from merl.evaluation.leadsets import parse_lead_sets

        items = v.split(",") if isinstance(v, str) else list(v or [])
        return [label for label, _ in parse_lead_sets(items)]

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = [t for t in v if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
        if not v:
            raise ValueError("at least one task is required")
        return v

    @field_validator("compare_prompts")
    @classmethod
    def _set_names(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        return {str(k): (None if p in (None, "", "none", "names", "class_names") else p) for k, p in v.items()}

    def main_prompts_name(self) -> str:
        from pathlib import Path

        if self.prompts_name:
            return self.prompts_name
        return Path(self.prompts).stem if self.prompts else "class_names"

    @field_validator("probe_fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        bad = [f for f in v if not 0 < f <= 1]
        if bad:
            raise ValueError(f"fractions must be in (0, 1], got {bad}")
        return v
