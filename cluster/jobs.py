"""Ray Jobs: submit a ``merl`` command to a running cluster, follow it, stop it.

The job carries the project folder as its ``working_dir`` so the cluster runs exactly the
code and configs the user has locally.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from merl.cluster.config import ClusterConfig
from merl.core.raysession import ClusterUnreachable

log = logging.getLogger(__name__)
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


@dataclass
class JobInfo:
    submission_id: str
    status: str
    message: str = ""
    entrypoint: str = ""


def _auth_headers() -> dict[str, str] | None:
    """Ray >= 2.59 protects local clusters' Jobs API with a token (``~/.ray/auth_token``);
    send it when we have one, from the same sources Ray itself reads."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
        token = path.read_text().strip() if path.is_file() else ""
    return {"Authorization": f"Bearer {token}"} if token else None


def client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address, headers=_auth_headers())
    except Exception as e:  # noqa: BLE001 - the SDK raises several types for "not there"
        raise ClusterUnreachable(
            f"cannot reach the Ray Jobs API at {address!r}: {e}. Is the cluster up "
            "(`merl cluster up` or `ray start --head`) and the dashboard port open?"
        ) from None


def submit(cfg: ClusterConfig, entrypoint: str, submission_id: str | None = None, agent_wait_s: float = 60.0) -> str:
    """Submit ``entrypoint`` (a shell command, e.g. ``merl train --config ...``)."""
    c = client(cfg.jobs.address)
    deadline = time.monotonic() + agent_wait_s
    while True:
        try:
            sid = c.submit_job(
                entrypoint=entrypoint,
                runtime_env=cfg.runtime_env(),
                submission_id=submission_id,
                entrypoint_num_cpus=cfg.jobs.entrypoint_num_cpus or None,
            )
            break
        except RuntimeError as e:
            # A head that has just started has no job agent yet; it comes up in seconds.
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)
    log.info("submitted job %s: %s", sid, entrypoint)
    return sid


def info(address: str, submission_id: str) -> JobInfo:
    i = client(address).get_job_info(submission_id)
    return JobInfo(submission_id, str(i.status.value if hasattr(i.status, "value") else i.status),
                   i.message or "", i.entrypoint or "")


def wait(address: str, submission_id: str, timeout_s: float | None = None, poll_s: float = 1.0) -> JobInfo:
    """Block until the job ends (or ``timeout_s`` passes); returns its final info."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        ji = info(address, submission_id)
        if ji.status in TERMINAL or (deadline is not None and time.monotonic() > deadline):
            return ji
        time.sleep(poll_s)


def logs(address: str, submission_id: str) -> str:
    return client(address).get_job_logs(submission_id)


def stop(address: str, submission_id: str) -> bool:
    return client(address).stop_job(submission_id)


def list_jobs(address: str) -> list[JobInfo]:
    return [
        JobInfo(j.submission_id or j.job_id or "", str(getattr(j.status, "value", j.status)),
                j.message or "", j.entrypoint or "")
        for j in client(address).list_jobs()
    ]
