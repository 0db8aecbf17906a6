"""Synthetic corpus generation speed: 10,000 MIMIC-layout records with 2 worker processes.

Target: 10k records (signals + WFDB files + CSVs) in under two minutes on 2 cores.
``synth_cpu_ms_per_record`` (CPU time of parent + workers) does not depend on how loaded
the machine is: 10k / (2 cores) at that cost is the unloaded wall time.
Set MERL_BENCH_SYNTH_N to measure a smaller corpus on a loaded machine (the number used is
printed). The corpus is deleted afterwards (it is ~1.2 GB at 10k records).
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
from pathlib import Path


def run(report, workdir: Path) -> None:
    from merl.training.data.synth import synthesize

    n = int(os.environ.get("MERL_BENCH_SYNTH_N", "10000"))
    out = Path(workdir) / "mimic"
    shutil.rmtree(out, ignore_errors=True)
    def cpu() -> float:
        return sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime
                   for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))

    c0 = cpu()
    try:
        s = synthesize("mimic", out, n, seed=0, num_workers=2)
        cpu_s = cpu() - c0  # workers are reaped when the pool closes: load-independent cost
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(f"# synthetic MIMIC-layout corpus: {s.n_records} records, 2 workers, {s.seconds:.1f}s", file=sys.stderr)
    report("synth_records_per_s", s.n_records / s.seconds, "records/s")
    report("synth_10k_seconds" if n == 10000 else f"synth_{n}_seconds", s.seconds, "s")
    report("synth_bytes_written", s.bytes_written / 1e6, "MB")
    report("synth_cpu_ms_per_record", 1000 * cpu_s / s.n_records, "ms")
