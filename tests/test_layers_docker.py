"""Layer changesets, merged views, diffs and efficiency: exact on images built for real by the Docker engine.

Every image here is built ``FROM scratch`` by the engine (the SDK's classic
builder) from a Dockerfile whose effect is known line by line: layer 0 is the
COPY of the host's static busybox, and each later layer is one ``RUN`` of
busybox's shell. With the overlay2 storage driver a ``docker save`` layer holds
real ``.wh.<name>`` whiteouts (a deleted file or directory) and
``.wh..wh..opq`` opaque whiteouts (a directory removed and re-created in one
``RUN``). Where Docker cannot write a layer we need (an opaque whiteout after
the directory's new children), the layer is written here, on top of the real
image, into an OCI layout.

Expected changesets are spelled out from the Dockerfiles; sizes come from the
bytes the scripts write. The merged view is checked against two peers: the
rootfs ``umoci unpack`` makes and ``docker export`` of a container.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas
import pytest

import ocilab
from ocilab.model import Digest
from ocilab.operations.analysis import merge
from ocilab.stores.layout_writer import LayoutWriter
from ocilab.tar.merge import MergedFilesystem
from tests.conftest import BUSYBOX, require, require_tool, run

Row = tuple[str, str, str, int]
"""One change as the tests spell it: (path, change, type, size)."""

REPO = "ocilab-test/layers"
OLD_TIME = "2001-01-01 00:00:00"
NEW_TIME = "2002-02-02 00:00:00"
DOCKER_TAR_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
OCI_GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MIB = 1024 * 1024

# What `docker export` adds to a container of an image that has no /dev and no /etc: the mount points and
# files of the engine's init layer (moby daemon/initlayer/setup_unix.go: /dev/pts, /dev/shm, /proc, /sys,
# /.dockerenv, /etc/resolv.conf, /etc/hosts, /etc/hostname, /dev/console and the /etc/mtab symlink), plus
# their parent directories /dev and /etc, which none of these images has. The test asserts this set exactly.
EXPORT_EXTRAS = frozenset(
    {
        "/.dockerenv",
        "/dev",
        "/dev/console",
        "/dev/pts",
        "/dev/shm",
        "/etc",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/mtab",
        "/etc/resolv.conf",
        "/proc",
        "/sys",
    }
)


def echo_files(files: dict[str, str]) -> str:
    """Shell lines writing each file's text (every text ends with the newline ``echo`` adds)."""
    assert all(text.endswith("\n") for text in files.values())
    return "".join(f"echo {shlex.quote(text[:-1])} > {path}\n" for path, text in files.items())


def run_line(script: str) -> str:
    """A Dockerfile RUN in exec form (a scratch image has no /bin/sh): busybox's shell runs ``script``."""
    return "RUN " + json.dumps(["/bin/busybox", "sh", "-c", "set -e\nb=/bin/busybox\n" + script]) + "\n"


# ---- The main image: four layers, each change kind at least once ----------------------------------------------

L1_FILES = {
    "/data/keep.txt": "keep\n",
    "/data/content.txt": "version one\n",
    "/data/mode.txt": "mode\n",
    "/data/owner.txt": "owner\n",
    "/data/gone.txt": "gone\n",
    "/data/touched.txt": "touched\n",
    "/tree/top.txt": "top\n",
    "/tree/a/x.txt": "x\n",
    "/tree/a/b/deep.txt": "deep\n",
    "/swap_d2f/child.txt": "child\n",
    "/swap_f2d": "file\n",
    "/opq/keep.txt": "same\n",
    "/opq/change.txt": "old\n",
    "/opq/drop.txt": "drop\n",
    "/opq/sub/inner.txt": "inner\n",
}
L1_DIRS = ("/data", "/tree", "/tree/a", "/tree/a/b", "/swap_d2f", "/opq", "/opq/sub")
L1_SCRIPT = (
    "$b mkdir -p " + " ".join(L1_DIRS) + "\n"
    + echo_files(L1_FILES)
    + "$b ln /data/keep.txt /data/keep.txt.hard\n"  # sorts after keep.txt, so the tar holds it as the link
    "$b ln -s keep.txt /data/link\n"
    "$b ln -s /data/keep.txt /abs-link\n"
    f"$b touch -d '{OLD_TIME}' /data/touched.txt\n"
)  # fmt: skip

L2_FILES = {
    "/data/content.txt": "version two, longer\n",
    "/swap_d2f": "now a file\n",
    "/swap_f2d/new.txt": "new\n",
    "/opq/keep.txt": "same\n",
    "/opq/change.txt": "new!\n",
    "/added-dir/file.txt": "added\n",
}
L2_SCRIPT = (
    "$b chmod 600 /data/mode.txt\n"
    "$b chown 1000:1000 /data/owner.txt\n"
    "$b rm /data/gone.txt\n"
    "$b rm -r /tree\n"
    "$b rm -r /swap_d2f\n"
    "$b rm /swap_f2d\n$b mkdir /swap_f2d\n"
    "$b rm -r /opq\n$b mkdir /opq\n"  # one RUN: overlay2 marks the new /opq opaque
    "$b mkdir /added-dir\n"
    + echo_files(L2_FILES)
    + "$b ln -sfn keep.txt.hard /data/link\n"
    f"$b touch -d '{NEW_TIME}' /data/touched.txt\n"
)  # fmt: skip

L3_FILES = {"/swap_d2f/child.txt": "child again\n", "/swap_f2d": "file again\n"}
L3_SCRIPT = "$b rm /swap_d2f\n$b mkdir /swap_d2f\n$b rm -r /swap_f2d\n" + echo_files(L3_FILES)

PREFIX = "FROM scratch\nCOPY busybox /bin/busybox\n" + run_line(L1_SCRIPT)
BEFORE_CONFIG = 'ENV STAGE=before\nLABEL stage=before\nCMD ["/bin/busybox", "sh"]\n'
AFTER_CONFIG = 'ENV STAGE=after\nLABEL stage=after\nWORKDIR /data\nCMD ["/bin/busybox", "ls", "/data"]\n'

WASTE_SCRIPTS = (
    f"$b mkdir /waste\n$b head -c {MIB} /dev/zero > /waste/big.bin\n$b head -c 1000 /dev/zero > /waste/over.txt\n",
    "$b rm /waste/big.bin\nprintf 0123456789 > /waste/over.txt\n",
)
HARDLINK_SCRIPTS = (
    "$b mkdir /h\necho 'shared bytes' > /h/orig\n$b ln /h/orig /h/orig-link\n"
    "echo before > /h/m-orig\n$b ln /h/m-orig /h/m-orig-link\n",
    "$b rm /h/orig\necho 'after, longer' > /h/m-orig\n",
)

LINKED_SCRIPT = "echo {} > /t\n$b ln /t /x\n"


def file_row(path: str, change: str, files: dict[str, str]) -> Row:
    return (path, change, "file", len(files[path].encode()))


def expected_main(busybox_size: int) -> list[set[Row]]:
    """The changeset of each layer of the main image, from its Dockerfile."""
    layer0 = {("/bin", "added", "dir", 0), ("/bin/busybox", "added", "file", busybox_size)}
    layer1 = {(directory, "added", "dir", 0) for directory in L1_DIRS}
    layer1 |= {file_row(path, "added", L1_FILES) for path in L1_FILES}
    layer1 |= {
        ("/data/keep.txt.hard", "added", "hardlink", len(L1_FILES["/data/keep.txt"].encode())),
        ("/data/link", "added", "symlink", 0),
        ("/abs-link", "added", "symlink", 0),
    }
    layer2 = {
        ("/added-dir", "added", "dir", 0),
        file_row("/added-dir/file.txt", "added", L2_FILES),
        file_row("/data/content.txt", "modified", L2_FILES),  # content
        file_row("/data/mode.txt", "modified", L1_FILES),  # chmod only
        file_row("/data/owner.txt", "modified", L1_FILES),  # chown only
        ("/data/link", "modified", "symlink", 0),  # link target
        file_row("/data/gone.txt", "removed", L1_FILES),  # .wh.gone.txt
        # .wh.tree: every lower path under /tree
        ("/tree", "removed", "dir", 0),
        ("/tree/a", "removed", "dir", 0),
        ("/tree/a/b", "removed", "dir", 0),
        file_row("/tree/a/b/deep.txt", "removed", L1_FILES),
        file_row("/tree/a/x.txt", "removed", L1_FILES),
        file_row("/tree/top.txt", "removed", L1_FILES),
        # directory -> file: the directory's content goes with it
        file_row("/swap_d2f", "modified", L2_FILES),
        file_row("/swap_d2f/child.txt", "removed", L1_FILES),
        # file -> directory
        ("/swap_f2d", "modified", "dir", 0),
        file_row("/swap_f2d/new.txt", "added", L2_FILES),
        # opaque /opq: keep.txt re-added unchanged (no change), change.txt re-added changed, the rest removed
        file_row("/opq/change.txt", "modified", L2_FILES),
        file_row("/opq/drop.txt", "removed", L1_FILES),
        ("/opq/sub", "removed", "dir", 0),
        file_row("/opq/sub/inner.txt", "removed", L1_FILES),
        # /data/touched.txt: mtime only, not a change
    }
    layer3 = {
        ("/swap_d2f", "modified", "dir", 0),  # file -> directory again
        file_row("/swap_d2f/child.txt", "added", L3_FILES),
        file_row("/swap_f2d", "modified", L3_FILES),  # directory -> file again
        file_row("/swap_f2d/new.txt", "removed", L2_FILES),
    }
    return [layer0, layer1, layer2, layer3]


def state_after(layers: Iterable[set[Row]]) -> dict[str, str]:
    """Path -> type once the expected changesets are applied (they list every removed descendant)."""
    state: dict[str, str] = {}
    for layer in layers:
        for path, change, kind, _ in sorted(layer):
            if change == "removed":
                state.pop(path, None)
            else:
                state[path] = kind
    return state


# ---- Building, saving, and the peers' views -----------------------------------------------------------------


def normal(name: str) -> str:
    """A tar member name as ``/a/b``."""
    return "/" + "/".join(part for part in name.split("/") if part not in ("", "."))


def layer_members(archive: Path) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """The raw config and each layer's (member name, uncompressed tar bytes) of a ``docker save`` archive."""
    with tarfile.open(archive) as saved:
        manifest = json.load(saved.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(saved.extractfile(manifest["Config"]))  # type: ignore[arg-type]
        layers = [(name, saved.extractfile(name).read()) for name in manifest["Layers"]]  # type: ignore[union-attr]
    return config, layers


def layout_documents(layout: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The first index.json entry of an OCI layout, its manifest and its config."""

    def document(digest: str) -> dict[str, Any]:
        return json.loads((layout / "blobs" / digest.replace(":", "/")).read_bytes())

    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    manifest = document(top["digest"])
    return top, manifest, document(manifest["config"]["digest"])


def tar_headers(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as layer:
        return layer.getmembers()


@dataclass
class Built:
    """An image the engine built, saved with ``docker save``; skopeo, umoci and export views made on demand."""

    tag: str
    work: Path

    @cached_property
    def save(self) -> Path:
        path = self.work / "save.tar"
        run("docker", "save", "-o", path, self.tag)
        return path

    @property
    def archive(self) -> str:
        return f"docker-archive:{self.save}"

    @property
    def daemon(self) -> str:
        return f"docker-daemon:{self.tag}"

    @cached_property
    def layout(self) -> Path:
        """An OCI layout written by skopeo from the saved image, tagged ``1``."""
        require_tool("skopeo")
        path = self.work / "layout"
        run("skopeo", "copy", "--quiet", f"docker-archive:{self.save}", f"oci:{path}:1")
        return path

    @property
    def oci(self) -> str:
        return f"oci:{self.layout}:1"

    @cached_property
    def raw(self) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
        return layer_members(self.save)

    @property
    def config(self) -> dict[str, Any]:
        return self.raw[0]

    @property
    def layer_tars(self) -> list[bytes]:
        return [data for _, data in self.raw[1]]

    @cached_property
    def rootfs(self) -> Path:
        return umoci_unpack(self.layout, "1", self.work / "bundle")

    @cached_property
    def export(self) -> Path:
        """``docker export`` of a container created (not started) from the image."""
        created = run("docker", "create", self.tag, "/bin/busybox", "true").stdout.strip()
        path = self.work / "export.tar"
        try:
            run("docker", "export", "-o", path, created)
        finally:
            run("docker", "rm", created)
        return path


def umoci_unpack(layout: Path, tag: str, bundle: Path) -> Path:
    require_tool("umoci")
    require(os.geteuid() == 0, "root (umoci unpack keeps owners only as root)")
    run("umoci", "unpack", "--image", f"{layout}:{tag}", bundle)
    return bundle / "rootfs"


class Builder:
    """Builds images with the engine once per session, each from its own context in a temporary directory."""

    def __init__(self, client: Any, root: Path) -> None:
        self.client = client
        self.root = root
        self.built: dict[str, Built] = {}

    def __call__(self, name: str, dockerfile: str, with_busybox: bool = True, dirs: tuple[str, ...] = ()) -> Built:
        if name in self.built:
            return self.built[name]
        import docker

        work = self.root / name
        context = work / "context"
        context.mkdir(parents=True)
        if with_busybox:
            shutil.copy2(BUSYBOX, context / "busybox")
        for directory in dirs:
            (context / directory).mkdir(parents=True)
        (context / "Dockerfile").write_text(dockerfile)
        tag = f"{REPO}-{name}:1"
        try:
            self.client.images.build(path=str(context), tag=tag, rm=True, forcerm=True)
        except docker.errors.BuildError as error:
            log = "".join(str(item.get("stream", item.get("error", ""))) for item in error.build_log)
            pytest.fail(f"docker build of {tag} failed: {error}\n{log}", pytrace=False)
        self.built[name] = Built(tag, work)
        return self.built[name]


@pytest.fixture(scope="session")
def builder(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Builder:
    require(BUSYBOX.is_file(), f"{BUSYBOX} (Debian package busybox-static)")
    require_tool("docker")
    return Builder(docker_client, tmp_path_factory.mktemp("layers-docker"))


@pytest.fixture(scope="session")
def busybox_size() -> int:
    require(BUSYBOX.is_file(), f"{BUSYBOX} (Debian package busybox-static)")
    return BUSYBOX.stat().st_size


@pytest.fixture(scope="session")
def before(builder: Builder) -> Built:
    """Layers 0-1 of the main image (busybox, then files, directories and links), with its own config."""
    return builder("before", PREFIX + BEFORE_CONFIG)


@pytest.fixture(scope="session")
def main_image(builder: Builder, before: Built) -> Built:
    """The main image: ``before``'s Dockerfile prefix (so the same two layers), then two more RUNs."""
    return builder("main", PREFIX + run_line(L2_SCRIPT) + run_line(L3_SCRIPT) + AFTER_CONFIG)


@pytest.fixture(scope="session")
def touched(builder: Builder, before: Built) -> Built:
    """``before`` plus one layer that only sets /data/touched.txt's mtime; the same config as ``before``."""
    return builder("touched", PREFIX + run_line(f"$b touch -d '{NEW_TIME}' /data/touched.txt\n") + BEFORE_CONFIG)


@pytest.fixture(scope="session")
def waste(builder: Builder) -> Built:
    """Writes 1 MiB and 1000 bytes, then deletes the MiB and overwrites the 1000 bytes with 10."""
    return builder("waste", "FROM scratch\nCOPY busybox /bin/busybox\n" + "".join(map(run_line, WASTE_SCRIPTS)))


@pytest.fixture(scope="session")
def hardlinked(builder: Builder) -> Built:
    """Two hard-linked pairs; a later layer deletes one original and rewrites the other."""
    return builder("hardlink", "FROM scratch\nCOPY busybox /bin/busybox\n" + "".join(map(run_line, HARDLINK_SCRIPTS)))


@pytest.fixture(scope="session")
def linked_pair(builder: Builder) -> tuple[Built, Built]:
    """Two images whose /x is a hard link to /t, with different bytes in /t."""
    return tuple(  # type: ignore[return-value]
        builder(f"link-{text}", f"FROM scratch\nCOPY busybox /bin/busybox\n{run_line(LINKED_SCRIPT.format(text))}")
        for text in ("one", "two")
    )


@pytest.fixture(scope="session")
def only_dirs(builder: Builder) -> Built:
    """One layer of directories only: no file bytes at all."""
    return builder("dirs", "FROM scratch\nCOPY dirs /dirs\n", with_busybox=False, dirs=("dirs/a/b", "dirs/c"))


# ---- Reading results ----------------------------------------------------------------------------------------


def cli(*args: str, expect: int = 0) -> Any:
    """``python -m ocilab ARGS``: the exit code it must give, no traceback, and its parsed JSON output."""
    result = subprocess.run(
        [sys.executable, "-m", "ocilab", *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == expect, (result.returncode, result.stderr, result.stdout[-2000:])
    return json.loads(result.stdout)


def change_set(rows: Iterable[dict[str, Any]], layer: int | None = None) -> set[Row]:
    """Rows as a set of (path, change, type, size), checking there are no duplicates and the layer number."""
    rows = list(rows)
    if layer is not None:
        assert {row["layer"] for row in rows} <= {layer}
    found = [(row["path"], row["change"], row["type"], int(row["size"])) for row in rows]
    assert len(found) == len(set(found)), "a change is listed twice"
    return set(found)


LAYER_FIELDS = ("index", "digest", "diff_id", "size", "media_type", "created_by", "added", "modified", "removed")
TOTAL_FIELDS = ("efficiency", "total_bytes", "final_bytes", "wasted_bytes", "wasted_percent")
WASTE_FIELDS = ("path", "occurrences", "wasted_bytes", "visible")


def pick(records: list[dict[str, Any]], fields: Iterable[str]) -> list[dict[str, Any]]:
    """Only the named fields of each record (the commands may add fields freely)."""
    fields = tuple(fields)
    return [{field: record[field] for field in fields} for record in records]


def frame_records(frame: pandas.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as dicts of plain Python values (NA -> None)."""
    return [
        {key: (None if pandas.isna(value) else value) for key, value in record.items()}
        for record in frame.astype(object).to_dict("records")
    ]


def diff_rows(files: Iterable[dict[str, Any]]) -> list[tuple[str, str, str, int | None, int | None]]:
    return sorted((f["path"], f["change"], f["type"], f["size_a"], f["size_b"]) for f in files)


def merged(reference: str) -> MergedFilesystem:
    with ocilab.open(reference) as image:
        filesystem, _ = merge(image)
    return filesystem


# ---- The merged view as the peers see it ----------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A path as a container sees it: type, permission bits, owner, and content digest or symlink target."""

    kind: str
    mode: int
    uid: int
    gid: int
    content: str | None


def sha256_file(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def ocilab_view(filesystem: MergedFilesystem) -> tuple[dict[str, Node], set[frozenset[str]]]:
    """ocilab's merged view as Nodes (a hard link is a file with its target's content) and its hard-link groups."""
    nodes: dict[str, Node] = {}
    for path, entry in filesystem.entries.items():
        kind, content = entry.kind, None
        if entry.kind in ("file", "hardlink"):
            kind, content = "file", entry.digest.hex() if entry.digest else None
        elif entry.kind == "symlink":
            content = entry.link
        nodes[path] = Node(kind, entry.mode & 0o7777, entry.uid, entry.gid, content)
    inodes: dict[int, set[str]] = {}
    for path, inode in filesystem.inode.items():
        inodes.setdefault(inode, set()).add(path)
    return nodes, {frozenset(group) for group in inodes.values() if len(group) > 1}


_KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
}


def rootfs_view(rootfs: Path) -> tuple[dict[str, Node], set[frozenset[str]]]:
    """An unpacked rootfs as Nodes, and its hard-link groups (regular files sharing an inode)."""
    nodes: dict[str, Node] = {}
    inodes: dict[int, set[str]] = {}
    for directory, subdirs, files in os.walk(rootfs):
        for name in subdirs + files:
            full = Path(directory) / name
            path = "/" + full.relative_to(rootfs).as_posix()
            info = full.lstat()
            kind = _KINDS[stat.S_IFMT(info.st_mode)]
            content = sha256_file(full) if kind == "file" else os.readlink(full) if kind == "symlink" else None
            nodes[path] = Node(kind, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, content)
            if kind == "file" and info.st_nlink > 1:
                inodes.setdefault(info.st_ino, set()).add(path)
    return nodes, {frozenset(group) for group in inodes.values()}


def export_view(archive: Path) -> tuple[dict[str, Node], set[frozenset[str]]]:
    """A ``docker export`` tar as Nodes (a hard-link member is a file with its target's content) and link groups."""
    nodes: dict[str, Node] = {}
    groups: dict[str, set[str]] = {}
    with tarfile.open(archive) as exported:
        for member in exported:
            path = normal(member.name)
            if path == "/":
                continue
            if member.islnk():
                target = normal(member.linkname)
                content = nodes[target].content
                groups.setdefault(target, {target}).add(path)
                kind = "file"
            elif member.isreg():
                kind = "file"
                content = hashlib.sha256(exported.extractfile(member).read()).hexdigest()  # type: ignore[union-attr]
            elif member.issym():
                kind, content = "symlink", member.linkname
            else:
                kind = {tarfile.DIRTYPE: "dir", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block"}.get(
                    member.type, "fifo"
                )
                content = None
            nodes[path] = Node(kind, member.mode & 0o7777, member.uid, member.gid, content)
    return nodes, {frozenset(group) for group in groups.values()}


def assert_same_view(ours: dict[str, Node], theirs: dict[str, Node], peer: str) -> None:
    assert sorted(ours) == sorted(theirs), f"paths differ from {peer}"
    different = {path: (ours[path], theirs[path]) for path in ours if ours[path] != theirs[path]}
    assert not different, f"ocilab's merged view differs from {peer} (ocilab, {peer}): {different}"


# ---- Changesets ---------------------------------------------------------------------------------------------


def test_whiteouts_docker_wrote(main_image: Built) -> None:
    """The saved layers really hold both whiteout kinds, opaque ones right after their directory's header."""
    names = [[member.name for member in tar_headers(data)] for data in main_image.layer_tars]
    assert len(names) == 4
    assert not any(".wh." in name for name in names[0] + names[1])
    assert {"data/.wh.gone.txt", ".wh.tree", "opq/.wh..wh..opq", "swap_f2d/.wh..wh..opq"} <= set(names[2])
    assert "swap_d2f/.wh..wh..opq" in names[3]
    for layer, directory in ((2, "opq"), (2, "swap_f2d"), (3, "swap_d2f")):
        position = names[layer].index(directory)  # tarfile drops a directory name's trailing slash
        assert names[layer][position + 1] == directory + "/.wh..wh..opq"
    whiteout = next(m for m in tar_headers(main_image.layer_tars[2]) if m.name == ".wh.tree")
    assert whiteout.isreg() and whiteout.size == 0


def test_changes_per_layer(main_image: Built, busybox_size: int) -> None:
    """``ocilab.changes(ref, layer=N)`` and ``ocilab changes REF --layer N --json``: each layer's exact changeset."""
    expected = expected_main(busybox_size)
    for layer, rows in enumerate(expected):
        frame = ocilab.changes(main_image.archive, layer=layer)
        assert list(frame.columns) == ["layer", "path", "change", "type", "size"]
        assert change_set(frame_records(frame), layer) == rows, f"layer {layer}"
        assert change_set(cli("changes", main_image.archive, "--layer", str(layer), "--json"), layer) == rows
    everything = ocilab.changes(main_image.archive)
    assert list(everything["layer"]) == sorted(everything["layer"])
    by_layer = [change_set(frame_records(everything[everything["layer"] == n]), n) for n in range(4)]
    assert by_layer == expected


def test_changes_identical_from_every_store(main_image: Built, busybox_size: int) -> None:
    """docker-archive, docker-daemon and oci (skopeo copy) stores give the same changesets, layer by layer."""
    expected = expected_main(busybox_size)
    frames = {ref: ocilab.changes(ref) for ref in (main_image.archive, main_image.daemon, main_image.oci)}
    first = frames[main_image.archive]
    for reference, frame in frames.items():
        pandas.testing.assert_frame_equal(frame, first, obj=reference)
    for reference in (main_image.daemon, main_image.oci):
        assert change_set(frame_records(ocilab.changes(reference, layer=2)), 2) == expected[2]


def test_strict_counts_mtime(main_image: Built, busybox_size: int) -> None:
    """``--strict`` adds exactly the paths layer 2 rewrote with only a new mtime (touched.txt among them)."""
    default = expected_main(busybox_size)[2]
    lower = state_after(expected_main(busybox_size)[:2])
    last_mtime: dict[str, float] = {}
    for data in main_image.layer_tars[:2]:
        last_mtime.update({normal(m.name): m.mtime for m in tar_headers(data)})
    changed = {row[0] for row in default}
    mtime_only = {
        (path, "modified", lower[path], 0 if lower[path] != "file" else int(member.size))
        for member in tar_headers(main_image.layer_tars[2])
        if (path := normal(member.name)) in lower and path not in changed and member.mtime != last_mtime[path]
    }
    assert file_row("/data/touched.txt", "modified", L1_FILES) in mtime_only
    strict = default | mtime_only
    assert change_set(frame_records(ocilab.changes(main_image.archive, layer=2, strict=True)), 2) == strict
    assert change_set(cli("changes", main_image.archive, "--layer", "2", "--strict", "--json"), 2) == strict


# ---- Layers -------------------------------------------------------------------------------------------------


def test_layers_command(main_image: Built, busybox_size: int) -> None:
    """``ocilab layers --json`` (and ``ocilab.layers``): descriptors, build steps and change counts per layer."""
    expected_changes = expected_main(busybox_size)
    steps = [entry["created_by"] for entry in main_image.config["history"] if not entry.get("empty_layer")]
    assert "COPY" in steps[0]
    for step, script in zip(steps[1:], (L1_SCRIPT, L2_SCRIPT, L3_SCRIPT), strict=True):
        assert script in step
    inspected = json.loads(run("docker", "image", "inspect", main_image.tag).stdout)[0]

    def counts(rows: set[Row]) -> dict[str, int]:
        return {change: sum(row[1] == change for row in rows) for change in ("added", "modified", "removed")}

    saved = [
        {
            "index": index,
            "digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
            "diff_id": diff_id,
            "size": len(data),
            "media_type": DOCKER_TAR_LAYER,
            "created_by": step,
            **counts(rows),
        }
        for index, (data, diff_id, step, rows) in enumerate(
            zip(main_image.layer_tars, inspected["RootFS"]["Layers"], steps, expected_changes, strict=True)
        )
    ]
    assert [row["diff_id"] for row in saved] == [row["digest"] for row in saved]
    assert pick(cli("layers", main_image.archive, "--json"), LAYER_FIELDS) == saved
    assert pick(frame_records(ocilab.layers(main_image.archive)), LAYER_FIELDS) == saved

    _, layout_manifest, _ = layout_documents(main_image.layout)
    from_layout = [
        dict(row, digest=descriptor["digest"], size=descriptor["size"], media_type=descriptor["mediaType"])
        for row, descriptor in zip(saved, layout_manifest["layers"], strict=True)
    ]
    assert {row["media_type"] for row in from_layout} == {OCI_GZIP_LAYER}
    assert pick(cli("layers", main_image.oci, "--json"), LAYER_FIELDS) == from_layout


# ---- Merged view against umoci and docker export -------------------------------------------------------------


@pytest.mark.parametrize("name", ["before", "main", "touched", "waste", "dirs"])
def test_merged_view_matches_umoci(name: str, request: pytest.FixtureRequest) -> None:
    """The merged view equals ``umoci unpack``'s rootfs: paths, types, contents, modes, owners, link targets."""
    image: Built = request.getfixturevalue({"main": "main_image", "dirs": "only_dirs"}.get(name, name))
    ours, our_links = ocilab_view(merged(image.archive))
    theirs, their_links = rootfs_view(image.rootfs)
    assert_same_view(ours, theirs, "umoci unpack")
    assert our_links == their_links
    if name == "main":
        assert our_links == {frozenset({"/data/keep.txt", "/data/keep.txt.hard"})}
        assert ours["/data/owner.txt"].uid == ours["/data/owner.txt"].gid == 1000
        assert ours["/data/mode.txt"].mode == 0o600
        assert ours["/data/link"].content == "keep.txt.hard" and ours["/abs-link"].content == "/data/keep.txt"


def test_merged_view_matches_docker_export(main_image: Built) -> None:
    """The merged view equals ``docker export`` of a container, minus exactly what the engine adds to containers."""
    ours, our_links = ocilab_view(merged(main_image.archive))
    theirs, their_links = export_view(main_image.export)
    assert set(theirs) - set(ours) == EXPORT_EXTRAS
    assert_same_view(ours, {path: node for path, node in theirs.items() if path not in EXPORT_EXTRAS}, "docker export")
    assert our_links == their_links


def test_hard_link_outlives_its_target(hardlinked: Built) -> None:
    """A hard link keeps its bytes when a later layer deletes or rewrites the path it was linked to.

    Per image-spec layer.md ("Changeset over existing files"), an entry over an
    existing file unlinks that path and recreates it, and a whiteout removes only
    the path it names: /h/orig-link keeps "shared bytes", /h/m-orig-link keeps
    "before". umoci and docker export both show exactly that.
    """
    assert [
        (row["path"], row["change"], row["type"], row["size"])
        for row in frame_records(ocilab.changes(hardlinked.archive, layer=2))
    ] == [("/h/m-orig", "modified", "file", 14), ("/h/orig", "removed", "file", 13)]
    unpacked, unpacked_links = rootfs_view(hardlinked.rootfs)
    exported, exported_links = export_view(hardlinked.export)
    shared = hashlib.sha256(b"shared bytes\n").hexdigest()
    old = hashlib.sha256(b"before\n").hexdigest()
    assert unpacked["/h/orig-link"].content == exported["/h/orig-link"].content == shared
    assert unpacked["/h/m-orig-link"].content == exported["/h/m-orig-link"].content == old
    assert unpacked_links == exported_links == set()
    ours, our_links = ocilab_view(merged(hardlinked.archive))
    assert_same_view(ours, unpacked, "umoci unpack")
    assert our_links == unpacked_links


# ---- Opaque whiteouts in any position (layers written here) ----------------------------------------------------

WRITTEN_MTIME = 1_000_000_000
OPAQUE_ORDERS = ("marker-first", "marker-after-dir", "marker-last")


def tar_bytes(members: list[tuple[str, bytes | None]]) -> bytes:
    """A tar of (name, content) members; None content makes a directory. Fixed mtime, root-owned, 0755/0644."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.mtime = WRITTEN_MTIME
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                info.mode, info.size = 0o644, len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


SPEC_BASE = [
    ("spec/", None),
    ("spec/a/", None),
    ("spec/a/b/", None),
    ("spec/a/b/c/", None),
    ("spec/a/b/c/bar", b"bar\n"),
]


def opaque_layer(order: str) -> bytes:
    """Two opaque directories: image-spec's own example under /spec, and /opq of the main image."""
    groups = [
        ("spec/a/", [("spec/a/b/", None), ("spec/a/b/c/", None), ("spec/a/b/c/foo", b"foo\n")]),
        ("opq/", [("opq/change.txt", b"changed again\n"), ("opq/fresh/", None), ("opq/fresh/new.txt", b"fresh\n")]),
    ]
    members: list[tuple[str, bytes | None]] = []
    for directory, children in groups:
        marker = (directory + ".wh..wh..opq", b"")
        head: list[tuple[str, bytes | None]] = [(directory, None)]
        if order == "marker-first":
            members += [marker, *head, *children]
        elif order == "marker-after-dir":
            members += [*head, marker, *children]
        else:
            members += [*head, *children, marker]
    return tar_bytes(members)


IMPLICIT_PARENTS_CHANGES = {
    ("/spec/a/b/c/bar", "removed", "file", 4),
    ("/spec/a/b/c/foo", "added", "file", 4),  # /spec/a/b and /spec/a/b/c come back as they were: no change
}

OPAQUE_CHANGES = {
    ("/opq/change.txt", "modified", "file", 14),
    ("/opq/fresh", "added", "dir", 0),
    ("/opq/fresh/new.txt", "added", "file", 6),
    ("/opq/keep.txt", "removed", "file", 5),  # lower child not re-added
    ("/spec/a/b/c/bar", "removed", "file", 4),  # under a re-added lower directory
    ("/spec/a/b/c/foo", "added", "file", 4),
}


@pytest.fixture(scope="session")
def opaque_layout(main_image: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout: the main image (from skopeo) plus a /spec layer and an opaque layer, one tag per marker order."""
    top, manifest, config = layout_documents(main_image.layout)
    destination = tmp_path_factory.mktemp("opaque") / "layout"
    with LayoutWriter(destination) as writer:
        for layer in manifest["layers"]:
            blob = main_image.layout / "blobs" / layer["digest"].replace(":", "/")
            writer.put_bytes(blob.read_bytes(), layer["mediaType"])
        variants = {order: opaque_layer(order) for order in OPAQUE_ORDERS}
        # No directory entries at all: the re-added file's parents, hidden by the marker, are implicit.
        variants["implicit-parents"] = tar_bytes([("spec/a/.wh..wh..opq", b""), ("spec/a/b/c/foo", b"foo\n")])
        for order, top_layer in variants.items():
            layers, diff_ids, history = (
                list(manifest["layers"]),
                list(config["rootfs"]["diff_ids"]),
                list(config["history"]),
            )
            for step, data in ((f"spec base ({order})", tar_bytes(SPEC_BASE)), (order, top_layer)):
                layers.append(writer.put_bytes(gzip.compress(data, mtime=0), OCI_GZIP_LAYER).to_json())
                diff_ids.append(str(Digest.of_bytes(data)))
                history.append({"created": "2001-09-09T01:46:40Z", "created_by": f"ocilab test: {step}"})
            new_config = dict(config, rootfs={"type": "layers", "diff_ids": diff_ids}, history=history)
            config_descriptor = writer.put_bytes(json.dumps(new_config).encode(), manifest["config"]["mediaType"])
            new_manifest = dict(manifest, config=config_descriptor.to_json(), layers=layers)
            writer.tag(writer.put_bytes(json.dumps(new_manifest).encode(), top["mediaType"]), order)
        writer.commit()
    return destination


def test_opaque_whiteout_order_independent(opaque_layout: Path, tmp_path: Path) -> None:
    """``.wh..wh..opq`` acts before the layer's own entries wherever it sits in the tar (image-spec's example too).

    The marker first, right after its directory (Docker's place) or after the
    new children: the same changeset, the same merged view, and that view is
    what ``umoci unpack`` makes.
    """
    views = []
    for order in OPAQUE_ORDERS:
        reference = f"oci:{opaque_layout}:{order}"
        spec_base = change_set(frame_records(ocilab.changes(reference, layer=4)), 4)
        assert spec_base == {(path, "added", "dir", 0) for path in ("/spec", "/spec/a", "/spec/a/b", "/spec/a/b/c")} | {
            ("/spec/a/b/c/bar", "added", "file", 4)
        }
        assert change_set(frame_records(ocilab.changes(reference, layer=5)), 5) == OPAQUE_CHANGES, order
        assert change_set(cli("changes", reference, "--layer", "5", "--json"), 5) == OPAQUE_CHANGES, order
        ours, _ = ocilab_view(merged(reference))
        theirs, _ = rootfs_view(umoci_unpack(opaque_layout, order, tmp_path / order))
        assert_same_view(ours, theirs, f"umoci unpack ({order})")
        views.append(ours)
    assert views[0] == views[1] == views[2]


def test_opaque_with_implicit_parents(opaque_layout: Path, tmp_path: Path) -> None:
    """Lower directories hidden by ``.wh..wh..opq`` and brought back only as parents of a new file are no change."""
    reference = f"oci:{opaque_layout}:implicit-parents"
    assert change_set(frame_records(ocilab.changes(reference, layer=5)), 5) == IMPLICIT_PARENTS_CHANGES
    ours, _ = ocilab_view(merged(reference))
    theirs, _ = rootfs_view(umoci_unpack(opaque_layout, "implicit-parents", tmp_path / "bundle"))
    assert_same_view(ours, theirs, "umoci unpack")


def test_opaque_after_children_matches_docker(opaque_layout: Path, docker_client: Any) -> None:
    """Docker itself, given the marker-last layer (loaded by skopeo), exports the same filesystem as ocilab's view."""
    require_tool("skopeo")
    tag = f"{REPO}-opaque-last:1"
    run("skopeo", "copy", "--quiet", f"oci:{opaque_layout}:marker-last", f"docker-daemon:{tag}")
    ours, _ = ocilab_view(merged(f"oci:{opaque_layout}:marker-last"))
    built = Built(tag, opaque_layout.parent / "docker")
    built.work.mkdir(exist_ok=True)
    theirs, _ = export_view(built.export)
    assert set(theirs) - set(ours) == EXPORT_EXTRAS
    assert_same_view(ours, {path: node for path, node in theirs.items() if path not in EXPORT_EXTRAS}, "docker export")
    assert "/opq/keep.txt" not in theirs and "/spec/a/b/c/bar" not in theirs


# ---- Image-to-image diff -------------------------------------------------------------------------------------


def test_diff_files_config_layers(before: Built, main_image: Built) -> None:
    """``ocilab.diff`` and ``ocilab diff --json`` from ``before`` to ``main``: exact files, config and layers."""
    files = [
        ("/added-dir", "added", "dir", None, 0),
        ("/added-dir/file.txt", "added", "file", None, 6),
        ("/data/content.txt", "modified", "file", 12, 20),
        ("/data/gone.txt", "removed", "file", 5, None),
        ("/data/link", "modified", "symlink", 0, 0),
        ("/data/mode.txt", "modified", "file", 5, 5),
        ("/data/owner.txt", "modified", "file", 6, 6),
        ("/opq/change.txt", "modified", "file", 4, 5),
        ("/opq/drop.txt", "removed", "file", 5, None),
        ("/opq/sub", "removed", "dir", 0, None),
        ("/opq/sub/inner.txt", "removed", "file", 6, None),
        ("/swap_d2f/child.txt", "modified", "file", 6, 12),
        ("/swap_f2d", "modified", "file", 5, 11),
        ("/tree", "removed", "dir", 0, None),
        ("/tree/a", "removed", "dir", 0, None),
        ("/tree/a/b", "removed", "dir", 0, None),
        ("/tree/a/b/deep.txt", "removed", "file", 5, None),
        ("/tree/a/x.txt", "removed", "file", 2, None),
        ("/tree/top.txt", "removed", "file", 4, None),
    ]
    frame = ocilab.diff(before.archive, main_image.archive)
    assert list(frame.columns) == ["path", "change", "type", "size_a", "size_b"]
    assert diff_rows(frame_records(frame)) == files
    document = cli("diff", before.archive, main_image.archive, "--json")
    assert diff_rows(document["files"]) == files

    config_a, config_b = before.config["config"], main_image.config["config"]
    differing = {key for key in config_a.keys() | config_b.keys() if config_a.get(key) != config_b.get(key)}
    assert {"Env", "Cmd", "Labels", "WorkingDir"} <= differing
    expected_config = {key: {"a": config_a.get(key), "b": config_b.get(key)} for key in differing}
    expected_config["history"] = {
        "a": [entry["created_by"] for entry in before.config["history"]],
        "b": [entry["created_by"] for entry in main_image.config["history"]],
    }
    assert document["config"] == frame.attrs["config"] == expected_config  # exactly the keys that differ
    assert "STAGE=before" in document["config"]["Env"]["a"] and "STAGE=after" in document["config"]["Env"]["b"]
    assert document["config"]["Cmd"] == {"a": ["/bin/busybox", "sh"], "b": ["/bin/busybox", "ls", "/data"]}
    assert document["config"]["Labels"] == {"a": {"stage": "before"}, "b": {"stage": "after"}}
    assert document["config"]["WorkingDir"] == {"a": "", "b": "/data"}

    digests_a = [f"sha256:{hashlib.sha256(data).hexdigest()}" for data in before.layer_tars]
    digests_b = [f"sha256:{hashlib.sha256(data).hexdigest()}" for data in main_image.layer_tars]
    assert digests_b[:2] == digests_a  # the same Dockerfile prefix: the engine's cache gave the same layers
    layers = {"shared": digests_a, "only_a": [], "only_b": digests_b[2:]}
    assert pick([document["layers"], frame.attrs["layers"]], layers) == [layers, layers]
    reverse = cli("diff", main_image.archive, before.archive, "--json")
    assert pick([reverse["layers"]], layers) == [{"shared": digests_a, "only_a": digests_b[2:], "only_b": []}]
    swapped = {"added": "removed", "removed": "added", "modified": "modified"}
    assert diff_rows(reverse["files"]) == sorted((p, swapped[c], t, b, a) for p, c, t, a, b in files)


def test_diff_strict_catches_mtime(before: Built, touched: Built) -> None:
    """An mtime-only change is no difference by default and exactly one ``modified`` row with ``--strict``."""
    assert len(touched.layer_tars) == 3 and touched.layer_tars[:2] == before.layer_tars
    assert frame_records(ocilab.diff(before.archive, touched.archive)) == []
    assert cli("diff", before.archive, touched.archive, "--json")["files"] == []
    row = ("/data/touched.txt", "modified", "file", 8, 8)
    assert diff_rows(frame_records(ocilab.diff(before.archive, touched.archive, strict=True))) == [row]
    strict = cli("diff", before.archive, touched.archive, "--strict", "--json")
    assert diff_rows(strict["files"]) == [row]
    assert set(strict["config"]) == {"history"} | {
        key
        for key in before.config["config"].keys() | touched.config["config"].keys()
        if before.config["config"].get(key) != touched.config["config"].get(key)
    }


def test_diff_sees_content_change_through_hard_link(linked_pair: tuple[Built, Built]) -> None:
    """/x is a hard link to /t in both images and /t's bytes differ: /x's content differs too, so both are modified."""
    one, two = linked_pair
    exported = [export_view(image.export)[0] for image in linked_pair]
    assert exported[0]["/x"].content != exported[1]["/x"].content  # what a container of each image sees
    frame = ocilab.diff(one.archive, two.archive)
    assert [(row["path"], row["change"]) for row in frame_records(frame)] == [("/t", "modified"), ("/x", "modified")]


# ---- Efficiency ---------------------------------------------------------------------------------------------


def test_efficiency_exact(waste: Built, busybox_size: int) -> None:
    """1 MiB written then deleted, 1000 bytes overwritten by 10: exact totals and the paths to blame."""
    total = busybox_size + MIB + 1000 + 10
    final = busybox_size + 10
    frame = ocilab.efficiency(waste.archive)
    assert pick(frame_records(frame), WASTE_FIELDS) == [
        {"path": "/waste/big.bin", "occurrences": 1, "wasted_bytes": MIB, "visible": False},
        {"path": "/waste/over.txt", "occurrences": 2, "wasted_bytes": 1000, "visible": True},
    ]
    totals = {"total_bytes": total, "final_bytes": final, "wasted_bytes": MIB + 1000}
    assert {key: frame.attrs[key] for key in totals} == totals
    assert frame.attrs["efficiency"] == pytest.approx(final / total, rel=1e-12)
    assert frame.attrs["wasted_percent"] == pytest.approx(100 * (MIB + 1000) / total, rel=1e-12)
    document = cli("efficiency", waste.archive, "--json")
    assert {key: document[key] for key in totals} == totals
    assert pick(document["files"], WASTE_FIELDS) == pick(frame_records(frame), WASTE_FIELDS)


def test_efficiency_ci_thresholds(waste: Built, busybox_size: int) -> None:
    """``--ci`` exits 1 listing each crossed threshold, 0 when every threshold allows the image."""
    wasted = MIB + 1000
    total = busybox_size + MIB + 1000 + 10
    assert (total - wasted) / total < 0.99 and 100 * wasted / total > 10 and wasted > 1000
    cases = [
        (["--lowest-efficiency", "0.99"], 1, "efficiency"),
        (["--lowest-efficiency", "0.5", "--highest-wasted-bytes", "1KB"], 1, "wasted bytes"),
        (["--lowest-efficiency", "0.5", "--highest-wasted-percent", "10"], 1, "% wasted"),
        (["--lowest-efficiency", "0.5", "--highest-wasted-bytes", "2MB", "--highest-wasted-percent", "50"], 0, None),
    ]
    for options, code, failure in cases:
        document = cli("efficiency", waste.archive, "--ci", *options, "--json", expect=code)
        assert document["ci"]["passed"] is (code == 0), options
        if failure is None:
            assert document["ci"]["failures"] == []
        else:
            assert len(document["ci"]["failures"]) == 1 and failure in document["ci"]["failures"][0], document["ci"]
    everything = cli(
        "efficiency", waste.archive, "--ci", "--lowest-efficiency", "0.99", "--highest-wasted-bytes", "1KB",
        "--highest-wasted-percent", "10", "--json", expect=1,
    )  # fmt: skip
    assert len(everything["ci"]["failures"]) == 3


def test_efficiency_without_file_bytes(only_dirs: Built) -> None:
    """An image of directories only: efficiency 1.0, nothing wasted, and ``--ci`` passes."""
    assert change_set(frame_records(ocilab.changes(only_dirs.archive)), 0) == {
        (path, "added", "dir", 0) for path in ("/dirs", "/dirs/a", "/dirs/a/b", "/dirs/c")
    }
    frame = ocilab.efficiency(only_dirs.archive)
    assert frame.empty
    totals = {"efficiency": 1.0, "total_bytes": 0, "final_bytes": 0, "wasted_bytes": 0, "wasted_percent": 0.0}
    assert pick([frame.attrs], TOTAL_FIELDS) == [totals]
    document = cli("efficiency", only_dirs.archive, "--ci", "--json")
    assert pick([document], TOTAL_FIELDS) == [totals] and document["files"] == []
    assert document["ci"]["passed"] is True and document["ci"]["failures"] == []


def peer_efficiency(image: Built) -> tuple[int, int]:
    """(total, final) bytes without ocilab: file sizes in the layer tars; unique inodes in umoci's rootfs."""
    total = sum(member.size for data in image.layer_tars for member in tar_headers(data) if member.isreg())
    sizes: dict[int, int] = {}
    for directory, _, files in os.walk(image.rootfs):
        for name in files:
            info = (Path(directory) / name).lstat()
            if stat.S_ISREG(info.st_mode):
                sizes[info.st_ino] = info.st_size
    return total, sum(sizes.values())


@pytest.mark.parametrize("name", ["main", "waste", "hardlink"])
def test_efficiency_matches_peers(name: str, request: pytest.FixtureRequest) -> None:
    """total_bytes is the file bytes of the layer tars; final_bytes is what umoci's rootfs holds (hard links once)."""
    image: Built = request.getfixturevalue({"main": "main_image", "hardlink": "hardlinked"}.get(name, name))
    total, final = peer_efficiency(image)
    attrs = ocilab.efficiency(image.archive).attrs
    assert (attrs["total_bytes"], attrs["final_bytes"], attrs["wasted_bytes"]) == (total, final, total - final)
