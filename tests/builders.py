"""Helpers that write test images from real ones (not tests themselves)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


def write_index_layout(source: Path, destination: Path) -> Path:
    """A copy of the layout ``source`` with an extra entry ``multi``: an image index over its ``v1`` image."""
    shutil.copytree(source, destination)
    top = json.loads((destination / "index.json").read_text())
    image = dict(top["manifests"][0])
    image.pop("annotations", None)
    image["platform"] = {"os": "linux", "architecture": "amd64"}
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [image]}).encode()
    digest = hashlib.sha256(index).hexdigest()
    (destination / "blobs" / "sha256" / digest).write_bytes(index)
    top["manifests"].append(
        {
            "mediaType": INDEX_MEDIA_TYPE,
            "digest": f"sha256:{digest}",
            "size": len(index),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }
    )
    (destination / "index.json").write_text(json.dumps(top))
    return destination
