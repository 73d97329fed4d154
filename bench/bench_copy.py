"""Registry copy benchmark (issue "Registry storage"): ``ocilab copy`` against ``skopeo copy``, side by side.

On the realistic ``debian`` image (bench/images.py), each repetition measures, one command at a time:

- push: ``oci:`` layout -> an empty repository of a fresh local CNCF registry, ocilab and skopeo each
  into their own fresh registry, so neither finds the other's blobs;
- pull: that repository -> a fresh OCI layout;
- second push: the same image again into ocilab's registry, where every blob is already present.

Wall time around the child process and its peak RSS (os.wait4), best of N. Targets from the issue: push
and pull at most 1.0x skopeo; the second push well under a second; peak memory flat in the blob size.
A missed target is reported, not fatal. Results go to ``.lab/bench/copy-results.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import images
from bench_layers import BENCH_DIR, OCILAB, Sample, measure

from ocilab.operations.registry_server import RegistryServer

RESULTS = BENCH_DIR / "copy-results.json"
TIME_TARGET = 1.0


@dataclass
class Result:
    operation: str
    ocilab: Sample
    skopeo: Sample | None

    @property
    def ratio(self) -> float | None:
        return self.ocilab.seconds / self.skopeo.seconds if self.skopeo else None


def best(samples: list[Sample]) -> Sample:
    return Sample(min(s.seconds for s in samples), max(s.peak_mb for s in samples))


def one_round(source: str, work: Path) -> dict[str, tuple[Sample, Sample | None]]:
    """Push, pull and push again, for ocilab and skopeo, each against its own fresh registry."""
    measured: dict[str, tuple[Sample, Sample | None]] = {}
    with RegistryServer(work / "registry-ocilab") as mine, RegistryServer(work / "registry-skopeo") as theirs:
        ours_remote = f"docker://{mine.host}/bench/debian:1"
        skopeo_remote = f"docker://{theirs.host}/bench/debian:1"
        skopeo = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false"]
        push_skopeo = measure([*skopeo, source, skopeo_remote])
        push_ours = measure([str(OCILAB), "copy", "--quiet", source, ours_remote])
        measured["push"] = (push_ours, push_skopeo)
        pull_skopeo = measure([*skopeo, skopeo_remote, f"oci:{work / 'pulled-skopeo'}:1"])
        pull_ours = measure([str(OCILAB), "copy", "--quiet", ours_remote, f"oci:{work / 'pulled-ocilab'}:1"])
        measured["pull"] = (pull_ours, pull_skopeo)
        again_skopeo = measure([*skopeo, source, skopeo_remote])
        again_ours = measure([str(OCILAB), "copy", "--quiet", source, ours_remote])
        measured["second push"] = (again_ours, again_skopeo)
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("skopeo") is None:
        print("bench_copy: skopeo is missing (apt-get install skopeo)", file=sys.stderr)
        return 1
    (image,) = images.ensure(["debian"])
    rounds: list[dict[str, tuple[Sample, Sample | None]]] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(dir=BENCH_DIR) as work:
            rounds.append(one_round(image.ref, Path(work)))
    results = [
        Result(
            operation,
            best([r[operation][0] for r in rounds]),
            best([r[operation][1] for r in rounds if r[operation][1] is not None]),  # type: ignore[misc]
        )
        for operation in rounds[0]
    ]
    size = sum(f.stat().st_size for f in (image.layout / "blobs").rglob("*") if f.is_file())
    print(f"image: {image.ref}, {size / 1e6:.1f} MB of blobs; best of {args.repeat}")
    print(f"{'operation':<12} {'ocilab s':>9} {'skopeo s':>9} {'ratio':>6} {'ocilab MB':>10} {'skopeo MB':>10}")
    for result in results:
        peer = result.skopeo
        ratio = f"{result.ratio:.2f}x" if result.ratio is not None else "-"
        verdict = (
            ""
            if result.operation == "second push"
            else ("  meets <= 1.0x" if result.ratio is not None and result.ratio <= TIME_TARGET else "  MISSES <= 1.0x")
        )
        print(
            f"{result.operation:<12} {result.ocilab.seconds:>9.2f} {peer.seconds if peer else 0:>9.2f} {ratio:>6}"
            f" {result.ocilab.peak_mb:>10.1f} {peer.peak_mb if peer else 0:>10.1f}{verdict}"
        )
    RESULTS.write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "image_bytes": size,
                "repeat": args.repeat,
                "skopeo": subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout.strip(),
                "results": [{**asdict(r), "ratio": r.ratio} for r in results],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
