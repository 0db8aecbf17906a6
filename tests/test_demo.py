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
