"""The one home of the process environment merl sets for itself and hands to Ray workers.

Entry points (the CLI, tests, benchmarks) and the text-model resolver call these instead of
setting variables by hand, so every process of a run agrees on what it set and why. Values
are only ever defaults: a variable the user exported wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, MutableMapping

# Every process: tokenizers' thread pool deadlocks (and warns) across fork, and Ray's usage
# stats would phone home from laptops and air-gapped clusters.
TOKENIZERS = {"TOKENIZERS_PARALLELISM": "false"}
RAY_TELEMETRY = {"RAY_USAGE_STATS_ENABLED": "0"}
PROCESS_DEFAULTS = {**TOKENIZERS, **RAY_TELEMETRY}

# No Hugging Face hub calls. Not a process default: users may name hub models. Tests,
# benchmarks and the bundled default text model turn it on.
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

# Object-store settings read by pyarrow (so by Ray Data and Ray Train too) when a shard folder,
# run or output is an s3:// or gs:// URI: credentials, region, and the endpoint of an
# S3-compatible store (MinIO, Ceph, a test server). Unset ones are not forwarded; nodes with an
# instance role or workload identity need none of them. Forwarded variables show in the
# runtime env of the Ray dashboard: on shared clusters prefer node credentials over keys.
STORAGE_VARS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "GOOGLE_APPLICATION_CREDENTIALS",
)

# What Ray workers must see as the driver does. Workers inherit the raylet's environment, not
# the driver's, so ensure_ray forwards these (when set) in ``runtime_env["env_vars"]``.
WORKER_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "PYTHONPATH", *STORAGE_VARS)

# Set by Ray in a submitted job's entrypoint process: the job's runtime env, which ``ray.init``
# merges with its own and rejects when both set the same env var. (Ray strips RAY_JOB_ID from
# that process, so RAY_JOB_ID cannot tell a job driver apart.)
JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def _setdefaults(values: Mapping[str, str], environ: MutableMapping[str, str] | None = None) -> None:
    target = os.environ if environ is None else environ
    for k, v in values.items():
        target.setdefault(k, v)


def apply_defaults(offline: bool = False, environ: MutableMapping[str, str] | None = None) -> None:
    """Set the process defaults, plus hub-offline mode when ``offline`` (tests, benchmarks)."""
    _setdefaults(PROCESS_DEFAULTS, environ)
    if offline:
        _setdefaults(OFFLINE, environ)


def go_offline(environ: MutableMapping[str, str] | None = None) -> None:
    """Hub-offline mode only (the bundled text model needs no hub; do not let a library try)."""
    _setdefaults(OFFLINE, environ)


def disable_ray_telemetry(environ: MutableMapping[str, str] | None = None) -> None:
    """Ray usage stats off; for library callers of ensure_ray that skipped the CLI."""
    _setdefaults(RAY_TELEMETRY, environ)


def worker_env_vars(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The :data:`WORKER_VARS` set in ``environ`` (default: this process), for Ray workers."""
    env = os.environ if environ is None else environ
    return {k: env[k] for k in WORKER_VARS if k in env}


def job_env_vars(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The env vars of the Ray job this process is the driver of; None outside a job.

    An unreadable job config counts as a job that sets every variable, so that callers skip
    forwarding rather than risk Ray's merge conflict."""
    env = os.environ if environ is None else environ
    if JOB_CONFIG_VAR not in env:
        return None
    try:
        runtime_env = json.loads(env[JOB_CONFIG_VAR]).get("runtime_env") or {}
        return {str(k): str(v) for k, v in (runtime_env.get("env_vars") or {}).items()}
    except (ValueError, AttributeError):
        return dict.fromkeys(WORKER_VARS, "")
