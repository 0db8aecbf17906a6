"""merl.core.env: the process defaults, and what ensure_ray forwards to Ray workers."""

from __future__ import annotations

import json

from merl.core import env
from merl.core.raysession import runtime_env_for


def test_apply_defaults_sets_only_unset_vars():
    environ = {"TOKENIZERS_PARALLELISM": "true"}
    env.apply_defaults(environ=environ)
    assert environ == {"TOKENIZERS_PARALLELISM": "true", "RAY_USAGE_STATS_ENABLED": "0"}
    env.apply_defaults(offline=True, environ=environ)
    assert environ["HF_HUB_OFFLINE"] == "1" and environ["TRANSFORMERS_OFFLINE"] == "1"
    environ = {}
    env.go_offline(environ)
    assert environ == env.OFFLINE


def test_worker_env_vars_are_the_set_ones():
    environ = {"HF_HUB_OFFLINE": "1", "PYTHONPATH": "/x", "HOME": "/h"}
    assert env.worker_env_vars(environ) == {"HF_HUB_OFFLINE": "1", "PYTHONPATH": "/x"}


def _job(env_vars: dict | None) -> str:
    runtime_env = {"working_dir": "gcs://_ray_pkg_x.zip", **({"env_vars": env_vars} if env_vars is not None else {})}
    return json.dumps({"runtime_env": runtime_env, "metadata": {}})


def test_runtime_env_forwards_outside_a_job():
    # Embedded local cluster and a driver connecting from outside: workers get the driver's settings.
    environ = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    assert runtime_env_for(None, environ) == {"env_vars": environ}
    assert runtime_env_for({"env_vars": {"HF_HUB_OFFLINE": "0"}, "pip": ["x"]}, environ) == {
        "env_vars": {"HF_HUB_OFFLINE": "0", "TOKENIZERS_PARALLELISM": "false"}, "pip": ["x"]}
    assert runtime_env_for(None, {}) is None


def test_runtime_env_inside_a_job_never_repeats_the_jobs_vars():
    """Ray refuses to merge a job's runtime env with ray.init's when both set one variable
    (the `merl ...` inside `merl cluster submit` bug): what the job sets is not forwarded."""
    environ = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               env.JOB_CONFIG_VAR: _job({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})}
    assert runtime_env_for(None, environ) is None
    environ[env.JOB_CONFIG_VAR] = _job({"HF_HUB_OFFLINE": "1"})
    assert runtime_env_for(None, environ) == {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
    environ[env.JOB_CONFIG_VAR] = _job(None)
    assert runtime_env_for(None, environ) == {"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}}
    environ[env.JOB_CONFIG_VAR] = "not json"
    assert runtime_env_for(None, environ) is None
