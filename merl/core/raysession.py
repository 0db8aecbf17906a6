"""Connecting to Ray: an embedded local cluster by default, any running cluster by address.

Every command that runs Ray work goes through :func:`ensure_ray`, so "unreachable cluster"
is reported the same way everywhere and the local default stays laptop-sized.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from merl.core import env

log = logging.getLogger(__name__)


class ClusterUnreachable(RuntimeError):
    """The Ray cluster named by ``--address`` could not be reached."""


def _probe(address: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds (not Ray's minute-long retry loop) when a host:port is not listening."""
    import socket
    from urllib.parse import urlparse

    if address == "auto" or address.startswith("local"):
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise ClusterUnreachable(f"cannot parse Ray address {address!r}; expected host:port, ray://host:port or 'auto'")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        raise ClusterUnreachable(
            f"cannot reach the Ray cluster at {address!r} ({e.strerror or e}). Start one with "
            "`ray start --head` (or `merl cluster up`), or omit --address to run on an "
            "embedded local cluster."
        ) from None


_defaults: dict[str, Any] = {"address": None, "num_cpus": None}


def set_defaults(address: str | None = None, num_cpus: int | None = None) -> None:
    """Where ``ensure_ray(None)`` goes when ``RAY_ADDRESS`` is unset.

    The CLI calls this with the cluster settings file's values, so this ground module never
    reads project config itself.
    """
    _defaults.update(address=address, num_cpus=num_cpus)


def _default_target() -> tuple[str | None, int | None]:
    """(address, local CPUs) when the caller named no address."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], None
    return _defaults["address"], _defaults["num_cpus"]


def runtime_env_for(runtime_env: dict[str, Any] | None = None,
                    environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The ``runtime_env`` for ``ray.init``: the caller's, plus :func:`merl.core.env.worker_env_vars`
    so that workers see the driver's offline/tokenizer settings (the caller's values win).

    In a submitted job's driver Ray merges the job's runtime env into this one and refuses
    when both set the same variable; the job's own vars already reach its workers, so those
    are not forwarded again.
    """
    forwarded = env.worker_env_vars(environ)
    job_vars = env.job_env_vars(environ)
    if job_vars is not None:
        forwarded = {k: v for k, v in forwarded.items() if k not in job_vars}
    runtime_env = dict(runtime_env or {})
    if forwarded:
        runtime_env["env_vars"] = {**forwarded, **runtime_env.get("env_vars", {})}
    return runtime_env or None


def ensure_ray(address: str | None = None, num_cpus: int | None = None, dashboard: bool = False, **init_kwargs):
    """Initialise Ray once per process and return the ``ray`` module.

    ``address="auto"`` / ``"ray://host:10001"`` / ``"host:6379"`` connects to a running one.
    ``address=None`` means: ``RAY_ADDRESS`` if set (as inside a submitted Ray Job), else the
    address given to :func:`set_defaults` (the CLI passes ``ray_config.yaml``'s), else an embedded local cluster with ``num_cpus``
    CPUs (default: the configured ``local.num_cpus``, else all cores). ``dashboard`` starts the
    local cluster's dashboard, which serves the state API: Ray Train's placement-group cleaner
    needs it to free the workers of a run whose controller was killed (a Tune trial stopped
    early by ASHA, paused by PBT, or interrupted).
    """
    import ray

    if ray.is_initialized():
        return ray
    if address is None:
        address, configured_cpus = _default_target()
        num_cpus = num_cpus or configured_cpus
    env.disable_ray_telemetry()
    kwargs = dict(
        include_dashboard=dashboard,
        log_to_driver=True,
        configure_logging=False,
        runtime_env=runtime_env_for(init_kwargs.pop("runtime_env", None)),
        **init_kwargs,
    )
    if address:
        _probe(address)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ClusterUnreachable(
                f"cannot reach the Ray cluster at {address!r}: {e}. Start one with "
                "`ray start --head` (or `merl cluster up`), or omit --address to run on an "
                "embedded local cluster."
            ) from None
        log.info("connected to Ray cluster at %s", address)
    else:
        _init_local(ray, num_cpus or os.cpu_count() or 1, kwargs)
        log.info("started embedded local Ray cluster (%s CPUs)", num_cpus or os.cpu_count())
    return ray


def _init_local(ray, num_cpus: int, kwargs: dict[str, Any]) -> None:
    """Start an embedded cluster on a port chosen here, and tell its workers that address.

    Ray helpers inside the cluster that look it up without an address (Ray Train's
    placement-group cleaner, through the state API) otherwise scan the host and fail when
    other Ray clusters run there ("Found multiple active Ray instances"): the workers of a
    stopped Tune trial then keep their CPUs. ``RAY_ADDRESS`` in the workers' environment
    names this cluster; the driver's own environment is left alone.
    """
    import socket

    from ray.util import get_node_ip_address

    with socket.socket() as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    runtime_env = dict(kwargs.get("runtime_env") or {})
    runtime_env["env_vars"] = {"RAY_ADDRESS": f"{get_node_ip_address()}:{port}", **runtime_env.get("env_vars", {})}
    previous = os.environ.get("RAY_GCS_SERVER_PORT")
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)  # read by ray.init when it starts the GCS
    try:
        ray.init(num_cpus=num_cpus, **{**kwargs, "runtime_env": runtime_env})
    finally:
        if previous is None:
            os.environ.pop("RAY_GCS_SERVER_PORT", None)
        else:
            os.environ["RAY_GCS_SERVER_PORT"] = previous
