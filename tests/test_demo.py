"""`merl demo` drives the real CLI: every step it plans must parse against the commands as they are."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from merl.cli import app
from merl.core.tasks import TASKS
from merl.demo import DemoConfig, merge_prompts, plan


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    return plan(DemoConfig(), tmp_path_factory.mktemp("demo"))


def test_every_planned_command_parses(steps):
    runner = CliRunner()
    commands = [s for s in steps if s.argv]
    assert {s.argv[0] for s in commands} >= {"data", "knowledge", "prompts", "train", "export", "evaluate"}
    for step in commands:
        # --help is eager: it runs only after every option before it parsed, so an unknown or
        # renamed option fails here with exit code 2.
        res = runner.invoke(app, [*step.argv, "--help"])
        assert res.exit_code == 0, f"{step.name}: {res.output}"


def test_plan_covers_all_tasks_and_resumes_by_outputs(steps):
    names = [s.name for s in steps]
    assert all(f"prompts {t}" in names for t in TASKS)
    assert names.index("merge prompts") < names.index("train") < names.index("export")
    assert names.index("train") < names.index("export untrained control") < names.index("evaluate untrained control")
    assert all(s.done_when is not None for s in steps)  # every step is skipped once its output exists


def test_reduced_lead_table_scores_the_trained_model(steps):
    step = next(s for s in steps if s.name == "evaluate by lead set")
    assert step.argv[step.argv.index("--model") + 1].endswith("model")
    assert step.argv[step.argv.index("--lead-sets") + 1] == "12,limb6,I+II,I,II"


def test_untrained_control_is_scored_like_the_model(steps):
    by = {s.name: s for s in steps}
    export = by["export untrained control"].argv
    assert "--untrained" in export and export[export.index("--run") + 1] == by["export"].argv[2]
    trained = next(s for s in steps if s.name.startswith("evaluate (CKEPE")).argv
    control = by["evaluate untrained control"].argv
    model = lambda argv: argv[argv.index("--model") + 1]
    assert model(control) == export[export.index("--out") + 1] and model(trained).endswith("model")
    strip = lambda argv: [a for i, a in enumerate(argv) if argv[i - 1] not in ("--model", "--out")]
    assert strip(control) == strip(trained)  # same tasks, prompts, prompt sets, resamples


def test_seeds_plan_one_run_folder_per_seed(tmp_path):
    steps = plan(DemoConfig(seeds=3, seed=5), tmp_path)
    trains = [s for s in steps if s.name.startswith("train")]
    assert [s.name for s in trains] == [f"train [seed {k}]" for k in (5, 6, 7)]
    assert [s.done_when.parts[-4] for s in trains] == ["seed5", "seed6", "seed7"]
    assert len({a for s in trains for a in s.argv if a.startswith("train.seed=")}) == 3
    synth = [s.argv[s.argv.index("--seed") + 1] for s in steps if s.name.startswith("synth mimic")]
    assert len(set(synth)) == 3  # a fresh corpus per seed
    assert sum(s.name == "knowledge build" for s in steps) == 1  # prompts are shared


def test_merge_prompts_shape(tmp_path):
    for t in TASKS:
        (tmp_path / f"{t}.json").write_text('{"X": "x prompt"}')
    import json

    merged = json.loads(merge_prompts(tmp_path).read_text())
    assert set(merged) == set(TASKS) and merged["icbeb"] == {"X": "x prompt"}


def _results(folder, aucs: dict, untrained: bool = False):
    """A results.json as `merl evaluate` writes it, prompt sets -> one task's macro AUC."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    sets = {k: {"prompts": None, "average_auc": v, "average_auc_ci": [v - 5, v + 5],
                "tasks": {"icbeb": {"macro_auc": v, "macro_auc_ci": [v - 5, v + 5], "n_records": 60}}}
            for k, v in aucs.items()}
    paired = [] if untrained else [{"a": "ckepe", "b": "names", "task": "average", "diff": aucs["ckepe"] - aucs["names"],
                                    "ci": [-1.0, 9.0], "p": 0.2}]
    (folder / "results.json").write_text(json.dumps({"prompt_sets": sets, "paired": paired}))


def test_paper_prompts_column_when_the_file_is_at_hand(tmp_path):
    from merl.demo import reference_prompts_path, summarize

    ref = tmp_path / "merl_ckepe_prompt.json"
    ref.write_text('{"NORM": "normal ecg"}')
    step = lambda cfg: next(s for s in plan(cfg, tmp_path / "out") if s.name.startswith("evaluate (CKEPE"))
    with_ref = step(DemoConfig(reference_prompts=str(ref)))
    assert f"reference: {ref.resolve()}" in [a for a in with_ref.argv if a.startswith("compare_prompts=")][0]
    assert "paper's prompts" in with_ref.name
    assert "compare_prompts={names: null}" in step(DemoConfig(reference_prompts=None)).argv
    # auto: ../shared/reference/merl_ckepe_prompt.json beside the working directory (or the checkout)
    (tmp_path / "shared" / "reference").mkdir(parents=True)
    (tmp_path / "shared" / "reference" / "merl_ckepe_prompt.json").write_text("{}")
    (tmp_path / "wd").mkdir()
    assert reference_prompts_path(DemoConfig(), cwd=tmp_path / "wd") == (
        tmp_path / "shared" / "reference" / "merl_ckepe_prompt.json").resolve()

    out = tmp_path / "out"
    _results(out / "eval", {"ckepe": 61.0, "names": 55.0, "reference": 58.0})
    _results(out / "eval_untrained", {"ckepe": 50.5, "names": 49.0, "reference": 50.0}, untrained=True)
    s = summarize(DemoConfig(), out)
    run = s["seeds"]["0"]
    assert {k: v["auc"] for k, v in run["tasks"]["icbeb"].items()} == {"ckepe": 61.0, "names": 55.0, "reference": 58.0}
    assert run["average"]["reference"]["ci"] == [53.0, 63.0]
    assert run["untrained"]["ckepe"]["auc"] == 50.5
    assert s["kinds"] == ["ckepe", "names", "reference"]


def test_demo_table_has_intervals_control_and_seed_spread(tmp_path, monkeypatch):
    import json

    import merl.demo as demo

    for seed, (ck, nm) in zip((0, 1, 2), ((70.0, 60.0), (66.0, 67.0), (74.0, 64.0))):
        _results(tmp_path / f"seed{seed}" / "eval", {"ckepe": ck, "names": nm, "reference": 60.0})
        _results(tmp_path / f"seed{seed}" / "eval_untrained", {"ckepe": 50.0 + seed, "names": 49.0, "reference": 50.0},
                 untrained=True)
    monkeypatch.setattr(demo, "run_step", lambda step, cwd, announce=None: setattr(step, "skipped", True))
    ref = tmp_path / "merl_ckepe_prompt.json"
    ref.write_text("{}")
    run = lambda *flags: CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--reference-prompts", *flags],
                                            terminal_width=250)
    res = run(str(ref), "--seeds", "3")
    assert res.exit_code == 0, res.output
    assert "CKEPE prompts (merl)" in res.output and "class names" in res.output and "paper's CKEPE prompts" in res.output
    assert "untrained control" in res.output and "SYNTHETIC" in res.output
    assert "70.0 ± 4.0 [66.0, 74.0]" in res.output  # icbeb CKEPE over the three seeds
    assert "CKEPE >= names in 2 of 3" in res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["across_seeds"]["untrained"]["ckepe"] == {"mean": 51.0, "sd": 1.0, "min": 50.0, "max": 52.0, "n": 3}
    assert set(summary["seeds"]) == {"0", "1", "2"} and summary["data"] == "synthetic"

    one = tmp_path / "one"
    _results(one / "eval", {"ckepe": 61.0, "names": 55.0})
    _results(one / "eval_untrained", {"ckepe": 50.5, "names": 49.0}, untrained=True)
    (one / "eval_leads").mkdir()
    (one / "eval_leads" / "results.json").write_text(json.dumps({"lead_sets": [
        {"task": "ptbxl_rhythm", "lead_set": s, "leads": [], "split": "test", "n_records": 40, "macro_auc": v,
         "macro_auc_ci": [v - 3, v + 3], "synthetic": True} for s, v in (("12", 81.0), ("limb6", 78.5))]}))
    res = CliRunner().invoke(app, ["demo", "--out", str(one), "--reference-prompts", "none"], terminal_width=250)
    assert res.exit_code == 0, res.output
    assert "61.0 [56.0, 66.0]" in res.output and "50.5 [45.5, 55.5]" in res.output  # one seed: intervals
    assert "by lead set" in res.output and "78.5 [75.5, 81.5] (-2.5)" in res.output  # the reduced-lead table
    assert "paper's CKEPE prompts" not in res.output
