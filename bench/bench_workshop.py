"""A workshop's cost on this machine: per-learner memory, time to start N servers at once, N learners at once.

One workshop (``ocilab.workshop.up``, as root) with the largest N learners;
then for each N: the hub starts N servers at once through its REST API
(timed until all are ready), each learner gets a kernel, and once all are
idle the memory of every process each learner owns is read from
``/proc/PID/smaps_rollup`` (RSS, and PSS, which splits shared pages among
their users: the honest per-learner share); then the N learners run notebook
00 and the daemonless lessons (tests/workshop_lessons.py) at once, timed
until the last one finishes; then the servers are stopped and the learners
reset. ``down --purge`` at the end, also on failure. Results go to
``.lab/bench/workshop.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ocilab.workshop import Record, down, reset, start_servers, stop_servers, up  # noqa: E402
from ocilab.workshop.hub import free_port  # noqa: E402
from ocilab.workshop.kernels import LearnerKernel  # noqa: E402
from ocilab.workshop.processes import processes_of  # noqa: E402
from tests.workshop_lessons import run_lessons  # noqa: E402

RESULTS = ROOT / ".lab" / "bench" / "workshop.json"


def memory_mib(uid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB summed over every process of ``uid``."""
    rss = pss = 0
    for pid in processes_of({uid}):
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        fields = {line.split(":")[0]: int(line.split()[1]) for line in lines[1:] if line.endswith("kB")}
        rss += fields.get("Rss", 0)
        pss += fields.get("Pss", 0)
    return rss / 1024, pss / 1024


def measure(record: Record, names: list[str], uids: dict[str, int]) -> dict[str, object]:
    start = time.perf_counter()
    start_servers(record, names)
    started = time.perf_counter() - start
    kernels = [LearnerKernel(record, name) for name in names]
    try:
        for kernel in kernels:
            kernel.execute("import ocilab")  # what the first cell of every notebook does
        time.sleep(2)
        idle = [memory_mib(uids[name]) for name in names]
        start = time.perf_counter()
        with ThreadPoolExecutor(len(kernels)) as pool:
            results = list(pool.map(run_lessons, kernels))
        lessons = time.perf_counter() - start
        busy = [memory_mib(uids[name]) for name in names]
    finally:
        for kernel in kernels:
            kernel.close()
    errors = [error for result in results for error in result.errors]
    stop_servers(record, names)
    return {
        "learners": len(names),
        "start_seconds": round(started, 2),
        "lessons_seconds": round(lessons, 2),
        "idle_rss_mib": round(sum(rss for rss, _ in idle) / len(names), 1),
        "idle_pss_mib": round(sum(pss for _, pss in idle) / len(names), 1),
        "after_lessons_pss_mib": round(sum(pss for _, pss in busy) / len(names), 1),
        "errors": errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--learners", type=int, nargs="+", default=[1, 3, 10], metavar="N")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_workshop: run as root (a workshop makes unix users)")
    token = secrets.token_hex(3)
    root = Path(f"/tmp/ocilab-workshop-bench-{token}")
    rows = []
    try:
        start = time.perf_counter()
        record, _ = up(max(args.learners), root, prefix=f"owb{token}x", ip="127.0.0.1", port=free_port())
        set_up = time.perf_counter() - start
        uids = {learner.name: learner.uid for learner in record.learners}
        for count in args.learners:
            rows.append(measure(record, [learner.name for learner in record.learners[:count]], uids))
            reset(root)
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if root.exists():
            down(root, purge=True)
    cores, memory = os.cpu_count(), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"\nworkshop up ({max(args.learners)} learners, venv built): {set_up:.1f} s; {cores} cores, {memory:.0f} GiB")
    print(
        f"{'N':>3}  {'start N servers':>15}  {'lessons at once':>15}  {'idle PSS/learner':>16}  {'after lessons':>13}"
    )
    for row in rows:
        print(f"{row['learners']:>3}  {row['start_seconds']:>13.1f} s  {row['lessons_seconds']:>13.1f} s"
              f"  {row['idle_pss_mib']:>12.0f} MiB  {row['after_lessons_pss_mib']:>9.0f} MiB")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"setup_seconds": round(set_up, 1), "cores": cores, "runs": rows}, indent=2))
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
