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
    Returns the report and the paths written.
    """
    from merl.core.io import exists, is_file
    from merl.evaluation.linear_probe import evaluate_linear_probe
    from merl.evaluation.zeroshot import evaluate_zeroshot
    from merl.training.data.manifest import read_manifest
    from merl.training.zeroshot import load_prompts

    # fail fast, before loading the model, on a missing/unprepared folder
    manifests = {task: read_manifest(shards) for task, shards in cfg.tasks.items()}
    if cfg.prompts and not is_file(cfg.prompts):
        raise FileNotFoundError(f"prompts file not found: {cfg.prompts}")
    # every task's prompts mapped before the model loads: a label the file gets wrong fails fast
    task_prompts = {t: load_prompts(cfg.prompts, t) if cfg.prompts else None for t in cfg.tasks}
    bundle = None
    if model is None:
        from merl.training.export import load_bundle

        if not exists(cfg.model):
            raise FileNotFoundError(f"model bundle not found: {cfg.model} (train with `merl train`, then export)")

        bundle = load_bundle(cfg.model, cfg.device)
        model, tokenizer, data_cfg = bundle.model, bundle.tokenizer, bundle.config.data
    from merl.training.data.canonical import leads_mask

    only = leads_mask(cfg.leads.split(",")) if cfg.leads else None
    zeroshot, probes = [], []
    for task, shards in cfg.tasks.items():
        prompts = task_prompts[task]
        log.info("zero-shot %s on %s (%s split)", task, shards, cfg.split)
        zeroshot.append(evaluate_zeroshot(model, tokenizer, task, shards, data_cfg, prompts=prompts,
                                          split=cfg.split, batch_size=cfg.batch_size, device=cfg.device,
                                          progress=True, max_prompt_tokens=cfg.max_prompt_tokens, leads=only))
        if cfg.linear_probe:
            log.info("linear probe %s: fractions %s", task, cfg.probe_fractions)
            probes.append(evaluate_linear_probe(model, task, shards, data_cfg, cfg.probe_fractions, cfg.seed,
                                                cfg.batch_size, cfg.device, cfg.probe_train_split, cfg.split))
    report = EvalReport(zeroshot, probes, meta={"model": cfg.model, "config": cfg.model_dump(mode="json")})
    if cfg.lead_sets:
        from merl.evaluation.leadsets import evaluate_lead_sets

        log.info("zero-shot by lead set: %s", ", ".join(cfg.lead_sets))
        report.lead_sets = evaluate_lead_sets(model, tokenizer, cfg.tasks, data_cfg, cfg.lead_sets,
                                              prompts=task_prompts, split=cfg.split, batch_size=cfg.batch_size,
                                              device=cfg.device, max_prompt_tokens=cfg.max_prompt_tokens)
    if bundle is not None:
        from merl.evaluation.comparable import RunFacts, paper_comparability

        report.paper_check = paper_comparability(RunFacts(
            bundle.config, bundle.text_model, bundle.info, manifests, cfg.split, cfg.prompts, zeroshot))
    return report, write_report(report, cfg.out, plots=cfg.plots)
