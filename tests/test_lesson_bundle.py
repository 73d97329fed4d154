"""Notebook 04's helpers: the rootfs after layer N (against umoci), hostile images written verbatim (against
tar and skopeo), config.json beside the image config, refusals as one sentence, runc cells for non-root
learners, symlinks in directory trees, and the lesson's checks."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import ocilab
from ocilab.errors import ComponentUnavailableError, InvalidInputError
from ocilab.operations.raw_layer import RawEntry, raw_layer_image
from ocilab.operations.unpack_layers import unpack_through
from ocilab.present.bundle import NoRunc, Refused, config_table, if_runc, outcome
from ocilab.present.dirtree import directory_tree
from tests.conftest import require_tool, run
from tests.test_unpack import tree, umoci_bundle

FILES = {
    "/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:web:/srv/www:/bin/sh\n",
    "/etc/group": b"root:x:0:\nwww:x:33:\n",
    "/srv/www/index.html": b"<h1>hi</h1>\n",
    "/srv/www/notes.txt": b"draft\n",
}


@pytest.fixture(scope="module")
def lesson(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A layout with busybox:1, ``files`` (busybox + FILES) and ``app`` (files + a whiteout + config)."""
    layout = ocilab.busybox_layout(tmp_path_factory.mktemp("lesson") / "images", tag="1")
    files = ocilab.Builder.from_image(f"oci:{layout}:1").add_files(FILES)
    files.write(f"oci:{layout}:files")
    app = files.delete("/srv/www/notes.txt").config(
        entrypoint=["/bin/busybox"], cmd=["httpd", "-f"], env={"A": "1"}, workdir="/srv/www", user="www"
    )
    app.write(f"oci:{layout}:app")
    return layout


def test_each_layers_rootfs_matches_umoci_unpacking_the_image_that_stopped_there(lesson: Path, tmp_path: Path) -> None:
    with ocilab.open(f"oci:{lesson}:app") as image:
        unpack_through(image, 2, tmp_path / "after-2")
        unpack_through(image, 3, tmp_path / "after-3")
    assert (tmp_path / "after-2/rootfs/srv/www/notes.txt").read_bytes() == b"draft\n"
    assert not (tmp_path / "after-3/rootfs/srv/www/notes.txt").exists()
    umoci_bundle(f"oci:{lesson}:files", tmp_path / "umoci-files")
    umoci_bundle(f"oci:{lesson}:app", tmp_path / "umoci-app")
    assert tree(tmp_path / "after-2/rootfs") == tree(tmp_path / "umoci-files/rootfs")
    assert tree(tmp_path / "after-3/rootfs") == tree(tmp_path / "umoci-app/rootfs")
    config = json.loads((tmp_path / "after-2/config.json").read_text())
    assert config["process"]["args"] == ["/bin/busybox", "httpd", "-f"]  # the image's config as it is now


@pytest.mark.parametrize("layer", [-1, 4])
def test_a_layer_the_image_lacks_is_refused_and_nothing_is_made(lesson: Path, tmp_path: Path, layer: int) -> None:
    with ocilab.open(f"oci:{lesson}:app") as image, pytest.raises(InvalidInputError, match=f"no layer {layer} "):
        unpack_through(image, layer, tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []


def test_a_raw_layer_keeps_its_entries_verbatim(tmp_path: Path) -> None:
    entries = [
        RawEntry("../../up/passwd", data=b"evil\n"),
        RawEntry("etc", "symlink", link="/"),
        RawEntry("shadow", "hardlink", link="/etc/shadow"),
        RawEntry("dir", "dir"),
    ]
    reference = raw_layer_image(f"oci:{tmp_path / 'layout'}:bad", entries)
    with ocilab.open(reference) as image:
        blob = tmp_path / "layout/blobs/sha256" / image.layers[0].digest.encoded
        assert hashlib.sha256(gzip.decompress(blob.read_bytes())).hexdigest() == image.layers[0].diff_id.encoded
        digest = str(image.layers[0].digest)
    listing = run("tar", "-tvzf", blob).stdout.splitlines()
    assert [line.split()[5:] for line in listing] == [
        ["../../up/passwd"],
        ["etc", "->", "/"],
        ["shadow", "link", "to", "etc/shadow"],  # GNU tar strips the leading '/' when it shows a link target
        ["dir/"],
    ]
    with tarfile.open(blob) as tar:
        assert [(member.name, member.linkname) for member in tar] == [
            ("../../up/passwd", ""),
            ("etc", "/"),
            ("shadow", "/etc/shadow"),
            ("dir", ""),
        ]
    require_tool("skopeo")
    assert json.loads(run("skopeo", "inspect", f"oci:{tmp_path / 'layout'}:bad").stdout)["Layers"] == [digest]


@pytest.mark.parametrize(
    ("entries", "message"),
    [([], "no entries given"), ([RawEntry("dev", "char")], "kind 'char' is not one of file, dir, symlink, hardlink")],
)
def test_a_raw_layer_refuses_bad_input_and_writes_nothing(
    tmp_path: Path, entries: list[RawEntry], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        raw_layer_image(f"oci:{tmp_path / 'layout'}:bad", entries)
    assert not (tmp_path / "layout").exists()


def test_the_config_table_puts_each_image_field_beside_what_config_json_holds(lesson: Path, tmp_path: Path) -> None:
    ocilab.unpack(f"oci:{lesson}:app", tmp_path / "bundle")
    process = json.loads((tmp_path / "bundle/config.json").read_text())["process"]
    with ocilab.open(f"oci:{lesson}:app") as image:
        table = config_table(image, tmp_path / "bundle")
        assert table.headers[0] == f"image config {image.config_digest.short}"
    rows = dict(table.rows)
    args = f"process.args  {json.dumps(process['args'])}"
    assert rows['Entrypoint + Cmd  ["/bin/busybox"] + ["httpd", "-f"]'] == args
    assert rows['User  "www", looked up in the image\'s /etc/passwd'] == 'process.user  {"uid": 33, "gid": 33}'
    assert rows['WorkingDir  "/srv/www"'] == 'process.cwd  "/srv/www"'
    assert any(right.startswith("process.env") and '"A=1"' in right for right in rows.values())
    assert repr(table).splitlines()[2:4] == [
        'Entrypoint + Cmd  ["/bin/busybox"] + ["httpd", "-f"]',
        f"  → {args}",
    ]
    assert "<b>User</b><br><code style='white-space:pre-wrap;word-break:break-all'>&quot;www&quot;," in (
        table._repr_html_()
    )
    (tmp_path / "empty").mkdir()
    with ocilab.open(f"oci:{lesson}:app") as image, pytest.raises(InvalidInputError, match="empty/config.json"):
        config_table(image, tmp_path / "empty")


def test_outcome_shows_a_refusal_as_its_sentence_and_lets_other_errors_through(tmp_path: Path) -> None:
    climb = raw_layer_image(f"oci:{tmp_path / 'layout'}:climb", [RawEntry("../x", data=b"x")])
    refused = outcome(ocilab.unpack, climb, tmp_path / "bundle")
    assert isinstance(refused, Refused) and "\n" not in repr(refused)
    assert repr(refused).startswith("refused: ") and "layer 0" in repr(refused) and "'../x'" in repr(refused)
    assert not (tmp_path / "bundle").exists()
    assert outcome(int, "7") == 7
    with pytest.raises(ZeroDivisionError):
        outcome(lambda: 1 / 0)


def test_a_runc_cell_as_root_runs_and_says_why_when_runc_fails() -> None:
    if os.geteuid() != 0:
        pytest.skip("the root half needs root")
    assert if_runc(int, "3", otherwise="x") == 3

    def missing() -> None:
        raise ComponentUnavailableError("runc is not installed (Debian package runc).")

    said = if_runc(missing, otherwise="With runc, this shows 'created'.")
    assert isinstance(said, NoRunc)
    assert repr(said) == "runc is not installed (Debian package runc), so nothing ran. With runc, this shows 'created'."
    assert said.create() is said and said.status is said  # the next cells of the lesson show the sentence too
    with pytest.raises(ZeroDivisionError):
        if_runc(lambda: 1 / 0, otherwise="x")


def test_a_runc_cell_as_a_learner_says_runc_needs_root_and_runs_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("becoming another user needs root")
    tmp_path.chmod(0o777)
    script = (
        "import os, sys; from ocilab.present.bundle import if_runc, NoRunc;"
        " os.setgroups([]); os.setgid(65534); os.setuid(65534);"
        " said = if_runc(open, sys.argv[1], 'w', otherwise='As root, this shows created.');"
        " print(repr(said), isinstance(said, NoRunc))"
    )
    marker = tmp_path / "called"
    shown = subprocess.run([sys.executable, "-c", script, str(marker)], capture_output=True, text=True, check=True)
    assert shown.stdout == (
        "runc needs root and this notebook runs as uid 65534, so nothing ran. As root, this shows created. True\n"
    )
    assert not marker.exists()


def test_a_symlink_in_a_directory_tree_is_shown_not_followed(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("s")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "etc").symlink_to("../outside")
    (tmp_path / "root" / "link").symlink_to("/nonexistent")
    assert directory_tree(tmp_path / "root").lines() == ["etc -> ../outside", "link -> /nonexistent"]


def test_the_lessons_checks_hint_at_what_is_wrong(lesson: Path, tmp_path: Path) -> None:
    ocilab.unpack(f"oci:{lesson}:app", tmp_path / "bundle")
    rooted = [RawEntry("etc", "symlink", link="/"), RawEntry("etc/passwd", data=b"x\n")]
    ocilab.unpack(raw_layer_image(f"oci:{tmp_path / 'layout'}:rooted", rooted), tmp_path / "rooted")
    assert "Answer with the number" in repr(ocilab.check.process_uid("33", tmp_path / "bundle"))
    assert "is not a bundle" in repr(ocilab.check.process_uid(33, tmp_path))
    assert ocilab.check.landed_at(" /passwd ", tmp_path / "rooted", "passwd")
    host_path = str(tmp_path / "rooted" / "rootfs" / "passwd")
    assert "as the container sees it" in repr(ocilab.check.landed_at(host_path, tmp_path / "rooted", "passwd"))
    assert ocilab.check.landed_at("/etc/passwd", tmp_path / "rooted", "passwd")  # etc -> / inside the rootfs
    assert "Not /etc/group" in repr(ocilab.check.landed_at("/etc/group", tmp_path / "rooted", "passwd"))
    assert "Start the path with '/'" in repr(ocilab.check.landed_at("passwd", tmp_path / "rooted", "passwd"))
    assert "no file called shadow" in repr(ocilab.check.landed_at("/shadow", tmp_path / "rooted", "shadow"))
    assert ocilab.check.runs_as(tmp_path / "bundle", 33, "/srv/www")
    wrong = repr(ocilab.check.runs_as(str(tmp_path / "bundle"), 0, "/tmp"))
    assert wrong.startswith("✗ Its process runs as uid 33 in /srv/www, not uid 0 in /tmp"), wrong
