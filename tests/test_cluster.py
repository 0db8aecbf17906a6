"""Cluster plumbing: config file, unreachable addresses, and a real Ray Jobs round trip."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from merl.cluster.config import ClusterConfig, load_cluster_config
from merl.core.config import ConfigError
from merl.core.raysession import ClusterUnreachable, ensure_ray

REPO = Path(__file__).resolve().parents[1]


def test_shipped_ray_config_validates():
    cfg = load_cluster_config(REPO / "ray_config.yaml")
    assert cfg.address is None  # embedded local cluster by default
    env = cfg.runtime_env()
    assert env["working_dir"] == "." and ".venv" in env["excludes"]
    assert "env_vars" not in env  # merl's own vars come from merl.core.env, never twice (Ray rejects that)


def test_invalid_cluster_config_names_field():
    with pytest.raises(ConfigError, match="local.dashboard_port"):
        load_cluster_config(REPO / "ray_config.yaml", ["local.dashboard_port=80"])


def test_unreachable_cluster_fails_fast_with_hint():
    with pytest.raises(ClusterUnreachable, match="cannot reach the Ray cluster at '127.0.0.1:9'.*merl cluster up"):
        ensure_ray("127.0.0.1:9")


def test_cli_reports_unreachable_cluster_cleanly():
    res = subprocess.run(
        [sys.executable, "-m", "merl", "cluster", "status", "-c", str(REPO / "ray_config.yaml")],
        capture_output=True, text=True, cwd=tempfile.gettempdir(),
        input="", env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    # The default jobs address has nothing listening in tests: one line, exit 2, no traceback.
    assert res.returncode == 2, res.stderr
    assert "cannot reach the Ray Jobs API" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_job_submission_round_trip(tmp_path):
    """`merl cluster up` -> submit a job that runs Ray work through ensure_ray -> SUCCEEDED with its output.

    The job sets variables ensure_ray would forward too: Ray must not see them twice."""
    from merl.cluster import head, jobs

    tmp = tempfile.mkdtemp(prefix="mr", dir="/tmp")  # short: Ray's socket paths have a length limit
    port, dash = _free_port(), _free_port()
    cfg = ClusterConfig.model_validate({
        "local": {"num_cpus": 1, "head_port": port, "dashboard_port": dash, "temp_dir": tmp},
        "jobs": {"address": f"http://127.0.0.1:{dash}", "working_dir": str(tmp_path / "wd"),
                 "env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}},
    })
    (tmp_path / "wd").mkdir()
    (tmp_path / "wd" / "task.py").write_text(
        "import os\nfrom merl.core.raysession import ensure_ray\nray = ensure_ray()\n"
        "print('sum', sum(ray.get([ray.remote(lambda x: x * x).remote(i) for i in range(5)])))\n"
        "print('worker', ray.get(ray.remote(lambda: os.environ.get('HF_HUB_OFFLINE')).remote()))\n"
    )
    head.up(cfg.local)
    try:
        sid = jobs.submit(cfg, f"{sys.executable} task.py")
        info = jobs.wait(cfg.jobs.address, sid, timeout_s=180)
        assert info.status == "SUCCEEDED", jobs.logs(cfg.jobs.address, sid)
        assert "sum 30" in jobs.logs(cfg.jobs.address, sid) and "worker 1" in jobs.logs(cfg.jobs.address, sid)
        assert any(j.submission_id == sid for j in jobs.list_jobs(cfg.jobs.address))
    finally:
        head.down(tmp)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_address_env_is_honoured(monkeypatch):
    """Inside a submitted job Ray sets RAY_ADDRESS: commands must join that cluster, not start one."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    with pytest.raises(ClusterUnreachable, match="127.0.0.1:9"):
        ensure_ray()


def test_ray_config_address_is_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "ray_config.yaml").write_text("address: 127.0.0.1:9\n")
    monkeypatch.chdir(tmp_path)
    from merl.cluster.config import apply_cluster_defaults
    from merl.core.raysession import set_defaults

    apply_cluster_defaults()
    try:
        with pytest.raises(ClusterUnreachable, match="127.0.0.1:9"):
            ensure_ray()
    finally:
        set_defaults()
