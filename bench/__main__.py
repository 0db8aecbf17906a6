"""Run every benchmark module in turn (``python -m bench [names...]``).

Each module exposes ``run(report, workdir)``; ``report(name, value, unit)`` prints one
``BENCH`` line. A ratio against a baseline measured in the same run uses unit ``x``.
Numbers on synthetic data are labelled as such by the module that prints them.
``python -m bench gpu [options]`` is the separate GPU check (:mod:`bench.gpu`), never part of
the default set. ``python -m bench serve`` runs one module alone (here the knowledge service load test).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from merl.core.env import apply_defaults

MODULES = ["synth", "ingest", "train", "loader", "shuffle", "retrieval", "serve", "sim2real"]


def report(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    apply_defaults(offline=True)  # figures must not depend on (or wait for) a model hub
    if argv[:1] == ["gpu"]:
        from bench.gpu import main as gpu_check

        return gpu_check(argv[1:])
    names = argv or MODULES
    root = Path(os.environ.get("MERL_BENCH_DIR", tempfile.mkdtemp(prefix="merl-bench-")))
    failed = 0
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        t0 = time.perf_counter()
        try:
            mod.run(report, root / name)
        except Exception:  # one broken benchmark must not hide the others' figures
            logging.exception("benchmark %s failed", name)
            failed += 1
        print(f"# bench {name} took {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
