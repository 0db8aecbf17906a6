"""Start/stop a persistent single-machine Ray head (``merl cluster up/down``).

The embedded cluster (``merl.core.raysession.ensure_ray``) lives as long as one command; a head
started here outlives it, so jobs can be submitted to it through the Jobs API exactly as to
a multi-node cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from merl.cluster.config import LocalClusterConfig


def _ray_bin() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


def up(cfg: LocalClusterConfig) -> str:
    cmd = [
        _ray_bin(), "start", "--head",
        f"--port={cfg.head_port}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={cfg.dashboard_port}",
        "--disable-usage-stats",
    ]
    agent_port = cfg.dashboard_agent_listen_port or _free_port()
    cmd.append(f"--dashboard-agent-listen-port={agent_port}")
    if cfg.num_cpus:
        cmd.append(f"--num-cpus={cfg.num_cpus}")
    if cfg.num_gpus is not None:
        cmd.append(f"--num-gpus={cfg.num_gpus}")
    if cfg.temp_dir:
        cmd.append(f"--temp-dir={cfg.temp_dir}")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def down(temp_dir: str | None = None) -> str:
    """Stop the head. With ``temp_dir`` only that cluster's processes are ended (others on
    the machine, e.g. embedded clusters of running jobs, are left alone); without it,
    ``ray stop`` ends every Ray process of this user."""
    if temp_dir:
        import signal

        import psutil

        killed = 0
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(p.info.get("cmdline") or [])
            if temp_dir in cmd and p.pid != os.getpid():
                try:
                    p.send_signal(signal.SIGTERM)
                    killed += 1
                except psutil.Error:
                    pass
        psutil.wait_procs([p for p in psutil.process_iter() if temp_dir in " ".join(_cmdline(p))], timeout=10)
        return f"stopped {killed} Ray processes of {temp_dir}"
    res = subprocess.run([_ray_bin(), "stop"], capture_output=True, text=True)
    return res.stdout + res.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _cmdline(p) -> list[str]:
    try:
        return p.cmdline()
    except Exception:  # noqa: BLE001 - process vanished or is not ours
        return []
