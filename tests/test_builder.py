"""The daemonless builder, checked against skopeo, umoci, Docker and the tar bytes themselves.

Reproducible builds (reproducible-builds.org, SOURCE_DATE_EPOCH): "the same
source ... produces bit-by-bit identical" output; image-spec layer.md: a
whiteout ``.wh.NAME`` "indicates that NAME should be removed", and
``.wh..wh..opq`` that "all siblings are hidden in the lower layer".
"""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import ocilab
from ocilab import Builder
from ocilab.errors import InvalidInputError, NotFoundError
from ocilab.tar.tarwriter import Directory, File, Symlink
from tests.conftest import BUSYBOX, require, require_tool, run

OCILAB = [sys.executable, "-m", "ocilab"]


def make_tree(root: Path, mtime: int) -> Path:
    """A source directory with modes, a symlink, a hard link and an empty directory, all files at ``mtime``."""
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "empty").mkdir(mode=0o700)
    (root / "etc" / "motd").write_bytes(b"welcome\n")
    (root / "etc" / "secret").write_bytes(b"s3cret")
    os.chmod(root / "etc" / "secret", 0o600)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n" * 100)
    os.chmod(root / "bin" / "tool", 0o755)
    os.link(root / "bin" / "tool", root / "bin" / "tool-again")
    os.symlink("../etc/motd", root / "bin" / "motd-link")
    for path in [root, *root.rglob("*")]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


def layer_members(layout: Path, digest: str) -> list[tarfile.TarInfo]:
    """The tar entries of a layer blob in an OCI layout, in order."""
    with tarfile.open(layout / "blobs" / "sha256" / digest.split(":")[1]) as tar:
        return tar.getmembers()


def ocilab_cli(*args: str | Path, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    if check:
        return run(*OCILAB, *args, **kwargs)
    return subprocess.run([*OCILAB, *map(str, args)], capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def epoch_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


# ------------------------------------------------------------------------------------------ reproducibility


def test_same_inputs_give_the_same_digest_in_two_directories(tmp_path: Path, epoch_zero: None) -> None:
    first = make_tree(tmp_path / "one" / "context", mtime=1_600_000_000)
    second = make_tree(tmp_path / "two" / "context", mtime=1_700_000_000)
    built = [
        Builder.scratch("linux/amd64").add(context, "/app").add_files({"/etc/hello": b"hi"}).config(cmd=["/x"])
        for context in (first, second)
    ]
    assert built[0].digest == built[1].digest
    written = [image.write(f"oci:{tmp_path / name}:1") for image, name in zip(built, ("a", "b"), strict=True)]
    assert written[0].digest == written[1].digest == built[0].digest
    assert (tmp_path / "a" / "index.json").read_bytes() == (tmp_path / "b" / "index.json").read_bytes()


def test_source_date_epoch_changes_the_digest_and_the_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    context = make_tree(tmp_path / "context", mtime=1_000_000_000)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    at_zero = Builder.scratch("linux/amd64").add(context, "/app")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    later = Builder.scratch("linux/amd64").add(context, "/app")
    assert at_zero.digest != later.digest
    later.write(f"oci:{tmp_path / 'later'}:1")
    assert json.loads(later.config_bytes())["created"] == "2023-11-14T22:13:20Z"
    members = {m.name: m for m in layer_members(tmp_path / "later", str(later.layers[0].digest))}
    # Clamped: files older than the epoch keep their mtime, parents made up by the builder get the epoch.
    assert members["app/etc/motd"].mtime == 1_000_000_000
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "root" for m in members.values())


def test_timestamp_now_keeps_file_times(tmp_path: Path) -> None:
    context = make_tree(tmp_path / "context", mtime=2_000_000_000)  # in the future: clamping would change it
    image = Builder.scratch("linux/amd64", timestamp="now").add(context, "/app")
    image.write(f"oci:{tmp_path / 'out'}:1")
    members = {m.name: m for m in layer_members(tmp_path / "out", str(image.layers[0].digest))}
    assert members["app/etc/motd"].mtime == 2_000_000_000
    assert json.loads(image.config_bytes())["created"][:4] >= "2024"


def test_entries_are_sorted_with_parents_first(tmp_path: Path, epoch_zero: None) -> None:
    image = Builder.scratch("linux/amd64").add_files({"/b/z": b"1", "/a/y/x": b"2", "/a.txt": b"3"})
    image.write(f"oci:{tmp_path / 'out'}:1")
    names = [m.name for m in layer_members(tmp_path / "out", str(image.layers[0].digest))]
    assert names == ["a", "a/y", "a/y/x", "a.txt", "b", "b/z"]


# ------------------------------------------------------------------------------------------ peers read it


def rootfs_listing(root: Path) -> dict[str, tuple[str, int, bytes | str | None]]:
    """Path -> (type, mode, content or link target) for everything under ``root``."""
    listing: dict[str, tuple[str, int, bytes | str | None]] = {}
    for path in sorted(root.rglob("*")):
        status = path.lstat()
        relative = "/" + str(path.relative_to(root))
        if stat.S_ISLNK(status.st_mode):
            listing[relative] = ("symlink", 0o777, os.readlink(path))
        elif stat.S_ISDIR(status.st_mode):
            listing[relative] = ("dir", stat.S_IMODE(status.st_mode), None)
        else:
            listing[relative] = ("file", stat.S_IMODE(status.st_mode), path.read_bytes())
    return listing


def test_skopeo_and_umoci_see_what_was_added_and_removed(tmp_path: Path, epoch_zero: None) -> None:
    require_tool("skopeo")
    require_tool("umoci")
    context = make_tree(tmp_path / "context", mtime=1_600_000_000)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "only").write_bytes(b"new")
    image = (
        Builder.scratch("linux/amd64")
        .add(context, "/app")
        .add(context / "etc" / "motd", "/srv/")
        .add_files({"/etc/greeting": File(b"hi\n", 0o640), "/etc/sh": Symlink("/bin/busybox"), "/var/x": Directory()})
        .delete("/app/etc/secret", "/var")
        .replace_dir("/app/bin", fresh)
    )
    image.write(f"oci:{tmp_path / 'out'}:1")
    peer = json.loads(run("skopeo", "inspect", f"oci:{tmp_path / 'out'}:1").stdout)
    assert peer["Digest"] == str(image.digest)
    assert peer["Layers"] == [str(layer.digest) for layer in image.layers]
    run("umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'out'}:1", tmp_path / "bundle")
    got = rootfs_listing(tmp_path / "bundle" / "rootfs")
    want = {f"/app{path}": entry for path, entry in rootfs_listing(context).items()}
    for gone in ("/app/etc/secret", "/app/bin/tool", "/app/bin/tool-again", "/app/bin/motd-link"):
        del want[gone]
    want.update(
        {
            "/app": ("dir", 0o755, None),
            "/app/bin": ("dir", 0o755, None),
            "/app/bin/only": ("file", 0o644, b"new"),
            "/srv": ("dir", 0o755, None),
            "/srv/motd": ("file", 0o644, b"welcome\n"),
            "/etc": ("dir", 0o755, None),
            "/etc/greeting": ("file", 0o640, b"hi\n"),
            "/etc/sh": ("symlink", 0o777, "/bin/busybox"),
        }
    )
    assert got == want


def test_hard_links_within_a_layer_stay_hard_links(tmp_path: Path, epoch_zero: None) -> None:
    context = make_tree(tmp_path / "context", mtime=0)
    image = Builder.scratch("linux/amd64").add(context, "/app")
    image.write(f"oci:{tmp_path / 'out'}:1")
    members = {m.name: m for m in layer_members(tmp_path / "out", str(image.layers[0].digest))}
    assert members["app/bin/tool"].isreg()
    assert members["app/bin/tool-again"].islnk() and members["app/bin/tool-again"].linkname == "app/bin/tool"
    assert members["app/bin/motd-link"].issym() and members["app/bin/motd-link"].linkname == "../etc/motd"
    assert members["app/empty"].isdir() and members["app/empty"].mode == 0o700


def test_an_existing_tar_is_added_under_dest_with_owners_and_times_normalised(tmp_path: Path) -> None:
    source = tmp_path / "in.tar.gz"
    with tarfile.open(source, "w:gz") as tar:
        info = tarfile.TarInfo("data/file")
        info.size, info.uid, info.mtime, info.mode = 3, 1000, 2_000_000_000, 0o600
        tar.addfile(info, io.BytesIO(b"abc"))
    image = Builder.scratch("linux/amd64", timestamp=5).add_tar(source, "/opt")
    image.write(f"oci:{tmp_path / 'out'}:1")
    (member,) = layer_members(tmp_path / "out", str(image.layers[0].digest))
    assert (member.name, member.uid, member.mtime, member.mode, member.size) == ("opt/data/file", 0, 5, 0o600, 3)


# ------------------------------------------------------------------------------------------ other stores


def test_busybox_built_here_runs_in_docker(tmp_path: Path, docker_client: object, epoch_zero: None) -> None:
    require(BUSYBOX.is_file(), f"{BUSYBOX} (Debian package busybox-static)")
    require_tool("docker")
    image = Builder.scratch().add(BUSYBOX, "/bin/busybox").config(cmd=["/bin/busybox", "sh"])
    image.write(f"oci:{tmp_path / 'out'}:1")
    name = "ocilab-test/built-busybox:1"
    ocilab_cli("copy", "--quiet", f"oci:{tmp_path / 'out'}:1", f"docker-daemon:{name}")
    try:
        assert run("docker", "run", "--rm", name, "/bin/busybox", "echo", "hi").stdout == "hi\n"
    finally:
        subprocess.run(["docker", "rmi", "-f", name], capture_output=True)


def test_building_from_a_registry_keeps_the_base_layers(tmp_path: Path, registry: object, epoch_zero: None) -> None:
    host = registry.host  # type: ignore[attr-defined]
    base = Builder.scratch("linux/amd64").add_files({"/tmp": Directory(0o1777), "/etc/os": b"base\n"})
    base = base.config(env={"PATH": "/bin", "LANG": "C"}, cmd=["/bin/sh"])
    base.write(f"docker://{host}/ocilab/builder-base:1")
    child = (
        Builder.from_image(f"docker://{host}/ocilab/builder-base:1")
        .add_files({"/tmp/scratch-file": b"x"})
        .config(env=["PATH=/usr/bin:/bin", "EXTRA=1"])
    )
    assert child.layers[0] == base.layers[0]
    written = child.write(f"oci:{tmp_path / 'out'}:1")
    with ocilab.open(f"oci:{tmp_path / 'out'}:1") as image:
        assert image.layers[0].digest == base.layers[0].digest
        assert image.config.container_config["Env"] == ["PATH=/usr/bin:/bin", "LANG=C", "EXTRA=1"]
        assert image.config.container_config["Cmd"] == ["/bin/sh"]
        assert image.manifest_digest == written.digest
    # The parent /tmp comes with the base's mode, not 0755: unpacking the new layer keeps /tmp writable by all.
    members = {m.name: m for m in layer_members(tmp_path / "out", str(child.layers[1].digest))}
    assert members["tmp"].mode == 0o1777


def test_multi_platform_index(tmp_path: Path, epoch_zero: None) -> None:
    require_tool("skopeo")
    images = [
        Builder.scratch(platform).add_files({"/arch": platform.encode()}) for platform in ("linux/amd64", "linux/arm64")
    ]
    root = ocilab.write_index(images, f"oci:{tmp_path / 'out'}:multi")
    raw = json.loads(run("skopeo", "inspect", "--raw", f"oci:{tmp_path / 'out'}:multi").stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [(m["digest"], m["platform"]) for m in raw["manifests"]] == [
        (str(images[0].digest), {"architecture": "amd64", "os": "linux"}),
        (str(images[1].digest), {"architecture": "arm64", "os": "linux"}),
    ]
    with ocilab.open(f"oci:{tmp_path / 'out'}:multi", platform="linux/arm64") as arm:
        assert arm.manifest_digest == images[1].digest
    assert ocilab.validate(f"oci:{tmp_path / 'out'}:multi").ok
    (entry,) = json.loads((tmp_path / "out" / "index.json").read_text())["manifests"]
    assert (entry["digest"], entry["mediaType"]) == (str(root.digest), root.media_type)


# ------------------------------------------------------------------------------------------ the command line


def test_cli_config_fields_and_history(tmp_path: Path, epoch_zero: None) -> None:
    context = make_tree(tmp_path / "context", mtime=0)
    out = f"oci:{tmp_path / 'out'}:1"
    digest = ocilab_cli(
        "build", "--add", f"{context}:/app", "--add", f"{context / 'etc' / 'motd'}:/etc/motd", "--rm", "/app/empty",
        "--cmd", '["/app/bin/tool"]', "--entrypoint", '["/bin/sh", "-c"]', "--env", "A=1", "--env", "B=2",
        "--workdir", "/app", "--user", "1000:1000", "--label", "org.example=yes", "--expose", "8080",
        "--expose", "53/udp", "--tag", out,
    ).stdout.strip()  # fmt: skip
    document = json.loads(ocilab_cli("inspect", "--json", out).stdout)
    assert document["manifest_digest"] == digest
    assert document["config"] == {
        "User": "1000:1000",
        "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
        "Env": ["A=1", "B=2"],
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["/app/bin/tool"],
        "WorkingDir": "/app",
        "Labels": {"org.example": "yes"},
    }
    made_layers = [entry["created_by"] for entry in document["history"] if not entry["empty_layer"]]
    assert made_layers == ["COPY context/ /app", "COPY motd /etc/motd", "DELETE /app/empty"]
    assert len(made_layers) == len(document["layers"])
    assert [e["created_by"] for e in document["history"] if e["empty_layer"]] == [
        "USER 1000:1000",
        "EXPOSE 8080/tcp 53/udp",
        "ENV A=1 B=2",
        'ENTRYPOINT ["/bin/sh", "-c"]',
        'CMD ["/app/bin/tool"]',
        "WORKDIR /app",
        "LABEL org.example=yes",
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--from", "oci:{tmp}/no-such-layout:1"], "no such directory"),
        (["--add", "{tmp}/missing:/x"], "missing: cannot add it"),
        (["--add", "{tmp}/context:relative"], "is not absolute"),
        (["--add", "nocolon"], "write SRC:DEST"),
        (["--cmd", "not json"], "--cmd 'not json' is not valid JSON"),
        (["--cmd", '"/bin/sh"'], "must be a JSON list of strings"),
        (["--env", "NOEQUALS"], "write NAME=VALUE"),
        (["--expose", "99999"], "PORT 1-65535"),
        (["--workdir", "relative"], "is not absolute"),
        (["--platform", "linux"], "is not OS/ARCH"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, arguments: list[str], message: str) -> None:
    (tmp_path / "context").mkdir()
    (tmp_path / "tmp").mkdir()
    arguments = [a.format(tmp=tmp_path) for a in arguments]
    environment = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}  # where layer blobs are spooled
    result = ocilab_cli("build", *arguments, "--tag", f"oci:{tmp_path}/out:1", check=False, env=environment)
    assert result.returncode == 1
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert list((tmp_path / "tmp").iterdir()) == []


# ------------------------------------------------------------------------------------------ bad input in Python


@pytest.fixture
def odd_files(tmp_path: Path) -> Iterator[Path]:
    context = tmp_path / "odd"
    context.mkdir()
    (context / "file").write_bytes(b"x")
    os.mkfifo(context / "fifo")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(context / "sock"))
    yield context
    listener.close()


def test_sockets_are_skipped_with_a_note_and_fifos_kept(tmp_path: Path, odd_files: Path) -> None:
    image = Builder.scratch("linux/amd64").add(odd_files, "/odd")
    assert image.notes == (f"{odd_files / 'sock'}: skipped (a socket is not content)",)
    image.write(f"oci:{tmp_path / 'out'}:1")
    members = {m.name: m for m in layer_members(tmp_path / "out", str(image.layers[0].digest))}
    assert sorted(members) == ["odd", "odd/fifo", "odd/file"]
    assert members["odd/fifo"].isfifo()


def test_device_nodes_need_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    context = tmp_path / "dev"
    context.mkdir()
    if os.geteuid() == 0:
        os.mknod(context / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        image = Builder.scratch("linux/amd64").add(context, "/dev")
        image.write(f"oci:{tmp_path / 'out'}:1")
        members = {m.name: m for m in layer_members(tmp_path / "out", str(image.layers[0].digest))}
        assert members["dev/null"].ischr() and (members["dev/null"].devmajor, members["dev/null"].devminor) == (1, 3)
        monkeypatch.setattr(os, "geteuid", lambda: 1000)  # the fault a root test run cannot otherwise see
    else:
        pytest.skip("making a device node needs root")
    with pytest.raises(InvalidInputError, match="device nodes are added only when building as root"):
        Builder.scratch("linux/amd64").add(context, "/dev")


def test_unsafe_and_conflicting_input_is_refused(tmp_path: Path) -> None:
    unsafe = tmp_path / "unsafe.tar"
    with tarfile.open(unsafe, "w") as tar:
        tar.addfile(tarfile.TarInfo("../escape"), io.BytesIO(b""))
    start = Builder.scratch("linux/amd64")
    with pytest.raises(InvalidInputError, match="'..' component"):
        start.add_tar(unsafe)
    with pytest.raises(InvalidInputError, match="not a directory but this layer puts /a/b under it"):
        start.add_files({"/a": b"file", "/a/b": b"child"})
    with pytest.raises(InvalidInputError, match="'..' component"):
        start.add_files({"/etc/../../x": b""})
    with pytest.raises(InvalidInputError, match="more than one image for linux/amd64"):
        ocilab.write_index([start, start], f"oci:{tmp_path / 'out'}:1")
    with pytest.raises(NotFoundError):
        Builder.from_image(f"oci:{tmp_path / 'nowhere'}:1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unsafe.tar"]


def test_steps_return_new_values(epoch_zero: None) -> None:
    start = Builder.scratch("linux/amd64")
    configured = start.config(cmd=["/bin/sh"])
    layered = configured.add_files({"/f": b"1"})
    assert start.runtime_config == {} and start.layers == () and start.history_entries == ()
    assert len(configured.history_entries) == 1 and configured.layers == ()
    assert len(layered.layers) == 1 and start.digest != configured.digest != layered.digest


def test_a_delete_creates_no_directory_and_an_empty_replace_dir_leaves_an_empty_directory(
    tmp_path: Path, epoch_zero: None
) -> None:
    require_tool("umoci")
    image = (
        Builder.scratch("linux/amd64")
        .add_files({"/etc/a": b"1", "/d/x": b"2"})
        .delete("/nothere/x", "/etc/a")
        .replace_dir("/d")
    )
    assert image.notes == ("delete /nothere/x: nothing to delete, /nothere is not in the image",)
    image.write(f"oci:{tmp_path / 'out'}:1")
    names = [[m.name for m in layer_members(tmp_path / "out", str(layer.digest))] for layer in image.layers[1:]]
    assert names == [["etc", "etc/.wh.a"], ["d", "d/.wh..wh..opq"]]
    run("umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'out'}:1", tmp_path / "bundle")
    assert rootfs_listing(tmp_path / "bundle" / "rootfs") == {"/d": ("dir", 0o755, None), "/etc": ("dir", 0o755, None)}
