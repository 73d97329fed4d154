"""The merged filesystem of stacked layers, and what each layer changes in it.

Rules (image-spec layer.md, "Whiteouts"): a layer's whiteouts act on the
lower layers only, and an opaque whiteout hides everything the lower layers
had under its directory, whatever its position in the tar; then the layer's
own entries are laid on top. An entry that replaces a directory with
anything else removes the directory's lower content. A path whose parents no
layer listed gets them as implicit ``0755`` root-owned directories, as
unpackers create them. Every entry lands where its directory resolves through
symlinks inside the root (``ocilab.tar.resolve``), as umoci and containerd
put it. Within a layer, entries apply in path order (a directory before what
is under it, so a symlink before the writes through it), hard links last.
"""

from __future__ import annotations

import posixpath
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from ocilab.errors import InvalidInputError
from ocilab.tar.entries import Entry
from ocilab.tar.resolve import resolve_directory, resolve_parent


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


@dataclass
class MergedFilesystem:
    """What a container sees after the layers applied so far; ``entries`` maps ``/path`` to its Entry.

    Regular files are inodes: every file a layer writes is a new one, numbered
    in order (``written_paths[n]`` is where inode ``n`` was written,
    ``written_sizes[n]`` its size), and ``inode`` maps each visible file or
    hard link to its inode. A hard link shares its
    target's inode, so it carries the target's content (its Entry's ``digest``
    and ``size``) and keeps it when the target is later rewritten or removed,
    as the layer rules' unlink-and-recreate semantics have it.
    """

    entries: dict[str, Entry] = field(default_factory=dict)
    inode: dict[str, int] = field(default_factory=dict)
    written_paths: list[str] = field(default_factory=list)
    written_sizes: array[int] = field(default_factory=lambda: array("q"))
    layers: int = 0
    _children: dict[str, set[str]] = field(default_factory=dict, repr=False)

    def apply(self, entries: Iterable[Entry], strict: bool = False, what: str = "layer") -> list[Change]:
        """Lay one layer on top; the changes it makes, sorted by path.

        Entries land where ``ocilab.tar.resolve`` puts them (symlinked
        directories followed inside the root), and changes name those paths.
        InvalidInputError (naming ``what``) for a path under a regular file or
        device, a symlink loop, or a hard link whose target is not a regular file.
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
        before: dict[str, Entry | None] = {}  # the lower state of every path this layer touches
        for directory in opaque:
            resolved = resolve_directory(directory, self._readlink, what)
            for child in list(self._children.get(resolved, ())):
                self._remove(child, before)
        for path in whiteouts:
            self._remove(self._land(path, what), before)
        # Paths in order put parents before children. Hard links last: their targets may sort after them.
        sets.sort(key=lambda entry: (entry.kind == "hardlink", entry.path))
        for entry in sets:
            self._set(entry, before, what)
        changes = []
        for path, old in before.items():
            new = self.entries.get(path)
            if new is None:
                if old is not None:
                    changes.append(Change(layer, path, "removed", old))
            elif old is None:
                changes.append(Change(layer, path, "added", new))
            elif differs(old, new, strict):
                changes.append(Change(layer, path, "modified", new))
        changes.sort(key=lambda change: change.path)
        return changes

    def visible_inodes(self) -> set[int]:
        """The inodes some visible file or hard link still names."""
        return set(self.inode.values())

    def _readlink(self, path: str) -> str | None:
        entry = self.entries.get(path)
        return entry.link if entry is not None and entry.kind == "symlink" else None

    def _land(self, path: str, what: str) -> str:
        """Where an entry at ``path`` lands (``resolve_parent``); at once when its directory is a real one."""
        parent = posixpath.dirname(path)
        existing = self.entries.get(parent)
        if parent == "/" or existing is not None and existing.kind == "dir":
            return path  # every path in the view has real directories above it: nothing to resolve
        return resolve_parent(path, self._readlink, what)

    def _set(self, entry: Entry, before: dict[str, Entry | None], what: str) -> None:
        path = self._land(entry.path, what)
        if path != entry.path:
            entry = replace(entry, path=path)
        inode = None
        if entry.kind == "hardlink":
            entry, inode = self._linked(entry, what)
        elif entry.kind == "file":
            inode = len(self.written_paths)
            self.written_paths.append(path)
            self.written_sizes.append(entry.size)
        self._ensure_parents(path, before, what)
        old = self.entries.get(path)
        if old is not None and old.kind == "dir" and entry.kind != "dir":
            for child in list(self._children.get(path, ())):
                self._remove(child, before)
        before.setdefault(path, old)
        self._put(entry)
        if inode is None:
            self.inode.pop(path, None)
        else:
            self.inode[path] = inode

    def _linked(self, entry: Entry, what: str) -> tuple[Entry, int]:
        """The hard link with its target's content, and the target's inode."""
        assert entry.link is not None
        link = self._land(entry.link, what)
        inode = self.inode.get(link)
        if inode is None or link == entry.path:
            raise InvalidInputError(
                f"{what}: hard link {entry.path} points at {entry.link}, which is not a regular file at that point"
            )
        target = self.entries[link]
        return replace(entry, size=target.size, digest=target.digest, link=link), inode

    def _ensure_parents(self, path: str, before: dict[str, Entry | None], what: str) -> None:
        """Create the missing parents of ``path`` as implicit directories; InvalidInputError under a non-directory."""
        missing = []
        parent = posixpath.dirname(path)
        while parent != "/" and parent not in self.entries:
            missing.append(parent)
            parent = posixpath.dirname(parent)
        if parent != "/" and self.entries[parent].kind != "dir":
            raise InvalidInputError(
                f"{what}: {path} would be under {parent}, which is a {self.entries[parent].kind}, not a directory"
            )
        for directory in reversed(missing):
            before.setdefault(directory, None)
            self._put(Entry(directory, "dir", mode=0o755))

    def _put(self, entry: Entry) -> None:
        self.entries[entry.path] = entry
        self._children.setdefault(posixpath.dirname(entry.path), set()).add(entry.path)

    def _remove(self, path: str, before: dict[str, Entry | None]) -> None:
        """Remove ``path`` and everything under it, noting each removed entry's lower state in ``before``."""
        stack = [path]
        while stack:
            current = stack.pop()
            entry = self.entries.pop(current, None)
            if entry is None:
                continue
            self.inode.pop(current, None)
            before.setdefault(current, entry)
            stack.extend(self._children.pop(current, ()))
        siblings = self._children.get(posixpath.dirname(path))
        if siblings is not None:
            siblings.discard(path)
