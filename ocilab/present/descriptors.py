"""Descriptors as a table: what each points at (digest), its type, its artifact type and its size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ocilab.model import Descriptor
from ocilab.model import mediatype as mt

if TYPE_CHECKING:
    import pandas

DESCRIPTOR_COLUMNS = ["digest", "media_type", "artifact_type", "size"]


def descriptor_table(descriptors: Sequence[Descriptor]) -> pandas.DataFrame:
    """One row per descriptor (a referrers list, an index's manifests): digest, short media type,
    ``artifactType`` (empty when it has none) and size in bytes."""
    import pandas

    rows = [
        [str(item.digest), mt.short_name(item.media_type), item.artifact_type or "", item.size] for item in descriptors
    ]
    return pandas.DataFrame(rows, columns=DESCRIPTOR_COLUMNS)
