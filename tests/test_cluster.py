"""Cluster plumbing: settings, launcher/KubeRay/Docker files, error reporting, process
ownership of `merl cluster up/down`, and real Ray Jobs round trips (slow)."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from merl.cluster import head, jobs
from merl.cluster.config import ClusterConfig, LocalClusterConfig, load_cluster_config
from merl.core import env
from merl.core.config import ConfigError
from merl.core.raysession import ClusterUnreachable, RaySessionError, ensure_ray

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _merl(*args: str, cwd: Path | str | None = None, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "merl", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=timeout, input="", **kw)


# -- settings ------------------------------------------------------------------------------

def test_shipped_cluster_settings_are_the_defaults():
    cfg = load_cluster_config(REPO / "merl_cluster.yaml")
    assert cfg == ClusterConfig()  # the file documents the defaults, nothing else
    assert cfg.address is None and cfg.jobs_address() == "http://127.0.0.1:8265"
    renv = cfg.runtime_env()
    assert renv["working_dir"] == "." and ".venv" in renv["excludes"]
    assert "env_vars" not in renv  # merl's own vars come from merl.core.env, never twice (Ray rejects that)
    local = cfg.runtime_env(local_head=True)["env_vars"]
    assert local == {"RAY_API_SERVER_ADDRESS": "http://127.0.0.1:8265"} and not set(local) & set(env.WORKER_VARS)


def test_invalid_cluster_config_names_field():
    with pytest.raises(ConfigError, match="local.dashboard_port"):
        load_cluster_config(REPO / "merl_cluster.yaml", ["local.dashboard_port=80"])


def test_launcher_config_given_as_merl_settings_gets_a_pointer():
    with pytest.raises(ConfigError, match="cluster-launcher config.*merl_cluster.yaml"):
        load_cluster_config(REPO / "ray_config.yaml")


def test_job_working_dir_ships_configs_not_code():
    """With the repo as working_dir, a shipped `merl/` would come first on the job's sys.path
    and hide an installed package's merl.training: the code folders must not travel."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    cfg = ClusterConfig()
    shipped: list[str] = []
    _dir_travel(REPO, [_get_excludes(REPO, cfg.jobs.excludes)],
                lambda p: shipped.append(p.relative_to(REPO).as_posix()), include_gitignore=True)
    assert "configs/pretrain_laptop.yaml" in shipped and "merl_cluster.yaml" in shipped
    code = ("merl", "training", "cluster", "evaluation", "knowledge", "tests", ".venv", ".git")
    assert not [f for f in shipped if f.split("/")[0] in code], "code folders would shadow the installed package"


# -- entrypoint and interpreter -------------------------------------------------------------

def test_leading_merl_runs_the_projects_interpreter():
    py = "/opt/my env/bin/python"
    assert jobs.entrypoint(["merl", "train", "--config", "a b.yaml", "x=1"], py) == \
        "'/opt/my env/bin/python' -m merl train --config 'a b.yaml' x=1"
    assert jobs.entrypoint(["merl train --config c.yaml && echo done"], "python") == \
        "python -m merl train --config c.yaml && echo done"  # one string: a shell command, kept as is
    assert jobs.entrypoint(["python", "task.py"], py) == "python task.py"
    assert jobs.entrypoint(["merlin", "x"], py) == "merlin x"
    with pytest.raises(RaySessionError, match="after `--`"):
        jobs.entrypoint([], py)


def test_job_python_local_head_remote_and_configured(tmp_path):
    assert jobs.local_head_python(ClusterConfig()) == sys.executable  # jobs.address null: the local head
    remote = ClusterConfig.model_validate({"jobs": {"address": "http://head.example:8265"}})
    assert jobs.job_python(remote, jobs.local_head_python(remote)) == "python"
    # A loopback URL may be a port-forward to a remote cluster: local only if `merl cluster up` runs there.
    port = _free_port()
    forwarded = ClusterConfig.model_validate({"jobs": {"address": f"http://127.0.0.1:{port}"}})
    assert jobs.local_head_python(forwarded) is None
    fake_temp = str(tmp_path / "headtmp")
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", fake_temp])
    try:
        _write_state(head.HeadState(temp_dir=fake_temp, owns_temp_dir=False, head_port=_free_port(),
                                    dashboard_port=port, gcs_pid=None, gcs_started=None, python="/venv/bin/python"))
        assert jobs.local_head_python(forwarded) == "/venv/bin/python"
        assert forwarded.runtime_env(local_head=True)["env_vars"]["RAY_API_SERVER_ADDRESS"] == f"http://127.0.0.1:{port}"
    finally:
        stand_in.kill()
        stand_in.wait()
        for f in head.state_dir().glob("head-*.json"):
            f.unlink()
    configured = ClusterConfig.model_validate({"jobs": {"python": "/custom/python"}})
    assert jobs.job_python(configured, sys.executable) == "/custom/python"


def _write_state(st: head.HeadState) -> None:
    from dataclasses import asdict

    path = head.state_file(st.head_port)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(st)))


# -- errors --------------------------------------------------------------------------------

def test_unreachable_cluster_fails_fast_with_hint():
    with pytest.raises(ClusterUnreachable, match="cannot reach the Ray cluster at '127.0.0.1:9'.*merl cluster up"):
        ensure_ray("127.0.0.1:9")


def test_ray_refusing_the_driver_is_not_called_unreachable(monkeypatch):
    """Only connection failures may say "cannot reach"; a runtime-env conflict says what it is."""
    import ray

    from merl.core import raysession

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(raysession, "_probe", lambda address: None)

    def conflict(**kw):
        raise ValueError("Failed to merge the Job's runtime env {'env_vars': {'A': '1'}} with a ray.init's "
                         "runtime env {'env_vars': {'A': '1'}} because of a conflict.")

    monkeypatch.setattr(ray, "init", conflict)
    with pytest.raises(RaySessionError) as e:
        ensure_ray("127.0.0.1:6379")
    assert not isinstance(e.value, ClusterUnreachable)
    assert "Failed to merge the Job's runtime env" in str(e.value) and "cannot reach" not in str(e.value)
    assert "\n" not in str(e.value)

    def refused(**kw):
        raise ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:6379")

    monkeypatch.setattr(ray, "init", refused)
    with pytest.raises(ClusterUnreachable, match="cannot reach the Ray cluster at '127.0.0.1:6379'"):
        ensure_ray("127.0.0.1:6379")


def test_cli_reports_unreachable_jobs_api_cleanly(tmp_path):
    res = _merl("cluster", "status", "--address", "http://127.0.0.1:9", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "cannot reach the Ray Jobs API" in res.stderr and "Traceback" not in res.stderr
    res = _merl("cluster", "up", "-c", str(REPO / "ray_config.yaml"), cwd=tmp_path)
    assert res.returncode == 2 and "error:" in res.stderr and "cluster-launcher" in res.stderr
    assert "Traceback" not in res.stderr


def test_ray_address_env_is_honoured(monkeypatch):
    """Inside a submitted job Ray sets RAY_ADDRESS: commands must join that cluster, not start one."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    with pytest.raises(ClusterUnreachable, match="127.0.0.1:9"):
        ensure_ray()


def test_cluster_settings_address_is_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "merl_cluster.yaml").write_text("address: 127.0.0.1:9\n")
    monkeypatch.chdir(tmp_path)
    from merl.cluster.config import apply_cluster_defaults
    from merl.core.raysession import set_defaults

    apply_cluster_defaults()
    try:
        with pytest.raises(ClusterUnreachable, match="127.0.0.1:9"):
            ensure_ray()
    finally:
        set_defaults()


# -- process ownership ---------------------------------------------------------------------

def test_down_without_a_recorded_head_touches_nothing():
    msg = head.down(LocalClusterConfig(head_port=_free_port()))
    assert "nothing to stop" in msg


def test_head_refuses_a_temp_dir_it_would_not_own(ray_temp_dir):
    """`down` ends whatever names the temp dir, so `up` never shares one."""
    with pytest.raises(head.HeadError, match="shared default"):
        head.down(LocalClusterConfig(temp_dir="/tmp/ray"))
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", ray_temp_dir])
    try:
        with pytest.raises(head.HeadError, match="in use by running Ray processes"):
            head.up(LocalClusterConfig(head_port=_free_port(), dashboard_port=_free_port(), temp_dir=ray_temp_dir))
    finally:
        stand_in.kill()
        stand_in.wait()


def test_down_ends_only_its_own_temp_dirs_processes(ray_temp_dir):
    """Descendants go too, a process ignoring SIGTERM is killed, and a neighbour whose temp dir
    merely starts with the same characters is left alone."""
    mine, neighbour_dir = ray_temp_dir, ray_temp_dir + "x"
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                               "'import time; time.sleep(60)']); time.sleep(60)", mine])
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); time.sleep(60)", f"--log_dir={mine}/session_x/logs"])
    neighbour = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", neighbour_dir])
    try:
        import psutil

        deadline = time.monotonic() + 10
        while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
            time.sleep(0.1)
        grandchild = psutil.Process(parent.pid).children()[0]
        port = _free_port()
        _write_state(head.HeadState(temp_dir=mine, owns_temp_dir=True, head_port=port, dashboard_port=_free_port(),
                                    gcs_pid=None, gcs_started=None, python=sys.executable))
        msg = head.down(LocalClusterConfig(head_port=port))
        assert "3 processes" in msg, msg
        for p in (parent, stubborn):
            assert p.wait(timeout=5) is not None
        assert not grandchild.is_running() or grandchild.status() == psutil.STATUS_ZOMBIE
        assert neighbour.poll() is None, "a process of another temp dir was ended"
        assert not head.state_file(port).exists() and not os.path.exists(mine)  # up created it: down removes it
    finally:
        for p in (parent, stubborn, neighbour):
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()


# -- cluster launcher, Docker image, KubeRay -----------------------------------------------

def _docker_tag() -> str:
    (line,) = [ln for ln in (REPO / "Dockerfile").read_text().splitlines() if ln.startswith("FROM ")]
    return line.split()[1]


def test_ray_config_is_a_cluster_launcher_config_ray_accepts():
    """`ray up` runs prepare_config + validate_config (Ray's JSON schema) before it talks to the
    cloud; the same check runs here without credentials."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / "ray_config.yaml").read_text())
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    nodes = prepared["available_node_types"]
    assert prepared["head_node_type"] in nodes
    assert any(t.get("resources", {}).get("GPU", 0) >= 1 and t.get("max_workers", 0) >= 1 for t in nodes.values())
    assert any("merl_ray" in c and "pip install" in c for c in prepared["setup_commands"])
    assert raw["docker"]["image"] == _docker_tag()
    broken = copy.deepcopy(raw)
    broken["available_node_types"]["head"]["InstanceType"] = "m5.large"  # misplaced: belongs in node_config
    with pytest.raises(Exception, match="InstanceType"):
        validate_config(prepare_config(broken))


def test_dockerfile_installs_the_package_on_rays_gpu_image():
    import ray

    tag = _docker_tag()
    assert re.fullmatch(rf"rayproject/ray:{re.escape(ray.__version__)}-py3\d+-gpu", tag), tag
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"pip install [^\n]*/tmp/merl-ray", text) and "deepspeed" in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", "runs"} <= set(ignored)


def test_kuberay_rayjob_runs_merl_train_with_a_valid_config():
    from merl.core.config import load_config
    from merl.training.config import TrainConfig

    job = yaml.safe_load((REPO / "cluster" / "kuberay" / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    args = shlex.split(spec["entrypoint"])
    assert args[:2] == ["merl", "train"]
    config = args[args.index("--config") + 1]
    assert config.startswith("/home/ray/merl-ray/configs/")  # where the Dockerfile puts the configs
    overrides = [a for a in args[2:] if "=" in a and not a.startswith("-")]
    cfg = load_config(TrainConfig, REPO / "configs" / Path(config).name, overrides)
    assert cfg.train.use_gpu and cfg.checkpoint.storage_path.startswith("/mnt/shared")
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == _docker_tag().split(":")[1].split("-")[0]
    (head_c,) = cluster["headGroupSpec"]["template"]["spec"]["containers"]
    workers = cluster["workerGroupSpecs"]
    gpus = sum(int(w["replicas"]) * int(w["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
               for w in workers)
    assert gpus == cfg.train.num_workers
    assert all(w["template"]["spec"]["containers"][0]["image"] == head_c["image"] for w in workers)


# -- real clusters (slow) ------------------------------------------------------------------

@pytest.mark.slow
def test_job_submission_round_trip(tmp_path, ray_temp_dir):
    """`merl cluster up` -> a job that runs Ray work through ensure_ray -> SUCCEEDED with its output
    -> down leaves no process of the head behind.

    The job sets variables ensure_ray would forward too: Ray must not see them twice."""
    port, dash = _free_port(), _free_port()
    cfg = ClusterConfig.model_validate({
        "local": {"num_cpus": 1, "head_port": port, "dashboard_port": dash, "temp_dir": ray_temp_dir},
        "jobs": {"working_dir": str(tmp_path / "wd"),
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
        sid = jobs.submit(cfg, [sys.executable, "task.py"])
        streamed: list[str] = []
        info = jobs.follow(cfg.jobs_address(), sid, streamed.append, timeout_s=180)
        assert info.status == "SUCCEEDED", jobs.logs(cfg.jobs_address(), sid)
        out = "".join(streamed)
        assert "sum 30" in out and "worker 1" in out
        assert any(j.submission_id == sid for j in jobs.list_jobs(cfg.jobs_address()))
    finally:
        head.down(cfg.local)
    assert head.wait_until_gone(ray_temp_dir, timeout_s=5) == []


@pytest.mark.slow
def test_cli_up_submit_merl_train_down(tmp_path, ray_temp_dir):
    """The whole user path: `merl cluster up`, `merl cluster submit -- merl train ...` (the
    repository as working dir, so only configs travel and the installed package is used), logs
    streamed live, SUCCEEDED, a checkpoint in the run folder, `merl cluster down`."""
    from test_train_pipeline import make_ecg_shards

    from merl.training.checkpoint import list_checkpoints

    shards = make_ecg_shards(tmp_path / "shards", n_train=64, n_val=16, per_shard=40, n_samples=500)
    runs = tmp_path / "runs"
    train_yaml = tmp_path / "tiny.yaml"
    train_yaml.write_text(yaml.safe_dump({
        "model": {"width": 8, "freeze_text_layers": 6, "proj_dim": 16, "proj_hidden": 16},
        "data": {"train_shards": str(shards), "batch_size": 8, "fs": 100, "n_samples": 100},
        "train": {"epochs": 1, "max_steps": 3, "num_workers": 1, "backend": "ddp", "log_every": 1,
                  "cpus_per_worker": 0.5},
        "checkpoint": {"storage_path": str(runs), "every_n_steps": 0, "keep": 1},
    }))
    settings = tmp_path / "merl_cluster.yaml"
    settings.write_text(yaml.safe_dump({
        "local": {"num_cpus": 2, "head_port": _free_port(), "dashboard_port": _free_port(), "temp_dir": ray_temp_dir},
        "jobs": {"working_dir": str(REPO)},
    }))
    up = _merl("cluster", "up", "-c", str(settings), cwd=tmp_path, timeout=120)
    assert up.returncode == 0, up.stderr
    try:
        sub = _merl("cluster", "submit", "-c", str(settings), "--job-id", "tiny-train", "--",
                    "merl", "train", "--config", str(train_yaml), "--name", "tiny", cwd=tmp_path, timeout=480)
        assert sub.returncode == 0, sub.stdout[-4000:] + sub.stderr[-4000:]
        assert "job tiny-train: SUCCEEDED" in sub.stderr
        assert '"checkpoint"' in sub.stdout  # merl train's summary, streamed from the job
        assert "Failed to query Ray Train Controller" not in sub.stdout
        assert list_checkpoints(str(runs / "tiny")) and (runs / "tiny" / "result.json").is_file()
        logs = _merl("cluster", "logs", "tiny-train", "-c", str(settings), "--follow", cwd=tmp_path)
        assert logs.returncode == 0 and '"checkpoint"' in logs.stdout and "SUCCEEDED" in logs.stderr
    finally:
        down = _merl("cluster", "down", "-c", str(settings), cwd=tmp_path)
    assert down.returncode == 0 and "stopped the Ray head" in down.stdout, down.stderr
    assert head.wait_until_gone(ray_temp_dir, timeout_s=5) == []
