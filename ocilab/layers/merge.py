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
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from ocilab.errors import InvalidInputError
from ocilab.layers.entries import Entry


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


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """A regular file some layer wrote: the path it was written at and its size (an inode, for efficiency)."""

    path: str
    size: int


@dataclass
class MergedFilesystem:
    """What a container sees after the layers applied so far; ``entries`` maps ``/path`` to its Entry.

    Regular files are inodes: every file a layer writes is a new one
    (``written``, in order: where it was written and its size), and ``inode``
    maps each visible file or hard link to its inode. A hard link shares its
    target's inode, so it carries the target's content (its Entry's ``digest``
    and ``size``) and keeps it when the target is later rewritten or removed,
    as the layer rules' unlink-and-recreate semantics have it.
    """

    entries: dict[str, Entry] = field(default_factory=dict)
    inode: dict[str, int] = field(default_factory=dict)
    written: list[WrittenFile] = field(default_factory=list)
    layers: int = 0
    _children: dict[str, set[str]] = field(default_factory=dict, repr=False)

    def apply(self, entries: Iterable[Entry], strict: bool = False, what: str = "layer") -> list[Change]:
        """Lay one layer on top; the changes it makes, sorted by path.

        InvalidInputError (naming ``what``) for a hard link whose target is not a regular file.
        """
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
        # Hard links last: their targets may sort after them, and must be in place to be linked to.
        sets.sort(key=lambda entry: (entry.kind == "hardlink", entry.path))
        for entry in sets:
            changes += self._set(layer, entry, hidden, strict, what)
        changes += [Change(layer, path, "removed", entry) for path, entry in hidden.items()]
        changes.sort(key=lambda change: change.path)
        return changes

    def visible_inodes(self) -> set[int]:
        """The inodes some visible file or hard link still names."""
        return set(self.inode.values())

    def _set(self, layer: int, entry: Entry, hidden: dict[str, Entry], strict: bool, what: str) -> list[Change]:
        inode = None
        if entry.kind == "hardlink":
            entry, inode = self._linked(entry, what)
        elif entry.kind == "file":
            inode = len(self.written)
            self.written.append(WrittenFile(entry.path, entry.size))
        changes = self._ensure_parents(layer, entry.path, hidden, strict)
        old = self.entries.get(entry.path) or hidden.pop(entry.path, None)
        if old is not None and old.kind == "dir" and entry.kind != "dir":
            for child in list(self._children.get(entry.path, ())):
                hidden.update(self._remove(child))
        self._put(entry)
        if inode is None:
            self.inode.pop(entry.path, None)
        else:
            self.inode[entry.path] = inode
        if old is None:
            changes.append(Change(layer, entry.path, "added", entry))
        elif differs(old, entry, strict):
            changes.append(Change(layer, entry.path, "modified", entry))
        return changes

    def _linked(self, entry: Entry, what: str) -> tuple[Entry, int]:
        """The hard link with its target's content, and the target's inode."""
        assert entry.link is not None
        inode = self.inode.get(entry.link)
        if inode is None or entry.link == entry.path:
            raise InvalidInputError(
                f"{what}: hard link {entry.path} points at {entry.link}, which is not a regular file at that point"
            )
        target = self.entries[entry.link]
        return replace(entry, size=target.size, digest=target.digest), inode

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
            self._put(implicit)
            if old is None:
                changes.append(Change(layer, directory, "added", implicit))
            elif differs(old, implicit, strict):
                changes.append(Change(layer, directory, "modified", implicit))
        return changes

    def _put(self, entry: Entry) -> None:
        self.entries[entry.path] = entry
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
            self.inode.pop(current, None)
            removed[current] = entry
            stack.extend(self._children.pop(current, ()))
        siblings = self._children.get(posixpath.dirname(path))
        if siblings is not None:
            siblings.discard(path)
        return removed
