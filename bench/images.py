"""The benchmark images, built once and cached as OCI layouts (gzip layers) under ``.lab/bench/images/``.

- ``debian`` (realistic): a Debian 12 minbase rootfs from debootstrap, built by the Docker engine into three
  layers: the rootfs, ``apt-get install python3``, and a ``rm -rf`` of docs, man pages, locales and apt lists
  (whiteouts). ``debian-b`` shares its first two layers and differs in the third (installs curl, deletes other
  files). Exported with ``docker save`` + ``skopeo copy``.
- ``many-small`` (synthetic, no engine): 100,000 small files over 1,000 directories in one layer, then a layer
  that modifies 10% of them, deletes 10% (whiteouts) and adds 1%. ``many-small-b`` shares the first layer and
  picks other files in its second. Deterministic from a seed. ``many-200k`` and ``many-200k-b``: the same
  with 200,000 files (for memory per path).

Run alone, it builds what is missing and prints each image's figures.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import IO, Any

from ocilab.model import mediatype as mt
from ocilab.stores.layout_writer import LayoutWriter

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / ".lab" / "bench"
IMAGES_DIR = BENCH_DIR / "images"
CACHE_DIR = BENCH_DIR / "cache"
TAG = "bench"

REALISTIC = ("debian", "debian-b")
SYNTHETIC_FILES = {"many-small": 100_000, "many-small-b": 100_000, "many-200k": 200_000, "many-200k-b": 200_000}
"""Files in the first layer of each synthetic image; a pair with the same count shares that layer."""
SYNTHETIC = tuple(SYNTHETIC_FILES)
DIFF_PAIRS = {"debian": "debian-b", "many-small": "many-small-b", "many-200k": "many-200k-b"}

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DOCKERFILE_BASE = """\
FROM scratch
ADD rootfs.tar /
RUN apt-get update && apt-get install -y --no-install-recommends python3
"""
DOCKERFILE_LAST = {
    "debian": "RUN rm -rf /usr/share/doc /usr/share/man /usr/share/locale /var/lib/apt/lists/*\n",
    "debian-b": (
        "RUN apt-get install -y --no-install-recommends curl"
        " && rm -rf /usr/share/doc /usr/share/info /usr/share/zoneinfo /usr/lib/python3.11/pydoc_data\n"
    ),
}

SEED = 20_240_531
DIRS = 1_000
EPOCH = 1_700_000_000
VARIANT_SEEDS = {"many-small": 1, "many-small-b": 2, "many-200k": 1, "many-200k-b": 2}
GZIP_LEVEL = 6


@dataclass(frozen=True)
class BenchImage:
    """One benchmark image: an OCI layout directory holding one tagged manifest."""

    name: str

    @property
    def layout(self) -> Path:
        return IMAGES_DIR / self.name

    @property
    def ref(self) -> str:
        """The image as an ocilab reference."""
        return f"oci:{self.layout}:{TAG}"

    @property
    def umoci_image(self) -> str:
        """The image as umoci's ``--image`` argument."""
        return f"{self.layout}:{TAG}"


def ensure(names: Iterable[str]) -> list[BenchImage]:
    """The named images, building the missing ones first."""
    images = [BenchImage(name) for name in names]
    missing = {image.name for image in images if not (image.layout / "index.json").is_file()}
    if missing & set(REALISTIC):
        _build_realistic(list(REALISTIC))  # the pair shares its base layers only when built together
    if missing & set(SYNTHETIC):
        _build_synthetic([name for name in SYNTHETIC if name in missing])
    return images


class BuildError(Exception):
    """A benchmark image could not be built (a tool is missing or failed)."""


def run(command: list[str], **kwargs: Any) -> None:
    """Run ``command``, echoing it; a missing tool or a failure raises BuildError."""
    if shutil.which(command[0]) is None:
        raise BuildError(f"{command[0]} is not installed; install it (apt-get install {command[0]}) and rerun")
    print("+", " ".join(command), file=sys.stderr, flush=True)
    try:
        subprocess.run(command, check=True, **kwargs)
    except subprocess.CalledProcessError as error:
        raise BuildError(f"{' '.join(command)} exited {error.returncode}") from None


# Realistic images: debootstrap, Docker, skopeo.


def debian_mirror() -> str:
    """The Debian mirror the host's apt uses for bookworm (deb822 or one-line sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        text = source.read_text() if source.is_file() else ""
        for uri, suites in _deb822_entries(text) + _one_line_entries(text):
            if "bookworm" in suites:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _deb822_entries(text: str) -> list[tuple[str, list[str]]]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^(URIs|Suites):\s*(.+)$", stanza, re.MULTILINE))
        if "URIs" in fields and "Suites" in fields:
            entries += [(uri, fields["Suites"].split()) for uri in fields["URIs"].split()]
    return entries


def _one_line_entries(text: str) -> list[tuple[str, list[str]]]:
    pattern = r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)"
    return [(uri, [suite]) for uri, suite in re.findall(pattern, text, re.MULTILINE)]


def rootfs_tarball() -> Path:
    """A Debian 12 minbase rootfs as a tar (``/dev`` left empty), made by debootstrap once and cached."""
    tarball = CACHE_DIR / "rootfs.tar"
    if tarball.is_file():
        return tarball
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as work:
        rootfs = Path(work) / "rootfs"
        run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), debian_mirror()])
        partial = Path(work) / "rootfs.tar"
        run(["tar", "--numeric-owner", "--exclude=./dev/*", "-C", str(rootfs), "-cf", str(partial), "."])
        os.replace(partial, tarball)
    return tarball


def _discard(image: BenchImage) -> None:
    """Remove a stale layout and its cached figures before building the image again."""
    shutil.rmtree(image.layout, ignore_errors=True)
    image.layout.with_suffix(".json").unlink(missing_ok=True)


def _build_realistic(names: list[str]) -> None:
    tarball = rootfs_tarball()
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as work:
        context = Path(work)
        os.link(tarball, context / "rootfs.tar")
        for name in names:
            dockerfile = context / f"Dockerfile.{name}"
            dockerfile.write_text(DOCKERFILE_BASE + DOCKERFILE_LAST[name])
            engine_tag = f"ocilab-bench/{name}:1"
            env = dict(os.environ, DOCKER_BUILDKIT="0")
            run(["docker", "build", "-q", "-t", engine_tag, "-f", str(dockerfile), str(context)], env=env)
            archive = context / f"{name}.tar"
            run(["docker", "save", "-o", str(archive), engine_tag])
            _skopeo_to_layout(archive, BenchImage(name))
            archive.unlink()


def _skopeo_to_layout(archive: Path, image: BenchImage) -> None:
    """Copy a ``docker save`` archive into the image's layout, with gzip layers."""
    partial = image.layout.with_name(f".{image.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    run(["skopeo", "copy", "-q", "--dest-compress-format", "gzip", f"docker-archive:{archive}", f"oci:{partial}:{TAG}"])
    _discard(image)
    os.replace(partial, image.layout)


# Synthetic images: tarfile + gzip, written straight into a layout.


class _HashingWriter:
    """A write-only stream that hashes what passes through it (the diff_id) on its way to ``inner``."""

    def __init__(self, inner: gzip.GzipFile) -> None:
        self.inner = inner
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.inner.write(data)

    def tell(self) -> int:
        return self.size


@dataclass(frozen=True)
class _Layer:
    """A gzip layer blob in a temporary file, with its diff_id."""

    blob: IO[bytes]
    diff_id: str
    created_by: str


def _write_layer(entries: Iterator[tuple[tarfile.TarInfo, bytes | None]], created_by: str) -> _Layer:
    blob = tempfile.TemporaryFile(dir=BENCH_DIR)
    with gzip.GzipFile(filename="", mode="wb", fileobj=blob, compresslevel=GZIP_LEVEL, mtime=0) as zipped:
        plain = _HashingWriter(zipped)
        with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for info, data in entries:
                tar.addfile(info, BytesIO(data) if data is not None else None)
    return _Layer(blob, f"sha256:{plain.sha256.hexdigest()}", created_by)


def _info(name: str, kind: bytes, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = kind, size, EPOCH
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.uid = info.gid = 0
    return info


def _directory(index: int) -> str:
    return f"srv/data/g{index // 100:02d}/d{index:04d}"


def _file(index: int) -> str:
    return f"{_directory(index % DIRS)}/f{index:06d}.txt"


def _content(rng: random.Random) -> bytes:
    """1-4 KiB of hex text: pseudo-random but compressible about 2:1, like small text files."""
    return rng.randbytes(rng.randint(512, 2048)).hex().encode()


def _parents(paths: Iterable[str]) -> list[str]:
    parents: set[str] = set()
    for path in paths:
        parts = path.split("/")[:-1]
        parents.update("/".join(parts[: depth + 1]) for depth in range(len(parts)))
    return sorted(parents)


def _base_entries(count: int) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    """Layer 1: every directory, then ``count`` files."""
    rng = random.Random(SEED)
    files = [_file(index) for index in range(count)]
    for directory in _parents(files):
        yield _info(directory, tarfile.DIRTYPE), None
    for path in files:
        data = _content(rng)
        yield _info(path, tarfile.REGTYPE, len(data)), data


def _change_entries(variant: str) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    """Layer 2: modify 10% of the files, delete another 10% (``.wh.`` entries), add 1% under a new directory."""
    rng = random.Random(SEED * 10 + VARIANT_SEEDS[variant])
    count = SYNTHETIC_FILES[variant]
    chosen = rng.sample(range(count), count // 5)
    modified, deleted = sorted(chosen[: count // 10]), sorted(chosen[count // 10 :])
    added = [f"srv/{variant}/f{index:06d}.txt" for index in range(count // 100)]
    touched = [_file(index) for index in modified + deleted] + added
    for directory in _parents(touched):
        yield _info(directory, tarfile.DIRTYPE), None
    for path in [_file(index) for index in modified] + added:
        data = _content(rng)
        yield _info(path, tarfile.REGTYPE, len(data)), data
    for index in deleted:
        directory, name = _file(index).rsplit("/", 1)
        yield _info(f"{directory}/.wh.{name}", tarfile.REGTYPE), b""


def _build_synthetic(names: list[str]) -> None:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    for count in sorted({SYNTHETIC_FILES[name] for name in names}):
        _build_sharing_base(count, [name for name in names if SYNTHETIC_FILES[name] == count])


def _build_sharing_base(count: int, names: list[str]) -> None:
    """The images ``names``, whose first layer is the same ``count`` files."""
    base = _write_layer(_base_entries(count), f"synthetic: {count} files in {DIRS} directories (seed {SEED})")
    with base.blob:
        for name in names:
            change = _write_layer(_change_entries(name), f"synthetic: modify 10%, delete 10%, add 1% ({name})")
            with change.blob:
                _discard(BenchImage(name))
                _write_layout(BenchImage(name).layout, [base, change])


def _write_layout(destination: Path, layers: list[_Layer]) -> None:
    created = "2023-11-14T22:13:20Z"
    with LayoutWriter(destination) as writer:
        descriptors = []
        for layer in layers:
            layer.blob.seek(0)
            descriptors.append(writer.put_stream(layer.blob, mt.OCI_LAYER_GZIP))  # type: ignore[arg-type]
        config = {
            "created": created,
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created": created, "created_by": layer.created_by} for layer in layers],
        }
        writer.put_image(config, descriptors, TAG)
        writer.commit()


# Figures: measured from the layout itself (Python's tarfile) and from a umoci unpack, cached beside the layout.


class _CountingReader:
    """A read-only stream that counts the bytes read through it."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.size += len(data)
        return data


def figures(image: BenchImage) -> dict[str, Any]:
    """Layer and rootfs figures of ``image``: computed once, then read from ``<layout>.json``."""
    cache = image.layout.with_suffix(".json")
    if cache.is_file():
        return dict(json.loads(cache.read_text()))
    layers = [_layer_figures(image.layout, layer) for layer in _manifest(image.layout)["layers"]]
    result = {
        "name": image.name,
        "layers": layers,
        "compressed_bytes": sum(layer["compressed_bytes"] for layer in layers),
        "uncompressed_bytes": sum(layer["uncompressed_bytes"] for layer in layers),
        "rootfs": _rootfs_figures(image),
    }
    cache.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _manifest(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    return dict(json.loads(_blob(layout, entry["digest"]).read_bytes()))


def _blob(layout: Path, digest: str) -> Path:
    algorithm, encoded = digest.split(":")
    return layout / "blobs" / algorithm / encoded


def _layer_figures(layout: Path, descriptor: dict[str, Any]) -> dict[str, Any]:
    counts = {"entries": 0, "regular_files": 0, "whiteouts": 0, "file_bytes": 0}
    with gzip.open(_blob(layout, descriptor["digest"]), "rb") as plain:
        counter = _CountingReader(plain)  # type: ignore[arg-type]
        with tarfile.open(fileobj=counter, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                counts["entries"] += 1
                if member.name.rsplit("/", 1)[-1].startswith(".wh."):
                    counts["whiteouts"] += 1
                elif member.isreg():
                    counts["regular_files"] += 1
                    counts["file_bytes"] += member.size
        while counter.read(1 << 20):
            pass
    return {
        "digest": descriptor["digest"],
        "compressed_bytes": descriptor["size"],
        "uncompressed_bytes": counter.size,
        **counts,
    }


def _rootfs_figures(image: BenchImage) -> dict[str, int]:
    """What ``umoci unpack`` lays out: entries, regular files and their bytes (hard links counted once)."""
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as work:
        bundle = Path(work) / "bundle"
        run(["umoci", "unpack", "--image", image.umoci_image, str(bundle)], stdout=subprocess.DEVNULL)
        entries = regular = size = 0
        seen: set[int] = set()
        for directory, dirnames, filenames in os.walk(bundle / "rootfs"):
            entries += len(dirnames) + len(filenames)
            for name in filenames:
                status = os.lstat(os.path.join(directory, name))
                if stat.S_ISREG(status.st_mode):
                    regular += 1
                    if status.st_ino not in seen:
                        seen.add(status.st_ino)
                        size += status.st_size
    return {"entries": entries, "regular_files": regular, "file_bytes": size}


def describe(images: Iterable[BenchImage]) -> None:
    """Print a table of the images' figures."""
    header = ["image", "layers", "compressed", "uncompressed", "layer entries", "whiteouts"]
    header += ["rootfs entries", "rootfs files", "rootfs file bytes"]
    lines = [header] + [_figure_cells(figures(image)) for image in images]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    for line in lines:
        print(
            "  ".join(
                [line[0].ljust(widths[0])]
                + [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
            )
        )


def _figure_cells(data: dict[str, Any]) -> list[str]:
    layers, rootfs = data["layers"], data["rootfs"]
    return [
        data["name"],
        str(len(layers)),
        _mb(data["compressed_bytes"]),
        _mb(data["uncompressed_bytes"]),
        f"{sum(layer['entries'] for layer in layers):,}",
        f"{sum(layer['whiteouts'] for layer in layers):,}",
        f"{rootfs['entries']:,}",
        f"{rootfs['regular_files']:,}",
        _mb(rootfs["file_bytes"]),
    ]


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description="Build (or reuse) the benchmark images and print their figures.")
    parser.add_argument("--quick", action="store_true", help="only the synthetic images")
    args = parser.parse_args()
    try:
        describe(ensure(SYNTHETIC if args.quick else REALISTIC + SYNTHETIC))
    except BuildError as error:
        print(f"images: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
