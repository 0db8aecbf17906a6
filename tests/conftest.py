"""Shared fixtures. Tests build their own fixtures on disk; ../shared is optional."""

from __future__ import annotations

from pathlib import Path

import pytest

from merl.core.env import apply_defaults

apply_defaults(offline=True)  # before any test imports a Hugging Face library: tests never reach a hub

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (real records, reference tables); the test is skipped where it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent: real-data conformance check skipped")
    return SHARED


@pytest.fixture(scope="session")
def ray_local():
    """One embedded 2-CPU Ray cluster per test process, with the dashboard (state API) that Ray
    Train's placement-group cleaner needs to free the workers of a stopped Tune trial."""
    from merl.core.raysession import ensure_ray

    ray = ensure_ray(num_cpus=2, dashboard=True)
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config, items):
    """Keep every Ray-using test on one xdist worker (one Ray cluster at a time on 2 cores);
    the other worker runs the pure-Python tests meanwhile."""
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()) or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group("ray"))
