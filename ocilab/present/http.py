"""HTTP exchanges with a registry, as a table to read: one row per request (notebook 03)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ocilab.present.text import human_size
from ocilab.stores.registry.recording import TEACHING_HEADERS, Exchange

if TYPE_CHECKING:
    import pandas

_QUERY_STATE = re.compile(r"((?:^|[?&])_state=)[^&]+")
_LONG_DIGEST = re.compile(r"(sha256[:-][0-9a-f]{12})[0-9a-f]{52}")  # a digest, or a referrers tag
_UPLOAD_ID = re.compile(r"(/uploads/[0-9a-f]{8})[0-9a-f-]{28}")


def requests_table(exchanges: Sequence[Exchange]) -> pandas.DataFrame:
    """One row per exchange: method, path, query, status, bytes sent, and the teaching headers (blank when absent).

    ``Location`` is shown as a path (the host is the registry's own), the
    registry's opaque upload state (``_state=...``) as ``…``, upload IDs by their
    first 8 characters and digests (and referrers tags, ``sha256-<hex>``) by their first 12 hex characters, each
    followed by ``…``, so that a row fits on a screen; the query
    (``?digest=``, ``?mount=``) has a column of its own, so it is never cut off.
    """
    import pandas

    rows = []
    for exchange in exchanges:
        path, _, query = exchange.path.partition("?")
        row = {"method": exchange.method, "path": _readable(path), "query": _readable(query), "status": exchange.status}
        row["sent"] = human_size(exchange.sent) if exchange.sent else ""
        for name in TEACHING_HEADERS:
            value = exchange.headers.get(name, "")
            row[name] = _readable(re.sub(r"^https?://[^/]+", "", value))
        rows.append(row)
    frame = pandas.DataFrame(rows, columns=["method", "path", "query", "status", "sent", *TEACHING_HEADERS])
    return frame.loc[:, [column for column in frame.columns if column in _ALWAYS or frame[column].astype(bool).any()]]


_ALWAYS = ("method", "path", "status")


def _readable(text: str) -> str:
    return _UPLOAD_ID.sub(r"\1…", _LONG_DIGEST.sub(r"\1…", _QUERY_STATE.sub(r"\1…", text)))
