"""Zero-shot classification: cosine similarity of ECG and class-prompt embeddings.

As in MERL: class text embedding = projected, L2-normalised embedding of the class prompt;
ECG embedding = projected, L2-normalised; score = cosine similarity; then per-class ROC AUC,
best F1 and accuracy at the best-F1 threshold (:mod:`merl.evaluation.metrics`).

The train loop calls :func:`evaluate_zeroshot` each epoch (metric ``val_zeroshot_auc``);
``merl evaluate`` calls it on the test split.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from merl.core.config import ConfigError
from merl.core.tasks import Task, get_task
from merl.core.uri import is_uri, local_path
from merl.evaluation.labels import LabelMatrix, kept_labels, label_matrix, ptbxl_statements, published_name
from merl.evaluation.metrics import task_metrics
from merl.training.data.manifest import read_manifest

if TYPE_CHECKING:
    from merl.training.data.config import DataConfig

log = logging.getLogger(__name__)


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

    def summary(self) -> dict:
        """JSON-ready dict without the score / label arrays."""
        return {
            "task": self.task, "split": self.split, "n_records": self.n_records,
            "synthetic": self.synthetic, "macro_auc": self.macro_auc, "macro_f1": self.macro_f1,
            "macro_acc": self.macro_acc, "excluded": self.excluded, "dropped_labels": self.dropped_labels,
            "per_class": self.per_class, "prompts": self.prompts,
        }


def is_synthetic(shards_dir: str) -> bool:
    """Shards of the synthetic corpus: the manifest says so, or the source folder it was
    prepared from carries the generator's ``synthetic.json`` marker."""
    m = read_manifest(shards_dir)
    if "synth" in m.dataset.lower() or m.config.get("synthetic"):
        return True
    root = m.config.get("root")
    return bool(root) and not is_uri(root) and (Path(local_path(root)) / "synthetic.json").is_file()


@dataclass
class SplitLabels:
    ids: np.ndarray  # (n,) record ids of the kept records, sorted
    matrix: LabelMatrix


def split_labels(task: Task, shards_dir: str, split: str) -> SplitLabels:
    """The task's label matrix for one split (rare labels counted over the whole folder)."""
    from merl.evaluation.embed import read_label_table

    table = read_label_table(shards_dir)
    sources = set(table.column("source").unique().to_pylist())
    if table.num_rows and task.source not in sources:
        raise ConfigError(f"task {task.name} reads {task.source} records, but {shards_dir} holds "
                         f"{', '.join(sorted(sources))} records; pass the {task.source} shard folder")
    codes_all = table.column("labels").to_pylist()
    kept, dropped = kept_labels(task, codes_all)
    splits = np.array(table.column("split").to_pylist(), dtype=object)
    ids = np.array(table.column("id").to_pylist(), dtype=object)
    in_split = np.flatnonzero(splits == split)
    order = in_split[np.argsort(ids[in_split], kind="stable")]
    lm = label_matrix(task, [codes_all[i] for i in order], kept)
    lm.dropped = dropped
    return SplitLabels(ids[order][lm.rows], lm)


def load_prompts(path: str | Path, task_name: str | None = None) -> dict[str, str]:
    """A prompts JSON: ``{label: prompt}`` or ``{task: {label: prompt}}`` (then ``task_name``'s)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prompts file not found: {p}")
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a JSON object {{label: prompt}}")
    if task_name and isinstance(data.get(task_name), dict):
        data = data[task_name]
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


@cache
def _knowledge_names(task: Task) -> dict[str, str]:
    """Preferred names from the knowledge base, if it is installed and resolves the labels
    (cached: the train loop asks every epoch)."""
    try:
        from merl.knowledge.kb import load_entries

        kb = load_entries()
    except Exception as e:  # noqa: BLE001 - optional dependency: any failure means "no names"
        log.debug("knowledge base unavailable for default prompts: %s", e)
        return {}
    out = {}
    for lab in task.labels:
        try:
            out[lab] = kb.resolve(lab, task.ontology).name
        except Exception:  # noqa: BLE001 - a label the knowledge base cannot name keeps its code
            continue
    return out


def default_prompts(task: Task) -> dict[str, str]:
    """Label -> its preferred name (knowledge base), the SCP statement description, or the code."""
    names = dict(_knowledge_names(task))
    statements = ptbxl_statements() if task.ontology == "scp" else {}
    out = {}
    for lab in task.labels:
        if lab in names:
            out[lab] = names[lab]
        elif lab in statements:
            out[lab] = statements[lab].description
        else:
            out[lab] = lab
    return out


def resolve_prompts(task: Task, labels: Sequence[str], prompts: Mapping[str, str] | None) -> dict[str, str]:
    """One prompt per label: the given prompt (``NST`` also found as ``NST_``), else the default."""
    defaults = default_prompts(task)
    given = {published_name(k): v for k, v in (prompts or {}).items()}
    missing = [lab for lab in labels if lab not in given]
    if prompts and missing:
        log.warning("%s: no prompt for %s; using the default (label name)", task.name, missing)
    return {lab: given.get(lab, defaults[lab]) for lab in labels}


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
) -> ZeroShotResult:
    """Zero-shot metrics of ``model`` on one task's ``split`` of ``shards_dir``.

    ``model`` is an (unwrapped) ``MERLModel``; it is moved to ``device`` and left in the
    train/eval mode it came in.
    """
    from merl.evaluation.embed import embed_ecgs, embed_texts

    task = get_task(task_name)
    sl = split_labels(task, shards_dir, split)
    labels = sl.matrix.labels
    synthetic = is_synthetic(shards_dir)
    prompt_map = resolve_prompts(task, labels, prompts)
    if len(sl.ids) == 0 or not labels:
        log.warning("%s: no %s records carry a task label in %s", task_name, split, shards_dir)
        empty = np.zeros((0, len(labels)))
        nan = float("nan")
        return ZeroShotResult(task_name, split, 0, labels, {}, nan, nan, nan, list(labels),
                              sl.matrix.dropped, prompt_map, synthetic, empty, empty.astype(np.uint8))
    model.to(device)
    text = embed_texts(model, tokenizer, [prompt_map[lab] for lab in labels], data_cfg.max_text_tokens)
    ecg = embed_ecgs(model, shards_dir, split, data_cfg, ids=list(sl.ids), batch_size=batch_size,
                     progress=progress)
    if len(ecg.ids) != len(sl.ids) or not np.array_equal(ecg.ids, sl.ids):
        raise RuntimeError(f"{shards_dir}: read {len(ecg.ids)} signals for {len(sl.ids)} labelled {split} records")
    scores = ecg.emb @ text.T
    tm = task_metrics(sl.matrix.y, scores, labels)
    return ZeroShotResult(
        task=task_name, split=split, n_records=len(sl.ids), labels=list(labels),
        per_class={lab: m.as_dict() for lab, m in tm.per_class.items()},
        macro_auc=tm.macro_auc, macro_f1=tm.macro_f1, macro_acc=tm.macro_acc,
        excluded=list(tm.excluded), dropped_labels=sl.matrix.dropped, prompts=prompt_map,
        synthetic=synthetic, scores=scores, y_true=sl.matrix.y,
    )
