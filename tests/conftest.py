"""Shared fixtures. Tests build their own fixtures on disk; ../shared is optional.

The session also checks that it leaves no Ray process behind: Ray processes that appear
during the session and are descendants of this process, or name one of its temp dirs, fail
the run at its end (and are ended). Ray processes of other sessions on the machine (other
checkouts, other developers) are never looked at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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

# Every Ray cluster of the session keeps its temp dir under here (RAY_TMPDIR is Ray's default
# for it; short, since Ray's socket paths have a length limit), so the end-of-session check can
# tell them apart; xdist workers nest theirs in the controller's. `merl cluster up` records
# its heads here too, not in the user's ~/.cache.
_parent = os.environ.get("MERL_TEST_RAY_TMP") if os.environ.get("PYTEST_XDIST_WORKER") else None
if _parent and os.path.isdir(_parent):
    RAY_TMP_ROOT = os.path.join(_parent, os.environ["PYTEST_XDIST_WORKER"])
    os.makedirs(RAY_TMP_ROOT, exist_ok=True)
else:
    RAY_TMP_ROOT = tempfile.mkdtemp(prefix="mrt", dir="/tmp" if os.path.isdir("/tmp") else None)
os.environ.update(MERL_TEST_RAY_TMP=RAY_TMP_ROOT, RAY_TMPDIR=RAY_TMP_ROOT,
                  MERL_STATE_DIR=os.path.join(RAY_TMP_ROOT, "state"))
_ray_before: set[tuple[int, float]] = set()


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
    """One embedded 2-CPU Ray cluster per test process, with the dashboard (state API) that Ray
    Train's placement-group cleaner needs to free the workers of a stopped Tune trial."""
    from merl.core.raysession import ensure_ray

    ray = ensure_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture
def ray_temp_dir() -> str:
    """A fresh Ray ``--temp-dir`` that the session-end check knows as this session's."""
    return tempfile.mkdtemp(prefix="h", dir=RAY_TMP_ROOT)


def pytest_collection_modifyitems(config, items):
    """Keep every Ray-using test on one xdist worker (one Ray cluster at a time on 2 cores);
    the other worker runs the pure-Python tests meanwhile."""
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()) or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group("ray"))


def _ray_processes() -> list:
    import psutil

    from merl.cluster.head import is_ray_process

    return [p for p in psutil.process_iter() if p.pid != os.getpid() and is_ray_process(p)]


def _key(p) -> tuple[int, float]:
    try:
        return p.pid, p.create_time()
    except Exception:  # noqa: BLE001 - psutil: the process is gone or not ours to read
        return p.pid, -1.0


def _ours(p, descendants: set[int], roots: list[str]) -> bool:
    """A descendant, a process naming one of our temp dirs, or one that inherited our
    environment (a daemon of a head `ray start` detached, e.g. the Ray Client server)."""
    if p.pid in descendants:
        return True
    try:
        cmd = " ".join(p.cmdline())
        marker = p.environ().get("MERL_TEST_RAY_TMP", "")
    except Exception:  # noqa: BLE001 - psutil: gone or not readable
        return False
    return any(r.rstrip("/") + "/" in cmd or (marker + "/").startswith(r.rstrip("/") + "/") for r in roots)


def pytest_sessionstart(session):
    _ray_before.update(_key(p) for p in _ray_processes())


def _leftovers(roots: list[str]) -> list:
    import psutil

    me = psutil.Process()
    descendants = {c.pid for c in me.children(recursive=True)}
    found = {p.pid: p for p in _ray_processes() if _key(p) not in _ray_before and _ours(p, descendants, roots)}
    for p in list(found.values()):  # a head's agents and workers name no temp dir: they go with it
        try:
            found.update({c.pid: c for c in p.children(recursive=True) if _key(c) not in _ray_before})
        except psutil.Error:
            pass
    return list(found.values())


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    import time

    roots = [RAY_TMP_ROOT, str(session.config._tmp_path_factory.getbasetemp())] \
        if hasattr(session.config, "_tmp_path_factory") else [RAY_TMP_ROOT]
    deadline = time.monotonic() + 15  # ray.shutdown() and `merl cluster down` end processes asynchronously
    left = _leftovers(roots)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _leftovers(roots)
    if left:
        from merl.cluster.head import terminate

        lines = []
        for p in left:
            try:
                lines.append(f"  pid {p.pid}: {' '.join(p.cmdline())[:160]}")
            except Exception:  # noqa: BLE001 - psutil: exited meanwhile
                continue
        terminate(left, grace_s=2.0)
        if lines:
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            msg = "Ray processes started by this test session were still running at its end (now ended):\n" + "\n".join(lines)
            if reporter is not None:
                reporter.write_line(msg, red=True)
            else:
                print(msg)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    shutil.rmtree(RAY_TMP_ROOT, ignore_errors=True)
