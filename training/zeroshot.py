"""Zero-shot scoring: the one path from class prompts and ECGs to per-class scores.

Modelled on OpenCLIP's ``zero_shot_classifier``: each class prompt becomes a unit text
embedding (:func:`class_embeddings`), and an ECG's score for a class is the cosine
similarity of its unit embedding with that row, scaled by the learned logit scale when
logits are wanted (:func:`zero_shot_scores`). Training-time validation
(``val_zeroshot_auc``), ``merl evaluate`` and ``merl classify`` all score through these two
functions, so the metric that ranks checkpoints is the one reported after export.

:func:`score_split` scores one task's labelled records of a shard split against its class
prompts; metrics are the caller's (:mod:`merl.training.metrics`).
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

from merl.core.io import is_file, read_text
from merl.core.tasks import Task, get_task
from merl.training.data.synth.tables import csn_names
from merl.training.data.tasklabels import label_vocabulary, ptbxl_statements, published_name, split_labels
from merl.training.embed import EcgEmbeddings, embed_ecgs

if TYPE_CHECKING:
    import torch

    from merl.training.data.config import DataConfig

log = logging.getLogger(__name__)


DEFAULT_PROMPT_TOKENS = 512  # when neither the tokenizer nor the model states a maximum


def prompt_token_limit(model, tokenizer, max_tokens: int | None = None) -> int:
    """How many tokens of a class prompt are encoded: ``max_tokens`` if given, else the text
    model's maximum (the tokenizer's ``model_max_length`` capped at the model's
    ``max_position_embeddings``).

    Never the training-report limit ``data.max_text_tokens``: CKEPE prompts (a label's
    synonyms and descriptions) are longer than machine reports, and a cut prompt silently
    scores a different class description.
    """
    if max_tokens:
        return int(max_tokens)
    limits = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 100_000:  # unset = a huge sentinel
        limits.append(tok_max)
    config = getattr(getattr(getattr(model, "text_encoder", None), "model", None), "config", None)
    pos_max = getattr(config, "max_position_embeddings", None)
    if isinstance(pos_max, int) and pos_max > 0:
        limits.append(pos_max)
    return min(limits) if limits else DEFAULT_PROMPT_TOKENS


def prompt_token_counts(tokenizer, texts: Sequence[str]) -> list[int]:
    """Tokens per prompt, special tokens included, before any truncation."""
    return [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]


def truncated_prompts(tokenizer, texts: Sequence[str], limit: int) -> list[int]:
    """Positions of the prompts longer than ``limit`` tokens (they would be cut)."""
    return [i for i, n in enumerate(prompt_token_counts(tokenizer, texts)) if n > limit]


def class_embeddings(model, tokenizer, prompts: Mapping[str, str] | Sequence[str], max_tokens: int | None = None,
                     batch_size: int = 64) -> torch.Tensor:
    """Unit text embeddings [C, D] (float32, on the model's device) of the class prompts, in order.

    A mapping's values are the prompts. Prompts are encoded up to ``max_tokens``, by default
    the text model's maximum (:func:`prompt_token_limit`); a prompt still longer is cut and
    logged as a warning, never silently. Prompts are padded per batch only; the model is in
    eval mode for the call and restored after (the train loop calls this between epochs).
    """
    import torch

    names = list(prompts) if isinstance(prompts, Mapping) else None
    texts = list(prompts.values()) if isinstance(prompts, Mapping) else list(prompts)
    limit = prompt_token_limit(model, tokenizer, max_tokens)
    cut = truncated_prompts(tokenizer, texts, limit)
    if cut:
        which = [names[i] if names else texts[i][:40] for i in cut]
        log.warning("%d of %d class prompts are longer than %d tokens and were cut: %s", len(cut), len(texts),
                    limit, which)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tok = tokenizer(texts[i: i + batch_size], padding=True, truncation=True, max_length=limit,
                                return_tensors="pt")
                out.append(model.encode_text(tok["input_ids"].to(device), tok["attention_mask"].to(device),
                                             normalize=True))
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros((0, 0))


def zero_shot_scores(ecg_emb: torch.Tensor, class_emb: torch.Tensor,
                     logit_scale: torch.Tensor | float | None = None) -> torch.Tensor:
    """[N, C] scores of unit ECG rows against unit class rows, on ``ecg_emb``'s device.

    Without ``logit_scale``: cosine similarities (what the AUCs rank). With it (the model's
    exponentiated, clamped scale): the logits a softmax over classes turns into probabilities.
    """
    scores = ecg_emb.float() @ class_emb.to(ecg_emb.device).float().t()
    return scores if logit_scale is None else logit_scale * scores


# Task keys a prompts file may use besides the task names (lower case, "-" and " " as "_").
TASK_ALIASES: dict[str, str] = {
    "cpsc2018": "icbeb", "cpsc": "icbeb", "csn": "chapman", "chapman_shaoxing_ningbo": "chapman",
    "ptbxl_superclass": "ptbxl_super_class", "ptbxl_subclass": "ptbxl_sub_class",
    "super_class": "ptbxl_super_class", "sub_class": "ptbxl_sub_class", "form": "ptbxl_form", "rhythm": "ptbxl_rhythm",
}


def _task_of_key(key: str) -> str | None:
    from merl.core.tasks import TASKS

    k = str(key).strip().lower().replace("-", "_").replace(" ", "_")
    return k if k in TASKS else TASK_ALIASES.get(k)


def _label_key(code: str) -> str:
    return published_name(str(code)).upper()


def map_prompt_labels(entries: Mapping[str, str], task: Task, *, strict: bool, where: str) -> dict[str, str]:
    """A file's ``{key: prompt}`` -> ``{task label: prompt}``: keys match labels exactly, without
    the SCP table's underscores (``NST_``) or case-insensitively.

    ``strict`` (the file's section for this task): every key must be one of the task's
    labels. Otherwise (a flat file covering several tasks) keys of other tasks are skipped,
    but a key that is no known code at all (:func:`label_vocabulary`) is an error, since it
    is a typo or a foreign label set whose prompt would silently go unused.
    """
    from merl.core.config import ConfigError

    by_key = {_label_key(lab): lab for lab in task.labels}
    known = {_label_key(c) for c in label_vocabulary()}
    published = {_label_key(lab) for lab in get_task(task.name).labels}  # a Task with its own labels skips these
    out: dict[str, str] = {}
    unknown = []
    for key, prompt in entries.items():
        lab = by_key.get(_label_key(key))
        if lab is not None:
            out[lab] = str(prompt)
        elif (strict and _label_key(key) not in published) or (not strict and _label_key(key) not in known):
            unknown.append(str(key))
    if unknown:
        scope = f"labels of {task.name}" if strict else "labels of any task or PTB-XL/CPSC2018/CSN codes"
        raise ConfigError(f"{where}: unknown label(s) {unknown}: not {scope}. {task.name} labels: "
                          f"{', '.join(task.labels)}")
    return out


def load_prompts(path: str | Path, task_name: str | Task | None = None) -> dict[str, str]:
    """Read a prompts JSON (local path or URI): ``{label: prompt}`` (one file for every task, as `merl prompts` and the
    reference's CKEPE file are) or ``{task: {label: prompt}}``.

    With ``task_name``: that task's prompts, keyed by its labels (:func:`map_prompt_labels`;
    task keys may be aliases such as ``cpsc2018`` or ``csn``). Unknown task keys, unknown
    labels, and a file without a single prompt for the task are errors, never a silent
    fall-back to label names. Without: the flat mapping as is (``merl classify``'s classes).
    """
    from merl.core.config import ConfigError

    p = str(path)
    if not is_file(p):
        raise FileNotFoundError(f"prompts file not found: {p}")
    data = json.loads(read_text(p))
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a JSON object {{label: prompt}} or {{task: {{label: prompt}}}}")
    nested = {k: v for k, v in data.items() if isinstance(v, dict)}
    flat = {k: v for k, v in data.items() if isinstance(v, str)}
    if len(nested) + len(flat) != len(data) or (nested and flat):
        raise ConfigError(f"{p}: expected {{label: prompt}} or {{task: {{label: prompt}}}} with string prompts, "
                          "not a mix")
    if task_name is None:
        if nested:
            raise ConfigError(f"{p} holds prompts per task ({', '.join(nested)}): say which task")
        return {str(k): str(v) for k, v in flat.items()}
    task = task_name if isinstance(task_name, Task) else get_task(task_name)  # a Task: its own label set
    task_name = task.name
    if nested:
        tasks = {k: _task_of_key(k) for k in nested}
        bad = [k for k, t in tasks.items() if t is None]
        if bad:
            from merl.core.tasks import TASKS

            raise ConfigError(f"{p}: unknown task(s) {bad}; known: {', '.join(TASKS)} "
                              f"(or {', '.join(TASK_ALIASES)})")
        mine = [k for k, t in tasks.items() if t == task_name]
        if not mine:
            raise ConfigError(f"{p} has prompts for {', '.join(nested)} but none for {task_name}")
        out: dict[str, str] = {}
        for k in mine:
            out.update(map_prompt_labels(nested[k], task, strict=True, where=f"{p} [{k}]"))
        return out
    out = map_prompt_labels(flat, task, strict=False, where=str(p))
    if not out:
        raise ConfigError(f"{p}: no prompt for any {task_name} label ({', '.join(task.labels)})")
    return out


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
    """Label -> its preferred name (knowledge base), the SCP statement description, the CSN
    condition's full name, or the code."""
    names = dict(_knowledge_names(task))
    statements = ptbxl_statements() if task.ontology == "scp" else {}
    csn = csn_names() if task.source == "csn" else {}
    out = {}
    for lab in task.labels:
        if lab in names:
            out[lab] = names[lab]
        elif lab in statements:
            out[lab] = statements[lab].description
        elif lab in csn:
            out[lab] = csn[lab]
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


@dataclass
class SplitScores:
    """One task's labelled records of a split, scored against the task's class prompts."""

    task: str
    split: str
    ids: np.ndarray  # (n,) record ids, sorted
    labels: list[str]  # the task's kept labels, in its published order
    y: np.ndarray  # (n, C) uint8
    scores: np.ndarray  # (n, C) cosine similarities
    prompts: dict[str, str]  # label -> prompt used
    dropped: dict[str, int]  # labels below the task's minimum record count
    prompt_limit: int = 0  # tokens of each prompt encoded
    truncated: list[str] = field(default_factory=list)  # labels whose prompt was longer and cut
    defaulted: list[str] = field(default_factory=list)  # labels prompts were given for but not this one


def score_split(
    model,
    tokenizer,
    task_name: str | Task,
    shards_dir: str,
    data_cfg: DataConfig,
    prompts: Mapping[str, str] | None = None,
    split: str = "val",
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = False,
    max_prompt_tokens: int | None = None,
    min_records: int | None = None,
    ecg_cache: dict | None = None,
    leads: np.ndarray | None = None,
) -> SplitScores:
    """Embed the task's labelled ``split`` records and score them against its class prompts.

    ``model`` is an (unwrapped) ``MERLModel``; it is moved to ``device`` if given and left
    in the train/eval mode it came in. A split without labelled records scores nothing.
    Prompts are encoded up to ``max_prompt_tokens`` (default: the text model's maximum),
    not ``data_cfg.max_text_tokens`` (the training reports' limit); cut ones are listed in
    ``truncated``. ``task_name`` may be a :class:`Task` with its own label set
    (:func:`~merl.training.data.tasklabels.task_with_labels`); ``split`` ``all`` scores every
    record; ``min_records`` overrides the task's minimum positives per label. ``ecg_cache``
    (a dict the caller keeps for one model) embeds each folder's split once and reuses it for
    every task and prompt set scored on it. ``leads`` ((12,) bool, canonical order): score
    every record with only these of its leads (reduced-lead evaluation).
    """
    import torch

    task = task_name if isinstance(task_name, Task) else get_task(task_name)
    task_name = task.name
    sl = split_labels(task, shards_dir, split, min_records)
    labels = list(sl.matrix.labels)
    prompt_map = resolve_prompts(task, labels, prompts)
    given = {published_name(k) for k in (prompts or {})}
    defaulted = [lab for lab in labels if lab not in given] if prompts else []
    limit = prompt_token_limit(model, tokenizer, max_prompt_tokens)
    cut = [labels[i] for i in truncated_prompts(tokenizer, [prompt_map[lab] for lab in labels], limit)]
    if len(sl.ids) == 0 or not labels:
        log.warning("%s: no %s records carry a task label in %s", task_name, split, shards_dir)
        empty = np.zeros((0, len(labels)))
        return SplitScores(task_name, split, sl.ids, labels, empty.astype(np.uint8), empty, prompt_map,
                           sl.matrix.dropped, limit, cut, defaulted)
    if device is not None:
        model.to(device)
    text = class_embeddings(model, tokenizer, {lab: prompt_map[lab] for lab in labels}, limit)
    if ecg_cache is None:
        ecg = embed_ecgs(model, shards_dir, split, data_cfg, ids=list(sl.ids), batch_size=batch_size,
                         progress=progress, leads=leads)
    else:
        every = leads is None or bool(np.all(leads))  # all 12 leads: the records as they are
        key = (str(shards_dir), split, None if every else tuple(bool(x) for x in leads))
        if key not in ecg_cache:
            ecg_cache[key] = embed_ecgs(model, shards_dir, split, data_cfg, batch_size=batch_size, progress=progress,
                                        leads=leads)
        whole = ecg_cache[key]
        pos = np.clip(np.searchsorted(whole.ids, sl.ids), 0, max(len(whole.ids) - 1, 0))
        ecg = EcgEmbeddings(whole.ids[pos], whole.emb[pos]) if len(whole.ids) else whole
    if len(ecg.ids) != len(sl.ids) or not np.array_equal(ecg.ids, sl.ids):
        raise RuntimeError(f"{shards_dir}: read {len(ecg.ids)} signals for {len(sl.ids)} labelled {split} records")
    scores = zero_shot_scores(torch.from_numpy(ecg.emb), text).cpu().numpy()
    return SplitScores(task_name, split, sl.ids, labels, sl.matrix.y, scores, prompt_map, sl.matrix.dropped,
                       limit, cut, defaulted)
