"""Entries written through symlinked directories land where an unpacking runtime puts them.

Each case is a layout written by hand (tar streams with the symlink and the
write through it), unpacked by umoci (``umoci unpack --rootless``, which
resolves every entry's directory with filepath-securejoin), and compared with
ocilab's merged view, ``changes`` and ``diff``. The rule each test checks is
its name; the rules are in ``ocilab/tar/resolve.py``.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

import ocilab
from ocilab.errors import InvalidInputError
from ocilab.operations.analysis import merge
from ocilab.tar.entries import Entry
from ocilab.tar.merge import MergedFilesystem
from ocilab.tar.resolve import MAX_HOPS, resolve_directory, resolve_parent
from tests.conftest import require, require_tool
from tests.random_image import write_random_image
from tests.test_layers_docker import rootfs_view

Member = tuple[str, str, str]
"""(name, kind, data): kind ``file`` (data: the content), ``dir``, ``symlink`` or ``hardlink`` (data: the target)."""


def layer_tar(members: list[Member]) -> bytes:
    """An uncompressed layer tar with the members in the order given (fixed mtime, root-owned)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = 1_000_000_000, 0o755
            if kind == "file":
                info.mode, info.size = 0o644, len(data)
                archive.addfile(info, io.BytesIO(data.encode()))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}[kind]
            info.linkname = data
            archive.addfile(info)
    return buffer.getvalue()


def layout(root: Path, *layers: list[Member], tag: str = "1") -> str:
    """An OCI layout holding exactly ``layers`` (gzip), under ``tag``; its ``oci:`` reference."""
    image = write_random_image(root, seed=0, tag=tag, layers=0, shared_layers=[layer_tar(layer) for layer in layers])
    return image.reference


def umoci_view(reference: str, bundle: Path) -> dict[str, tuple[str, str | None]]:
    """path -> (type, content digest or symlink target) of ``umoci unpack --rootless``'s rootfs."""
    require_tool("umoci")
    directory, tag = reference.removeprefix("oci:").rsplit(":", 1)
    result = subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{directory}:{tag}", str(bundle)], capture_output=True, text=True
    )
    assert result.returncode == 0, f"umoci unpack failed: {result.stderr}"
    nodes, _ = rootfs_view(bundle / "rootfs")
    return {path: (node.kind, node.content) for path, node in nodes.items()}


def ocilab_view(reference: str) -> dict[str, tuple[str, str | None]]:
    """path -> (type, content digest or symlink target) of ocilab's merged view."""
    with ocilab.open(reference) as image:
        filesystem, _ = merge(image)
    return {path: view_node(entry) for path, entry in filesystem.entries.items()}


def view_node(entry: Entry) -> tuple[str, str | None]:
    if entry.kind in ("file", "hardlink"):
        return "file", entry.digest.hex() if entry.digest else None
    return entry.kind, entry.link if entry.kind == "symlink" else None


def assert_like_umoci(reference: str, tmp_path: Path) -> dict[str, tuple[str, str | None]]:
    """ocilab's merged view equals umoci's rootfs (paths, types, contents, link targets); the view."""
    ours = ocilab_view(reference)
    theirs = umoci_view(reference, tmp_path / "bundle")
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs
    return ours


def changed(reference: str, layer: int) -> dict[str, str]:
    """path -> change of one layer, from the ``changes`` DataFrame."""
    frame = ocilab.changes(reference, layer=layer)
    return dict(zip(frame["path"], frame["change"], strict=True))


ETC = [("etc", "dir", ""), ("etc/passwd", "file", "root\n")]


# ---- one rule per test, each checked against umoci -------------------------------------------------------------


@pytest.mark.parametrize("target", ["etc", "/etc", "../etc", "../../../etc", "./etc/"])
def test_write_through_a_lower_layer_symlink_lands_at_its_target(target: str, tmp_path: Path) -> None:
    """A layer writing ``etc2/file`` over a lower ``etc2 -> TARGET`` puts the file at ``/etc/file``: relative,
    absolute and ``..`` targets resolve inside the root (``..`` never climbs above it)."""
    reference = layout(tmp_path / "layout", [*ETC, ("etc2", "symlink", target)], [("etc2/file", "file", "hi\n")])
    view = assert_like_umoci(reference, tmp_path)
    assert "/etc/file" in view and "/etc2/file" not in view and view["/etc2"] == ("symlink", target)
    assert changed(reference, 1) == {"/etc/file": "added"}


def test_write_through_a_symlink_made_earlier_in_the_same_layer(tmp_path: Path) -> None:
    """The symlink and the write through it in one layer: the file lands at the link's target."""
    reference = layout(tmp_path / "layout", [*ETC, ("etc2", "symlink", "/etc"), ("etc2/file", "file", "hi\n")])
    view = assert_like_umoci(reference, tmp_path)
    assert "/etc/file" in view
    assert changed(reference, 0) == dict.fromkeys(["/etc", "/etc/file", "/etc/passwd", "/etc2"], "added")


def test_a_chain_of_symlinks_is_followed_to_its_end(tmp_path: Path) -> None:
    """``a -> b``, ``b -> c/d``, ``c/d -> /etc`` (a link inside a linked directory): ``a/file`` is ``/etc/file``."""
    links = [("a", "symlink", "b"), ("b", "symlink", "c/d"), ("c", "dir", ""), ("c/d", "symlink", "/etc")]
    reference = layout(tmp_path / "layout", [*ETC, *links], [("a/x/file", "file", "deep\n")])
    view = assert_like_umoci(reference, tmp_path)
    assert "/etc/x/file" in view
    assert changed(reference, 1) == {"/etc/x": "added", "/etc/x/file": "added"}


def test_a_dangling_symlink_target_is_created_as_a_directory(tmp_path: Path) -> None:
    """``gone -> /var/missing`` names nothing: the write creates ``/var/missing`` as the unpacker's ``mkdir -p``."""
    reference = layout(tmp_path / "layout", [("gone", "symlink", "/var/missing")], [("gone/file", "file", "x\n")])
    view = assert_like_umoci(reference, tmp_path)
    assert view["/var/missing"] == ("dir", None) and "/var/missing/file" in view


def test_the_last_component_is_not_followed(tmp_path: Path) -> None:
    """An entry named like a symlink replaces the link; the link's target is untouched."""
    reference = layout(
        tmp_path / "layout",
        [*ETC, ("etc2", "symlink", "etc")],
        [("etc2", "file", "now a file\n"), ("etc3", "symlink", "etc")],
        [("etc3", "dir", "")],
    )
    view = assert_like_umoci(reference, tmp_path)
    assert view["/etc2"][0] == "file" and view["/etc3"] == ("dir", None) and view["/etc"] == ("dir", None)
    assert changed(reference, 1) == {"/etc2": "modified", "/etc3": "added"}


def test_a_whiteout_resolves_its_directory_the_same_way(tmp_path: Path) -> None:
    """``etc2/.wh.passwd`` with ``etc2 -> etc`` removes ``/etc/passwd``; ``.wh.etc2`` removes the link, not ``/etc``."""
    reference = layout(
        tmp_path / "layout",
        [*ETC, ("etc/group", "file", "root\n"), ("etc2", "symlink", "etc"), ("etc3", "symlink", "etc")],
        [("etc2/.wh.passwd", "file", ""), (".wh.etc3", "file", "")],
    )
    view = assert_like_umoci(reference, tmp_path)
    assert "/etc/passwd" not in view and "/etc/group" in view and "/etc3" not in view
    assert changed(reference, 1) == {"/etc/passwd": "removed", "/etc3": "removed"}


def test_an_opaque_whiteout_through_a_symlink_hides_the_target_directory(tmp_path: Path) -> None:
    """``etc2/.wh..wh..opq`` with ``etc2 -> etc`` hides the lower content of ``/etc``; the layer's own stays."""
    reference = layout(
        tmp_path / "layout",
        [*ETC, ("etc2", "symlink", "etc")],
        [("etc2/.wh..wh..opq", "file", ""), ("etc2/new", "file", "new\n")],
    )
    view = assert_like_umoci(reference, tmp_path)
    assert sorted(path for path in view if path.startswith("/etc/")) == ["/etc/new"]
    assert changed(reference, 1) == {"/etc/new": "added", "/etc/passwd": "removed"}


def test_a_hard_link_target_resolves_through_symlinks(tmp_path: Path) -> None:
    """A hard link whose target's directory is a symlink links the file at the target's real path."""
    reference = layout(tmp_path / "layout", [*ETC, ("etc2", "symlink", "etc")], [("pw", "hardlink", "etc2/passwd")])
    view = assert_like_umoci(reference, tmp_path)
    assert view["/pw"] == view["/etc/passwd"]


def test_diff_reports_where_the_file_lands(tmp_path: Path) -> None:
    """``diff`` of the image without and with the write through the link names ``/etc/file``."""
    base = [*ETC, ("etc2", "symlink", "../etc")]
    a = layout(tmp_path / "layout", base, tag="a")
    b = layout(tmp_path / "layout", base, [("etc2/file", "file", "hi\n")], tag="b")
    frame = ocilab.diff(a, b)
    assert list(zip(frame["path"], frame["change"], strict=True)) == [("/etc/file", "added")]
    assert umoci_view(b, tmp_path / "b")["/etc/file"][0] == "file"


# ---- what cannot be unpacked is refused, in one sentence ------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ocilab", *args], capture_output=True, text=True)


def test_a_symlink_loop_is_refused_like_umoci_refuses_it(tmp_path: Path) -> None:
    """``a -> b``, ``b -> a``: writing ``a/file`` is an error (umoci fails too), one line naming the path."""
    reference = layout(tmp_path / "layout", [("a", "symlink", "b"), ("b", "symlink", "a")], [("a/file", "file", "")])
    result = cli("changes", reference)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "symlinks while resolving /a" in result.stderr and "layer 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    require_tool("umoci")
    unpack = subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'layout'}:1", str(tmp_path / "bundle")],
        capture_output=True,
    )
    assert unpack.returncode != 0


def test_a_path_under_a_regular_file_is_refused(tmp_path: Path) -> None:
    """``etc/passwd/x`` when ``/etc/passwd`` is a file: no filesystem holds it; the error names both paths."""
    reference = layout(tmp_path / "layout", ETC, [("etc2", "symlink", "etc/passwd"), ("etc2/x", "file", "")])
    result = cli("changes", reference, "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr and not result.stdout
    assert "/etc/passwd/x would be under /etc/passwd, which is a file, not a directory" in result.stderr


# ---- the resolver alone ---------------------------------------------------------------------------------------


def links(**table: str) -> Any:
    """A ``readlink`` over a table of symlinks (``a_b`` names ``/a/b``)."""
    return lambda path: table.get(path.strip("/").replace("/", "_"))


def test_resolver_follows_exactly_max_hops_links() -> None:
    """A chain of ``MAX_HOPS`` links resolves; one more is refused as a loop, naming the path."""
    chain = {f"l{n}": f"l{n + 1}" for n in range(MAX_HOPS)}
    assert resolve_directory(f"/l{MAX_HOPS - MAX_HOPS}", links(**chain), "t") == f"/l{MAX_HOPS}"
    chain[f"l{MAX_HOPS}"] = f"l{MAX_HOPS + 1}"
    with pytest.raises(InvalidInputError, match=f"t: more than {MAX_HOPS} symlinks while resolving /l0"):
        resolve_directory("/l0", links(**chain), "t")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/up/x", "/x"),  # up -> ../../.. from the root stays at the root
        ("/abs/x", "/etc/x"),  # abs -> /etc
        ("/d/rel/x", "/d/etc/x"),  # d/rel -> etc, relative to /d
        ("/d/parent/x", "/etc/x"),  # d/parent -> ../etc
        ("/via/x", "/etc/x"),  # via -> d/parent: .. is taken from the link's real directory
        ("/up", "/up"),  # the last component is never followed
    ],
)
def test_resolver_keeps_every_path_inside_the_root(path: str, expected: str) -> None:
    readlink = links(up="../../..", abs="/etc", d_rel="etc", d_parent="../etc", via="d/parent")
    assert resolve_parent(path, readlink, "t") == expected


def test_merged_view_refuses_a_loop_in_a_whiteout_directory() -> None:
    """Whiteouts resolve their directory too, so a loop there is refused the same way."""
    filesystem = MergedFilesystem()
    filesystem.apply([Entry("/a", "symlink", link="a")])
    with pytest.raises(InvalidInputError, match="symlinks while resolving /a"):
        filesystem.apply([Entry("/a/x", "whiteout")], what="layer 1")


def test_json_of_changes_names_the_landing_path(tmp_path: Path) -> None:
    """``ocilab changes --json`` (the CLI) reports the path where the file lands."""
    reference = layout(tmp_path / "layout", [*ETC, ("etc2", "symlink", "/etc")], [("etc2/file", "file", "hi\n")])
    result = cli("changes", reference, "--layer", "1", "--json")
    assert result.returncode == 0, result.stderr
    assert [(row["path"], row["change"]) for row in json.loads(result.stdout)] == [("/etc/file", "added")]


def test_docker_overlay2_differs_and_keeps_the_literal_path(tmp_path: Path, docker_client: Any) -> None:
    """The documented difference: loaded into the Docker engine (overlay2), the same layers give a container
    where ``/etc2`` is a directory holding ``file`` and ``/etc`` has no ``file``; ocilab follows umoci instead."""
    require_tool("skopeo")
    require(docker_client.info().get("Driver") == "overlay2", "a Docker engine with the overlay2 storage driver")
    reference = layout(tmp_path / "layout", [*ETC, ("etc2", "symlink", "etc")], [("etc2/file", "file", "hi\n")])
    tag = "ocilab-test/symlinked:1"
    subprocess.run(["skopeo", "copy", "-q", reference, f"docker-daemon:{tag}"], check=True, capture_output=True)
    container = docker_client.containers.create(tag, "/none")
    try:
        exported = io.BytesIO(b"".join(container.export()))
    finally:
        container.remove()
        docker_client.images.remove(tag)
    with tarfile.open(fileobj=exported) as archive:
        kinds = {member.name.rstrip("/"): member.type for member in archive}
    assert kinds["etc2"] == tarfile.DIRTYPE and "etc2/file" in kinds and "etc/file" not in kinds
    assert ocilab_view(reference)["/etc2"] == ("symlink", "etc") and "/etc/file" in ocilab_view(reference)
