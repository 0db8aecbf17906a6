"""Cluster settings (``ray_config.yaml``): where Ray runs and how jobs are shipped there.

One file answers "which cluster?" for every command: ``address: null`` means an embedded
local cluster sized for a laptop; a cluster address plus a Jobs (dashboard) address let the
same commands run unchanged on many nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from merl.core.config import StrictModel, load_config

DEFAULT_CONFIG = Path("ray_config.yaml")


class LocalClusterConfig(StrictModel):
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the embedded cluster (None: all cores)")
    num_gpus: int | None = Field(None, ge=0)
    head_port: int = Field(6379, ge=1024, le=65535, description="GCS port for `merl cluster up`")
    dashboard_port: int = Field(8265, ge=1024, le=65535, description="Jobs API / dashboard port")
    dashboard_agent_listen_port: int | None = Field(
        None, ge=1024, le=65535,
        description="Job agent HTTP port (None: a free port; Ray's fixed default clashes with other Ray instances)",
    )
    temp_dir: str | None = Field(None, description="Ray's session/log folder (None: Ray's default)")


class JobsConfig(StrictModel):
    address: str = Field("http://127.0.0.1:8265", description="Ray Jobs API (dashboard) URL")
    working_dir: str = Field(".", description="Folder shipped with each job (code + configs)")
    excludes: list[str] = Field(
        default_factory=lambda: [".venv", "runs", ".git", "**/__pycache__", "*.parquet"],
        description="Paths not shipped with the working dir",
    )
    pip: list[str] = Field(default_factory=list, description="Extra pip packages for the job's runtime env")
    env_vars: dict[str, str] = Field(
        default_factory=dict,
        description="Extra env vars for the job; merl's own defaults come from merl.core.env and need no entry",
    )
    entrypoint_num_cpus: float = Field(0.0, ge=0, description="CPUs reserved for the driver process")


class ClusterConfig(StrictModel):
    address: str | None = Field(None, description="Ray address for drivers: null = embedded local cluster, 'auto', 'host:6379', 'ray://host:10001'")
    local: LocalClusterConfig = Field(default_factory=LocalClusterConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)

    def runtime_env(self) -> dict[str, Any]:
        env: dict[str, Any] = {
            "working_dir": self.jobs.working_dir,
            "excludes": list(self.jobs.excludes),
        }
        if self.jobs.env_vars:
            env["env_vars"] = dict(self.jobs.env_vars)
        if self.jobs.pip:
            env["pip"] = list(self.jobs.pip)
        return env


def load_cluster_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ClusterConfig:
    """``ray_config.yaml`` from the current folder if present, else defaults."""
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    return load_config(ClusterConfig, path, overrides)


def apply_cluster_defaults(path: str | Path | None = None) -> ClusterConfig:
    """Make the settings file's ``address`` / ``local.num_cpus`` the Ray connection defaults."""
    from merl.core.raysession import set_defaults

    cfg = load_cluster_config(path)
    set_defaults(cfg.address, cfg.local.num_cpus)
    return cfg
