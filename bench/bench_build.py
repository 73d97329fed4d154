"""A daemonless build of a 100 MB directory into one gzip layer, against ``tar -c DIR | gzip`` of the same directory.

The directory is generated once (seeded, under ``.lab/bench/build-source``):
about 100 MB in 2,000 files of mixed content -- text-like (compresses well),
random (does not compress), runs of zeros -- in nested directories. ocilab's
side is ``Builder.scratch().add(DIR, "/data")``: walk, sorted PAX tar, sha256
of the tar (diff_id), gzip level 6 (zlib-ng), sha256 of the blob, all streaming.
The peer is GNU tar piped into gzip (default level 6) into a file. Best of
``--repeat`` runs each, side by side; the ratio is ocilab's time over the peer's
(target: at most 1.0x).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ocilab import Builder

ROOT = Path(__file__).resolve().parent.parent / ".lab" / "bench"
SOURCE = ROOT / "build-source"
TOTAL_BYTES = 100 * 1024 * 1024
FILES = 2000
SEED = 8
WORDS = b"layer manifest index config digest blob registry tag whiteout opaque gzip zstd tar bundle runc".split()


def make_source(directory: Path) -> None:
    """Write the seeded ~100 MB tree (a third each text-like, random, and zeros with some text) once."""
    marker = directory / ".complete"
    if marker.exists():
        return
    shutil.rmtree(directory, ignore_errors=True)
    rng = random.Random(SEED)
    per_file = TOTAL_BYTES // FILES
    for number in range(FILES):
        folder = directory / f"d{number % 20:02d}" / f"e{number % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(per_file // 2, per_file * 3 // 2)
        kind = number % 3
        if kind == 0:
            data = b" ".join(rng.choice(WORDS) for _ in range(size // 6))[:size]
        elif kind == 1:
            data = rng.randbytes(size)
        else:
            data = bytes(size // 2) + b" ".join(rng.choice(WORDS) for _ in range(size // 12))[: size - size // 2]
        (folder / f"f{number:04d}.dat").write_bytes(data)
    marker.write_bytes(b"")


def ocilab_seconds(directory: Path) -> tuple[float, int]:
    start = time.perf_counter()
    image = Builder.scratch("linux/amd64").add(directory, "/data")
    seconds = time.perf_counter() - start
    return seconds, image.layers[0].size


def peer_seconds(directory: Path, out: Path) -> tuple[float, int]:
    start = time.perf_counter()
    with out.open("wb") as sink:
        tar = subprocess.Popen(["tar", "-c", "-C", str(directory), "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        gzip = subprocess.run(["gzip", "-6"], stdin=tar.stdout, stdout=sink, check=True)
        tar.stdout.close()
        if tar.wait() != 0 or gzip.returncode != 0:
            raise SystemExit("tar | gzip failed")
    return time.perf_counter() - start, out.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    make_source(SOURCE)
    total = sum(path.stat().st_size for path in SOURCE.rglob("*") if path.is_file())
    os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
    ours, theirs = [], []
    for _ in range(args.repeat):  # alternate, so both see the same page cache and machine load
        ours.append(ocilab_seconds(SOURCE))
        theirs.append(peer_seconds(SOURCE, ROOT / "build-peer.tar.gz"))
    (ROOT / "build-peer.tar.gz").unlink()
    best_ours, best_theirs = min(ours), min(theirs)
    print(f"daemonless build of {total / 1e6:.1f} MB in {FILES} files into one gzip layer, best of {args.repeat}")
    print(f"{'':<18} {'seconds':>8} {'MB/s in':>8} {'layer MB':>9}")
    for name, (seconds, size) in (("ocilab build", best_ours), ("tar -c | gzip -6", best_theirs)):
        print(f"{name:<18} {seconds:>8.2f} {total / 1e6 / seconds:>8.1f} {size / 1e6:>9.1f}")
    print(f"ratio ocilab / tar|gzip: {best_ours[0] / best_theirs[0]:.2f}x (target <= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
