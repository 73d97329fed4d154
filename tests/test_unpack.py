"""Unpacking to a runtime bundle, checked file by file against ``umoci unpack`` of the same images.

image-spec layer.md: "Whiteout files MUST only apply to resources in lower/parent layers";
conversion.md: "If both Config.Entrypoint and Config.Cmd are specified, the converter MUST append the
value of Config.Cmd to the value of Config.Entrypoint"; "If Config.User does not correspond to a user
in the container's context, the converter MUST return an error."
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ocilab
from ocilab.errors import NotFoundError, ValidationError
from tests.conftest import require_tool, run
from tests.random_image import write_random_image


def layer_tar(members: list[dict[str, object]]) -> bytes:
    """An uncompressed tar written with tarfile from member descriptions (name, type, data, link, mode ...)."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for spec in members:
            info = tarfile.TarInfo(str(spec["name"]))
            info.type = spec.get("type", tarfile.REGTYPE)  # type: ignore[assignment]
            info.mode = int(spec.get("mode", 0o755 if info.type == tarfile.DIRTYPE else 0o644))  # type: ignore[call-overload]
            info.uid = info.gid = int(spec.get("owner", 0))  # type: ignore[call-overload]
            info.mtime = int(spec.get("mtime", 1_000_000))  # type: ignore[call-overload]
            info.linkname = str(spec.get("link", ""))
            info.devmajor, info.devminor = spec.get("device", (0, 0))  # type: ignore[misc]
            if "xattrs" in spec:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in spec["xattrs"].items()}  # type: ignore[attr-defined]
            data = spec.get("data", b"")
            assert isinstance(data, bytes)
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return plain.getvalue()


def image_of(layout: Path, layers: list[bytes], config: dict[str, object] | None = None, tag: str = "1") -> str:
    """An OCI layout holding one image made of ``layers`` (uncompressed tars); its config section patched."""
    image = write_random_image(layout, 0, tag=tag, layers=0, shared_layers=layers)
    if config is not None:
        _patch_config(layout, image.digest, config)
    return f"oci:{layout}:{tag}"


def _patch_config(layout: Path, manifest_digest: str, section: dict[str, object]) -> None:
    rewrite_config(layout, manifest_digest, lambda config: config.update(config=section))


def rewrite_config(layout: Path, manifest_digest: str, change: Callable[[dict[str, Any]], object]) -> None:
    """Change the image's config with ``change``; the config, manifest and index.json re-digested."""
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / manifest_digest.split(":")[1]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    change(config)
    raw = json.dumps(config).encode()
    digest = hashlib.sha256(raw).hexdigest()
    (blobs / digest).write_bytes(raw)
    manifest["config"].update(digest=f"sha256:{digest}", size=len(raw))
    raw_manifest = json.dumps(manifest).encode()
    new_manifest = hashlib.sha256(raw_manifest).hexdigest()
    (blobs / new_manifest).write_bytes(raw_manifest)
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry["digest"] == manifest_digest:
            entry.update(digest=f"sha256:{new_manifest}", size=len(raw_manifest))
    (layout / "index.json").write_text(json.dumps(index))


def tree(root: Path, times: bool = True) -> dict[str, tuple[object, ...]]:
    """Every path under ``root``: type, mode, owner, size, content sha256, link target, mtime (not followed)."""
    found: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = Path(directory) / name
            info = path.lstat()
            kind = stat.S_IFMT(info.st_mode)
            content = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
            link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
            device = (os.major(info.st_rdev), os.minor(info.st_rdev)) if stat.S_ISCHR(info.st_mode) else None
            first = inodes.setdefault(info.st_ino, str(path.relative_to(root))) if info.st_nlink > 1 else None
            mtime = int(info.st_mtime) if times and not stat.S_ISDIR(info.st_mode) else None
            found["/" + str(path.relative_to(root))] = (
                kind,
                stat.S_IMODE(info.st_mode),
                info.st_uid,
                info.st_gid,
                info.st_size if not stat.S_ISDIR(info.st_mode) else None,
                content,
                link,
                device,
                first,
                mtime,
            )
    return found


def umoci_bundle(reference: str, bundle: Path, rootless: bool = False) -> Path:
    """``umoci unpack`` of an ``oci:DIR:TAG`` reference."""
    require_tool("umoci")
    image = reference[len("oci:") :]
    run("umoci", "unpack", *(["--rootless"] if rootless else []), "--image", image, bundle)
    return bundle


SETUID = 0o4755
HAND_LAYERS = [
    layer_tar(
        [
            {"name": "etc", "type": tarfile.DIRTYPE},
            {"name": "etc/passwd", "data": b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"},
            {"name": "etc/group", "data": b"root:x:0:\napp:x:1000:\nwheel:x:10:app,root\naudio:x:29:app\n"},
            {"name": "bin", "type": tarfile.DIRTYPE, "mode": 0o711, "mtime": 5},
            {"name": "bin/tool", "data": b"#!/bin/sh\n", "mode": SETUID, "owner": 1000},
            {"name": "bin/tool2", "type": tarfile.LNKTYPE, "link": "bin/tool"},
            {"name": "bin/sh", "type": tarfile.SYMTYPE, "link": "/bin/tool", "owner": 1000},
            {"name": "dev", "type": tarfile.DIRTYPE},
            {"name": "dev/null", "type": tarfile.CHRTYPE, "device": (1, 3), "mode": 0o666},
            {"name": "dev/pipe", "type": tarfile.FIFOTYPE, "mode": 0o600},
            {"name": "data", "type": tarfile.DIRTYPE, "mode": 0o700, "owner": 1000},
            {"name": "data/keep", "data": b"kept", "xattrs": {"user.origin": "layer0"}},
            {"name": "data/old", "data": b"old"},
            {"name": "opaque", "type": tarfile.DIRTYPE},
            {"name": "opaque/lower", "data": b"lower"},
            {"name": "opaque/sub", "type": tarfile.DIRTYPE},
            {"name": "opaque/sub/deep", "data": b"deep"},
            {"name": "link-dir", "type": tarfile.SYMTYPE, "link": "data"},
        ]
    ),
    layer_tar(
        [
            {"name": "data/.wh.old", "data": b""},
            {"name": "opaque", "type": tarfile.DIRTYPE, "mode": 0o750},
            {"name": "opaque/.wh..wh..opq", "data": b""},
            {"name": "opaque/upper", "data": b"upper"},
            {"name": "link-dir/through-link", "data": b"written through the symlink"},
            {"name": "bin/tool", "data": b"#!/bin/sh\necho v2\n", "mode": SETUID, "owner": 1000},
            {"name": "data/keep", "data": b"replaced", "xattrs": {"user.origin": "layer1"}},
        ]
    ),
]


@pytest.fixture(scope="module")
def hand_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Whiteouts, an opaque directory, hard and symbolic links, a device, a FIFO, setuid, xattrs, owners."""
    config = {"Entrypoint": ["/bin/sh"], "Cmd": ["-c", "id"], "User": "app", "Env": ["A=1"], "WorkingDir": "/data"}
    return image_of(tmp_path_factory.mktemp("hand") / "layout", HAND_LAYERS, config)


def test_random_image_matches_umoci_file_by_file(tmp_path: Path) -> None:
    """Seeded random layers: every file's type, mode, owner, size, content and mtime agree with umoci's."""
    reference = write_random_image(tmp_path / "layout", 7, layers=3, files=20).reference
    report = ocilab.unpack(reference, tmp_path / "ours")
    theirs = umoci_bundle(reference, tmp_path / "theirs")
    assert tree(tmp_path / "ours" / "rootfs") == tree(theirs / "rootfs")
    assert report.layers == 3 and report.entries == 60


def test_hand_written_layers_match_umoci(hand_image: str, tmp_path: Path) -> None:
    """Whiteouts, opaque whiteouts, links, devices, FIFOs, setuid and xattrs land as umoci lands them."""
    ours = tmp_path / "ours"
    ocilab.unpack(hand_image, ours)
    theirs = umoci_bundle(hand_image, tmp_path / "theirs")
    assert tree(ours / "rootfs") == tree(theirs / "rootfs")
    rootfs = ours / "rootfs"
    assert not (rootfs / "data" / "old").exists()  # whiteout
    assert sorted(os.listdir(rootfs / "opaque")) == ["upper"]  # opaque: lower content gone, this layer's kept
    assert (rootfs / "data" / "through-link").read_bytes() == b"written through the symlink"
    assert stat.S_IMODE((rootfs / "bin" / "tool").lstat().st_mode) == SETUID  # chmod after chown
    assert (rootfs / "bin" / "tool").stat().st_uid == 1000
    assert os.getxattr(rootfs / "data" / "keep", "user.origin") == b"layer1"
    assert stat.S_ISCHR((rootfs / "dev" / "null").lstat().st_mode)
    assert int((rootfs / "bin").stat().st_mtime) == 5  # directory times set after their content


def test_rootless_matches_umoci_rootless(hand_image: str, tmp_path: Path) -> None:
    """--rootless: devices as empty files and no chown, as ``umoci unpack --rootless`` (also when run as root)."""
    report = ocilab.unpack(hand_image, tmp_path / "ours", rootless=True)
    theirs = umoci_bundle(hand_image, tmp_path / "theirs", rootless=True)
    ours_tree, theirs_tree = tree(tmp_path / "ours" / "rootfs"), tree(theirs / "rootfs")
    assert stat.S_ISREG(int(ours_tree["/dev/null"][0])) and any("dev/null" in note for note in report.notes)
    assert {path: v[:3] for path, v in ours_tree.items()} == {path: v[:3] for path, v in theirs_tree.items()}
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert {"type": "user"} in config["linux"]["namespaces"]
    assert config["linux"]["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]


def test_docker_built_busybox_matches_umoci(oci_layout: Path, tmp_path: Path) -> None:
    """The busybox image Docker built (skopeo's layout): same tree and same process section as umoci's."""
    reference = f"oci:{oci_layout}:v1"
    ocilab.unpack(reference, tmp_path / "ours")
    theirs = umoci_bundle(reference, tmp_path / "theirs")
    assert tree(tmp_path / "ours" / "rootfs") == tree(theirs / "rootfs")
    ours = json.loads((tmp_path / "ours" / "config.json").read_text())["process"]
    peer = json.loads((theirs / "config.json").read_text())["process"]
    for key in ("args", "cwd", "user"):
        assert ours[key] == peer[key], key
    assert set(ours["env"]) == set(peer["env"]) - {"TERM=xterm"}  # umoci adds TERM for its terminal
    assert "GREETING=hello from ocilab" in ours["env"]


def test_config_follows_the_conversion_rules(hand_image: str, tmp_path: Path) -> None:
    """args = Entrypoint + Cmd, cwd, a named user resolved with its groups, annotations; umoci agrees on process."""
    ocilab.unpack(hand_image, tmp_path / "ours")
    theirs = umoci_bundle(hand_image, tmp_path / "theirs")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    process = config["process"]
    assert process["args"] == ["/bin/sh", "-c", "id"]
    assert process["cwd"] == "/data"
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 29]}
    peer = json.loads((theirs / "config.json").read_text())["process"]
    assert (process["args"], process["cwd"], process["user"]) == (peer["args"], peer["cwd"], peer["user"])
    assert config["annotations"]["org.opencontainers.image.os"] == "linux"
    assert config["annotations"]["org.opencontainers.image.architecture"] == "amd64"
    assert config["annotations"]["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z"
    assert config["root"] == {"path": "rootfs"}
    assert stat.S_IMODE((tmp_path / "ours").stat().st_mode) == 0o700


def test_volumes_ports_labels_and_stop_signal(tmp_path: Path) -> None:
    """Volumes become mounts; ExposedPorts and StopSignal annotations; a label wins over an implicit annotation."""
    section = {
        "Cmd": ["/bin/true"],
        "Volumes": {"/var/data": {}},
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "StopSignal": "SIGQUIT",
        "Labels": {"org.opencontainers.image.os": "from-label", "team": "ocilab"},
        "User": "7:8",
    }
    reference = image_of(tmp_path / "layout", [layer_tar([{"name": "f", "data": b"x"}])], section)
    ocilab.unpack(reference, tmp_path / "b")
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    annotations = config["annotations"]
    assert annotations["org.opencontainers.image.exposedPorts"] == "53/udp,80/tcp"
    assert annotations["org.opencontainers.image.stopSignal"] == "SIGQUIT"
    assert annotations["org.opencontainers.image.os"] == "from-label" and annotations["team"] == "ocilab"
    assert {
        "destination": "/var/data",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=755"],
    } in config["mounts"]
    assert config["process"]["user"] == {"uid": 7, "gid": 8}  # numeric: verbatim, no additionalGids


def test_runc_accepts_the_config(hand_image: str, tmp_path: Path) -> None:
    """The generated document is one runc can create a container from (checked by runc itself)."""
    from ocilab.operations.runtime import Container

    require_tool("runc")
    ocilab.unpack(hand_image, tmp_path / "b")
    with Container(tmp_path / "b") as container:
        container.create()
        assert container.status == "created"


# -- bad input: one line, exit 1, nothing left behind ---------------------------------------------------------


def _leftovers(parent: Path) -> list[str]:
    return sorted(name for name in os.listdir(parent) if name != "layout")


def test_unknown_user_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    reference = image_of(tmp_path / "layout", HAND_LAYERS, {"Cmd": ["/bin/sh"], "User": "ghost"})
    with pytest.raises(NotFoundError, match="ghost"):
        ocilab.unpack(reference, tmp_path / "bundle")
    assert _leftovers(tmp_path) == []


def test_unknown_group_is_an_error(tmp_path: Path) -> None:
    reference = image_of(tmp_path / "layout", HAND_LAYERS, {"Cmd": ["/bin/sh"], "User": "app:nogroup"})
    with pytest.raises(NotFoundError, match="nogroup"):
        ocilab.unpack(reference, tmp_path / "bundle")
    assert _leftovers(tmp_path) == []


def test_passwd_symlinked_outside_is_read_inside_the_rootfs(tmp_path: Path) -> None:
    """/etc/passwd -> ../../../../etc/image-passwd is read inside the rootfs: the host's users never leak in."""
    layer = layer_tar(
        [
            {"name": "etc", "type": tarfile.DIRTYPE},
            {"name": "etc/image-passwd", "data": b"app:x:1234:4321::/:/bin/sh\n"},
            {"name": "etc/passwd", "type": tarfile.SYMTYPE, "link": "../../../../../../etc/image-passwd"},
        ]
    )
    reference = image_of(tmp_path / "layout", [layer], {"Cmd": ["/bin/sh"], "User": "app"})
    ocilab.unpack(reference, tmp_path / "bundle")
    user = json.loads((tmp_path / "bundle" / "config.json").read_text())["process"]["user"]
    assert user == {"uid": 1234, "gid": 4321}
    reference = image_of(tmp_path / "layout", [layer], {"Cmd": ["/bin/sh"], "User": "root"}, tag="2")
    with pytest.raises(NotFoundError, match="no user 'root'"):  # the host has root; the image does not
        ocilab.unpack(reference, tmp_path / "bundle2")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ocilab", *args], capture_output=True, text=True)


def test_cli_bad_input_one_line_exit_1(tmp_path: Path) -> None:
    """A non-empty bundle, a platform not in the index, an unknown rootfs.type, a missing user: one line each."""
    plain = write_random_image(tmp_path / "layout", 1)
    multi = write_random_image(tmp_path / "layout", 2, tag="multi", platforms=["linux/amd64", "linux/arm64"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    bad_rootfs = write_random_image(tmp_path / "layout", 3, tag="badfs")
    rewrite_config(tmp_path / "layout", bad_rootfs.digest, lambda config: config["rootfs"].update(type="squashfs"))
    ghost = image_of(tmp_path / "layout2", HAND_LAYERS, {"Cmd": ["/bin/sh"], "User": "ghost"})
    cases = [
        ([plain.reference, str(tmp_path / "full")], "exists and is not empty"),
        ([multi.reference, str(tmp_path / "b1"), "--platform", "linux/s390x"], "s390x"),
        ([bad_rootfs.reference, str(tmp_path / "b2")], "rootfs.type"),
        ([ghost, str(tmp_path / "b3")], "ghost"),
    ]
    for args, words in cases:
        result = cli("unpack", *args)
        assert result.returncode == 1, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["full", "layout", "layout2"]
    assert os.listdir(tmp_path / "full") == ["x"]


def test_unknown_rootfs_type_is_refused(tmp_path: Path) -> None:
    image = write_random_image(tmp_path / "layout", 3)
    rewrite_config(tmp_path / "layout", image.digest, lambda config: config["rootfs"].update(type="squashfs"))
    with pytest.raises(ValidationError, match="rootfs.type"):
        ocilab.unpack(image.reference, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_cli_unpack_prints_the_bundle(tmp_path: Path) -> None:
    reference = write_random_image(tmp_path / "layout", 4).reference
    result = cli("unpack", reference, str(tmp_path / "b"), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["bundle"] == str(tmp_path / "b") and document["layers"] == 2
    assert sorted(os.listdir(tmp_path / "b")) == ["config.json", "rootfs"]
