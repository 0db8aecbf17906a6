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


class RaySessionError(RuntimeError):
    """Ray could not be started or joined; the message says why and is shown to users as is."""


class ClusterUnreachable(RaySessionError):
    """The Ray cluster named by ``--address`` could not be reached (nothing else: a cluster
    that answers and refuses is a :class:`RaySessionError` with Ray's own reason)."""


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def free_port() -> int:
    """A TCP port free on loopback right now (for the embedded cluster's dashboard, a local service)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def target_address(address: str | None = None) -> str | None:
    """The cluster :func:`ensure_ray` joins for ``address``; None means it starts an embedded one
    (so whoever calls it owns that cluster and shuts it down)."""
    return address or _default_target()[0]


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


def ensure_ray(address: str | None = None, num_cpus: int | None = None, **init_kwargs):
    """Initialise Ray once per process and return the ``ray`` module.

    ``address="auto"`` / ``"ray://host:10001"`` / ``"host:6379"`` connects to a running one.
    ``address=None`` means: ``RAY_ADDRESS`` if set (as inside a submitted Ray Job), else the
    address given to :func:`set_defaults` (the CLI passes ``merl_cluster.yaml``'s), else an
    embedded local cluster with ``num_cpus`` CPUs (default: the configured ``local.num_cpus``,
    else all cores).

    Raises :class:`ClusterUnreachable` when nothing answers at the address, and
    :class:`RaySessionError` (with Ray's reason) when Ray fails otherwise, e.g. a runtime-env
    conflict or a cluster that does not come up.
    """
    import ray

    if ray.is_initialized():
        return ray
    if address is None:
        address, configured_cpus = _default_target()
        num_cpus = num_cpus or configured_cpus
    env.disable_ray_telemetry()
    runtime_env = runtime_env_for(init_kwargs.pop("runtime_env", None))
    kwargs: dict[str, Any] = dict(log_to_driver=True, configure_logging=False)
    if address:
        _probe(address)
        kwargs.update(include_dashboard=False, runtime_env=runtime_env, **init_kwargs)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, TimeoutError) as e:
            raise ClusterUnreachable(
                f"cannot reach the Ray cluster at {address!r}: {_one_line(e)}. Start one with "
                "`ray start --head` (or `merl cluster up`), or omit --address to run on an "
                "embedded local cluster."
            ) from None
        except Exception as e:  # Ray raises ValueError/RuntimeError/its own types; all are reported as is
            raise RaySessionError(f"joining the Ray cluster at {address!r} failed ({type(e).__name__}): {_one_line(e)}") from e
        log.info("connected to Ray cluster at %s", address)
        return ray
    # Ray Train's PlacementGroupCleaner polls the State API every second while a run lives,
    # with no address: without the dashboard's modules it logs a warning each time, and on a
    # host with several Ray clusters it may ask another cluster. So the embedded cluster gets
    # its dashboard on a port of its own, and workers are told where it is.
    port = free_port()
    api_env = {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}
    runtime_env = dict(runtime_env or {})
    runtime_env["env_vars"] = {**api_env, **runtime_env.get("env_vars", {})}
    kwargs.update(include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port, runtime_env=runtime_env)
    kwargs.update(init_kwargs)
    cpus = num_cpus or os.cpu_count() or 1
    try:
        ray.init(num_cpus=cpus, **kwargs)
    except Exception as e:  # Ray raises a bare Exception when its processes do not start in time
        raise RaySessionError(f"starting the embedded local Ray cluster failed ({type(e).__name__}): {_one_line(e)}") from e
    log.info("started embedded local Ray cluster (%s CPUs, dashboard http://127.0.0.1:%s)", cpus, port)
    return ray

