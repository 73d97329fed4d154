"""A directory drawn as an indented tree, for looking at how a store keeps its files (notebook 03)."""

from __future__ import annotations

import re
from pathlib import Path

from ocilab.errors import NotFoundError
from ocilab.present.text import human_size

_HEX = re.compile(r"^[0-9a-f]{64}$")
_LINK_MAX = 200  # a link file holds one digest; larger files are shown by size only


class DirectoryTree:
    """The tree under ``root``; its repr lists every entry, indented, sorted by name.

    64-hex names are cut to their first 12 characters and ``…``; a file named
    ``link`` (the registry's pointer files) shows the digest it holds, a symlink its target (never followed),
    other files their size.
    """

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise NotFoundError(f"{root}: no such directory")
        self.root = root

    def lines(self) -> list[str]:
        """One line per entry below the root, depth first."""
        result: list[str] = []
        self._walk(self.root, 0, result)
        return result

    def _walk(self, directory: Path, depth: int, out: list[str]) -> None:
        for entry in sorted(directory.iterdir(), key=lambda path: path.name):
            name = entry.name[:12] + "…" if _HEX.match(entry.name) else entry.name
            indent = "  " * depth
            if entry.is_dir() and not entry.is_symlink():
                out.append(f"{indent}{name}/")
                self._walk(entry, depth + 1, out)
            elif entry.is_symlink():
                out.append(f"{indent}{name} -> {entry.readlink()}")
            elif entry.name == "link" and entry.stat().st_size <= _LINK_MAX:
                out.append(f"{indent}{name} -> {entry.read_text(errors='replace').strip()}")
            else:
                out.append(f"{indent}{name}  {human_size(entry.lstat().st_size)}")

    def __repr__(self) -> str:
        return "\n".join([f"{self.root.name}/", *("  " + line for line in self.lines())])


def directory_tree(root: Path) -> DirectoryTree:
    """The tree of files under ``root`` (NotFoundError when it is not a directory)."""
    return DirectoryTree(Path(root))
