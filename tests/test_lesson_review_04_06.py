"""What a learner's review of notebooks 04-06 asked of the package: messages said once, counts in the right
grammar, a run result that shows itself, diffs that show what differs, notes in layer order."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import ocilab
import ocilab.lab
from ocilab.errors import UnsafePathError
from ocilab.operations.runtime import RunResult, Step
from ocilab.present.http import requests_table
from ocilab.stores.registry.recording import Exchange
from tests.conftest import run


def ocilab_cli(*args: str | Path) -> str:
    return run(sys.executable, "-m", "ocilab", *args).stdout


def test_a_hard_link_out_of_the_rootfs_names_its_target_once(tmp_path: Path) -> None:
    image = ocilab.lab.raw_layer_image(
        f"oci:{tmp_path / 'layout'}:link", [ocilab.lab.RawEntry("shadow", "hardlink", link="/etc/shadow")]
    )
    with pytest.raises(UnsafePathError) as refused:
        ocilab.unpack(image, tmp_path / "bundle")
    message = str(refused.value)
    assert message.endswith("entry /shadow: hard link to /etc/shadow, which is not in the rootfs"), message
    assert not (tmp_path / "bundle").exists()


def test_a_hard_link_through_a_symlink_says_where_it_resolved(tmp_path: Path) -> None:
    entries = [
        ocilab.lab.RawEntry("etc", "symlink", link="/nowhere"),
        ocilab.lab.RawEntry("shadow", "hardlink", link="etc/shadow"),
    ]
    image = ocilab.lab.raw_layer_image(f"oci:{tmp_path / 'layout'}:link", entries)
    with pytest.raises(
        UnsafePathError, match=r"hard link to /etc/shadow, which is not in the rootfs \(resolved to /nowhere/shadow\)$"
    ):
        ocilab.unpack(image, tmp_path / "bundle")


def test_a_run_result_shows_engine_exit_code_and_output() -> None:
    result = RunResult("docker", 3, "uid=33(www)\n/srv/www\n", "")
    assert result.summary() == "docker: exit code 3\nstdout:\n  uid=33(www)\n  /srv/www"
    steps = (Step("create", "created"), Step("start", "running"), Step("delete", "deleted"))
    with_states = RunResult("runc", 1, "", "sh: oops\n", steps)
    assert with_states.summary() == "runc: exit code 1\nstates: created -> running -> deleted\nstderr:\n  sh: oops"
    from IPython.lib.pretty import pretty

    assert pretty(result) == result.summary()


def test_registry_ls_counts_dangling_links_in_the_right_number(tmp_path: Path) -> None:
    repository = tmp_path / "docker/registry/v2/repositories/demo/_layers/sha256"
    (tmp_path / "docker/registry/v2/blobs/sha256").mkdir(parents=True)
    for count, hex_digest in enumerate(("a" * 64, "b" * 64), start=1):
        (repository / hex_digest).mkdir(parents=True)
        (repository / hex_digest / "link").write_text(f"sha256:{hex_digest}")
        said = ocilab_cli("registry", "ls", "--data", tmp_path)
        if count == 1:
            assert "\n1 link points at a blob that is gone: the collector removes blobs" in said, said
        else:
            assert "\n2 links point at blobs that are gone: the collector removes blobs" in said, said


def test_diff_prints_only_the_config_items_that_differ(tmp_path: Path) -> None:
    base = ocilab.Builder.from_image(f"oci:{ocilab.busybox_layout(tmp_path / 'busybox', tag='1')}:1")
    base.config(env={"GREETING": "hello"}, labels={"version": "1"}).write(f"oci:{tmp_path / 'apps'}:v1")
    base.config(env={"GREETING": "hi"}).write(f"oci:{tmp_path / 'apps'}:v2")
    said = ocilab_cli("diff", f"oci:{tmp_path / 'apps'}:v1", f"oci:{tmp_path / 'apps'}:v2")
    config = said.split("\nconfig (what only A has -> what only B has):\n")[1].split("\n\n")[0].splitlines()
    assert config == [
        "  Env: GREETING=hello -> GREETING=hi",
        "  Labels: version=1 -> (none)",
        "  history: ENV GREETING=hello, LABEL version=1 -> ENV GREETING=hi",
    ]


def test_recompression_notes_follow_the_layers_order(tmp_path: Path) -> None:
    layout = ocilab.busybox_layout(tmp_path / "busybox", tag="1")
    for attempt in range(3):  # the layers are recompressed by parallel workers: their order must not leak
        report = ocilab.copy(f"oci:{layout}:1", f"oci:{tmp_path / f'zstd{attempt}'}:1", compression="zstd")
        layers = [str(layer.digest) for layer in ocilab.open(f"oci:{layout}:1").layers]
        noted = [note.split()[1] for note in report.notes if " recompressed " in note]
        assert noted == layers
        assert report.notes[-1].startswith("manifest ")


def test_a_referrers_tag_is_cut_like_a_digest_in_the_requests_table() -> None:
    hex_digest = "f406589e51fe049a3f8122ebb955a1982a79edec87f663d1abdd43f450199516"
    exchanges = [
        Exchange("GET", f"/v2/demo/busybox/referrers/sha256:{hex_digest}", 404, 0),
        Exchange("GET", f"/v2/demo/busybox/manifests/sha256-{hex_digest}", 200, 0),
    ]
    assert list(requests_table(exchanges)["path"]) == [
        "/v2/demo/busybox/referrers/sha256:f406589e51fe…",
        "/v2/demo/busybox/manifests/sha256-f406589e51fe…",
    ]
