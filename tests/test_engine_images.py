"""The engine's tagged and dangling images by label, pruning only the dangling ones, and cells without an engine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import ocilab
from ocilab.engines.engine_images import engine_images, prune_dangling
from ocilab.errors import ComponentUnavailableError, InvalidInputError, NotFoundError
from ocilab.present.engine import NoEngine, if_engine, images, prune


def version(tmp_path: Path, label: str, text: str) -> tuple[str, str]:
    """A tiny image carrying ``label`` (``KEY=VALUE``), written to a layout: (reference, engine image ID)."""
    key, _, value = label.partition("=")
    layout = tmp_path / "layout"
    builder = ocilab.Builder.scratch().add_files({"/version": text.encode()}).config(labels={key: value})
    builder.write(f"oci:{layout}:{text}")
    image = ocilab.open(f"oci:{layout}:{text}")
    return f"oci:{layout}:{text}", str(image.config_digest)


@pytest.fixture()
def label(docker_client) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A label no other image carries; every image with it is removed afterwards."""
    token = f"org.ocilab.test={uuid.uuid4().hex}"
    yield token
    for image in docker_client.images.list(filters={"label": token}):
        docker_client.images.remove(image.id, force=True)


def test_a_tag_taken_by_a_new_version_leaves_the_old_one_dangling(label: str, tmp_path: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    name = f"ocilab-test/dangling-{label[-8:]}:1"
    first, first_id = version(tmp_path, label, "one")
    second, second_id = version(tmp_path, label, "two")
    ocilab.copy(first, f"docker-daemon:{name}", quiet=True)
    assert [(image.id, image.tags) for image in engine_images(label)] == [(first_id, (name,))]
    ocilab.copy(second, f"docker-daemon:{name}", quiet=True)
    listed = engine_images(label)
    assert [(image.id, image.tags, image.dangling) for image in listed] == [
        (second_id, (name,), False),
        (first_id, (), True),
    ]
    assert listed[1].size == docker_client.images.get(first_id).attrs["Size"]
    frame = images(label)
    assert list(frame["tags"]) == [name, "<none>"] and list(frame["image"]) == [second_id[7:19], first_id[7:19]]


def test_prune_removes_only_the_labelled_dangling_images(label: str, tmp_path: Path, docker_client) -> None:  # type: ignore[no-untyped-def]
    import docker

    other = f"org.ocilab.test={uuid.uuid4().hex}"
    name, bystander = f"ocilab-test/prune-{label[-8:]}:1", f"ocilab-test/prune-{other[-8:]}:1"
    try:
        old, old_id = version(tmp_path / "a", label, "old")
        new, new_id = version(tmp_path / "a", label, "new")
        kept, kept_id = version(tmp_path / "b", other, "old")
        kept_new, _ = version(tmp_path / "b", other, "new")
        for reference, target in ((old, name), (new, name), (kept, bystander), (kept_new, bystander)):
            ocilab.copy(reference, f"docker-daemon:{target}", quiet=True)
        lines = prune(label)
        assert f"Deleted: {old_id}" in lines and lines[-1].startswith("Total reclaimed space: ")
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(old_id)
        assert docker_client.images.get(new_id).tags == [name]
        assert docker_client.images.get(kept_id).tags == []  # dangling, but not this label's
        assert prune_dangling(label).lines == ()
    finally:
        for image in docker_client.images.list(filters={"label": other}):
            docker_client.images.remove(image.id, force=True)


@pytest.mark.parametrize("bad", ["", "=value", "a label"])
def test_a_malformed_label_is_refused_before_the_engine_is_asked(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    for call in (engine_images, prune_dangling):
        with pytest.raises(InvalidInputError, match="KEY or KEY=VALUE"):
            call(bad)


def test_without_an_engine_a_cell_says_what_it_would_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("CONTAINER_HOST", "unix:///nonexistent/podman.sock")  # nor Podman
    with pytest.raises(ComponentUnavailableError):
        images("org.ocilab.test")
    shown = if_engine(ocilab.remove, "docker-daemon:ocilab-test/none:1", otherwise="It would untag the image.")
    assert isinstance(shown, NoEngine)
    assert repr(shown) == "No Docker engine here (nor Podman), so nothing ran. It would untag the image."
    assert shown.removed is shown and repr(shown.removed) == repr(shown)  # ocilab.remove(...).removed in a cell
    assert shown.steps[["step", "layer"]] is shown  # docker_build(...).steps[[...]] in a cell
    with pytest.raises(AttributeError):
        shown._repr_html_  # noqa: B018 - IPython must find no display method and use the repr


def test_with_an_engine_the_call_runs_and_other_errors_are_not_hidden(docker_client) -> None:  # type: ignore[no-untyped-def]
    assert if_engine(images, "org.ocilab.test=nothing-has-this", otherwise="x").empty
    with pytest.raises(NotFoundError):
        if_engine(ocilab.remove, "docker-daemon:ocilab-test/never-loaded:1", otherwise="x")
    with pytest.raises(InvalidInputError):
        if_engine(images, "a label", otherwise="x")
