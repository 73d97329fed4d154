"""Where a layer entry lands when directories on its path are symlinks: resolved inside the root, as unpackers do.

A layer may write ``etc2/file`` after ``etc2`` became a symlink to ``etc``
(in a lower layer, or earlier in the same one). Unpacking runtimes follow the
link: umoci resolves each entry's directory with filepath-securejoin and
containerd with ``fs.RootPath``, so the file lands at ``/etc/file``. The rules,
which ``resolve_parent`` and ``resolve_directory`` implement:

- every component of the entry's *directory* is followed through symlinks;
  the entry's own last component is not (a symlink entry replaces the link);
- an absolute target restarts from the root of the filesystem, never the
  host's; ``..`` never climbs above the root (``/..`` is ``/``);
- a component that does not exist is taken as it is (the unpacker creates it
  as a directory), and ``..`` after it is lexical;
- at most ``MAX_HOPS`` symlinks are followed for one path; more is a loop.

Docker's overlay2 driver differs: it unpacks each layer into an empty
directory of its own, where a symlink of a lower layer is not there to
follow, so the layer's diff keeps the literal path (``etc2/file``) and
overlayfs then shows ``/etc2`` as a directory hiding the lower symlink.
This module is pure: it sees the filesystem only through ``readlink``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

from ocilab.errors import InvalidInputError

MAX_HOPS = 40
"""Symlinks followed for one path before it is refused as a loop (Linux's MAXSYMLINKS)."""

ReadLink = Callable[[str], str | None]
"""``/path`` -> the target of the symlink at that path, or None when it is not a symlink (or absent)."""


def resolve_directory(path: str, readlink: ReadLink, what: str) -> str:
    """``path`` (a normalised ``/a/b``) with every component followed through symlinks, inside the root.

    InvalidInputError naming ``what`` and ``path`` after ``MAX_HOPS`` symlinks.
    """
    resolved: list[str] = []
    pending = path.split("/")[::-1]  # components still to walk, next one last
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        resolved.append(part)
        target = readlink("/" + "/".join(resolved))
        if target is None:
            continue
        hops += 1
        if hops > MAX_HOPS:
            raise InvalidInputError(f"{what}: more than {MAX_HOPS} symlinks while resolving {path} (a symlink loop?)")
        resolved.pop()
        if target.startswith("/"):
            resolved.clear()
        pending.extend(target.split("/")[::-1])
    return "/" + "/".join(resolved)


def resolve_parent(path: str, readlink: ReadLink, what: str) -> str:
    """Where the entry ``path`` lands: its directory resolved by ``resolve_directory``, its last component kept."""
    directory, name = posixpath.split(path)
    return posixpath.join(resolve_directory(directory, readlink, what), name)
