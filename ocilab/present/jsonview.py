"""A JSON document shown for reading: indented, with the size and digest of the bytes actually stored."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ocilab.errors import InvalidInputError
from ocilab.model import Digest, Index, Manifest
from ocilab.model.build import encode


class JsonView:
    """``raw`` JSON bytes; its repr is a header line (size, digest) and the document indented by two spaces."""

    def __init__(self, raw: bytes, what: str) -> None:
        try:
            self.document = json.loads(raw)
        except ValueError as error:
            raise InvalidInputError(f"{what}: not JSON ({error})") from None
        self.raw, self.what = raw, what

    @property
    def digest(self) -> Digest:
        """The digest of the stored bytes (not of the indented text shown)."""
        return Digest.of_bytes(self.raw)

    def __repr__(self) -> str:
        header = f"{self.what}: {len(self.raw)} bytes stored, {self.digest}"
        return f"{header}\n{json.dumps(self.document, indent=2, ensure_ascii=False)}"


def show_json(document: bytes | Manifest | Index | Mapping[str, Any] | Path, what: str | None = None) -> JsonView:
    """``document`` ready to display: raw bytes, a built or parsed manifest or index, a dict (encoded as
    ``ocilab.model.build.encode`` stores it), or a file; ``what`` names it in the header line."""
    if isinstance(document, Manifest | Index):
        kind = "index" if isinstance(document, Index) else "manifest"
        return JsonView(document.raw, what or kind)
    if isinstance(document, Path):
        try:
            raw = document.read_bytes()
        except OSError as error:
            raise InvalidInputError(f"{document}: cannot read it ({error.strerror})") from None
        return JsonView(raw, what or document.name)
    if isinstance(document, bytes):
        return JsonView(document, what or "document")
    return JsonView(encode(document), what or "document")
