"""Start/stop a persistent single-machine Ray head (``merl cluster up/down``).

The embedded cluster (``merl.core.raysession.ensure_ray``) lives as long as one command; a head
started here outlives it, so jobs can be submitted to it through the Jobs API exactly as to
a multi-node cluster.

``up`` always gives Ray a temp dir of its own (``--temp-dir``) and records it, with the GCS
pid, in a state file; ``down`` ends only processes that name that temp dir and their
descendants. It never runs ``ray stop``, which would end every Ray cluster of this user on
the machine (other checkouts' tests, embedded clusters of running commands).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from merl.cluster.config import LocalClusterConfig
from merl.core.raysession import RaySessionError

log = logging.getLogger(__name__)
STATE_DIR_VAR = "MERL_STATE_DIR"
# Set in `ray start`'s environment, so inherited by every process of the head, including the
# ones whose command line names no temp dir (the Ray Client server, agents, job drivers).
HEAD_MARK_VAR = "MERL_HEAD_TEMP_DIR"


class HeadError(RaySessionError):
    """`merl cluster up/down` could not do what was asked; the message says why."""


@dataclass
class HeadState:
    temp_dir: str
    owns_temp_dir: bool  # created by up, removed by down
    head_port: int
    dashboard_port: int
    gcs_pid: int | None
    gcs_started: float | None  # psutil create_time: a reused pid is not ours
    python: str


def state_dir() -> Path:
    """``$MERL_STATE_DIR``, else ``$XDG_CACHE_HOME/merl``, else ``~/.cache/merl``."""
    if os.environ.get(STATE_DIR_VAR):
        return Path(os.environ[STATE_DIR_VAR])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "merl"


def state_file(head_port: int) -> Path:
    return state_dir() / f"head-{head_port}.json"


def read_state(head_port: int) -> HeadState | None:
    path = state_file(head_port)
    try:
        return HeadState(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        log.warning("ignoring unreadable head state file %s", path)
        return None


def recorded_heads() -> list[HeadState]:
    """Heads started by `merl cluster up` on this machine that still run."""
    out = []
    for path in sorted(state_dir().glob("head-*.json")):
        try:
            st = read_state(int(path.stem.split("-", 1)[1]))
        except ValueError:
            continue
        if st is not None and processes_of(st.temp_dir):
            out.append(st)
    return out


def _ray_bin() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


def _new_temp_dir() -> str:
    """Under ``$RAY_TMPDIR`` (where Ray itself would go), else /tmp: short on purpose, as Ray's
    socket paths under it must stay below the 107-byte limit."""
    base = os.environ.get("RAY_TMPDIR") or ("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir())
    os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix="merl-head-", dir=base)


def up(cfg: LocalClusterConfig) -> HeadState:
    """Start the head and record it; refuses when this port's recorded head still runs."""
    old = read_state(cfg.head_port)
    if old is not None:
        if processes_of(old.temp_dir):
            raise HeadError(
                f"a head started by `merl cluster up` already runs on port {cfg.head_port} "
                f"(temp dir {old.temp_dir}); stop it with `merl cluster down` first"
            )
        if old.owns_temp_dir:  # a head that died without `down`: its logs are of no further use
            shutil.rmtree(old.temp_dir, ignore_errors=True)
    owns = cfg.temp_dir is None
    temp_dir = _own_dir(cfg.temp_dir) if cfg.temp_dir else _new_temp_dir()
    if processes_of(temp_dir):  # `down` ends everything naming it: it must be this head's alone
        raise HeadError(f"local.temp_dir {temp_dir} is in use by running Ray processes; give the head a folder of its own")
    os.makedirs(temp_dir, exist_ok=True)
    cmd = [
        _ray_bin(), "start", "--head",
        f"--port={cfg.head_port}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={cfg.dashboard_port}",
        f"--dashboard-agent-listen-port={cfg.dashboard_agent_listen_port or _free_port()}",
        f"--ray-client-server-port={cfg.client_server_port or _free_port()}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    if cfg.num_cpus:
        cmd.append(f"--num-cpus={cfg.num_cpus}")
    if cfg.num_gpus is not None:
        cmd.append(f"--num-gpus={cfg.num_gpus}")
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, HEAD_MARK_VAR: temp_dir})
    if res.returncode != 0:
        stop_processes(temp_dir)  # whatever part of the head did start
        if owns:
            shutil.rmtree(temp_dir, ignore_errors=True)
        lines = [ln.strip() for ln in (res.stderr or res.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
        raise HeadError(f"`ray start --head --port={cfg.head_port}` failed (exit {res.returncode}): {reason}")
    gcs = next((p for p in processes_of(temp_dir) if _name(p) == "gcs_server"), None)
    state = HeadState(temp_dir=temp_dir, owns_temp_dir=owns, head_port=cfg.head_port,
                      dashboard_port=cfg.dashboard_port, gcs_pid=gcs.pid if gcs else None,
                      gcs_started=gcs.create_time() if gcs else None, python=sys.executable)
    path = state_file(cfg.head_port)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(state), indent=2))
    log.debug("Ray head up on port %s, temp dir %s (state: %s)", cfg.head_port, temp_dir, path)
    return state


def down(cfg: LocalClusterConfig) -> str:
    """Stop the head `up` started on ``cfg.head_port`` (found through its state file; without
    one, through ``cfg.temp_dir`` if set). Other Ray processes on the machine are left alone."""
    state = read_state(cfg.head_port)
    if state is None:
        if not cfg.temp_dir:
            return f"no head started by `merl cluster up` on port {cfg.head_port}: nothing to stop"
        temp_dir, owns = _own_dir(cfg.temp_dir), False
    else:
        temp_dir, owns = state.temp_dir, state.owns_temp_dir
    extra = []
    if state is not None and state.gcs_pid:
        extra = _alive(state.gcs_pid, state.gcs_started)
    n = stop_processes(temp_dir, extra)
    if state is not None:
        state_file(cfg.head_port).unlink(missing_ok=True)
    if owns:
        shutil.rmtree(temp_dir, ignore_errors=True)
    return f"stopped the Ray head on port {cfg.head_port} ({n} processes of {temp_dir})"


def _own_dir(temp_dir: str) -> str:
    """``local.temp_dir`` made absolute; Ray's shared default (``/tmp/ray``) is refused, since
    every Ray process started without a temp dir names it."""
    shared = {os.path.join(os.path.abspath(base), "ray")
              for base in ("/tmp", os.environ.get("RAY_TMPDIR"), os.environ.get("TMPDIR")) if base}
    path = os.path.abspath(temp_dir)
    if path in shared:
        raise HeadError(f"local.temp_dir {temp_dir!r} is Ray's shared default; give the head a folder of its own "
                        "(or null for a fresh one)")
    return path


def _name(p) -> str:
    import psutil

    try:
        return p.name()
    except psutil.Error:
        return ""


def _alive(pid: int, started: float | None) -> list:
    import psutil

    try:
        p = psutil.Process(pid)
        return [p] if started is None or abs(p.create_time() - started) < 1e-3 else []
    except psutil.Error:
        return []


def _names_dir(cmdline: list[str], temp_dir: str) -> bool:
    pattern = re.compile(re.escape(temp_dir.rstrip("/")) + r"(/|$)")
    return any(pattern.search(arg) for arg in cmdline)


def _marked(p, temp_dir: str) -> bool:
    import psutil

    try:
        return p.environ().get(HEAD_MARK_VAR) == temp_dir
    except psutil.Error:  # another user's process, or gone
        return False


def processes_of(temp_dir: str) -> list:
    """Processes of the head that uses ``temp_dir``: those whose command line names it (Ray's
    daemons do) or that inherited `up`'s mark (all do, the Ray Client server included), plus
    their descendants (workers, job drivers); never this process."""
    import psutil

    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        if _names_dir(p.info.get("cmdline") or [], temp_dir) or _marked(p, temp_dir):
            found[p.pid] = p
            try:
                found.update({c.pid: c for c in p.children(recursive=True)})
            except psutil.Error:
                pass
    found.pop(os.getpid(), None)
    return list(found.values())


def stop_processes(temp_dir: str, extra: list | None = None, grace_s: float = 5.0) -> int:
    """SIGTERM the processes of ``temp_dir``, SIGKILL those still there after ``grace_s``
    (gcs_server and raylet may ignore SIGTERM for longer than anyone waits). Returns how many."""
    procs = {p.pid: p for p in [*processes_of(temp_dir), *(extra or [])]}
    return terminate(list(procs.values()), grace_s)


def terminate(procs: list, grace_s: float = 5.0) -> int:
    import psutil

    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(alive, timeout=5.0)
    if still:
        log.warning("Ray processes still running after SIGKILL: %s", [p.pid for p in still])
    return len(procs)


def is_ray_process(p) -> bool:
    """A Ray daemon, worker or dashboard process (by name or command line)."""
    import psutil

    try:
        name, cmd = p.name(), p.cmdline()
    except psutil.Error:
        return False
    joined = " ".join(cmd)
    return (name in {"gcs_server", "raylet"} or joined.startswith("ray::") or "ray-dashboard-" in joined
            or "'ray.dashboard" in joined or re.search(r"(site|dist)-packages/ray/", joined) is not None)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def wait_until_gone(temp_dir: str, timeout_s: float = 10.0) -> list:
    """Processes of ``temp_dir`` still alive after ``timeout_s`` (for checks and tests)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = processes_of(temp_dir)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)
