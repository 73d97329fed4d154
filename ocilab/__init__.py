"""ocilab: explore OCI container images, from Python and from the command line.

>>> import ocilab
>>> image = ocilab.open("oci:/tmp/layout:v1")
>>> ocilab.layer_table(image)
"""

from ocilab.api import (
    build,
    changes,
    copy,
    diff,
    docker_build,
    doctor,
    efficiency,
    history,
    layer_table,
    layers,
    open,
    remove,
    resolve,
    run,
    unpack,
    validate,
)
from ocilab.errors import OcilabError
from ocilab.operations import runtime
from ocilab.operations.builder import Builder, write_index
from ocilab.operations.scratch import busybox_layout
from ocilab.present import check, plots, widgets
from ocilab.present.notebook import workspace
from ocilab.stores.archive_writer import write_oci_archive
from ocilab.stores.image import Image, ImageIndex

__version__ = "0.1.0"
__all__ = [
    "Builder",
    "Image",
    "ImageIndex",
    "OcilabError",
    "build",
    "busybox_layout",
    "changes",
    "copy",
    "diff",
    "docker_build",
    "doctor",
    "efficiency",
    "history",
    "layer_table",
    "layers",
    "open",
    "plots",
    "remove",
    "resolve",
    "run",
    "runtime",
    "unpack",
    "validate",
    "workspace",
    "write_index",
    "write_oci_archive",
    "check",
    "widgets",
]
