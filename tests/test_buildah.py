"""Buildah's bud as a third builder, and one Dockerfile built by Docker, Podman, Buildah and ocilab.Builder.

Peers: ``buildah images`` / ``podman image inspect`` for what Buildah stored,
``skopeo inspect`` of ``containers-storage:`` for the comparison's digests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas
import pytest

from ocilab.engines.buildah import COMPARISON_COLUMNS, buildah_build, compare_builders, kit_build
from ocilab.engines.docker_build import DockerBuildError
from ocilab.errors import InvalidInputError, UnsupportedError
from tests.conftest import BUSYBOX, require, require_tool, run
from tests.engines import cli_inspect, connect_or_skip, image_id

DOCKERFILE = (
    "FROM scratch\n"
    "COPY busybox /bin/busybox\n"
    'ENV GREETING="hello from ocilab"\n'
    "LABEL org.example.stage=compare\n"
    'CMD ["/bin/busybox", "sh"]\n'
)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(BUSYBOX.is_file(), f"{BUSYBOX} (Debian package busybox-static)")
    directory = tmp_path_factory.mktemp("compare")
    shutil.copy2(BUSYBOX, directory / "busybox")
    (directory / "Dockerfile").write_text(DOCKERFILE)
    return directory


def test_buildah_bud_maps_each_step_to_its_layer(context: Path) -> None:
    require_tool("buildah")
    connect_or_skip("podman")
    build = buildah_build(context, "ocilab-test/buildah:1", nocache=True)
    assert build.builder == "buildah" and build.reference == "containers-storage:ocilab-test/buildah:1"
    assert [step.layer for step in build.records] == [None, 0, None, None, None]
    assert build.log[0] == "STEP 1/5: FROM scratch"
    inspected = cli_inspect("podman", "ocilab-test/buildah:1")
    assert image_id(inspected) == build.image
    assert inspected["RootFS"]["Layers"] == [build.records[1].diff_id]
    listed = json.loads(run("buildah", "images", "--json").stdout)  # short IDs and full names
    assert any(
        build.image.startswith(f"sha256:{entry['id']}") and "docker.io/ocilab-test/buildah:1" in (entry["names"] or [])
        for entry in listed
    )


def test_a_failing_buildah_step_is_one_line(tmp_path: Path) -> None:
    require_tool("buildah")
    shutil.copy2(BUSYBOX, tmp_path / "busybox")
    (tmp_path / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sh", "-c", "echo nope; exit 4"]\n'
    )
    with pytest.raises(DockerBuildError) as caught:
        buildah_build(tmp_path, "ocilab-test/buildah-fails:1")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("step 3/3 (RUN") and "buildah bud exited with" in message


def test_one_dockerfile_four_builders_one_table(context: Path) -> None:
    """Docker, Podman, Buildah and the kit build the same image content; the digests are each builder's own."""
    for engine in ("docker", "podman"):
        connect_or_skip(engine)
    require_tool("buildah")
    skopeo = require_tool("skopeo")
    table = compare_builders(context, "ocilab-test/compare")
    assert list(table.columns) == [*COMPARISON_COLUMNS, "seconds"]
    assert list(table["builder"]) == ["docker", "podman", "buildah", "ocilab"]
    assert (table["note"] == "").all(), list(table["note"])
    assert list(table["layers"]) == [1, 1, 1, 1]
    assert table["config"].nunique() == 4  # timestamps and history text differ between builders
    for row in table.itertuples():
        if row.reference.startswith("containers-storage:"):
            inspected = json.loads(run(skopeo, "inspect", "--raw", "--config", row.reference).stdout)
            assert inspected["rootfs"]["diff_ids"] == row.diff_ids
        assert row.size == sum(row.layer_sizes)
    engine_sizes = table[table["builder"] != "ocilab"]["size"]
    assert (engine_sizes >= BUSYBOX.stat().st_size).all()  # uncompressed tars hold the whole file


def test_the_kit_refuses_what_it_cannot_take(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text('FROM scratch\nRUN ["/bin/true"]\n')
    with pytest.raises(UnsupportedError, match=r"Dockerfile step 2 \(RUN \[\"/bin/true\"\]\): ocilab.Builder runs no"):
        kit_build(tmp_path, "x:1")
    (tmp_path / "Dockerfile").write_text("COPY a /a\n")
    with pytest.raises(InvalidInputError, match="a Dockerfile starts with FROM"):
        kit_build(tmp_path, "x:1")
    table = compare_builders(tmp_path, "ocilab-test/compare-bad", builders=("ocilab",))
    assert pandas.isna(table.loc[0, "config"]) and "starts with FROM" in table.loc[0, "note"]
    with pytest.raises(InvalidInputError, match="unknown builder 'kaniko'"):
        compare_builders(tmp_path, builders=("kaniko",))
