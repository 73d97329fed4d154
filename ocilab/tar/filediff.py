"""File-level difference of two merged filesystems."""

from __future__ import annotations

from dataclasses import dataclass

from ocilab.tar.entries import Entry
from ocilab.tar.merge import differs


@dataclass(frozen=True, slots=True)
class FileDifference:
    """``path`` was added (only in B), removed (only in A) or modified; ``a``/``b`` are its entries."""

    path: str
    change: str
    a: Entry | None
    b: Entry | None

    @property
    def kind(self) -> str:
        return (self.b or self.a).kind  # type: ignore[union-attr]


def diff_files(a: dict[str, Entry], b: dict[str, Entry], strict: bool = False) -> list[FileDifference]:
    """What changes from filesystem ``a`` to ``b``, sorted by path. mtime counts only when ``strict``."""
    result = [FileDifference(path, "removed", entry, None) for path, entry in a.items() if path not in b]
    for path, entry in b.items():
        old = a.get(path)
        if old is None:
            result.append(FileDifference(path, "added", None, entry))
        elif differs(old, entry, strict):
            result.append(FileDifference(path, "modified", old, entry))
    result.sort(key=lambda difference: difference.path)
    return result
