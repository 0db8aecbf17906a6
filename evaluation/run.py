"""One evaluation run from an :class:`EvalConfig`: load the bundle, score every task, write the report."""

from __future__ import annotations

import logging
from typing import Any

from merl.evaluation.config import EvalConfig
from merl.evaluation.report import EvalReport, write_report

log = logging.getLogger(__name__)


def run_evaluation(cfg: EvalConfig, model=None, tokenizer=None, data_cfg=None) -> tuple[EvalReport, dict[str, Any]]:
    """Zero-shot (and optionally linear-probe) every configured task; write ``cfg.out``.

    ``model`` / ``tokenizer`` / ``data_cfg`` default to the export bundle at ``cfg.model``
    (the data config is the one the model was trained with, so signals are prepared alike).
    With the bundle, the report says whether the run is comparable with the paper, from the
    bundle's config and the shards' manifests (:mod:`merl.evaluation.comparable`).
    Every AUC carries a bootstrap interval; with ``compare_prompts`` each further prompt set is
    scored on the same records and resamples, and every pair of sets is tested (paired bootstrap
    of the macro AUC difference, per task and for the average). Returns the report and the
    paths written.
    """
    from merl.core.io import exists, is_file
    from merl.core.tasks import get_task
    from merl.evaluation.linear_probe import evaluate_linear_probe
    from merl.evaluation.zeroshot import evaluate_zeroshot
    from merl.training.data.manifest import read_manifest
    from merl.training.data.tasklabels import task_with_labels
    from merl.training.zeroshot import load_prompts

    # fail fast, before loading the model, on a missing/unprepared folder
    manifests = {task: read_manifest(shards) for task, shards in cfg.tasks.items()}
    tasks = {t: task_with_labels(get_task(t), cfg.labels[t]) if t in cfg.labels else get_task(t) for t in cfg.tasks}
    sets = {cfg.main_prompts_name(): cfg.prompts, **cfg.compare_prompts}
    if len(sets) != 1 + len(cfg.compare_prompts):
        raise ValueError(f"compare_prompts names {list(cfg.compare_prompts)} repeat the main set's name "
                         f"{cfg.main_prompts_name()!r}")
    for path in sets.values():
        if path and not is_file(path):
            raise FileNotFoundError(f"prompts file not found: {path}")
    # every task's prompts mapped before the model loads: a label the file gets wrong fails fast
    set_prompts = {name: {t: load_prompts(path, tasks[t]) if path else None for t in cfg.tasks}
                   for name, path in sets.items()}
    bundle = None
    if model is None:
        from merl.training.export import load_bundle

        if not exists(cfg.model):
            raise FileNotFoundError(f"model bundle not found: {cfg.model} (train with `merl train`, then export)")

        bundle = load_bundle(cfg.model, cfg.device)
        model, tokenizer, data_cfg = bundle.model, bundle.tokenizer, bundle.config.data
    from merl.training.data.canonical import leads_mask

    only = leads_mask(cfg.leads.split(",")) if cfg.leads else None
    results: dict[str, list] = {name: [] for name in sets}
    probes = []
    ecg_cache: dict = {}  # each folder's split embedded once, for every task and prompt set on it
    for task, shards in cfg.tasks.items():
        for name in sets:
            log.info("zero-shot %s on %s (%s split), prompts: %s", task, shards, cfg.split, name)
            results[name].append(evaluate_zeroshot(
                model, tokenizer, task, shards, data_cfg, prompts=set_prompts[name][task], split=cfg.split,
                batch_size=cfg.batch_size, device=cfg.device, progress=True, max_prompt_tokens=cfg.max_prompt_tokens,
                n_boot=cfg.n_boot, seed=cfg.boot_seed, ci_level=cfg.ci_level, task=tasks[task],
                min_records=cfg.min_records, ecg_cache=ecg_cache, leads=only))
        if cfg.linear_probe:
            log.info("linear probe %s: fractions %s", task, cfg.probe_fractions)
            probes.append(evaluate_linear_probe(model, task, shards, data_cfg, cfg.probe_fractions, cfg.seed,
                                                cfg.batch_size, cfg.device, cfg.probe_train_split, cfg.split,
                                                n_boot=cfg.n_boot, boot_seed=cfg.boot_seed, ci_level=cfg.ci_level,
                                                task=tasks[task], min_records=cfg.min_records, leads=only))
    main = cfg.main_prompts_name()
    zeroshot = results.pop(main)
    report = EvalReport(zeroshot, probes, meta={"model": cfg.model, "config": cfg.model_dump(mode="json")},
                        prompts_name=main, prompt_files=sets, alternatives=results)
    if cfg.lead_sets:
        from merl.evaluation.leadsets import evaluate_lead_sets

        log.info("zero-shot by lead set: %s", ", ".join(cfg.lead_sets))
        report.lead_sets = evaluate_lead_sets(model, tokenizer, cfg.tasks, data_cfg, cfg.lead_sets,
                                              prompts=set_prompts[main], split=cfg.split, batch_size=cfg.batch_size,
                                              device=cfg.device, max_prompt_tokens=cfg.max_prompt_tokens,
                                              task_defs=tasks, n_boot=cfg.n_boot, seed=cfg.boot_seed,
                                              ci_level=cfg.ci_level, min_records=cfg.min_records, ecg_cache=ecg_cache)
    if bundle is not None:
        from merl.evaluation.comparable import RunFacts, paper_comparability

        report.paper_check = paper_comparability(RunFacts(
            bundle.config, bundle.text_model, bundle.info, manifests, cfg.split, cfg.prompts, zeroshot))
    return report, write_report(report, cfg.out, plots=cfg.plots)
