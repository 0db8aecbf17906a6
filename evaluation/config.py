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
    split: str = Field("test", description="split scored zero-shot")
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

    @field_validator("probe_fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        bad = [f for f in v if not 0 < f <= 1]
        if bad:
            raise ValueError(f"fractions must be in (0, 1], got {bad}")
        return v
