"""The Python entry points a notebook uses: ``ocilab.open``, ``resolve``, ``validate``, ``doctor``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ocilab.engines.validate import ValidationReport, validate_store
from ocilab.model import Platform
from ocilab.stores.image import Image, ImageIndex, load_image
from ocilab.stores.image import resolve as resolve_store
from ocilab.stores.transports import open_store

if TYPE_CHECKING:
    import pandas


def open(reference: str, platform: str | Platform | None = None, tls_verify: bool = True) -> Image:  # noqa: A001
    """The image named by a transport string (``oci:DIR:TAG``, ``docker://HOST/REPO:TAG`` ...).

    From an index, the image for ``platform`` (``"linux/arm64"``; default linux/amd64).
    The image keeps its store open: use it as a context manager or call ``close()``.
    """
    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    store = open_store(reference, tls_verify=tls_verify)
    try:
        return load_image(store, wanted)
    except BaseException:
        store.close()
        raise


def resolve(reference: str, tls_verify: bool = True) -> Image | ImageIndex:
    """What the reference names, as it is: an ``Image`` or an ``ImageIndex``."""
    store = open_store(reference, tls_verify=tls_verify)
    try:
        return resolve_store(store)
    except BaseException:
        store.close()
        raise


def validate(reference: str, tls_verify: bool = True) -> ValidationReport:
    """Check a whole image: every blob present, digests and sizes right, diff_ids true to the layers."""
    with open_store(reference, tls_verify=tls_verify) as store:
        return validate_store(store)


def doctor() -> pandas.DataFrame:
    """Which components are present and working, with versions and how to get what is missing."""
    import pandas

    from ocilab.engines.components import doctor as probe
    from ocilab.engines.components import doctor_json

    return pandas.DataFrame(doctor_json(probe()))
