"""Unpack an image into an OCI runtime bundle: ``BUNDLE/rootfs`` from the layers, ``BUNDLE/config.json`` from config.

Security contract (the place container tools have had their worst CVEs):

- every path is walked component by component from directory file
  descriptors (``dir_fd=``, ``O_NOFOLLOW``, ``O_DIRECTORY``); no call is ever
  given a path with a ``/`` in it below the rootfs, and nothing relies on
  string prefix checks or on ``tarfile``'s filters;
- a symlink on an entry's directory is followed *inside* the rootfs
  (``layers.resolve``: absolute targets and ``..`` stop at the rootfs), an
  entry's own last component never is; whiteouts act the same way;
- hard links must name an existing non-directory inside the rootfs;
- ownership, modes, xattrs and times are set on descriptors, or with
  ``follow_symlinks=False``: never through a symlink; chmod comes after chown
  so setuid bits survive;
- the bundle is built in a temporary directory beside BUNDLE (mode 0700) and
  renamed into place only when everything worked: a failure or an interrupt
  leaves nothing behind, and a refused layer names the layer and the entry.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import shutil
import stat
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ocilab.errors import InvalidInputError, UnsafePathError, UnsupportedError
from ocilab.operations.analysis import layer_source
from ocilab.operations.passwd import resolve_user
from ocilab.operations.runtime_config import runtime_config
from ocilab.stores.image import Image
from ocilab.tar.entries import Entry, Member, read_members
from ocilab.tar.resolve import resolve_directory, resolve_parent

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
OPEN_DIRECTORIES = 64
"""Directory descriptors kept open between entries (least recently used closed first)."""
MAX_ACCOUNT_FILE = 1 << 20
"""/etc/passwd and /etc/group are read up to this many bytes."""
_XATTR_REFUSED = {errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP}
_DEVICE_TYPES = {"char": stat.S_IFCHR, "block": stat.S_IFBLK}
_NO_XATTRS: Mapping[str, bytes] = {}


@dataclass
class UnpackReport:
    """What ``unpack`` made: where, from which image, how much, and what it left out (``notes``)."""

    bundle: Path
    reference: str
    manifest_digest: str
    layers: int = 0
    entries: int = 0
    bytes_written: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "bundle": str(self.bundle),
            "reference": self.reference,
            "manifest_digest": self.manifest_digest,
            "layers": self.layers,
            "entries": self.entries,
            "bytes_written": self.bytes_written,
            "notes": list(self.notes),
        }


def check_bundle_path(bundle: Path) -> None:
    """InvalidInputError when ``bundle`` exists and is not an empty directory."""
    if bundle.is_symlink() or bundle.exists() and (not bundle.is_dir() or any(bundle.iterdir())):
        raise InvalidInputError(f"{bundle}: the bundle directory exists and is not empty; choose a new one")


def unpack(
    image: Image, bundle: str | Path, rootless: bool = False, command: Sequence[str] | None = None
) -> UnpackReport:
    """Write ``image`` as a runtime bundle at ``bundle`` (absent or an empty directory).

    ``rootless`` writes the config ``runc spec --rootless`` would (a user
    namespace) and writes device nodes as empty files; ownership is kept only when
    unpacking as root and not rootless. ``command`` replaces the image's Cmd in
    ``process.args``. Raises InvalidInputError / UnsafePathError naming the layer
    and the entry for a layer that is malformed or tries to escape, and
    NotFoundError for a ``User`` the image does not have; nothing is left behind.
    """
    bundle = Path(bundle).absolute()
    check_bundle_path(bundle)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    report = UnpackReport(bundle, image.reference, str(image.manifest_digest))
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle.name}.unpack-", dir=bundle.parent))
    try:
        (staging / "rootfs").mkdir(mode=0o755)
        os.chmod(staging / "rootfs", 0o755)
        with _Rootfs(staging / "rootfs", rootless, report) as rootfs:
            for layer in image.layers:
                what, compression = layer_source(image, layer.index)
                members = read_members(image.open_layer(layer.index), compression, layer.diff_id, what)
                rootfs.apply_layer(members, what)
                report.layers += 1
            where = f"{image.reference}: config {image.config_digest}"
            user = resolve_user(
                image.config.container_config.get("User") or "",
                rootfs.read_file("/etc/passwd", where),
                rootfs.read_file("/etc/group", where),
                where,
            )
            rootfs.finish()
        document = runtime_config(image.config, user, rootless, command)
        (staging / "config.json").write_text(json.dumps(document, indent=2) + "\n")
        os.rename(staging, bundle)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


class _Rootfs:
    """The rootfs being written, reached only through descriptors opened from its own."""

    def __init__(self, root: Path, rootless: bool, report: UnpackReport) -> None:
        self._fd = os.open(root, DIRECTORY_FLAGS)
        self._directories: OrderedDict[str, int] = OrderedDict()
        self._directory_entries: dict[str, Member] = {}
        self._chown = os.geteuid() == 0 and not rootless
        self._rootless = rootless
        self._report = report
        self._layer_paths: set[str] = set()
        self._what = ""

    def __enter__(self) -> _Rootfs:
        return self

    def __exit__(self, *exc: object) -> None:
        for descriptor in self._directories.values():
            os.close(descriptor)
        self._directories.clear()
        os.close(self._fd)

    # -- layers ---------------------------------------------------------------------------------------------

    def apply_layer(self, members: Iterable[Member], what: str) -> None:
        """Apply one layer's members in order (whiteouts act on the layers below only)."""
        self._layer_paths = set()
        self._what = what
        for member in members:
            where = f"{what}: entry {member.entry.path}"
            try:
                self._apply(member, where)
            except OSError as error:
                raise InvalidInputError(f"{where}: {error.strerror or error}") from None
            self._report.entries += 1

    def _apply(self, member: Member, where: str) -> None:
        entry = member.entry
        if entry.kind == "opaque":
            self._clear(resolve_directory(entry.path, self._readlink, where), where)
            return
        target = resolve_parent(entry.path, self._readlink, where)
        parent, name = posixpath.split(target)
        if entry.kind == "whiteout":
            self._whiteout(parent, name, target, where)
            return
        if entry.kind == "hardlink" and resolve_parent(entry.link or "/", self._readlink, where) == target:
            raise UnsafePathError(f"{where}: hard link to itself")
        directory = self._directory(parent, where, create=True)
        existing = _lstat(directory, name)
        if entry.kind == "dir" and existing is not None and stat.S_ISDIR(existing.st_mode):
            self._directory_entries[target] = member
        else:
            if existing is not None:
                self._remove(directory, name, target, existing)
            self._create(member, directory, name, target, where)
        self._layer_paths.add(target)

    def _create(self, member: Member, directory: int, name: str, target: str, where: str) -> None:
        entry = member.entry
        if entry.kind == "file":
            self._write_file(member, directory, name)
        elif entry.kind == "dir":
            os.mkdir(name, 0o700, dir_fd=directory)
            self._directory_entries[target] = member
        elif entry.kind == "symlink":
            os.symlink(entry.link or "", name, dir_fd=directory)
            self._metadata(entry, directory, name, chmod=False)
        elif entry.kind == "hardlink":
            self._hardlink(entry, name, target, where)
        elif entry.kind == "fifo":
            os.mkfifo(name, 0o600, dir_fd=directory)
            self._metadata(entry, directory, name, chmod=True, xattrs=member.xattrs)
        elif entry.kind in _DEVICE_TYPES:
            self._device(member, directory, name, where)
        else:  # pragma: no cover - read_layer yields no other kind
            raise UnsupportedError(f"{where}: cannot unpack an entry of kind {entry.kind}")

    def _write_file(self, member: Member, directory: int, name: str) -> None:
        entry = member.entry
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(name, flags, 0o600, dir_fd=directory)
        try:
            content = member.content
            while content is not None and (chunk := content.read(1 << 20)):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(descriptor, view) :]
                self._report.bytes_written += len(chunk)
            self._metadata(entry, descriptor, None, chmod=True, xattrs=member.xattrs)
        finally:
            os.close(descriptor)

    def _hardlink(self, entry: Entry, name: str, target: str, where: str) -> None:
        """A hard link to an existing non-directory inside the rootfs (the link itself is never followed)."""
        source = resolve_parent(entry.link or "/", self._readlink, where)
        source_parent, source_name = posixpath.split(source)
        source_directory = self._directory(source_parent, where, create=False)
        found = None if source_directory < 0 else _lstat(source_directory, source_name)
        if found is None:
            resolved = "" if source == entry.link else f" (resolved to {source})"
            raise UnsafePathError(f"{where}: hard link to {entry.link}, which is not in the rootfs{resolved}")
        if stat.S_ISDIR(found.st_mode):
            raise UnsafePathError(f"{where}: hard link to {entry.link}, a directory; refusing it")
        directory = self._directory(posixpath.dirname(target), where, create=True)
        os.link(source_name, name, src_dir_fd=source_directory, dst_dir_fd=directory, follow_symlinks=False)

    def _device(self, member: Member, directory: int, name: str, where: str) -> None:
        entry = member.entry
        if self._rootless:  # an empty file in its place, as umoci --rootless leaves: a mount point for the real one
            self._report.notes.append(f"{where}: {entry.kind} device written as an empty file (rootless)")
            self._write_file(member, directory, name)
            return
        if os.geteuid() != 0:
            raise UnsupportedError(
                f"{where}: a {entry.kind} device node can only be created as root; unpack with --rootless to leave"
                " device nodes out"
            )
        major, minor = entry.device or (0, 0)
        os.mknod(name, 0o600 | _DEVICE_TYPES[entry.kind], os.makedev(major, minor), dir_fd=directory)
        self._metadata(entry, directory, name, chmod=True, xattrs=member.xattrs)

    def _metadata(
        self,
        entry: Entry,
        where: int,
        name: str | None,
        chmod: bool,
        xattrs: Mapping[str, bytes] = _NO_XATTRS,
    ) -> None:
        """Owner, then mode (after chown, which clears setuid), then xattrs, then times; never through a symlink.

        ``name`` None: ``where`` is the object's own descriptor; otherwise ``name`` is in the directory ``where``.
        """
        if name is None:
            if self._chown:
                os.fchown(where, entry.uid, entry.gid)
            if chmod:
                os.fchmod(where, entry.mode)
            self._xattrs(xattrs, where, None)
            os.utime(where, ns=(_ns(entry.mtime), _ns(entry.mtime)))
            return
        if self._chown:
            os.chown(name, entry.uid, entry.gid, dir_fd=where, follow_symlinks=False)
        if chmod:
            os.chmod(name, entry.mode, dir_fd=where, follow_symlinks=False)
        self._xattrs(xattrs, where, name)
        os.utime(name, ns=(_ns(entry.mtime), _ns(entry.mtime)), dir_fd=where, follow_symlinks=False)

    def _xattrs(self, xattrs: Mapping[str, bytes], where: int, name: str | None) -> None:
        if not xattrs:
            return
        target: int | str = where if name is None else f"/proc/self/fd/{where}/{name}"
        for key, value in xattrs.items():
            try:
                os.setxattr(target, key, value, follow_symlinks=isinstance(target, int))
            except OSError as error:
                if error.errno not in _XATTR_REFUSED:
                    raise
                self._report.notes.append(f"{self._what}: xattr {key} not set ({error.strerror})")

    # -- removal --------------------------------------------------------------------------------------------

    def _whiteout(self, parent: str, name: str, target: str, where: str) -> None:
        directory = self._directory(parent, where, create=False)
        if directory < 0:
            return
        existing = _lstat(directory, name)
        if existing is None:
            return
        if target in self._layer_paths:  # written by this very layer: only what lower layers put under it goes
            if stat.S_ISDIR(existing.st_mode):
                self._clear(target, where)
            return
        self._remove(directory, name, target, existing)

    def _clear(self, path: str, where: str) -> None:
        """Remove what lower layers put under the directory ``path`` (an opaque whiteout); keep this layer's."""
        directory = self._directory(path, where, create=False)
        if directory < 0:
            return
        for name in sorted(os.listdir(directory)):
            child = posixpath.join(path, name)
            found = _lstat(directory, name)
            if found is None:
                continue
            if child not in self._layer_paths:
                self._remove(directory, name, child, found)
            elif stat.S_ISDIR(found.st_mode):
                self._clear(child, where)
                directory = self._directory(path, where, create=False)

    def _remove(self, directory: int, name: str, path: str, found: os.stat_result) -> None:
        if stat.S_ISDIR(found.st_mode):
            self._forget(path)
            shutil.rmtree(name, dir_fd=directory)
        else:
            os.unlink(name, dir_fd=directory)

    def _forget(self, path: str) -> None:
        """Drop what is cached about the directory ``path`` and everything under it."""
        prefix = path + "/"
        for key in [key for key in self._directories if key == path or key.startswith(prefix)]:
            os.close(self._directories.pop(key))
        for key in [key for key in self._directory_entries if key == path or key.startswith(prefix)]:
            del self._directory_entries[key]

    # -- walking --------------------------------------------------------------------------------------------

    def _directory(self, path: str, where: str, create: bool) -> int:
        """A descriptor of the directory at ``path`` (already resolved: no symlinks on it), walked from the root.

        Missing directories are created (mode 0755) when ``create``; otherwise -1 says one is missing.
        A component that is not a directory raises UnsafePathError naming ``where``.
        """
        if path == "/":
            return self._fd
        cached = self._directories.get(path)
        if cached is not None:
            self._directories.move_to_end(path)
            return cached
        parent_path, name = posixpath.split(path)
        if name in ("", ".", ".."):
            raise UnsafePathError(f"{where}: refusing the path component {name!r} in {path}")
        parent = self._directory(parent_path, where, create)
        if parent < 0:
            return -1
        try:
            descriptor = os.open(name, DIRECTORY_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return -1
            os.mkdir(name, 0o755, dir_fd=parent)
            descriptor = os.open(name, DIRECTORY_FLAGS, dir_fd=parent)
            os.fchmod(descriptor, 0o755)
        except OSError as error:
            if error.errno in (errno.ENOTDIR, errno.ELOOP):
                raise UnsafePathError(
                    f"{where}: {path} is not a directory in the rootfs; refusing to go through it"
                ) from None
            raise
        self._directories[path] = descriptor
        if len(self._directories) > OPEN_DIRECTORIES:
            os.close(self._directories.popitem(last=False)[1])
        return descriptor

    def _readlink(self, path: str) -> str | None:
        """The target of the symlink at ``path`` (whose directory has no symlinks), or None."""
        if path in self._directories:
            return None
        parent_path, name = posixpath.split(path)
        try:
            parent = self._directory(parent_path, path, create=False)
        except UnsafePathError:
            return None  # a file on the way: the walk that creates the entry refuses it, naming the entry
        if parent < 0:
            return None
        try:
            return os.readlink(name, dir_fd=parent)
        except OSError:
            return None

    def read_file(self, path: str, where: str) -> bytes | None:
        """A regular file of the rootfs (symlinks followed inside it), up to MAX_ACCOUNT_FILE bytes; None if absent."""
        resolved = resolve_directory(path, self._readlink, f"{where}: {path}")
        parent_path, name = posixpath.split(resolved)
        try:
            parent = self._directory(parent_path, path, create=False)
        except UnsafePathError:
            return None
        if parent < 0 or not name:
            return None
        try:
            descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                return None
            return os.read(descriptor, MAX_ACCOUNT_FILE)
        finally:
            os.close(descriptor)

    def finish(self) -> None:
        """Directories' owners, modes, xattrs and times, deepest first (their content no longer changes)."""
        for path in sorted(self._directory_entries, key=lambda key: key.count("/"), reverse=True):
            member = self._directory_entries[path]
            descriptor = self._directory(path, f"{self._what}: directory {path}", create=False)
            if descriptor >= 0:
                self._metadata(member.entry, descriptor, None, chmod=True, xattrs=member.xattrs)


def _lstat(directory: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=directory)
    except FileNotFoundError:
        return None


def _ns(seconds: float) -> int:
    return int(round(seconds * 1_000_000_000))
