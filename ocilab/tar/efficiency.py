"""How much of an image's layer content is still visible at the end: bytes, ratio, and the paths to blame.

- ``total_bytes``: regular-file bytes written by all layers (hard links add none).
- ``final_bytes``: bytes of the regular files visible in the merged filesystem;
  a hard link shares its target's bytes, so each is counted once.
- ``wasted_bytes = total_bytes - final_bytes``: bytes shipped in some layer and
  then overwritten or deleted by a later one.
- ``efficiency = final_bytes / total_bytes`` (1.0 for an image with no file bytes).

dive scores differently (dive/filetree/efficiency.go): per path it keeps the
*smallest* copy it met and divides the sum of those minima by the sum of all
copies, where a whiteout counts as one more copy (size 0 for a file, the
removed content's size for a directory, so that content is counted twice).
Its "potential wasted space" adds up *every* copy of a path seen more than
once, the surviving one included. So dive's score credits a file overwritten by
a smaller one as if the small copy were kept, and its waste exceeds what a
smaller image would save. Here only bytes that no container can see are waste,
and ``final_bytes + wasted_bytes == total_bytes`` holds exactly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ocilab.tar.merge import MergedFilesystem


@dataclass(frozen=True)
class WastedPath:
    """A path whose bytes were written more than they are seen."""

    path: str
    occurrences: int
    wasted_bytes: int
    visible: bool


@dataclass(frozen=True)
class Efficiency:
    total_bytes: int
    final_bytes: int
    files: tuple[WastedPath, ...]

    @property
    def wasted_bytes(self) -> int:
        return self.total_bytes - self.final_bytes

    @property
    def efficiency(self) -> float:
        return self.final_bytes / self.total_bytes if self.total_bytes else 1.0

    @property
    def wasted_percent(self) -> float:
        return 100.0 * self.wasted_bytes / self.total_bytes if self.total_bytes else 0.0


def measure(filesystem: MergedFilesystem) -> Efficiency:
    """The efficiency of a fully merged image; ``files`` sorted by wasted bytes, largest first.

    Bytes are counted per inode: a file written once and hard-linked twice is
    counted once, and stays visible as long as one of its names does.
    """
    visible = filesystem.visible_inodes()
    paths, sizes = filesystem.written_paths, filesystem.written_sizes
    copies = Counter(paths)
    losses: dict[str, int] = {}
    for inode, path in enumerate(paths):
        loss = 0 if inode in visible else sizes[inode]
        if loss or copies[path] > 1:
            losses[path] = losses.get(path, 0) + loss
    wasted = [WastedPath(path, copies[path], loss, path in filesystem.entries) for path, loss in losses.items()]
    total = sum(sizes)
    final = total - sum(losses.values())
    wasted.sort(key=lambda item: (-item.wasted_bytes, item.path))
    return Efficiency(total, final, tuple(wasted))
