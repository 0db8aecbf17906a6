"""One installed package with one-way layers.

The design card keeps ``cluster/``, ``training/``, ``knowledge/`` and ``evaluation/`` at the
repository root; the build installs them as ``merl.cluster``, ``merl.training``, ... so the
wheel claims the single top-level name ``merl``. Imports run one way:

    merl.core (ground) -> merl.training.data | merl.knowledge | merl.cluster
                       -> merl.training -> merl.evaluation -> merl.cli / merl.demo / merl (API)
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"merl": "merl", "merl.cluster": "cluster", "merl.training": "training",
           "merl.knowledge": "knowledge", "merl.evaluation": "evaluation"}

# (module prefix, rank, component). Longest prefix wins. A module may import its own
# component and any component of a strictly lower rank; same-rank components are independent.
LAYERS = [
    ("merl.core", 0, "ground"),
    ("merl.training.data", 1, "data"),
    ("merl.knowledge", 1, "knowledge"),
    ("merl.cluster", 1, "cluster"),
    ("merl.training", 2, "training"),
    ("merl.evaluation", 3, "evaluation"),
    ("merl.cli", 4, "app"),
    ("merl.demo", 4, "app"),
    ("merl", 4, "app"),
]


def _layer(module: str) -> tuple[int, str]:
    for prefix, rank, comp in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return rank, comp
    raise AssertionError(f"{module} is in no layer")


def _project_modules() -> dict[str, Path]:
    mods = {}
    for pkg, folder in FOLDERS.items():
        for f in (REPO / folder).rglob("*.py"):
            rel = f.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods[".".join([pkg, *parts])] = f
    return mods


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """Every project import in the file, lazy ones inside functions included."""
    out = []
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out += [(node.lineno, f"{name}.{a.name}") for a in node.names]
    return [(line, n) for line, n in out if n.split(".")[0] in {"merl", "training", "evaluation", "knowledge", "cluster"}]


def test_imports_run_one_way():
    bad = []
    for module, path in _project_modules().items():
        rank, comp = _layer(module)
        for line, target in _imports(module, path):
            where = f"{path.relative_to(REPO)}:{line} imports {target}"
            if target.split(".")[0] != "merl":
                bad.append(f"{where}: import it as merl.{target}")
                continue
            t_rank, t_comp = _layer(target)
            if t_comp != comp and t_rank >= rank:
                bad.append(f"{where}: {comp} (layer {rank}) may not import {t_comp} (layer {t_rank})")
    assert not bad, "import back-edges:\n" + "\n".join(bad)


def test_layer_check_catches_a_back_edge(tmp_path):
    """The checker itself: a data module importing training is reported."""
    f = tmp_path / "x.py"
    f.write_text("def g():\n    from merl.training.loop import SCORE\n")
    rank, comp = _layer("merl.training.data.x")
    found = [(_layer(t), t) for _, t in _imports("merl.training.data.x", f)]
    assert found and all(t_rank >= rank and t_comp != comp for (t_rank, t_comp), _ in found)


def test_package_list_covers_every_folder():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"] == FOLDERS
    on_disk = {m for m, p in _project_modules().items() if p.name == "__init__.py"}
    assert set(cfg["packages"]) == on_disk


@pytest.mark.slow
def test_wheel_has_one_top_level_name_and_imports(tmp_path):
    wheel_dir, target, src = tmp_path / "wheel", tmp_path / "site", tmp_path / "src"
    # Build from a copy of the tracked files: setuptools writes build/ into the source tree.
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheel_dir), str(src)], check=True, cwd=tmp_path)
    (wheel,) = wheel_dir.glob("merl_ray-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"merl", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert "merl/knowledge/entries/rhythm.yaml" in names and "merl/training/data/ptbxl_statements.csv" in names
    assert {"merl/training/data/published_splits/cpsc2018.csv", "merl/training/data/published_splits/csn.csv"} <= set(names)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, cwd=tmp_path)
    probe = ("import merl.training.loop, merl.evaluation.run, merl.knowledge.kb, merl.cluster.jobs, merl.cli;"
             "import merl.training as t; print(t.__file__);"
             "from merl.knowledge.kb import load_entries; print(len(load_entries()));"
             "from merl.training.data.splits import published_split; assert len(published_split('csn')) == 23026")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    file, n_entries = out.stdout.split()
    assert file.startswith(str(target)) and int(n_entries) > 100
