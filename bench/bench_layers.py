"""Layer reading benchmark (issue 3): ``ocilab changes``, ``diff`` and ``efficiency`` against ``umoci unpack``.

Every command runs as its own child process, one after another (never in parallel), and is measured with
``os.wait4``: wall time around the child, peak RSS from the child's own rusage. Each operation is repeated
(best wall time, highest peak RSS are kept); the peer runs right before ocilab in every repetition. umoci's
bundle is removed, and dirty pages written to disk with ``sync``, after each run, outside the timing.

Targets from the issue: changes <= 0.5x umoci unpack; diff <= 1.0x unpacking both images; peak memory of
diff and efficiency under 200 MB. A missed target is reported, not fatal: the exit code is non-zero only
when a command fails to run. Results also go to ``.lab/bench/results.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import images
from images import BENCH_DIR, DIFF_PAIRS, REALISTIC, SYNTHETIC, BenchImage

RESULTS = BENCH_DIR / "results.json"
BUNDLES = BENCH_DIR / "bundles"
OCILAB = Path(sys.executable).with_name("ocilab")
MEMORY_LIMIT_MB = 200.0
TIME_TARGETS = {"changes": 0.5, "diff": 1.0}
MEMORY_TARGETS = {"diff", "efficiency"}


class CommandFailed(Exception):
    """A benchmarked command exited non-zero."""


@dataclass(frozen=True)
class Sample:
    """One run of one command: wall seconds and the child's peak resident set."""

    seconds: float
    peak_mb: float


@dataclass(frozen=True)
class Step:
    """One command to measure, and the bundle it leaves behind (removed after each run)."""

    label: str
    command: list[str]
    bundle: Path | None = None


@dataclass
class Series:
    """The repeated runs of one step; after a failure it records the error and runs no more."""

    step: Step
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    def run(self) -> None:
        """Measure the step once more, unless it has failed before."""
        if self.error is None:
            try:
                self.samples.append(run_step(self.step))
            except CommandFailed as error:
                self.error = str(error)

    def best(self) -> Sample:
        """Best wall time, highest peak memory."""
        return Sample(min(s.seconds for s in self.samples), max(s.peak_mb for s in self.samples))


@dataclass
class Row:
    """One line of the results table."""

    image: str
    operation: str
    peer: str
    ocilab_seconds: float | None = None
    peer_seconds: float | None = None
    ratio: float | None = None
    ocilab_peak_mb: float | None = None
    peer_peak_mb: float | None = None
    result: str = ""
    error: str | None = None
    seconds: dict[str, list[float]] = field(default_factory=dict)


def measure(command: list[str]) -> Sample:
    """Run ``command`` (stdout discarded) and measure it; a non-zero exit raises CommandFailed."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip().splitlines()[-3:]
            raise CommandFailed(f"{' '.join(command)} exited {process.returncode}: {' / '.join(message)}")
    return Sample(seconds, usage.ru_maxrss * 1024 / 1e6)


def run_step(step: Step) -> Sample:
    """Measure a step, then remove its bundle and write dirty pages to disk (``sync``), untimed."""
    try:
        return measure(step.command)
    finally:
        if step.bundle:
            shutil.rmtree(step.bundle, ignore_errors=True)
        os.sync()


def umoci_unpack(image: BenchImage) -> Series:
    """``umoci unpack`` of one image into a fresh bundle."""
    bundle = BUNDLES / image.name
    command = ["umoci", "unpack", "--image", image.umoci_image, str(bundle)]
    return Series(Step(f"umoci unpack {image.name}", command, bundle))


def ocilab(*arguments: str) -> Series:
    """One ``ocilab ... --json`` command."""
    return Series(Step(f"ocilab {arguments[0]}", [str(OCILAB), *arguments, "--json"]))


def bench_pair(image: BenchImage, other: BenchImage, repeat: int) -> list[Row]:
    """Measure changes and efficiency of ``image`` and its diff with ``other``, each peer run beside ocilab.

    The umoci unpack of each image is measured once per repetition and serves both comparisons: the peer of
    ``changes`` is unpacking ``image``; the peer of ``diff`` is unpacking both (sum of their best times).
    """
    unpack_a, unpack_b = umoci_unpack(image), umoci_unpack(other)
    changes = ocilab("changes", image.ref)
    diff = ocilab("diff", image.ref, other.ref)
    efficiency = ocilab("efficiency", image.ref)
    for repetition in range(repeat):
        for series in (unpack_a, changes, unpack_b, diff, efficiency):
            print(f"bench: {repetition + 1}/{repeat}: {series.step.label}", file=sys.stderr, flush=True)
            series.run()
    return [
        compare(image.name, "changes", changes, [unpack_a], "umoci unpack"),
        compare(image.name, "diff", diff, [unpack_a, unpack_b], f"umoci unpack {image.name} + {other.name}"),
        compare(image.name, "efficiency", efficiency, [], "-"),
    ]


def compare(image: str, operation: str, mine: Series, peers: list[Series], label: str) -> Row:
    """A table row: ocilab's best against the sum of the peers' bests, and the verdict."""
    row = Row(image, operation, label)
    row.seconds = {series.step.label: [sample.seconds for sample in series.samples] for series in [mine, *peers]}
    failed = [series.error for series in [mine, *peers] if series.error]
    if failed:
        row.error, row.result = failed[0], "FAILED"
        return row
    ours = mine.best()
    row.ocilab_seconds, row.ocilab_peak_mb = ours.seconds, ours.peak_mb
    if peers:
        row.peer_seconds = sum(peer.best().seconds for peer in peers)
        row.peer_peak_mb = max(peer.best().peak_mb for peer in peers)
        row.ratio = ours.seconds / row.peer_seconds
    row.result = verdict(row)
    return row


def verdict(row: Row) -> str:
    """PASS, or MISS naming each target the row misses."""
    misses = []
    limit = TIME_TARGETS.get(row.operation)
    if limit is not None and row.ratio is not None and row.ratio > limit:
        misses.append(f"time {row.ratio:.2f}x > {limit}x")
    if row.operation in MEMORY_TARGETS and row.ocilab_peak_mb is not None and row.ocilab_peak_mb >= MEMORY_LIMIT_MB:
        misses.append(f"memory {row.ocilab_peak_mb:.0f} MB >= {MEMORY_LIMIT_MB:.0f} MB")
    return "MISS: " + "; ".join(misses) if misses else "PASS"


def print_table(rows: list[Row]) -> None:
    """The results as a fixed-width table on stdout."""
    header = ["image", "operation", "ocilab s", "peer", "peer s", "ratio", "ocilab peak MB", "peer peak MB", "result"]
    lines = [header] + [_cells(row) for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header) - 1)]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)), line[-1])


def _cells(row: Row) -> list[str]:
    return [
        row.image,
        row.operation,
        _number(row.ocilab_seconds, 2),
        row.peer,
        _number(row.peer_seconds, 2),
        _number(row.ratio, 2, "x"),
        _number(row.ocilab_peak_mb, 1),
        _number(row.peer_peak_mb, 1),
        f"FAILED: {row.error}" if row.error else row.result,
    ]


def _number(value: float | None, digits: int, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def gzip_backend() -> str | None:
    """The gzip decompressor ocilab uses, where it says (``ocilab.tar.compression.GZIP_BACKEND``)."""
    return getattr(importlib.import_module("ocilab.tar.compression"), "GZIP_BACKEND", None)


def check_tools() -> None:
    """Fail early, in one sentence, without umoci or when this ocilab has no changes/diff/efficiency yet."""
    if shutil.which("umoci") is None:
        raise SystemExit("bench: umoci is not installed; apt-get install umoci (or run make setup)")
    for command in ("changes", "diff", "efficiency"):
        probe = subprocess.run([str(OCILAB), command, "--help"], capture_output=True)
        if probe.returncode != 0:
            raise SystemExit(f"bench: {OCILAB} has no '{command}' command yet; nothing to measure")


def versions() -> dict[str, str]:
    """Versions of what was measured."""
    umoci = subprocess.run(["umoci", "--version"], capture_output=True, text=True).stdout.strip()
    revision = subprocess.run(
        ["git", "-C", str(images.REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    return {"ocilab": revision, "umoci": umoci, "python": platform.python_version(), "kernel": platform.release()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="synthetic images only, one repetition")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per operation (default 3)")
    parser.add_argument("--pair", choices=sorted(DIFF_PAIRS), action="append", help="only this pair (repeatable)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    repeat = 1 if args.quick else args.repeat
    check_tools()
    names = SYNTHETIC if args.quick else REALISTIC + SYNTHETIC
    if args.pair:
        names = tuple(name for pair in args.pair for name in (pair, DIFF_PAIRS[pair]))
    try:
        built = {image.name: image for image in images.ensure(names)}
    except images.BuildError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    images.describe(built.values())
    backend = gzip_backend()
    print(f"\nocilab gzip backend: {backend or 'not reported'}; {os.cpu_count()} CPUs; best of {repeat}\n")
    rows = []
    for name, partner in DIFF_PAIRS.items():
        if name in built:
            rows += bench_pair(built[name], built[partner], repeat)
    print_table(rows)
    write_results(rows, backend, repeat, [images.figures(image) for image in built.values()])
    return 1 if any(row.error for row in rows) else 0


def write_results(rows: list[Row], backend: str | None, repeat: int, figures: list[dict[str, object]]) -> None:
    """Everything measured, as JSON in ``.lab/bench/results.json``."""
    document = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "gzip_backend": backend,
        "cpus": os.cpu_count(),
        "repeat": repeat,
        "versions": versions(),
        "targets": {"time_ratio": TIME_TARGETS, "peak_mb_below": MEMORY_LIMIT_MB, "memory": sorted(MEMORY_TARGETS)},
        "images": figures,
        "results": [asdict(row) for row in rows],
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults: {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
