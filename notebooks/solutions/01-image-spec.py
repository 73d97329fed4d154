"""01 · The image spec: the answers to "Your turn", for instructors.

Each entry is the check a learner's cell calls and the arguments of a right
answer (the answer first); tests/test_check.py runs each one, expects ✓, and
expects ✗ for a near miss. The images are made here as the notebook makes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocilab import Image, check
from ocilab.lab import handmade
from ocilab.model import Digest, mediatype


def _image(layers: list[bytes], architecture: str, cmd: list[str] | None = None) -> tuple[Any, list[bytes]]:
    """A manifest over the layer tars ``layers`` (gzip), and the blobs it needs (layers, then the config)."""
    blobs = [handmade.compress(tar) for tar in layers]
    config = handmade.config([Digest.of_bytes(tar) for tar in layers], architecture=architecture, cmd=cmd or ())
    descriptors = [handmade.descriptor_of(blob, mediatype.OCI_LAYER_GZIP) for blob in blobs]
    return handmade.manifest(config, descriptors), [*blobs, config]


def solutions(image: Image) -> list[tuple[Any, tuple[Any, ...]]]:
    """(check, arguments) per exercise, in the notebook's order; the images are written beside ``image``'s layout."""
    lab = Path(image.reference.removeprefix("oci:").partition(":")[0]).parent / "01-image-spec"
    busybox = handmade.layer_tar({"/bin/busybox": handmade.host_file("/bin/busybox")})
    hello = handmade.layer_tar({"/hello.txt": b"Hello from an image made by hand\n"})
    amd, amd_blobs = _image([busybox, hello], "amd64", ["/bin/busybox", "cat", "/hello.txt"])
    arm, arm_blobs = _image([hello], "arm64")
    hello_image = handmade.write_image(f"oci:{lab / 'hello'}:1", amd, *amd_blobs)
    index = handmade.index({"linux/amd64": amd, "linux/arm64": arm})
    handmade.write_image(f"oci:{lab / 'multi'}:1", index, *amd_blobs, *arm_blobs, amd, arm)
    # 3. Any image of one's own that validates, e.g. busybox plus a /motd layer (the notebook's cells, copied).
    motd = handmade.layer_tar({"/etc/motd": b"mine\n"})
    mine, mine_blobs = _image([busybox, motd], "amd64", ["/bin/busybox", "cat", "/etc/motd"])
    mine_image = handmade.write_image(f"oci:{lab / 'mine'}:1", mine, *mine_blobs)
    return [
        # 1. The hello layer's diff_id: the digest of its uncompressed tar, str(Digest.of_bytes(hello)).
        (check.diff_id, (str(Digest.of_bytes(hello)), hello_image, 1)),
        # 2. 7 blob files: busybox and hello layers (hello shared, stored once), 2 configs, 2 manifests, the index.
        (check.blob_count, (7, lab / "multi")),
        (check.valid_image, (mine_image,)),
    ]
