"""Media types of the OCI image-spec and of Docker's image manifest v2 schema 2.

Unknown media types are tolerated where the spec says so (layers, descriptors
in general); the sets below say what each kind of document may be.
"""

from __future__ import annotations

OCI_LAYOUT_VERSION = "1.0.0"

OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE_TAR = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
SCHEMA1 = frozenset({DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED})
CONFIGS = frozenset({OCI_CONFIG, DOCKER_CONFIG})

#: Every layer media type known: its compression, and the format it is the canonical type of (None for
#: the non-distributable and foreign ones, which a copy never writes). The one table of layer types.
_LAYERS: dict[str, tuple[str, str | None]] = {
    OCI_LAYER_TAR: ("none", "oci"),
    OCI_LAYER_GZIP: ("gzip", "oci"),
    OCI_LAYER_ZSTD: ("zstd", "oci"),
    OCI_LAYER_NONDISTRIBUTABLE_TAR: ("none", None),
    OCI_LAYER_NONDISTRIBUTABLE_GZIP: ("gzip", None),
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD: ("zstd", None),
    DOCKER_LAYER_TAR: ("none", "docker"),
    DOCKER_LAYER_GZIP: ("gzip", "docker"),
    DOCKER_LAYER_FOREIGN: ("gzip", None),
}
NONDISTRIBUTABLE = frozenset(
    {
        OCI_LAYER_NONDISTRIBUTABLE_TAR,
        OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
        DOCKER_LAYER_FOREIGN,
    }
)


def layer_compression(media_type: str) -> str | None:
    """``"none"``, ``"gzip"`` or ``"zstd"`` for a known layer media type; None when unknown."""
    known = _LAYERS.get(media_type)
    return known[0] if known else None


def layer_type(image_format: str, compression: str) -> str | None:
    """The layer media type of ``"oci"`` or ``"docker"`` for a compression; None when there is none (Docker zstd)."""
    for media_type, known in _LAYERS.items():
        if known == (compression, image_format):
            return media_type
    return None


def is_manifest(media_type: str) -> bool:
    """True for an image manifest (OCI or Docker v2 schema 2)."""
    return media_type in MANIFESTS


def is_index(media_type: str) -> bool:
    """True for an image index or Docker manifest list."""
    return media_type in INDEXES


def short_name(media_type: str) -> str:
    """A compact label for tables: ``oci.manifest``, ``docker.layer.gzip`` and so on."""
    labels = {
        OCI_INDEX: "oci.index",
        OCI_MANIFEST: "oci.manifest",
        OCI_CONFIG: "oci.config",
        OCI_LAYER_TAR: "oci.layer.tar",
        OCI_LAYER_GZIP: "oci.layer.gzip",
        OCI_LAYER_ZSTD: "oci.layer.zstd",
        DOCKER_MANIFEST: "docker.manifest",
        DOCKER_MANIFEST_LIST: "docker.list",
        DOCKER_CONFIG: "docker.config",
        DOCKER_LAYER_TAR: "docker.layer.tar",
        DOCKER_LAYER_GZIP: "docker.layer.gzip",
        DOCKER_LAYER_FOREIGN: "docker.layer.foreign",
    }
    return labels.get(media_type, media_type)
