"""``ocilab unpack`` of the realistic image (``debian``, bench/images.py) against ``umoci unpack`` of the same layout.

Both run as child processes, one after the other, timed around the child (wall time) with peak RSS
from ``os.wait4``; umoci runs right before ocilab in every repetition, and each bundle is removed
(and dirty pages flushed with ``sync``) outside the timing. Best of ``--repeat``. The ratio is
ocilab's time over umoci's (target: at most 1.0x). A missed target is reported, not fatal.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import images
from images import BENCH_DIR

OCILAB = Path(sys.executable).with_name("ocilab")
TARGET = 1.0


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child running ``command``; raises when it fails."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode() if process.stderr else ''}")
    return seconds, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--image", default="debian", help="a bench/images.py image (default: debian)")
    args = parser.parse_args()
    (image,) = images.ensure([args.image])
    best: dict[str, tuple[float, float]] = {}
    commands = {
        "umoci": lambda bundle: ["umoci", "unpack", "--image", image.umoci_image, str(bundle)],
        "ocilab": lambda bundle: [str(OCILAB), "unpack", image.ref, str(bundle)],
    }
    for round_number in range(1, args.repeat + 1):
        for name, command in commands.items():
            scratch = Path(tempfile.mkdtemp(dir=BENCH_DIR, prefix="unpack-"))
            try:
                print(f"bench: {round_number}/{args.repeat}: {name} unpack {image.name}", file=sys.stderr)
                seconds, peak = measure(command(scratch / "bundle"))
            finally:
                shutil.rmtree(scratch)
                subprocess.run(["sync"], check=True)
            old = best.get(name)
            best[name] = (min(seconds, old[0]) if old else seconds, max(peak, old[1]) if old else peak)
    ratio = best["ocilab"][0] / best["umoci"][0]
    print(f"image {image.name}; best of {args.repeat}; {os.cpu_count()} CPUs (shared: numbers are preliminary)")
    print(f"{'tool':8} {'seconds':>8} {'peak MB':>8}")
    for name, (seconds, peak) in best.items():
        print(f"{name:8} {seconds:8.2f} {peak:8.1f}")
    print(f"ratio    {ratio:.2f}x  (target <= {TARGET:.1f}x: {'PASS' if ratio <= TARGET else 'MISS'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
