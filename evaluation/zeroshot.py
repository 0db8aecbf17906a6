"""Zero-shot benchmark results: per-class and macro metrics of one task on one split.

Scoring is :func:`merl.training.zeroshot.score_split` (the same path the train loop
validates with): cosine similarity of unit ECG and class-prompt embeddings. This module
adds what a report needs: per-class ROC AUC, best F1 and accuracy at the best-F1 threshold
(:mod:`merl.training.metrics`) and whether the data is synthetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from merl.core.io import is_file
from merl.core.uri import join
from merl.training.data.manifest import read_manifest

if TYPE_CHECKING:
    from merl.training.data.config import DataConfig
    from merl.training.metrics import AucBootstrap

@dataclass
class ZeroShotResult:
    task: str
    split: str
    n_records: int
    labels: list[str]
    per_class: dict[str, dict]  # label -> {auc, f1, acc, threshold, n_pos, n} (percent; NaN = degenerate)
    macro_auc: float
    macro_f1: float
    macro_acc: float
    excluded: list[str]  # degenerate classes (single label value) left out of the macro means
    dropped_labels: dict[str, int]  # labels below the task's minimum record count
    prompts: dict[str, str]
    synthetic: bool
    scores: np.ndarray = field(repr=False)  # (n_records, n_labels) cosine similarities
    y_true: np.ndarray = field(repr=False)  # (n_records, n_labels) 0/1
    prompt_token_limit: int = 0  # tokens of each prompt encoded
    truncated_prompts: list[str] = field(default_factory=list)  # labels whose prompt was cut to that limit
    defaulted_prompts: list[str] = field(default_factory=list)  # labels the prompts file had no prompt for
    macro_auc_ci: tuple[float, float] = (float("nan"), float("nan"))  # bootstrap percentile interval
    n_boot: int = 0  # bootstrap resamples of the records (0 = no intervals)
    ci_level: float = 0.95
    boot_seed: int = 0  # seed of this task's resamples (the same for every prompt set: paired)
    boot: AucBootstrap | None = field(default=None, repr=False)  # the draws, for averages and paired tests

    def summary(self) -> dict:
        """JSON-ready dict without the score / label arrays."""
        return {
            "task": self.task, "split": self.split, "n_records": self.n_records,
            "synthetic": self.synthetic, "macro_auc": self.macro_auc, "macro_auc_ci": list(self.macro_auc_ci),
            "n_boot": self.n_boot, "ci_level": self.ci_level, "boot_seed": self.boot_seed, "macro_f1": self.macro_f1,
            "macro_acc": self.macro_acc, "excluded": self.excluded, "dropped_labels": self.dropped_labels,
            "per_class": self.per_class, "prompts": self.prompts,
            "prompt_token_limit": self.prompt_token_limit, "truncated_prompts": self.truncated_prompts,
            "defaulted_prompts": self.defaulted_prompts,
        }


def is_synthetic(shards_dir: str) -> bool:
    """Shards of the synthetic corpus: the manifest says so, or the source folder it was
    prepared from carries the generator's ``synthetic.json`` marker."""
    m = read_manifest(shards_dir)
    if "synth" in m.dataset.lower() or m.config.get("synthetic"):
        return True
    root = m.config.get("root")
    return bool(root) and is_file(join(root, "synthetic.json"))


def evaluate_zeroshot(
    model,
    tokenizer,
    task_name: str,
    shards_dir: str,
    data_cfg: DataConfig,
    prompts: Mapping[str, str] | None = None,
    split: str = "val",
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = False,
    max_prompt_tokens: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
    task=None,
    min_records: int | None = None,
    ecg_cache: dict | None = None,
    leads: np.ndarray | None = None,
) -> ZeroShotResult:
    """Zero-shot metrics of ``model`` on one task's ``split`` of ``shards_dir``.

    ``model`` is an (unwrapped) ``MERLModel``; it is moved to ``device`` and left in the
    train/eval mode it came in. Prompts are encoded up to ``max_prompt_tokens`` (default:
    the text model's maximum); the labels whose prompt was still cut are recorded.

    Every AUC gets a bootstrap ``ci_level`` interval from ``n_boot`` resamples of the records
    (:func:`merl.training.metrics.bootstrap_aucs`), seeded by ``seed`` and the task name, so two
    prompt sets scored on the same records share their resamples (a paired comparison).
    ``task`` (a :class:`~merl.core.tasks.Task`) and ``min_records`` override the published
    label set and minimum count, and ``ecg_cache`` embeds each split once for several calls
    (:func:`merl.training.zeroshot.score_split`). ``leads`` ((12,) bool, canonical order): only these leads of every
    record are used.
    """
    from merl.training.metrics import bootstrap_aucs, resample_counts, task_metrics, task_seed
    from merl.training.zeroshot import score_split

    s = score_split(model, tokenizer, task if task is not None else task_name, shards_dir, data_cfg,
                    prompts=prompts, split=split, batch_size=batch_size, device=device, progress=progress,
                    max_prompt_tokens=max_prompt_tokens, min_records=min_records, ecg_cache=ecg_cache, leads=leads)
    synthetic = is_synthetic(shards_dir)
    if len(s.ids) == 0 or not s.labels:
        nan = float("nan")
        return ZeroShotResult(task_name, split, 0, s.labels, {}, nan, nan, nan, list(s.labels),
                              s.dropped, s.prompts, synthetic, s.scores, s.y, s.prompt_limit, s.truncated, s.defaulted)
    tm = task_metrics(s.y, s.scores, s.labels)
    boot_seed = task_seed(seed, task_name)
    boot = bootstrap_aucs(s.y, s.scores, s.labels, resample_counts(len(s.ids), n_boot, boot_seed), ci_level)
    per_class = {lab: {**m.as_dict(), "auc_ci": list(boot.class_interval(lab))} for lab, m in tm.per_class.items()}
    return ZeroShotResult(
        task=task_name, split=split, n_records=len(s.ids), labels=list(s.labels),
        per_class=per_class,
        macro_auc=tm.macro_auc, macro_f1=tm.macro_f1, macro_acc=tm.macro_acc,
        excluded=list(tm.excluded), dropped_labels=s.dropped, prompts=s.prompts,
        synthetic=synthetic, scores=s.scores, y_true=s.y, prompt_token_limit=s.prompt_limit,
        truncated_prompts=s.truncated, defaulted_prompts=s.defaulted,
        macro_auc_ci=boot.macro_interval(), n_boot=n_boot, ci_level=ci_level, boot_seed=boot_seed, boot=boot,
    )

