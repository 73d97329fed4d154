"""Seeded random images written straight to an OCI layout, with no engine and none of ocilab's writers.

Like go-containerregistry's ``random`` package: the same seed gives the same
bytes, so the same digests, on any machine. The layout is written by hand
(blob files named by their sha256, ``index.json``, ``oci-layout``) so that
tests of ocilab's own writers and copy engine do not depend on the code they test.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class RandomImage:
    """What was written: the root's descriptor and every blob digest it reaches (layers, configs, manifests)."""

    layout: Path
    tag: str
    root: dict[str, object]
    layers: tuple[str, ...]
    blobs: frozenset[str]

    @property
    def reference(self) -> str:
        return f"oci:{self.layout}:{self.tag}"

    @property
    def digest(self) -> str:
        return str(self.root["digest"])


def random_layer(rng: random.Random, files: int, size: int) -> bytes:
    """A gzip tar of ``files`` regular files of up to ``size`` random bytes each, sorted, mtime 0."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for number in range(files):
            data = rng.randbytes(rng.randint(1, size))
            info = tarfile.TarInfo(f"data/{rng.getrandbits(32):08x}-{number}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return plain.getvalue()


def write_random_image(
    layout: Path,
    seed: int,
    *,
    tag: str = "1",
    layers: int = 2,
    files: int = 3,
    size: int = 4096,
    shared_layers: Sequence[bytes] = (),
    platforms: Sequence[str] = (),
) -> RandomImage:
    """Add a random image to the layout at ``layout`` (created when missing) under ``tag``.

    ``shared_layers`` (uncompressed tars) come first, so two images can share
    layers. With ``platforms`` (``"linux/amd64"`` ...) the tag names an index
    over one random image per platform.
    """
    rng = random.Random(seed)
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    blobs: set[str] = set()
    all_layers: list[str] = []

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(data)
        blobs.add(f"sha256:{digest}")
        return f"sha256:{digest}"

    def image(os_name: str, architecture: str) -> dict[str, object]:
        tars = [*shared_layers, *(random_layer(rng, files, size) for _ in range(layers))]
        descriptors, diff_ids = [], []
        for plain in tars:
            compressed = gzip.compress(plain, mtime=0)
            descriptors.append({"mediaType": OCI_LAYER_GZIP, "digest": put(compressed), "size": len(compressed)})
            diff_ids.append(f"sha256:{hashlib.sha256(plain).hexdigest()}")
        all_layers.extend(str(d["digest"]) for d in descriptors)
        config = json.dumps(
            {
                "created": "1970-01-01T00:00:00Z",
                "architecture": architecture,
                "os": os_name,
                "config": {"Cmd": ["/bin/sh"], "Labels": {"seed": str(seed)}},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": put(config), "size": len(config)},
                "layers": descriptors,
            }
        ).encode()
        return {"mediaType": OCI_MANIFEST, "digest": put(manifest), "size": len(manifest)}

    if platforms:
        children = []
        for platform in platforms:
            os_name, architecture = platform.split("/")[:2]
            children.append({**image(os_name, architecture), "platform": {"os": os_name, "architecture": architecture}})
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
        root: dict[str, object] = {"mediaType": OCI_INDEX, "digest": put(index), "size": len(index)}
    else:
        root = image("linux", "amd64")

    index_path = layout / "index.json"
    top = (
        json.loads(index_path.read_text())
        if index_path.exists()
        else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    )
    top["manifests"] = [m for m in top["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag]
    top["manifests"].append({**root, "annotations": {REF_NAME: tag}})
    index_path.write_text(json.dumps(top))
    return RandomImage(layout, tag, root, tuple(all_layers), frozenset(blobs))
