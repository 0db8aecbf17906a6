"""Zero-shot on real records from a model pretrained only on synthetic data (issue 11).

Pretrains the demo-scale model exactly as ``merl demo`` does (:func:`merl.demo.pretrain_steps`,
the synthetic corpus only), prepares the 15 real PhysioNet/CinC 2021 records in
``../shared/real-ecg/cinc2021`` with ``merl data prepare --dataset wfdb`` (SNOMED ``#Dx:``
codes -> CSN acronyms through ``../shared/reference/csn_conditions.csv``) and scores them
with ``merl evaluate`` on every record (``split=all``) for sinus rhythm (SR), sinus
tachycardia (ST) and sinus bradycardia (SB), CKEPE prompts and class names, each AUC with a
bootstrap 95% interval. Lines: ``sim2real_auc_<class>`` (CKEPE prompts, a fraction),
``sim2real_auc_<class>_ci_low/_high`` and ``sim2real_names_auc_<class>``, for each class
both of whose label values occur. Nothing here is fitted on the real records.

Skipped (a ``#`` line) where ``../shared`` is absent. ``MERL_BENCH_SIM2REAL_DEMO=runs/demo``
reuses a finished demo folder (its finished steps are skipped) instead of pretraining anew.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLASSES = ("SR", "ST", "SB")  # sinus rhythm, sinus tachycardia, sinus bradycardia (CSN acronyms)
TASK = "chapman"  # the CSN label set; SB is a CSN condition outside the published 38 (task_with_labels)


def prepare_real(root: Path, conditions_csv: Path, out: Path) -> Path:
    """A WFDB folder with ``#Dx:`` SNOMED headers -> shards (every record kept: a flat lead is
    how some real records come, and this set is scored whole)."""
    from merl.training.data.prepare import PrepareConfig, prepare

    if not (out / "manifest.json").is_file():
        cfg = PrepareConfig.model_validate({"conditions_csv": str(conditions_csv), "num_cpus": 1,
                                            "canonical": {"reject_flat_leads": False}})
        prepare("wfdb", root, out, cfg)
    return out


def eval_config(model: str | Path, shards: str | Path, out: str | Path, prompts: str | Path | None = None,
                n_boot: int = 1000, plots: bool = True):
    """``merl evaluate`` on every record of a real folder, the three sinus classes, CKEPE prompts
    (if given) paired with class names."""
    from merl.evaluation.config import EvalConfig

    return EvalConfig(model=str(model), tasks={TASK: str(shards)}, split="all", labels={TASK: list(CLASSES)},
                      min_records=1, prompts=str(prompts) if prompts else None, prompts_name="ckepe" if prompts else None,
                      compare_prompts={"names": None} if prompts else {}, n_boot=n_boot, out=str(out), plots=plots)


def run(report, workdir: Path) -> None:
    from merl.demo import DemoConfig, pretrain_steps, run_step, shared_steps
    from merl.evaluation.run import run_evaluation

    real = SHARED / "real-ecg" / "cinc2021"
    if not real.is_dir():
        print(f"# sim2real skipped: {real} is absent", file=sys.stderr)
        return
    workdir = Path(workdir)
    demo_dir = Path(os.environ.get("MERL_BENCH_SIM2REAL_DEMO", workdir / "demo")).resolve()
    cfg = DemoConfig(reference_prompts=None)
    prompts = demo_dir / "prompts" / "all.json"
    for step in shared_steps(demo_dir) + pretrain_steps(cfg, demo_dir, prompts, cfg.seed):
        run_step(step, REPO)
    shards = prepare_real(real, SHARED / "reference" / "csn_conditions.csv", workdir / "real_shards")
    report_, _ = run_evaluation(eval_config(demo_dir / "model", shards, workdir / "eval", prompts))
    z = report_.zeroshot[0]
    names = report_.alternatives["names"][0]
    print(f"# sim2real: {z.n_records} real records carry SR/ST/SB; positives "
          f"{dict(zip(z.labels, z.y_true.sum(axis=0).tolist()))}; model {demo_dir / 'model'} (synthetic pretraining)",
          file=sys.stderr)
    for lab in z.labels:
        m = z.per_class[lab]
        if not math.isfinite(m["auc"]):
            continue  # one label value only: no AUC
        report(f"sim2real_auc_{lab.lower()}", m["auc"] / 100, "fraction")
        report(f"sim2real_auc_{lab.lower()}_ci_low", m["auc_ci"][0] / 100, "fraction")
        report(f"sim2real_auc_{lab.lower()}_ci_high", m["auc_ci"][1] / 100, "fraction")
        report(f"sim2real_names_auc_{lab.lower()}", names.per_class[lab]["auc"] / 100, "fraction")
