"""ocilab: explore OCI container images, from Python and from the command line.

>>> import ocilab
>>> image = ocilab.open("oci:/tmp/layout:v1")
>>> ocilab.layer_table(image)

The names below are imported when first used (PEP 562), so ``import ocilab``
and every ``ocilab`` command start without loading what they do not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, str | None]] = {
    **{
        name: ("ocilab.api", name)
        for name in (
            "build",
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
            "remove",
            "resolve",
            "run",
            "unpack",
            "validate",
        )
    },
    "Builder": ("ocilab.operations.builder", "Builder"),
    "Image": ("ocilab.stores.image", "Image"),
    "ImageIndex": ("ocilab.stores.image", "ImageIndex"),
    "OcilabError": ("ocilab.errors", "OcilabError"),
    "busybox_layout": ("ocilab.operations.scratch", "busybox_layout"),
    "check": ("ocilab.present.check", None),
    "lab": ("ocilab.lab", None),
    "plots": ("ocilab.present.plots", None),
    "runtime": ("ocilab.operations.runtime", None),
    "widgets": ("ocilab.present.widgets", None),
    "workspace": ("ocilab.present.notebook", "workspace"),
    "write_index": ("ocilab.operations.builder", "write_index"),
    "write_oci_archive": ("ocilab.stores.archive_writer", "write_oci_archive"),
}
__all__ = [
    "Builder",
    "Image",
    "ImageIndex",
    "OcilabError",
    "build",
    "busybox_layout",
    "changes",
    "check",
    "copy",
    "diff",
    "docker_build",
    "doctor",
    "efficiency",
    "history",
    "lab",
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
    "widgets",
    "workspace",
    "write_index",
    "write_oci_archive",
]


def __getattr__(name: str) -> Any:
    """Import an exported name on first use, then keep it as an ordinary attribute."""
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'ocilab' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from ocilab import lab
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
