"""Ray Jobs: submit a ``merl`` command to a running cluster, follow it, stop it.

The job ships the configs of the working dir (never the code folders: the code comes
installed, see ``merl.cluster.config.CODE_EXCLUDES``), and a leading ``merl`` in the
entrypoint becomes ``<python> -m merl`` so the job runs this project's interpreter, not
whatever ``merl`` or ``python`` the head's PATH happens to hold.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from merl.cluster.config import ClusterConfig
from merl.core.raysession import ClusterUnreachable, RaySessionError

log = logging.getLogger(__name__)
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


@dataclass
class JobInfo:
    submission_id: str
    status: str
    message: str = ""
    entrypoint: str = ""


def entrypoint(command: str | Sequence[str], python: str) -> str:
    """The shell command a job runs. A list is quoted word by word (as typed after ``--``); a
    single string is a shell command kept as is. A leading ``merl`` becomes ``<python> -m merl``."""
    if isinstance(command, str):
        line = command
    elif len(command) == 1:
        line = command[0]
    else:
        line = shlex.join(command)
    line = line.strip()
    if not line:
        raise RaySessionError("give the command to run after `--`, e.g. `merl cluster submit -- merl train --config C`")
    return re.sub(r"^merl(?=\s|$)", lambda _: f"{shlex.quote(python)} -m merl", line)


def local_head_python(cfg: ClusterConfig) -> str | None:
    """The interpreter of the head behind the Jobs address if that head runs on this machine
    (started by `merl cluster up`), else None.

    ``jobs.address: null`` names the local head by definition (this interpreter when it was
    started by hand); an explicit loopback URL counts only when a `merl cluster up` head
    listens on its port, since a port-forward to a remote cluster looks the same."""
    from merl.cluster.head import recorded_heads

    url = urlparse(cfg.jobs_address())
    if url.hostname not in _LOOPBACK | {socket.gethostname(), socket.getfqdn()}:
        return None
    heads = {h.dashboard_port: h.python for h in recorded_heads()}
    if url.port in heads:
        return heads[url.port]
    return sys.executable if cfg.jobs.address is None else None


def job_python(cfg: ClusterConfig, head_python: str | None) -> str:
    """``jobs.python``, else the local head's interpreter, else ``python`` (a remote cluster's nodes)."""
    return cfg.jobs.python or head_python or "python"


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
    except ConnectionError as e:
        raise ClusterUnreachable(
            f"cannot reach the Ray Jobs API at {address!r}: {e}. Is the cluster up "
            "(`merl cluster up` or `ray start --head`) and the dashboard port open?"
        ) from None
    except Exception as e:  # the SDK says "refused" (auth, version, bad URL) with several types
        raise RaySessionError(f"the Ray Jobs API at {address!r} refused the connection ({type(e).__name__}): {e}") from e


@contextmanager
def _sdk(what: str) -> Iterator[None]:
    """Jobs API failures (HTTP errors, a runtime env Ray rejects, an unknown job id) become one
    line naming what failed and Ray's reason."""
    try:
        yield
    except RaySessionError:
        raise
    except ConnectionError as e:
        raise ClusterUnreachable(f"{what}: lost the Ray Jobs API ({e})") from None
    except Exception as e:  # the SDK raises RuntimeError/ValueError/its own types for server-side refusals
        msg = " ".join(str(e).split())
        raise RaySessionError(f"{what} failed ({type(e).__name__}): {msg}") from e


def submit(cfg: ClusterConfig, command: str | Sequence[str], submission_id: str | None = None,
           agent_wait_s: float = 60.0) -> str:
    """Submit ``command`` (e.g. ``["merl", "train", "--config", "c.yaml"]``); returns its id."""
    address = cfg.jobs_address()
    head_python = local_head_python(cfg)
    entry = entrypoint(command, job_python(cfg, head_python))
    runtime_env = cfg.runtime_env(local_head=head_python is not None)
    c = client(address)
    deadline = time.monotonic() + agent_wait_s
    with _sdk(f"submitting `{entry}` to {address}"):
        while True:
            try:
                sid = c.submit_job(
                    entrypoint=entry,
                    runtime_env=runtime_env,
                    submission_id=submission_id,
                    entrypoint_num_cpus=cfg.jobs.entrypoint_num_cpus or None,
                )
                break
            except RuntimeError as e:
                # A head that has just started has no job agent yet; it comes up in seconds.
                if "No available agent" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(2.0)
    log.info("submitted job %s: %s", sid, entry)
    return sid


def info(address: str, submission_id: str) -> JobInfo:
    with _sdk(f"looking up job {submission_id!r}"):
        i = client(address).get_job_info(submission_id)
    return JobInfo(submission_id, str(getattr(i.status, "value", i.status)), i.message or "", i.entrypoint or "")


def wait(address: str, submission_id: str, timeout_s: float | None = None, poll_s: float = 1.0) -> JobInfo:
    """Block until the job ends (or ``timeout_s`` passes); returns its latest info."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        ji = info(address, submission_id)
        if ji.status in TERMINAL or (deadline is not None and time.monotonic() > deadline):
            return ji
        time.sleep(poll_s)


def follow(address: str, submission_id: str, write: Callable[[str], object],
           timeout_s: float | None = None) -> JobInfo:
    """Stream the job's driver log to ``write`` as it is produced, until the job ends (or
    ``timeout_s`` passes: the job keeps running); returns its latest info."""
    c = client(address)
    start = time.monotonic()

    async def tail() -> None:
        async for chunk in c.tail_job_logs(submission_id):
            write(chunk)

    try:
        asyncio.run(asyncio.wait_for(tail(), timeout_s))
    except (asyncio.TimeoutError, TimeoutError):
        return info(address, submission_id)
    except Exception as e:  # noqa: BLE001 - aiohttp and Ray raise many types; a lost stream must not lose the job
        log.warning("log stream of job %s ended early (%s); waiting for the job", submission_id, " ".join(str(e).split()))
    # The stream ends when the job does; its final status follows within moments.
    left = None if timeout_s is None else max(5.0, timeout_s - (time.monotonic() - start))
    return wait(address, submission_id, timeout_s=left)


def logs(address: str, submission_id: str) -> str:
    with _sdk(f"reading the logs of job {submission_id!r}"):
        return client(address).get_job_logs(submission_id)


def stop(address: str, submission_id: str) -> bool:
    with _sdk(f"stopping job {submission_id!r}"):
        return client(address).stop_job(submission_id)


def list_jobs(address: str) -> list[JobInfo]:
    with _sdk("listing jobs"):
        jobs = client(address).list_jobs()
    return [JobInfo(j.submission_id or j.job_id or "", str(getattr(j.status, "value", j.status)),
                    j.message or "", j.entrypoint or "") for j in jobs]
