"""merl's cluster settings (``merl_cluster.yaml``): where Ray runs and how jobs are shipped there.

One file answers "which cluster?" for every command: ``address: null`` means an embedded
local cluster sized for a laptop; a cluster address plus a Jobs (dashboard) address let the
same commands run unchanged on many nodes. (``ray_config.yaml`` is a different file: the Ray
cluster launcher's config for ``ray up``; merl never reads it.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from merl.core.config import ConfigError, StrictModel, load_config

DEFAULT_CONFIG = Path("merl_cluster.yaml")

# The code lives in the installed package (editable on a laptop, the wheel or the image on a
# cluster). Shipping these folders would put a partial ``merl/`` first on the job's sys.path
# (its cwd) and hide the installed ``merl.training`` & co., so only configs and data travel.
CODE_EXCLUDES = ["/merl", "/training", "/cluster", "/evaluation", "/knowledge", "/tests", "/bench", "/docs"]
OTHER_EXCLUDES = [".venv", "runs", ".git", "**/__pycache__", "*.parquet", "dist", "build", "*.egg-info"]


class LocalClusterConfig(StrictModel):
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the embedded cluster / local head (None: all cores)")
    num_gpus: int | None = Field(None, ge=0)
    head_port: int = Field(6379, ge=1024, le=65535, description="GCS port for `merl cluster up`")
    dashboard_port: int = Field(8265, ge=1024, le=65535, description="Jobs API / dashboard port")
    dashboard_agent_listen_port: int | None = Field(
        None, ge=1024, le=65535,
        description="Job agent HTTP port (None: a free port; Ray's fixed default clashes with other Ray instances)",
    )
    client_server_port: int | None = Field(
        None, ge=1024, le=65535, description="Ray Client (ray://) port of the head (None: a free port, not Ray's shared 10001)",
    )
    temp_dir: str | None = Field(
        None, description="Ray's session/log folder for `merl cluster up` (None: a fresh /tmp/merl-head-* removed by down)",
    )


class JobsConfig(StrictModel):
    address: str | None = Field(
        None, description="Ray Jobs API (dashboard) URL; None: the local head of `merl cluster up` (local.dashboard_port)",
    )
    python: str | None = Field(
        None,
        description="Interpreter that runs a leading `merl` in a job's entrypoint (as `<python> -m merl`). None: for the "
                    "head of `merl cluster up` on this machine its interpreter, else `python` (nodes with merl-ray installed)",
    )
    working_dir: str = Field(".", description="Folder shipped with each job (configs; the code comes installed)")
    excludes: list[str] = Field(
        default_factory=lambda: [*OTHER_EXCLUDES, *CODE_EXCLUDES],
        description="gitignore-style paths not shipped with the working dir",
    )
    py_modules: list[str] = Field(
        default_factory=list,
        description="Extra code for the job, e.g. a merl-ray wheel (dist/*.whl) to run local changes on a cluster",
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

    def jobs_address(self) -> str:
        return self.jobs.address or f"http://127.0.0.1:{self.local.dashboard_port}"

    def runtime_env(self, local_head: bool = False) -> dict[str, Any]:
        """The job's runtime env; ``local_head``: the Jobs API is a head on this machine."""
        env: dict[str, Any] = {
            "working_dir": self.jobs.working_dir,
            "excludes": list(self.jobs.excludes),
        }
        env_vars = dict(self.jobs.env_vars)
        if local_head:
            # Ray Train's PlacementGroupCleaner asks the State API "is the controller alive?"
            # without an address; on a host with several Ray clusters it may ask another one.
            env_vars.setdefault("RAY_API_SERVER_ADDRESS", self.jobs_address())
        if env_vars:
            env["env_vars"] = env_vars
        if self.jobs.pip:
            env["pip"] = list(self.jobs.pip)
        if self.jobs.py_modules:
            env["py_modules"] = list(self.jobs.py_modules)
        return env


def load_cluster_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ClusterConfig:
    """``merl_cluster.yaml`` from the current folder if present, else defaults."""
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    if path is not None:
        _reject_launcher_config(Path(path))
    return load_config(ClusterConfig, path, overrides)


def _reject_launcher_config(path: Path) -> None:
    """A Ray cluster-launcher YAML passed as merl's settings gets a pointer, not 20 unknown fields."""
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return  # load_config reports it
    if isinstance(data, dict) and {"provider", "available_node_types", "cluster_name"} & data.keys():
        raise ConfigError(
            f"{path} is a Ray cluster-launcher config (for `ray up`); merl's cluster settings "
            f"(address, local head, jobs) go in a file like {DEFAULT_CONFIG}"
        )


def apply_cluster_defaults(path: str | Path | None = None) -> ClusterConfig:
    """Make the settings file's ``address`` / ``local.num_cpus`` the Ray connection defaults."""
    from merl.core.raysession import set_defaults

    cfg = load_cluster_config(path)
    set_defaults(cfg.address, cfg.local.num_cpus)
    return cfg
