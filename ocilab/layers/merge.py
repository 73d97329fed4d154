"""The merged filesystem of stacked layers, and what each layer changes in it.

Rules (image-spec layer.md, "Whiteouts"): a layer's whiteouts act on the
lower layers only, and an opaque whiteout hides everything the lower layers
had under its directory, whatever its position in the tar; then the layer's
own entries are laid on top. An entry that replaces a directory with
anything else removes the directory's lower content. A path whose parents no
layer listed gets them as implicit ``0755`` root-owned directories, as
unpackers create them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ocilab.layers.entries import Entry

CHANGES = ("added", "modified", "removed")


@dataclass(frozen=True, slots=True)
class Change:
    """``path`` was added, modified or removed by layer ``layer``; ``entry`` is the new one (the old one if removed)."""

    layer: int
    path: str
    change: str
    entry: Entry


def differs(old: Entry, new: Entry, strict: bool = False) -> bool:
    """True when ``new`` is a real change of ``old``: type, content, link, mode, owner or device (mtime if strict)."""
    return (
        old.kind != new.kind
        or old.digest != new.digest
        or old.link != new.link
        or old.mode != new.mode
        or old.uid != new.uid
        or old.gid != new.gid
        or old.device != new.device
        or (strict and old.mtime != new.mtime)
    )


@dataclass(slots=True)
class _PathBytes:
    occurrences: int = 0
    size: int = 0


@dataclass
class MergedFilesystem:
    """What a container sees after the layers applied so far; ``entries`` maps ``/path`` to its Entry.

    Also keeps, for efficiency reports, every regular file written at each path
    across layers (``written``) and the layer that set each visible path (``origin``).
    """

    entries: dict[str, Entry] = field(default_factory=dict)
    origin: dict[str, int] = field(default_factory=dict)
    written: dict[str, _PathBytes] = field(default_factory=dict)
    layers: int = 0
    _children: dict[str, set[str]] = field(default_factory=dict, repr=False)

    def apply(self, entries: Iterable[Entry], strict: bool = False) -> list[Change]:
        """Lay one layer on top; the changes it makes, sorted by path."""
        layer = self.layers
        self.layers += 1
        opaque: list[str] = []
        whiteouts: list[str] = []
        sets: list[Entry] = []
        for entry in entries:
            if entry.kind == "opaque":
                opaque.append(entry.path)
            elif entry.kind == "whiteout":
                whiteouts.append(entry.path)
            else:
                sets.append(entry)
        hidden: dict[str, Entry] = {}
        for directory in opaque:
            for child in list(self._children.get(directory, ())):
                hidden.update(self._remove(child))
        for path in whiteouts:
            if path in self.entries:
                hidden.update(self._remove(path))
        changes: list[Change] = []
        sets.sort(key=lambda entry: entry.path)
        for entry in sets:
            changes += self._set(layer, entry, hidden, strict)
        changes += [Change(layer, path, "removed", entry) for path, entry in hidden.items()]
        changes.sort(key=lambda change: change.path)
        return changes

    def files(self) -> Iterator[Entry]:
        """The visible regular files."""
        return (entry for entry in self.entries.values() if entry.kind == "file")

    def _set(self, layer: int, entry: Entry, hidden: dict[str, Entry], strict: bool) -> list[Change]:
        changes = self._ensure_parents(layer, entry.path, hidden, strict)
        old = self.entries.get(entry.path) or hidden.pop(entry.path, None)
        if old is not None and old.kind == "dir" and entry.kind != "dir":
            for child in list(self._children.get(entry.path, ())):
                hidden.update(self._remove(child))
        if entry.kind == "file":
            stats = self.written.setdefault(entry.path, _PathBytes())
            stats.occurrences += 1
            stats.size += entry.size
        self._put(entry, layer)
        if old is None:
            changes.append(Change(layer, entry.path, "added", entry))
        elif differs(old, entry, strict):
            changes.append(Change(layer, entry.path, "modified", entry))
        return changes

    def _ensure_parents(self, layer: int, path: str, hidden: dict[str, Entry], strict: bool) -> list[Change]:
        """Create the missing parents of ``path`` as implicit directories (replacing any hidden this layer)."""
        missing = []
        parent = posixpath.dirname(path)
        while parent != "/" and parent not in self.entries:
            missing.append(parent)
            parent = posixpath.dirname(parent)
        changes = []
        for directory in reversed(missing):
            implicit = Entry(directory, "dir", mode=0o755)
            old = hidden.pop(directory, None)
            self._put(implicit, layer)
            if old is None:
                changes.append(Change(layer, directory, "added", implicit))
            elif differs(old, implicit, strict):
                changes.append(Change(layer, directory, "modified", implicit))
        return changes

    def _put(self, entry: Entry, layer: int) -> None:
        self.entries[entry.path] = entry
        self.origin[entry.path] = layer
        self._children.setdefault(posixpath.dirname(entry.path), set()).add(entry.path)

    def _remove(self, path: str) -> dict[str, Entry]:
        """Remove ``path`` and everything under it; what was removed, by path."""
        removed: dict[str, Entry] = {}
        stack = [path]
        while stack:
            current = stack.pop()
            entry = self.entries.pop(current, None)
            if entry is None:
                continue
            del self.origin[current]
            removed[current] = entry
            stack.extend(self._children.pop(current, ()))
        siblings = self._children.get(posixpath.dirname(path))
        if siblings is not None:
            siblings.discard(path)
        return removed
