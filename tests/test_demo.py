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
    assert all(s.done_when is not None for s in steps)  # every step is skipped once its output exists


def test_merge_prompts_shape(tmp_path):
    for t in TASKS:
        (tmp_path / f"{t}.json").write_text('{"X": "x prompt"}')
    import json

    merged = json.loads(merge_prompts(tmp_path).read_text())
    assert set(merged) == set(TASKS) and merged["icbeb"] == {"X": "x prompt"}


def test_paper_prompts_column_when_the_file_is_at_hand(tmp_path):
    import json

    from merl.demo import reference_prompts_path, summarize

    ref = tmp_path / "merl_ckepe_prompt.json"
    ref.write_text('{"NORM": "normal ecg"}')
    names = lambda cfg: [s.name for s in plan(cfg, tmp_path / "out")]
    assert "evaluate (paper's prompts)" in names(DemoConfig(reference_prompts=str(ref)))
    assert "evaluate (paper's prompts)" not in names(DemoConfig(reference_prompts=None))
    step = next(s for s in plan(DemoConfig(reference_prompts=str(ref)), tmp_path / "out") if "paper" in s.name)
    assert step.argv[step.argv.index("--prompts") + 1] == str(ref.resolve())
    # auto: ../shared/reference/merl_ckepe_prompt.json beside the working directory (or the checkout)
    (tmp_path / "shared" / "reference").mkdir(parents=True)
    (tmp_path / "shared" / "reference" / "merl_ckepe_prompt.json").write_text("{}")
    (tmp_path / "wd").mkdir()
    assert reference_prompts_path(DemoConfig(), cwd=tmp_path / "wd") == (
        tmp_path / "shared" / "reference" / "merl_ckepe_prompt.json").resolve()

    out = tmp_path / "out"
    for kind, auc in (("ckepe", 61.0), ("names", 55.0), ("reference", 58.0)):
        (out / f"eval_{kind}").mkdir(parents=True)
        (out / f"eval_{kind}" / "results.json").write_text(json.dumps(
            {"zeroshot": [{"task": "icbeb", "macro_auc": auc}], "zeroshot_average_auc": auc}))
    s = summarize(out)
    assert s["tasks"]["icbeb"] == {"ckepe": 61.0, "names": 55.0, "reference": 58.0}
    assert s["average_auc_reference"] == 58.0


def test_demo_table_has_the_paper_prompts_column(tmp_path, monkeypatch):
    import json

    import merl.demo as demo

    for kind in ("ckepe", "names", "reference"):
        (tmp_path / f"eval_{kind}").mkdir(parents=True)
        (tmp_path / f"eval_{kind}" / "results.json").write_text(json.dumps(
            {"zeroshot": [{"task": "icbeb", "macro_auc": 60.0}], "zeroshot_average_auc": 60.0}))
    monkeypatch.setattr(demo, "run_step", lambda step, cwd, announce=None: setattr(step, "skipped", True))
    ref = tmp_path / "merl_ckepe_prompt.json"
    ref.write_text("{}")
    run = lambda flag: CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--reference-prompts", flag],
                                          terminal_width=200)
    res = run(str(ref))
    assert res.exit_code == 0, res.output
    assert "CKEPE prompts (merl)" in res.output and "class names" in res.output
    assert "paper's CKEPE prompts" in res.output
    res = run("none")
    assert res.exit_code == 0 and "class names" in res.output and "paper's CKEPE prompts" not in res.output
