"""``MergedFilesystem.apply`` against the image-spec's layer rules, with hand-made ``Entry`` lists.

One test per rule of layer.md ("Applying Changesets", "Whiteouts", "Opaque
Whiteout"), each quoting the rule it checks; then ``differs``, the efficiency
arithmetic and ``diff_files``; then a property test comparing random layer
stacks against a naive reference model written here.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import pytest

from ocilab.errors import InvalidInputError
from ocilab.tar.efficiency import measure
from ocilab.tar.entries import Entry
from ocilab.tar.filediff import diff_files
from ocilab.tar.merge import Change, MergedFilesystem, differs
from tests.conftest import require

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover - the test environment installs it
    HAVE_HYPOTHESIS = False


# ---------------------------------------------------------------------------------------------------- entry makers


def digest(content: bytes) -> bytes:
    return hashlib.sha256(content).digest()


def file(
    path: str, content: bytes = b"", *, mode: int = 0o644, uid: int = 0, gid: int = 0, mtime: float = 0.0
) -> Entry:
    """A regular file entry as ``read_layer`` yields it."""
    return Entry(path, "file", len(content), mode, uid, gid, mtime, None, digest(content))


def directory(path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: float = 0.0) -> Entry:
    return Entry(path, "dir", 0, mode, uid, gid, mtime)


def symlink(path: str, target: str, *, mtime: float = 0.0) -> Entry:
    return Entry(path, "symlink", 0, 0o777, 0, 0, mtime, target)


def hardlink(path: str, target: str) -> Entry:
    return Entry(path, "hardlink", 0, 0o644, 0, 0, 0.0, target)


def whiteout(path: str) -> Entry:
    """``dirname(path)/.wh.basename(path)`` as ``read_layer`` yields it."""
    return Entry(path, "whiteout")


def opaque(path: str) -> Entry:
    """``path/.wh..wh..opq`` as ``read_layer`` yields it."""
    return Entry(path, "opaque")


def stack(*layers: Iterable[Entry], strict: bool = False) -> tuple[MergedFilesystem, list[list[Change]]]:
    """The filesystem after applying ``layers`` bottom up, and each layer's changes."""
    filesystem = MergedFilesystem()
    return filesystem, [filesystem.apply(layer, strict) for layer in layers]


def summary(changes: list[Change]) -> dict[str, str]:
    """path -> added / modified / removed, checking no path is reported twice."""
    result = {change.path: change.change for change in changes}
    assert len(result) == len(changes), f"a path reported twice: {changes}"
    return result


# ----------------------------------------------------------------------------------------------- the spec's example


def test_spec_example_changeset() -> None:
    """layer.md "Determining Changes" / "Representing Changes": the layer ``./etc/my-app.d/``,
    ``./etc/my-app.d/default.cfg``, ``./bin/my-app-tools``, ``./etc/.wh.my-app-config`` over the base gives
    "Added: /etc/my-app.d/, Added: /etc/my-app.d/default.cfg, Modified: /bin/my-app-tools,
    Deleted: /etc/my-app-config"."""
    base = [
        directory("/etc"),
        file("/etc/my-app-config", b"config"),
        directory("/bin"),
        file("/bin/my-app-binary", b"binary"),
        file("/bin/my-app-tools", b"tools v1"),
    ]
    layer = [
        directory("/etc/my-app.d"),
        file("/etc/my-app.d/default.cfg", b"default"),
        file("/bin/my-app-tools", b"tools v2"),
        whiteout("/etc/my-app-config"),
    ]
    filesystem, (first, second) = stack(base, layer)
    assert summary(first) == {entry.path: "added" for entry in base}
    assert summary(second) == {
        "/etc/my-app.d": "added",
        "/etc/my-app.d/default.cfg": "added",
        "/bin/my-app-tools": "modified",
        "/etc/my-app-config": "removed",
    }
    assert sorted(filesystem.entries) == [
        "/bin", "/bin/my-app-binary", "/bin/my-app-tools", "/etc", "/etc/my-app.d", "/etc/my-app.d/default.cfg",
    ]  # fmt: skip
    assert [change.path for change in second] == sorted(change.path for change in second)


# ------------------------------------------------------------------------------------------------------- whiteouts


def test_whiteout_removes_the_path_from_lower_layers() -> None:
    """layer.md: "A whiteout filename consists of the prefix ``.wh.`` plus the basename of the path to be deleted."
    The path goes, its siblings stay, and the change carries the removed entry."""
    removed = file("/etc/a", b"a")
    filesystem, (_, changes) = stack([directory("/etc"), removed, file("/etc/b", b"b")], [whiteout("/etc/a")])
    assert summary(changes) == {"/etc/a": "removed"}
    assert changes[0].entry == removed and changes[0].layer == 1
    assert sorted(filesystem.entries) == ["/etc", "/etc/b"]


@pytest.mark.parametrize("order", ["whiteout-first", "entry-first"])
@pytest.mark.parametrize(
    ("lower", "readded", "expected"),
    [
        (file("/etc/a", b"old"), file("/etc/a", b"new"), "modified"),
        (file("/etc/a", b"same"), file("/etc/a", b"same"), None),
        (None, file("/etc/a", b"new"), "added"),
        (directory("/etc/a", mode=0o700), file("/etc/a", b"now a file"), "modified"),
    ],
    ids=["re-added-different", "re-added-identical", "no-lower", "dir-to-file"],
)
def test_whiteout_spares_an_entry_re_added_in_its_own_layer(
    order: str, lower: Entry | None, readded: Entry, expected: str | None
) -> None:
    """layer.md: "Whiteout files MUST only apply to resources in lower/parent layers. Files that are present in the same
    layer as a whiteout file can only be hidden by whiteout files in subsequent layers." Whatever the order."""
    layer = [whiteout("/etc/a"), readded] if order == "whiteout-first" else [readded, whiteout("/etc/a")]
    filesystem, (_, changes) = stack([directory("/etc"), *([lower] if lower else [])], layer)
    assert filesystem.entries["/etc/a"] == readded
    assert summary(changes) == ({"/etc/a": expected} if expected else {})


def test_whiteout_of_a_lower_directory_removes_everything_under_it() -> None:
    """A whiteout "signifies a path should be deleted": a directory goes with all its descendants, each reported
    ``removed``; a sibling whose name merely starts the same (``/opt/apple``) stays."""
    base = [
        directory("/opt"),
        directory("/opt/app"),
        directory("/opt/app/bin"),
        file("/opt/app/bin/run", b"run"),
        directory("/opt/app/lib"),
        symlink("/opt/app/lib/current", "v1"),
        file("/opt/app/README", b"readme"),
        file("/opt/apple", b"fruit"),
        directory("/opt/app-data"),
    ]
    filesystem, (_, changes) = stack(base, [whiteout("/opt/app")])
    gone = ["/opt/app", "/opt/app/README", "/opt/app/bin", "/opt/app/bin/run", "/opt/app/lib", "/opt/app/lib/current"]
    assert summary(changes) == dict.fromkeys(gone, "removed")
    assert sorted(filesystem.entries) == ["/opt", "/opt/app-data", "/opt/apple"]


def test_whiteout_of_a_missing_path_is_a_no_op() -> None:
    """Whiteouts "apply to resources in lower/parent layers": with nothing there, nothing changes."""
    base = [directory("/etc"), file("/etc/a", b"a")]
    filesystem, (_, changes) = stack(base, [whiteout("/nope"), whiteout("/etc/nope"), whiteout("/etc/a/below-a-file")])
    assert changes == []
    assert filesystem.entries == {entry.path: entry for entry in base}


def test_whiteouts_are_hidden_from_the_result() -> None:
    """layer.md: "Once a whiteout is applied, the whiteout itself MUST also be hidden": no whiteout or opaque
    entry, and no ``.wh.`` name, is ever in the merged view or reported as a change."""
    filesystem, per_layer = stack(
        [directory("/a"), file("/a/x", b"x"), directory("/b"), file("/b/y", b"y")],
        [whiteout("/a/x"), opaque("/b"), file("/b/z", b"z"), whiteout("/never")],
    )
    assert all(entry.kind not in ("whiteout", "opaque") for entry in filesystem.entries.values())
    assert all(".wh." not in path for path in filesystem.entries)
    assert all(change.entry.kind not in ("whiteout", "opaque") for changes in per_layer for change in changes)
    assert sorted(filesystem.entries) == ["/a", "/b", "/b/z"]


# -------------------------------------------------------------------------------------------------- opaque whiteouts

SPEC_BASE = [directory("/a"), directory("/a/b"), directory("/a/b/c"), file("/a/b/c/bar", b"bar")]
SPEC_OPAQUE_LAYER = [directory("/a"), directory("/a/b"), directory("/a/b/c"), file("/a/b/c/foo", b"foo")]


@pytest.mark.parametrize("position", ["first", "after-its-directory", "last"])
def test_opaque_whiteout_applies_first_whatever_its_position(position: str) -> None:
    """layer.md: "``a/.wh..wh..opq`` is applied first, before creating the new version of ``a/b``, regardless of
    the ordering in which the whiteout file was encountered." The spec's own example: ``bar`` goes, ``foo`` stays."""
    layer = list(SPEC_OPAQUE_LAYER)
    layer.insert({"first": 0, "after-its-directory": 1, "last": len(layer)}[position], opaque("/a"))
    filesystem, (_, changes) = stack(SPEC_BASE, layer)
    assert sorted(filesystem.entries) == ["/a", "/a/b", "/a/b/c", "/a/b/c/foo"]
    assert summary(changes) == {"/a/b/c/bar": "removed", "/a/b/c/foo": "added"}


def test_opaque_whiteout_equals_explicit_whiteouts() -> None:
    """layer.md: "An opaque whiteout file hides all children of the ``bin/`` including sub-directories and all
    descendants. Using explicit whiteout files, this would be equivalent to ``.wh.my-app-binary``,
    ``.wh.my-app-tools``, ``.wh.tools``." Both forms give the same view and changes; ``/bin`` and ``/etc`` stay."""
    base = [
        directory("/etc"),
        file("/etc/my-app-config", b"c"),
        directory("/bin"),
        file("/bin/my-app-binary", b"b"),
        file("/bin/my-app-tools", b"t"),
        directory("/bin/tools"),
        file("/bin/tools/my-app-tool-one", b"1"),
    ]
    opaque_fs, (_, opaque_changes) = stack(base, [directory("/bin"), opaque("/bin")])
    explicit_fs, (_, explicit_changes) = stack(
        base,
        [directory("/bin"), whiteout("/bin/my-app-binary"), whiteout("/bin/my-app-tools"), whiteout("/bin/tools")],
    )
    assert opaque_fs.entries == explicit_fs.entries
    assert sorted(opaque_fs.entries) == ["/bin", "/etc", "/etc/my-app-config"]
    assert opaque_changes == explicit_changes
    assert summary(opaque_changes) == dict.fromkeys(
        ["/bin/my-app-binary", "/bin/my-app-tools", "/bin/tools", "/bin/tools/my-app-tool-one"], "removed"
    )


@pytest.mark.parametrize("marker_first", [True, False], ids=["marker-first", "marker-last"])
def test_opaque_whiteout_spares_its_own_layer(marker_first: bool) -> None:
    """layer.md: "Files that are present in the same layer as a whiteout file can only be hidden by whiteout files in
    subsequent layers": children the opaque layer itself adds survive, lower ones do not."""
    own = [file("/srv/new", b"new"), directory("/srv/sub"), file("/srv/sub/deep", b"deep")]
    layer = [opaque("/srv"), *own] if marker_first else [*own, opaque("/srv")]
    filesystem, (_, changes) = stack([directory("/srv"), file("/srv/old", b"old")], layer)
    assert sorted(filesystem.entries) == ["/srv", "/srv/new", "/srv/sub", "/srv/sub/deep"]
    assert summary(changes) == {
        "/srv/old": "removed",
        "/srv/new": "added",
        "/srv/sub": "added",
        "/srv/sub/deep": "added",
    }


def test_opaque_re_added_paths_are_modified_or_unchanged() -> None:
    """Changes are what "comparing the two directories" finds: a lower child the opaque layer re-adds with other
    content is ``modified``, one re-added identical is not reported, one not re-added is ``removed``."""
    base = [directory("/etc"), file("/etc/same", b"s"), file("/etc/changed", b"v1"), file("/etc/gone", b"g")]
    layer = [opaque("/etc"), file("/etc/same", b"s"), file("/etc/changed", b"v2", mode=0o600)]
    filesystem, (_, changes) = stack(base, layer)
    assert summary(changes) == {"/etc/changed": "modified", "/etc/gone": "removed"}
    assert filesystem.entries["/etc/changed"].mode == 0o600
    assert sorted(filesystem.entries) == ["/etc", "/etc/changed", "/etc/same"]


def test_opaque_whiteout_of_a_missing_or_empty_directory_is_a_no_op() -> None:
    """An opaque whiteout hides lower children; where there are none, nothing is reported."""
    filesystem, (_, changes) = stack([directory("/empty"), file("/x", b"x")], [opaque("/empty"), opaque("/missing")])
    assert changes == []
    assert sorted(filesystem.entries) == ["/empty", "/x"]


def test_opaque_whiteout_at_the_root() -> None:
    """``.wh..wh..opq`` at the top of a layer hides every lower path; the layer's own entries stay."""
    filesystem, (_, changes) = stack(
        [directory("/etc"), file("/etc/a", b"a"), file("/b", b"b")], [opaque("/"), file("/c", b"c")]
    )
    assert sorted(filesystem.entries) == ["/c"]
    assert summary(changes) == {"/etc": "removed", "/etc/a": "removed", "/b": "removed", "/c": "added"}


# ---------------------------------------------------------------------------------------- changeset over existing files


def test_directory_replaced_by_a_file_removes_its_children() -> None:
    """layer.md: "If the entry and the existing path are both directories, then the existing path's attributes MUST be
    replaced [...]. In all other cases, the implementation MUST do the semantic equivalent of removing the file
    path [...] and recreating the file path": a file over a directory takes the directory's content with it."""
    base = [directory("/srv"), directory("/srv/data"), file("/srv/data/x", b"x"), directory("/srv/data/sub")]
    filesystem, (_, changes) = stack(base, [file("/srv/data", b"now a file")])
    assert summary(changes) == {"/srv/data": "modified", "/srv/data/x": "removed", "/srv/data/sub": "removed"}
    assert sorted(filesystem.entries) == ["/srv", "/srv/data"] and filesystem.entries["/srv/data"].kind == "file"


def test_symlink_replacing_a_directory_removes_its_children() -> None:
    """The same rule for any non-directory: a symlink over a directory removes what was under it."""
    filesystem, (_, changes) = stack([directory("/lib"), file("/lib/libc.so", b"c")], [symlink("/lib", "usr/lib")])
    assert summary(changes) == {"/lib": "modified", "/lib/libc.so": "removed"}
    assert filesystem.entries == {"/lib": symlink("/lib", "usr/lib")}


def test_directory_over_directory_keeps_children_and_takes_attributes() -> None:
    """layer.md: "If the entry and the existing path are both directories, then the existing path's attributes MUST be
    replaced by those of the entry": the directory is ``modified``, its lower children stay."""
    filesystem, (_, changes) = stack(
        [directory("/d", mode=0o700), file("/d/keep", b"k")], [directory("/d", mode=0o755, uid=1000)]
    )
    assert summary(changes) == {"/d": "modified"}
    assert filesystem.entries["/d"].uid == 1000 and "/d/keep" in filesystem.entries


def test_file_replaced_by_a_directory_and_back() -> None:
    """A file becomes a directory with a child (both changes reported), then a file again (the child removed)."""
    filesystem, changes = stack(
        [file("/x", b"file")],
        [directory("/x"), file("/x/inner", b"inner")],
        [file("/x", b"file again")],
    )
    assert [summary(layer) for layer in changes] == [
        {"/x": "added"},
        {"/x": "modified", "/x/inner": "added"},
        {"/x": "modified", "/x/inner": "removed"},
    ]
    assert filesystem.entries == {"/x": file("/x", b"file again")}


def test_implicit_parents_are_created_and_added() -> None:
    """A path whose parents no layer listed gets them as ``0755`` root-owned directories, each reported ``added``;
    parents that exist are left alone."""
    filesystem, changes = stack([file("/usr/local/bin/tool", b"t")], [file("/usr/local/lib/x.so", b"x")])
    assert summary(changes[0]) == dict.fromkeys(
        ["/usr", "/usr/local", "/usr/local/bin", "/usr/local/bin/tool"], "added"
    )
    assert summary(changes[1]) == {"/usr/local/lib": "added", "/usr/local/lib/x.so": "added"}
    for path in ("/usr", "/usr/local", "/usr/local/bin", "/usr/local/lib"):
        assert filesystem.entries[path] == Entry(path, "dir", mode=0o755)


def test_implicit_parent_of_a_path_whose_directory_was_whited_out() -> None:
    """A layer with ``.wh.app`` and ``app/new`` but no ``app/`` entry: the lower ``/app`` is deleted, then
    recreated as an implicit ``0755`` root-owned directory, as unpackers do (``mkdir -p``). The lower child goes.
    ``/app`` existed before and exists after, so it is not ``added``: the changeset is what "comparing the two
    directories" finds, here ``modified`` (the mode went from 0700 to 0755)."""
    base = [directory("/app", mode=0o700, uid=1000), file("/app/old", b"o")]
    filesystem, (_, changes) = stack(base, [whiteout("/app"), file("/app/new", b"n")])
    assert filesystem.entries["/app"] == Entry("/app", "dir", mode=0o755)
    assert sorted(filesystem.entries) == ["/app", "/app/new"]
    assert summary(changes) == {"/app": "modified", "/app/old": "removed", "/app/new": "added"}


def test_hidden_path_re_added_under_an_opaque_directory_keeps_unreported_parents() -> None:
    """The spec's opaque example with the layer listing ``a/b/`` and ``a/b/c/`` identical to the lower ones:
    they are neither added nor removed, only their content changes."""
    filesystem, (_, changes) = stack(SPEC_BASE, [opaque("/a"), *SPEC_OPAQUE_LAYER[1:]])
    assert summary(changes) == {"/a/b/c/bar": "removed", "/a/b/c/foo": "added"}
    assert filesystem.entries["/a/b"] == directory("/a/b")


def test_changes_name_their_layer_and_are_sorted() -> None:
    """Every change carries the index of the layer that made it, and a layer's changes come sorted by path."""
    _, changes = stack([file("/b", b"b"), file("/a", b"a")], [file("/c", b"c"), whiteout("/a"), file("/b", b"B")])
    assert [(c.layer, c.path, c.change) for c in changes[1]] == [
        (1, "/a", "removed"),
        (1, "/b", "modified"),
        (1, "/c", "added"),
    ]


def test_mtime_counts_only_when_strict() -> None:
    """A re-written file that differs only in mtime is not a change, unless ``strict``."""
    base, layer = [file("/f", b"x", mtime=1.0)], [file("/f", b"x", mtime=2.0)]
    assert stack(base, layer)[1][1] == []
    assert summary(stack(base, layer, strict=True)[1][1]) == {"/f": "modified"}


# --------------------------------------------------------------------------------------------------------- differs

BASE_FILE = Entry("/f", "file", 3, 0o644, 0, 0, 100.0, None, digest(b"abc"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mode", 0o755),
        ("uid", 1000),
        ("gid", 1000),
        ("digest", digest(b"xyz")),
        ("link", "/elsewhere"),
        ("kind", "hardlink"),
        ("device", (1, 3)),
    ],
)
def test_differs_on_each_attribute(field: str, value: object) -> None:
    """Type, content, link target, mode, uid, gid and device each make a modification, strict or not."""
    changed = Entry(**{**{name: getattr(BASE_FILE, name) for name in Entry.__dataclass_fields__}, field: value})
    assert differs(BASE_FILE, changed) and differs(BASE_FILE, changed, strict=True)


def test_differs_ignores_mtime_unless_strict() -> None:
    """mtime alone is not a modification; with ``strict`` it is. Identical entries never differ."""
    later = Entry("/f", "file", 3, 0o644, 0, 0, 200.0, None, digest(b"abc"))
    assert not differs(BASE_FILE, later)
    assert differs(BASE_FILE, later, strict=True)
    assert not differs(BASE_FILE, BASE_FILE, strict=True)


def test_symlink_target_change_differs() -> None:
    """Two symlinks at one path with different targets differ; the same target does not."""
    assert differs(symlink("/l", "a"), symlink("/l", "b"))
    assert not differs(symlink("/l", "a"), symlink("/l", "a"))


# ------------------------------------------------------------------------------------------------------ efficiency


def test_efficiency_arithmetic() -> None:
    """total = every file byte written; final = bytes visible at the end; wasted = the rest, blamed per path
    (largest first); a file re-written identically is waste too."""
    filesystem, _ = stack(
        [file("/big", b"a" * 1000), file("/keep", b"k" * 100), file("/gone", b"g" * 50), directory("/d")],
        [file("/big", b"b" * 10), whiteout("/gone")],
        [file("/keep", b"k" * 100)],
    )
    result = measure(filesystem)
    assert (result.total_bytes, result.final_bytes, result.wasted_bytes) == (1260, 110, 1150)
    assert result.final_bytes + result.wasted_bytes == result.total_bytes
    assert result.efficiency == pytest.approx(110 / 1260)
    assert result.wasted_percent == pytest.approx(100 * 1150 / 1260)
    assert [(w.path, w.occurrences, w.wasted_bytes, w.visible) for w in result.files] == [
        ("/big", 2, 1000, True),
        ("/keep", 2, 100, True),
        ("/gone", 1, 50, False),
    ]
    assert sum(w.wasted_bytes for w in result.files) == result.wasted_bytes


def test_hard_links_are_counted_once() -> None:
    """A hard link shares its target's bytes: a 100-byte file with a second link is 100 bytes, no waste."""
    filesystem, _ = stack([directory("/bin"), file("/bin/a", b"x" * 100), hardlink("/bin/b", "/bin/a")])
    result = measure(filesystem)
    assert (result.total_bytes, result.final_bytes, result.wasted_bytes, result.efficiency) == (100, 100, 0, 1.0)
    assert result.files == ()


def test_hard_link_keeps_its_bytes_when_the_first_name_is_deleted() -> None:
    """layer.md: hard links are "one or more directory entries for the same file". Deleting one name (``.wh.a``)
    leaves the content visible through the other (``/b``), as on any filesystem and in overlayfs: those 100
    bytes are final, not wasted."""
    filesystem, _ = stack([file("/a", b"x" * 100), hardlink("/b", "/a")], [whiteout("/a")])
    assert "/b" in filesystem.entries and "/a" not in filesystem.entries
    result = measure(filesystem)
    assert (result.total_bytes, result.final_bytes, result.wasted_bytes) == (100, 100, 0)


def test_hard_link_keeps_the_old_content_when_its_target_is_rewritten() -> None:
    """layer.md "Changeset over existing files": rewriting ``/a`` unlinks it and creates a new file, so ``/b``, a
    second name of the old inode, keeps the old content; both inodes are visible, nothing is wasted."""
    filesystem, (_, changes) = stack([file("/a", b"old" * 10), hardlink("/b", "/a")], [file("/a", b"new")])
    assert summary(changes) == {"/a": "modified"}
    assert filesystem.entries["/b"].digest == digest(b"old" * 10)
    result = measure(filesystem)
    assert (result.total_bytes, result.final_bytes, result.wasted_bytes) == (33, 33, 0)


def test_hard_link_to_a_missing_target_is_refused() -> None:
    """A hard link must name a regular file present at that point: otherwise InvalidInputError naming the layer,
    the link and the target."""
    with pytest.raises(InvalidInputError) as caught:
        MergedFilesystem().apply([hardlink("/b", "/nowhere")], what="layer 4 (sha256:abc)")
    message = str(caught.value)
    assert "layer 4 (sha256:abc)" in message and "/b" in message and "/nowhere" in message


@pytest.mark.parametrize(
    "layers",
    [[], [[]], [[directory("/etc"), symlink("/bin", "usr/bin")]], [[file("/empty", b"")]]],
    ids=["no-layers", "empty-layer", "no-files", "only-empty-files"],
)
def test_efficiency_of_an_image_without_file_bytes_is_one(layers: list[list[Entry]]) -> None:
    """layer.md: "``efficiency = final_bytes / total_bytes`` (1.0 for an empty image)", with 0 % wasted."""
    filesystem, _ = stack(*layers)
    result = measure(filesystem)
    assert (result.total_bytes, result.final_bytes, result.wasted_bytes) == (0, 0, 0)
    assert result.efficiency == 1.0 and result.wasted_percent == 0.0


def test_everything_deleted_is_all_waste() -> None:
    """Files whose every byte is later deleted: efficiency 0, everything wasted."""
    filesystem, _ = stack([directory("/tmp"), file("/tmp/a", b"a" * 30)], [whiteout("/tmp")])
    result = measure(filesystem)
    assert (result.total_bytes, result.final_bytes, result.wasted_bytes, result.efficiency) == (30, 0, 30, 0.0)


# ------------------------------------------------------------------------------------------------------ diff_files


def test_diff_files_added_removed_modified() -> None:
    """Only in B is added, only in A removed, different in both modified; identical paths are not listed."""
    a = {e.path: e for e in [directory("/etc"), file("/etc/a", b"1"), file("/etc/b", b"2"), symlink("/l", "x")]}
    b = {e.path: e for e in [directory("/etc"), file("/etc/a", b"1"), file("/etc/c", b"3"), symlink("/l", "y")]}
    result = diff_files(a, b)
    assert [(d.path, d.change) for d in result] == [("/etc/b", "removed"), ("/etc/c", "added"), ("/l", "modified")]
    removed, added, modified = result
    assert (removed.a, removed.b, removed.kind) == (a["/etc/b"], None, "file")
    assert (added.a, added.b) == (None, b["/etc/c"])
    assert (modified.a, modified.b, modified.kind) == (a["/l"], b["/l"], "symlink")


def test_diff_files_strict_counts_mtime() -> None:
    """A path that differs only in mtime is modified only with ``strict``."""
    a = {"/f": file("/f", b"x", mtime=1.0)}
    b = {"/f": file("/f", b"x", mtime=5.0)}
    assert diff_files(a, b) == []
    assert [(d.path, d.change) for d in diff_files(a, b, strict=True)] == [("/f", "modified")]


def test_diff_files_kind_change() -> None:
    """A file that became a directory is modified and reports the new kind."""
    result = diff_files({"/x": file("/x", b"x")}, {"/x": directory("/x")})
    assert [(d.path, d.change, d.kind) for d in result] == [("/x", "modified", "dir")]


# --------------------------------------------------------------------------------- property test: a reference model


def ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/a", "/a/b"]``."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:depth]) for depth in range(1, len(parts))]


def under(path: str, root: str) -> bool:
    """True when ``path`` is strictly below ``root``."""
    return (root == "/" and path != "/") or path.startswith(root.rstrip("/") + "/")


@dataclass
class Reference:
    """The naive model: the visible entries, and which inode each file or hard link names (``sizes[inode]``)."""

    view: dict[str, Entry] = field(default_factory=dict)
    inode: dict[str, int] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)

    def delete(self, root: str, itself: bool) -> None:
        """Delete everything below ``root``, and ``root`` too when ``itself``."""
        for path in [path for path in self.view if under(path, root) or (itself and path == root)]:
            del self.view[path]
            self.inode.pop(path, None)


class Unappliable(Exception):
    """An entry no unpacker could create: under a non-directory, through a symlink loop, or a bad hard link."""


def naive_directory(view: dict[str, Entry], path: str, hops: list[int]) -> str:
    """The directory ``path`` names with every symlink on it followed, recursively; absolute targets and ``..``
    stay inside the root. ``hops`` counts the links followed across the recursion (more than 40 is a loop)."""
    current = "/"
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            current = posixpath.dirname(current)
            continue
        current = posixpath.join(current, part)
        entry = view.get(current)
        if entry is not None and entry.kind == "symlink":
            assert entry.link is not None
            hops.append(1)
            if len(hops) > 40:
                raise Unappliable(f"symlink loop at {current}")
            start = "/" if entry.link.startswith("/") else posixpath.dirname(current)
            current = naive_directory(view, f"{start}/{entry.link}", hops)
    return current


def naive_landing(view: dict[str, Entry], path: str) -> str:
    """Where an entry at ``path`` lands: its directory resolved, its own name kept."""
    return posixpath.join(naive_directory(view, posixpath.dirname(path), []), posixpath.basename(path))


def reference_apply(before: Reference, layer: list[Entry], dropped: list[Entry] | None = None) -> Reference:
    """The spec's rules, applied naively to a dict: opaque whiteouts and whiteouts on the lower view first, then
    the layer's own entries in path order (hard links after the rest, so their targets are in place); every path
    lands where its symlinked directories lead (``naive_landing``); a non-directory over a directory removes what
    was under it; missing parents become ``0755`` root-owned directories; every file is a new inode, a hard link
    names its target's inode and carries its content. An entry that cannot be applied raises Unappliable, or,
    with ``dropped``, is skipped and appended there."""
    model = Reference(dict(before.view), dict(before.inode), list(before.sizes))

    def attempt(entry: Entry, action: Callable[[Entry], None]) -> None:
        try:
            action(entry)
        except Unappliable:
            if dropped is None:
                raise
            dropped.append(entry)

    def hide(entry: Entry) -> None:
        if entry.kind == "opaque":
            model.delete(naive_directory(model.view, entry.path, []), itself=False)
        else:
            model.delete(naive_landing(model.view, entry.path), itself=True)

    def put(entry: Entry) -> None:
        path = naive_landing(model.view, entry.path)
        for parent in ancestors(path):
            if model.view.get(parent, directory(parent)).kind != "dir":
                raise Unappliable(f"{path} is under the {model.view[parent].kind} {parent}")
        if entry.kind == "hardlink":
            assert entry.link is not None
            link = naive_landing(model.view, entry.link)
            target = model.view.get(link)
            if target is None or target.kind not in ("file", "hardlink") or link == path or under(link, path):
                raise Unappliable(f"hard link {path} to {link}")
            entry = replace(entry, size=target.size, digest=target.digest, link=link)
        existing = model.view.get(path)
        if existing is not None and existing.kind == "dir" and entry.kind != "dir":
            model.delete(path, itself=False)
        for parent in ancestors(path):
            model.view.setdefault(parent, Entry(parent, "dir", mode=0o755))
        model.inode.pop(path, None)
        if entry.kind == "file":
            model.inode[path] = len(model.sizes)
            model.sizes.append(entry.size)
        elif entry.kind == "hardlink":
            assert entry.link is not None
            model.inode[path] = model.inode[entry.link]
        model.view[path] = replace(entry, path=path)

    for marker in [entry for entry in layer if entry.kind == "opaque"]:
        attempt(marker, hide)
    for gone in [entry for entry in layer if entry.kind == "whiteout"]:
        attempt(gone, hide)
    own = [entry for entry in layer if entry.kind not in ("opaque", "whiteout")]
    for entry in sorted(own, key=lambda entry: (entry.kind == "hardlink", entry.path)):
        attempt(entry, put)
    return model


def reference_changes(before: dict[str, Entry], after: dict[str, Entry]) -> dict[str, str]:
    """layer.md "Determining Changes": compare the two trees. Modified = type, content, link, mode, owner, device."""

    def key(entry: Entry) -> tuple[object, ...]:
        return (entry.kind, entry.digest, entry.link, entry.mode, entry.uid, entry.gid, entry.device)

    result = {path: "removed" for path in before if path not in after}
    result |= {path: "added" for path in after if path not in before}
    result |= {path: "modified" for path in after if path in before and key(before[path]) != key(after[path])}
    return result


def well_formed(before: Reference, layer: list[Entry]) -> list[Entry]:
    """``layer`` without the entries no unpacker could create (see ``reference_apply``), in its own order."""
    dropped: list[Entry] = []
    reference_apply(before, layer, dropped)
    return [entry for entry in layer if not any(entry is gone for gone in dropped)]


def check_stack(layers: list[list[Entry]]) -> None:
    """Apply ``layers`` with ocilab and with the reference model; views, changes and byte counts must agree."""
    filesystem = MergedFilesystem()
    model = Reference()
    for number, raw_layer in enumerate(layers):
        layer = well_formed(model, raw_layer)
        after = reference_apply(model, layer)
        changes = filesystem.apply(layer)
        assert filesystem.entries == after.view, f"layer {number}: merged view differs from the reference"
        assert summary(changes) == reference_changes(model.view, after.view), f"layer {number}: changeset differs"
        for change in changes:
            assert change.entry == (model.view if change.change == "removed" else after.view)[change.path]
        for path in after.view:
            assert posixpath.dirname(path) == "/" or after.view[posixpath.dirname(path)].kind == "dir"
        model = after
    result = measure(filesystem)
    final = sum(model.sizes[inode] for inode in set(model.inode.values()))
    assert (result.total_bytes, result.final_bytes) == (sum(model.sizes), final)
    assert result.final_bytes + result.wasted_bytes == result.total_bytes
    assert sum(item.wasted_bytes for item in result.files) == result.wasted_bytes
    assert all(item.wasted_bytes >= 0 for item in result.files)


NAMES = ("a", "b", "c")
UNIVERSE = [f"/{x}" for x in NAMES] + [f"/{x}/{y}" for x in NAMES for y in NAMES[:2]]
UNIVERSE += [f"/{x}/{y}/{z}" for x in NAMES[:2] for y in NAMES[:2] for z in NAMES[:2]]

if HAVE_HYPOTHESIS:
    SHAPES = st.tuples(
        st.sampled_from(["file", "file", "dir", "symlink", "hardlink", "hardlink"]),
        st.sampled_from([b"", b"x", b"yy", b"zzzz"]),
        st.sampled_from([0o644, 0o755, 0o700]),
        st.sampled_from([0, 1000]),
        st.sampled_from([0.0, 1.0]),
        st.sampled_from(["/a", "/b", "/c", "/a/a", "/b/b", "/a/b/a"]),
        st.sampled_from(["a", "b/b", "/a", "/b/b", "..", "../c", "a/b/a", "/", "../../b"]),
    )
    """Attributes from small sets, so that re-written paths often match or differ in one field."""

    def entry_at(path: str, shape: tuple[str, bytes, int, int, float, str, str]) -> Entry:
        kind, content, mode, uid, mtime, target, symlink_target = shape
        if kind == "file":
            return file(path, content, mode=mode, uid=uid, mtime=mtime)
        if kind == "dir":
            return directory(path, mode=mode, uid=uid, mtime=mtime)
        if kind == "hardlink":
            return hardlink(path, target)
        return symlink(path, symlink_target, mtime=mtime)

    @st.composite
    def layers(draw: st.DrawFn) -> list[Entry]:
        """One layer: entries at distinct paths, whiteouts, opaque markers, in a random order."""
        paths = draw(st.lists(st.sampled_from(UNIVERSE), unique=True, max_size=8))
        entries = [entry_at(path, draw(SHAPES)) for path in paths]
        entries += [whiteout(path) for path in draw(st.sets(st.sampled_from(UNIVERSE), max_size=3))]
        entries += [opaque(path) for path in draw(st.sets(st.sampled_from(["/", *UNIVERSE]), max_size=2))]
        return draw(st.permutations(entries))

    @settings(max_examples=400, deadline=None, database=None)
    @given(st.lists(layers(), min_size=1, max_size=5))
    def test_random_stacks_match_the_reference_model(stack_of_layers: list[list[Entry]]) -> None:
        """For random layer stacks, the merged view and each changeset equal the reference model's, every path's
        parent is a directory, and ``final + wasted == total`` with total and final counted independently."""
        check_stack(stack_of_layers)

else:  # pragma: no cover

    def test_random_stacks_match_the_reference_model() -> None:
        """Needs hypothesis (fails in CI, skips elsewhere, like every missing component)."""
        require(False, "the hypothesis package")


def test_reference_model_on_the_spec_example() -> None:
    """The reference model itself reproduces the spec's opaque example (so the property test compares to truth)."""
    after = reference_apply(reference_apply(Reference(), SPEC_BASE), [*SPEC_OPAQUE_LAYER, opaque("/a")]).view
    assert sorted(after) == ["/a", "/a/b", "/a/b/c", "/a/b/c/foo"]
    check_stack([SPEC_BASE, [*SPEC_OPAQUE_LAYER, opaque("/a")]])
