"""Shared fixtures. Tests build their own fixtures on disk; ../shared is optional."""

from __future__ import annotations

from pathlib import Path

import pytest
import s3_fixtures

from merl.core.env import apply_defaults

apply_defaults(offline=True)  # before any test imports a Hugging Face library: tests never reach a hub
# Before any Ray cluster starts, so its workers inherit them: AWS clients of this test process
# tree talk to the loopback S3 server of the `s3` fixture (started only when a test asks).
S3_ENDPOINT = s3_fixtures.configure_env()

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (real records, reference tables); the test is skipped where it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent: real-data conformance check skipped")
    return SHARED


@pytest.fixture(scope="session")
def s3():
    """A real S3-compatible server (moto) on loopback with an empty bucket; ``s3.uri()`` names fresh locations."""
    proc = s3_fixtures.start_server(S3_ENDPOINT)
    try:
        s3_fixtures.create_bucket()
        yield s3_fixtures.S3Server(S3_ENDPOINT)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def ray_local():
    """One embedded 2-CPU Ray cluster per test process."""
    from merl.core.raysession import ensure_ray

    ray = ensure_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config, items):
    """Keep every Ray-using test on one xdist worker (one Ray cluster at a time on 2 cores);
    the other worker runs the pure-Python tests meanwhile."""
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()) or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group("ray"))
