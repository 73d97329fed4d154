"""Hostile layers: each one is refused (naming the layer and the entry) or kept inside the rootfs, never more.

A sentinel directory sits beside the bundle; its tree hash (names, types, modes, contents, link
targets) is taken before and after every unpack and must not change. Symlinks aim at the sentinel by
its real absolute path, so a tool that followed them on the host would write into it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

import ocilab
from ocilab.errors import OcilabError
from tests.test_unpack import image_of, layer_tar

REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
AS_NOBODY = (  # the code is loaded as root (the checkout may be private), then the process becomes nobody
    "import os, sys; import ocilab.cli, ocilab.api, ocilab.operations.unpack;"
    " os.setgroups([]); os.setgid(65534); os.setuid(65534);"
    " sys.exit(ocilab.cli.main(sys.argv[1:]))"
)


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for directory, names, files in sorted(os.walk(root)):
        for name in sorted(names + files):
            path = Path(directory) / name
            info = path.lstat()
            digest.update(f"{path.relative_to(root)}\0{info.st_mode}\0".encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    root = tmp_path / "sentinel"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "keep").write_text("keep me")
    return root


def unpack_guarded(tmp_path: Path, sentinel: Path, layers: list[bytes]) -> Path | OcilabError:
    """Unpack ``layers``; the bundle's rootfs, or the error. Fails the test if the sentinel changed."""
    before = tree_hash(sentinel)
    reference = image_of(tmp_path / "layout", layers, {"Cmd": ["/bin/sh"]})
    bundle = tmp_path / "bundles" / "b"
    outcome: Path | OcilabError
    try:
        ocilab.unpack(reference, bundle)
        outcome = bundle / "rootfs"
    except OcilabError as error:
        outcome = error
        assert not (tmp_path / "bundles").exists() or os.listdir(tmp_path / "bundles") == []  # nothing half made
    assert tree_hash(sentinel) == before, "the sentinel outside the bundle changed"
    assert sorted(os.listdir(tmp_path)) == ["bundles", "layout", "sentinel"] or sorted(os.listdir(tmp_path)) == [
        "layout",
        "sentinel",
    ]
    return outcome


def refused(outcome: Path | OcilabError, entry: str) -> str:
    assert isinstance(outcome, OcilabError), f"expected a refusal, got {outcome}"
    message = str(outcome)
    assert "layer " in message and entry in message, message
    assert "\n" not in message
    return message


def test_dotdot_name_is_refused(tmp_path: Path, sentinel: Path) -> None:
    outcome = unpack_guarded(tmp_path, sentinel, [layer_tar([{"name": "../../sentinel/keep", "data": b"pwned"}])])
    refused(outcome, "../../sentinel/keep")


def test_absolute_name_lands_inside_the_rootfs(tmp_path: Path, sentinel: Path) -> None:
    """``/abs`` names are rooted at the rootfs, as GNU tar and umoci root them."""
    name = str(sentinel / "keep")
    rootfs = unpack_guarded(tmp_path, sentinel, [layer_tar([{"name": name, "data": b"pwned"}])])
    assert isinstance(rootfs, Path) and (rootfs / name.lstrip("/")).read_bytes() == b"pwned"


def test_symlink_to_root_then_etc_passwd(tmp_path: Path, sentinel: Path) -> None:
    """``etc -> /`` then ``etc/passwd``: the link is followed inside the rootfs, so passwd lands at its top."""
    layer = layer_tar([{"name": "etc", "type": SYM, "link": "/"}, {"name": "etc/passwd", "data": b"evil"}])
    rootfs = unpack_guarded(tmp_path, sentinel, [layer])
    assert isinstance(rootfs, Path) and (rootfs / "passwd").read_bytes() == b"evil"


def test_symlink_climbing_out_with_dotdot(tmp_path: Path, sentinel: Path) -> None:
    layer = layer_tar([{"name": "up", "type": SYM, "link": "../../../../.."}, {"name": "up/escaped", "data": b"x"}])
    rootfs = unpack_guarded(tmp_path, sentinel, [layer])
    assert isinstance(rootfs, Path) and (rootfs / "escaped").read_bytes() == b"x"


def test_symlink_to_the_sentinels_absolute_path(tmp_path: Path, sentinel: Path) -> None:
    layer = layer_tar([{"name": "s", "type": SYM, "link": str(sentinel)}, {"name": "s/keep", "data": b"pwned"}])
    rootfs = unpack_guarded(tmp_path, sentinel, [layer])
    assert isinstance(rootfs, Path) and (rootfs / str(sentinel).lstrip("/") / "keep").read_bytes() == b"pwned"


def test_chain_across_layers(tmp_path: Path, sentinel: Path) -> None:
    """Layer 0: ``a -> /``; layer 1: ``a/b -> ../../<sentinel>``; layer 2 writes ``a/b/etc/passwd``."""
    layers = [
        layer_tar([{"name": "a", "type": SYM, "link": "/"}]),
        layer_tar([{"name": "a/b", "type": SYM, "link": "../.." + str(sentinel)}]),
        layer_tar([{"name": "a/b/etc/passwd", "data": b"evil"}]),
    ]
    rootfs = unpack_guarded(tmp_path, sentinel, layers)
    assert isinstance(rootfs, Path) and (rootfs / str(sentinel).lstrip("/") / "etc" / "passwd").read_bytes() == b"evil"


def test_directory_replaced_by_a_symlink_in_a_later_layer(tmp_path: Path, sentinel: Path) -> None:
    """A directory written to (its descriptor cached), then turned into a symlink out: later writes stay inside."""
    layers = [
        layer_tar([{"name": "d", "type": DIR}, {"name": "d/x", "data": b"1"}]),
        layer_tar([{"name": "d", "type": SYM, "link": str(sentinel)}, {"name": "d/keep", "data": b"pwned"}]),
    ]
    rootfs = unpack_guarded(tmp_path, sentinel, layers)
    assert isinstance(rootfs, Path) and (rootfs / "d").is_symlink()
    assert (rootfs / str(sentinel).lstrip("/") / "keep").read_bytes() == b"pwned"


def test_hard_link_to_a_path_outside(tmp_path: Path, sentinel: Path) -> None:
    refused(
        unpack_guarded(tmp_path, sentinel, [layer_tar([{"name": "h", "type": LNK, "link": str(sentinel / "keep")}])]),
        "/h",
    )
    refused(
        unpack_guarded(tmp_path, sentinel, [layer_tar([{"name": "h", "type": LNK, "link": "../sentinel/keep"}])]), "h"
    )


def test_hard_link_through_a_symlink_out(tmp_path: Path, sentinel: Path) -> None:
    """``s -> <sentinel>`` then ``h`` linked to ``s/keep``: resolved inside the rootfs, where there is no keep."""
    layer = layer_tar([{"name": "s", "type": SYM, "link": str(sentinel)}, {"name": "h", "type": LNK, "link": "s/keep"}])
    refused(unpack_guarded(tmp_path, sentinel, [layer]), "/h")


def test_hard_link_to_a_directory(tmp_path: Path, sentinel: Path) -> None:
    layer = layer_tar([{"name": "d", "type": DIR}, {"name": "h", "type": LNK, "link": "d"}])
    assert "directory" in refused(unpack_guarded(tmp_path, sentinel, [layer]), "/h")


def test_hard_link_to_a_symlink_links_the_symlink(tmp_path: Path, sentinel: Path) -> None:
    layer = layer_tar(
        [{"name": "l", "type": SYM, "link": str(sentinel / "keep")}, {"name": "h", "type": LNK, "link": "l"}]
    )
    rootfs = unpack_guarded(tmp_path, sentinel, [layer])
    assert isinstance(rootfs, Path) and os.readlink(rootfs / "h") == str(sentinel / "keep")


def test_whiteouts_through_a_symlink_act_inside(tmp_path: Path, sentinel: Path) -> None:
    layers = [
        layer_tar([{"name": "s", "type": SYM, "link": str(sentinel)}]),
        layer_tar([{"name": "s/.wh.keep", "data": b""}, {"name": "s/etc/.wh..wh..opq", "data": b""}]),
    ]
    rootfs = unpack_guarded(tmp_path, sentinel, layers)
    assert isinstance(rootfs, Path) and (rootfs / "s").is_symlink()


def test_a_file_for_the_root_is_refused(tmp_path: Path, sentinel: Path) -> None:
    refused(unpack_guarded(tmp_path, sentinel, [layer_tar([{"name": ".", "data": b"not a directory"}])]), "'.'")


def test_a_file_on_the_way_is_refused(tmp_path: Path, sentinel: Path) -> None:
    layer = layer_tar([{"name": "f", "data": b"file"}, {"name": "f/x", "data": b"under a file"}])
    refused(unpack_guarded(tmp_path, sentinel, [layer]), "/f/x")


def test_symlink_loop_is_refused(tmp_path: Path, sentinel: Path) -> None:
    layer = layer_tar(
        [
            {"name": "a", "type": SYM, "link": "b"},
            {"name": "b", "type": SYM, "link": "a"},
            {"name": "a/x", "data": b"x"},
        ]
    )
    assert "symlinks" in refused(unpack_guarded(tmp_path, sentinel, [layer]), "/a/x")


def test_device_node_as_non_root_is_refused() -> None:
    """Run as ``nobody`` in a child process: a device node is refused, naming the entry; nothing is left."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody")
    base = Path(tempfile.mkdtemp(prefix="ocilab-hostile-"))
    try:
        os.chmod(base, 0o777)
        reference = image_of(
            base / "layout", [layer_tar([{"name": "null", "type": tarfile.CHRTYPE, "device": (1, 3)}])]
        )
        for directory, _, files in os.walk(base):
            os.chmod(directory, 0o777)
            for name in files:
                os.chmod(Path(directory) / name, 0o644)
        result = subprocess.run(
            [sys.executable, "-c", AS_NOBODY, "unpack", reference, str(base / "bundle")],
            capture_output=True,
            text=True,
            cwd=base,
        )
        assert result.returncode == 1, result.stderr
        assert "/null" in result.stderr and "device" in result.stderr and "layer 0" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert sorted(os.listdir(base)) == ["layout"]
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)
