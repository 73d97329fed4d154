"""Docker builds made visible: each Dockerfile step mapped to the layer it made, checked against the engine's own word.

Every build here is real: the engine's classic builder (Docker 20.10 through
the SDK) on the host's static busybox, ``FROM scratch``, never a pull. What a
step made is checked three ways: against the Dockerfile, spelled out below;
against ``docker history`` (the CLI, a peer: the intermediate image of each
step, its CREATED BY and SIZE); and against the diff_ids and history
``empty_layer`` flags of the image config ocilab reads back from the engine.

The classic builder commits a layer for WORKDIR (it creates the directory in a
container), even though ``docker history`` shows it as 0 B like the metadata
steps; ENV, LABEL and CMD only change the config (``empty_layer: true``).

The mapping tests run on Docker and on Podman (``engine``, parametrised):
Podman's builder (Buildah) makes no layer for WORKDIR, writes ``STEP N/M:``
log lines, records the exec-form RUN as ``/bin/sh -c [...]`` and measures a
step's size as its layer's tar, not the bytes of its files; ``podman history``
is its peer.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas
import pytest

import ocilab
from ocilab.cli import main
from ocilab.engines.docker_build import DockerBuild, DockerBuildError, compare, docker_build
from ocilab.errors import ComponentUnavailableError, InvalidInputError, ReferenceFormatError
from ocilab.present.text import human_size
from ocilab.stores.daemon import ENGINES
from tests.conftest import BUSYBOX, require, require_tool, run
from tests.engines import cli_inspect, connect_or_skip, engine, engine_client, image_id

__all__ = ["engine", "engine_client"]  # fixtures

TAG = "ocilab-test/docker-build:1"
DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
WORKDIR /srv
ENV GREETING="hello from ocilab"
RUN ["/bin/busybox", "sh", "-c", "echo $GREETING > /srv/greeting && echo made the greeting"]
LABEL org.example.stage="docker-build test"
CMD ["/bin/busybox", "cat", "/srv/greeting"]
"""
EXPECTED = {
    # (instruction keyword, layer index or None for "no layer")
    "docker": [("FROM", None), ("COPY", 0), ("WORKDIR", 1), ("ENV", None), ("RUN", 2), ("LABEL", None), ("CMD", None)],
    "podman": [
        ("FROM", None),
        ("COPY", 0),
        ("WORKDIR", None),
        ("ENV", None),
        ("RUN", 1),
        ("LABEL", None),
        ("CMD", None),
    ],
}
FIRST_LINE = {"docker": "Step 1/7 : FROM scratch", "podman": "STEP 1/7: FROM scratch"}
RUN_OUTPUT = "made the greeting"
GREETING_BYTES = len("hello from ocilab\n")


def busybox_context(directory: Path, dockerfile: str) -> Path:
    """A build context: the host's static busybox and ``dockerfile``."""
    require(BUSYBOX.is_file(), f"{BUSYBOX} (Debian package busybox-static)")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, directory / "busybox")
    (directory / "Dockerfile").write_text(dockerfile)
    return directory


def keyword(instruction: str) -> str:
    return instruction.split()[0]


def engine_history(engine: str, tag: str) -> list[dict[str, Any]]:
    """``docker history`` / ``podman history`` of ``tag``, oldest entry first, sizes in bytes."""
    cli = require_tool(ENGINES[engine].cli)
    output = run(cli, "history", "--no-trunc", "--human=false", "--format", "{{json .}}", tag).stdout
    entries = json.loads(output) if engine == "podman" else [json.loads(line) for line in output.splitlines()]
    return [
        {"ID": entry.get("ID") or entry["id"], "Size": entry.get("Size", entry.get("size")), **entry}
        for entry in reversed(entries)
    ]


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_context(tmp_path_factory.mktemp("docker-build"), DOCKERFILE)


@pytest.fixture(scope="module")
def fresh(engine: str, engine_client: Any, context: Path) -> Iterator[tuple[DockerBuild, list[str]]]:
    """A --no-cache build of the context by the parametrised engine, and the lines its log received."""
    lines: list[str] = []
    yield docker_build(context, TAG, nocache=True, log=lines.append, engine=engine), lines
    subprocess.run([ENGINES[engine].cli, "image", "rm", "--force", TAG], capture_output=True, check=False)


@pytest.fixture(scope="module")
def rebuild(fresh: tuple[DockerBuild, list[str]], context: Path) -> DockerBuild:
    """The same context built again, the cache allowed.

    Podman 4.3 keeps the cache of a --no-cache build only for its first step (measured: after a no-cache
    build, a rebuild reuses the COPY and runs the rest again), so for Podman the cache is warmed once more.
    """
    engine = fresh[0].engine
    if engine == "podman":
        docker_build(context, TAG, engine=engine)
    return docker_build(context, TAG, engine=engine)


def test_each_instruction_maps_to_the_layer_it_made_or_to_none(fresh: tuple[DockerBuild, list[str]]) -> None:
    build, _ = fresh
    expected = EXPECTED[build.engine]
    steps = build.steps
    assert list(steps.columns) == ["step", "instruction", "layer", "diff_id", "size", "cached", "seconds", "image"]
    assert list(steps["step"]) == list(range(1, len(expected) + 1))
    made = [
        (keyword(instruction), None if pandas.isna(layer) else int(layer))
        for instruction, layer in zip(steps["instruction"], steps["layer"], strict=True)
    ]
    assert made == expected
    no_layer = steps[steps["layer"].isna()]
    assert no_layer["diff_id"].isna().all() and no_layer["size"].isna().all()
    run_row = steps.iloc[4]
    if build.engine == "docker":  # the bytes of the files the step wrote
        assert run_row["size"] == GREETING_BYTES  # the one file the RUN wrote
        assert steps.iloc[1]["size"] == BUSYBOX.stat().st_size  # the COPY's one file
    else:  # Podman: the layer's tar, headers and padding included
        assert run_row["size"] > GREETING_BYTES and steps.iloc[1]["size"] > BUSYBOX.stat().st_size
    assert build.base_layers == 0 and build.records[0].image is None  # FROM scratch brings nothing


def test_steps_agree_with_the_engines_history(fresh: tuple[DockerBuild, list[str]]) -> None:
    """Each step is a ``docker history`` / ``podman history`` entry, in order, with its text; the last is the image.

    Docker lists each step's intermediate image and the step's size; Podman lists
    ``<missing>`` for most steps and a size only for the steps that made a layer.
    """
    build, _ = fresh
    history = engine_history(build.engine, TAG)
    steps = [step for step in build.records if keyword(step.instruction) != "FROM"]
    assert [step.created_by for step in steps] == [entry["CreatedBy"] for entry in history]
    for step, entry in zip(steps, history, strict=True):
        verb = keyword(step.instruction)
        if build.engine == "docker":
            assert entry["ID"] == step.image
            assert int(entry["Size"]) == (step.size if step.layer is not None else 0), step.instruction
        else:
            assert (int(entry["Size"]) > 0) == (step.layer is not None), step.instruction
        if verb == "RUN" and build.engine == "docker":
            assert entry["CreatedBy"].startswith("/bin/busybox sh -c echo $GREETING")
        elif verb == "RUN":  # Podman keeps the exec form's JSON behind /bin/sh -c
            assert entry["CreatedBy"].startswith('/bin/sh -c ["/bin/busybox", "sh", "-c", "echo $GREETING')
        else:
            assert f"#(nop) {verb}" in " ".join(entry["CreatedBy"].split()), entry["CreatedBy"]
    if build.engine == "docker":
        assert history[-1]["ID"] == build.image
    else:  # Podman's history names the image of the last layer-making step; its inspect names the image
        assert image_id(cli_inspect("podman", TAG)) == build.image


def test_diff_ids_and_empty_layers_match_the_image_ocilab_reads(fresh: tuple[DockerBuild, list[str]]) -> None:
    """The steps' diff_ids are the config's rootfs.diff_ids; the no-layer steps are its ``empty_layer`` entries."""
    build, _ = fresh
    with ocilab.open(build.reference) as image:
        diff_ids = [str(diff_id) for diff_id in image.config.diff_ids]
        history = image.config.history
        assert str(image.config_digest) == build.image  # the engine's image ID is its config digest
    assert diff_ids == [step.diff_id for step in build.records if step.layer is not None]
    inspected = cli_inspect(build.engine, TAG)
    assert inspected["RootFS"]["Layers"] == diff_ids
    steps = [step for step in build.records if keyword(step.instruction) != "FROM"]
    assert [not entry.empty_layer for entry in history] == [step.layer is not None for step in steps]


def test_the_log_arrives_line_by_line_with_each_steps_output(fresh: tuple[DockerBuild, list[str]]) -> None:
    build, lines = fresh
    assert lines == build.log
    assert lines[0] == FIRST_LINE[build.engine]
    assert lines[-1] == f"Successfully tagged {TAG}"
    assert all("\n" not in line for line in lines)
    run_step = build.records[4]
    assert run_step.output == [RUN_OUTPUT]  # builder chatter (--->, Removing, COMMIT ...) is not the step's output


def test_no_cache_runs_every_step(fresh: tuple[DockerBuild, list[str]]) -> None:
    build, lines = fresh
    cached = build.steps["cached"]
    assert cached.isna().iloc[0]  # FROM is never run nor cached
    assert not cached.iloc[1:].any()
    assert RUN_OUTPUT in lines


def test_a_rebuild_takes_every_step_from_the_cache(
    fresh: tuple[DockerBuild, list[str]], rebuild: DockerBuild, engine_client: Any
) -> None:
    cached = rebuild.steps["cached"]
    assert cached.iloc[1:].all() and cached.isna().iloc[0]
    assert rebuild.records[4].output == []  # the RUN did not run again
    assert RUN_OUTPUT not in rebuild.log
    assert [s.layer for s in rebuild.records] == [s.layer for s in fresh[0].records]
    assert rebuild.image == engine_client.images.get(TAG).id
    assert all(step.seconds >= 0 for step in rebuild.records)


def test_from_a_local_image_counts_its_layers_as_the_base(
    fresh: tuple[DockerBuild, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A FROM image brings its layers; the next steps' indexes continue after them. The default log is stderr.

    Podman names no image for FROM: its base is looked up by name.
    """
    base, _ = fresh
    engine = base.engine
    base_layers = sum(step.layer is not None for step in base.records)
    context = tmp_path / "child"
    context.mkdir()
    (context / "Dockerfile").write_text(f'FROM {TAG}\nRUN ["/bin/busybox", "touch", "/srv/child"]\n')
    tag = "ocilab-test/docker-build-child:1"
    try:
        child = ocilab.docker_build(context, tag, engine=engine)
        assert child.base_layers == base_layers
        assert child.records[0].image == image_id(cli_inspect(engine, TAG)) and child.records[0].layer is None
        assert child.records[1].layer == base_layers
        if engine == "docker":
            assert child.records[1].size == 0  # an empty file: a layer of 0 bytes
        captured = capsys.readouterr()
        first = FIRST_LINE[engine].replace("scratch", TAG).replace("/7", "/2")
        assert captured.out == "" and first in captured.err.splitlines()
        ocilab.docker_build(context, tag, quiet=True, engine=engine)
        assert capsys.readouterr() == ("", "")
    finally:
        subprocess.run([ENGINES[engine].cli, "image", "rm", "--force", tag], capture_output=True, check=False)


def test_a_failing_run_names_the_step_and_the_end_of_its_output(
    docker_client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    context = busybox_context(
        tmp_path / "failing",
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "echo first >&2; echo about to fail >&2; exit 7"]\nCMD ["/bin/sh"]\n',
    )
    lines: list[str] = []
    with pytest.raises(DockerBuildError) as caught:
        docker_build(context, "ocilab-test/docker-build-fails:1", log=lines.append)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith('step 3/4 (RUN ["/bin/busybox", "sh", "-c", "echo first >&2;')
    assert "returned a non-zero code: 7" in message
    assert message.endswith("its output ends: first | about to fail")  # stderr's colour codes stripped
    assert caught.value.build.log == lines and "about to fail" in lines  # the log stays for the learner
    assert [step.number for step in caught.value.build.records] == [1, 2, 3]
    container = next(line.split()[-1] for line in lines if line.startswith(" ---> Running in "))
    left = run("docker", "ps", "--all", "--no-trunc", "--quiet").stdout.split()
    assert not any(full.startswith(container) for full in left)  # forcerm: the failed container is gone

    assert main(["docker-build", str(context), "--tag", "ocilab-test/docker-build-fails:1"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "about to fail" in err  # the live log, before the error
    assert err[-1] == f"ocilab: {message}"
    assert not any("Traceback" in line for line in err)


def test_a_dockerfile_the_engine_cannot_parse_is_one_line(docker_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    context = busybox_context(tmp_path / "bad", "FROM scratch\nFETCH busybox\n")
    with pytest.raises(DockerBuildError) as caught:
        docker_build(context, "ocilab-test/docker-build-bad:1")
    assert str(caught.value) == (
        f"the Docker engine refused to build {context / 'Dockerfile'}:"
        " dockerfile parse error line 2: unknown instruction: FETCH"
    )


def test_a_failing_step_on_podman_is_one_line_too(tmp_path: Path) -> None:
    connect_or_skip("podman")
    context = busybox_context(
        tmp_path / "failing",
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sh", "-c", "echo no >&2; exit 7"]\n',
    )
    with pytest.raises(DockerBuildError) as caught:
        docker_build(context, "ocilab-test/docker-build-fails:1", engine="podman")
    message = str(caught.value)
    assert "\n" not in message and message.startswith('step 3/3 (RUN ["/bin/busybox", "sh", "-c", "echo no')
    assert "exit status 7" in message and message.endswith("its output ends: no")


def test_a_missing_context_is_refused_before_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(InvalidInputError, match=f"build context '{missing}' is not a directory"):
        docker_build(missing, TAG)
    assert main(["docker-build", str(missing), "--tag", TAG]) == 1
    assert capsys.readouterr().err == f"ocilab: build context '{missing}' is not a directory\n"
    assert not missing.exists()


def test_a_missing_dockerfile_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Dockerfile.other").write_text("FROM scratch\n")
    with pytest.raises(InvalidInputError, match=f"no Dockerfile at '{tmp_path / 'Dockerfile'}'"):
        docker_build(tmp_path, TAG)
    with pytest.raises(InvalidInputError, match="no Dockerfile at .*/Dockerfile.prod'"):
        docker_build(tmp_path, TAG, dockerfile="Dockerfile.prod")
    assert main(["docker-build", str(tmp_path), "--tag", TAG, "--file", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err.startswith(f"ocilab: no Dockerfile at '{tmp_path / 'nope'}'")


def test_a_malformed_tag_is_refused_in_our_words(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(ReferenceFormatError, match="'Upper:1'"):
        docker_build(tmp_path, "Upper:1")


def test_the_cli_table_and_json(rebuild: DockerBuild, context: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = rebuild.engine
    command = ["docker-build", str(context), "--tag", TAG, "--engine", engine]
    assert main([*command, "--file", str(context / "Dockerfile")]) == 0
    captured = capsys.readouterr()
    assert FIRST_LINE[engine].replace("1/7", "5/7").replace("FROM scratch", "RUN") in captured.err  # the log
    rows = [re.split(r"\s{2,}", line) for line in captured.out.splitlines()]
    assert rows[0] == ["STEP", "INSTRUCTION", "LAYER", "SIZE", "CACHED", "SECONDS"]
    table = {keyword(row[1]): row[2:5] for row in rows[1:8]}
    sizes = {step.instruction.split()[0]: human_size(step.size) for step in rebuild.records if step.size is not None}
    assert table == {
        "FROM": ["scratch", "-", "-"],
        "COPY": ["0", sizes["COPY"], "yes"],
        "WORKDIR": ["1", "0 B", "yes"] if engine == "docker" else ["no layer", "-", "yes"],
        "ENV": ["no layer", "-", "yes"],
        "RUN": [str(rebuild.records[4].layer), sizes["RUN"], "yes"],
        "LABEL": ["no layer", "-", "yes"],
        "CMD": ["no layer", "-", "yes"],
    }
    if engine == "docker":
        assert sizes == {"COPY": human_size(BUSYBOX.stat().st_size), "WORKDIR": "0 B", "RUN": f"{GREETING_BYTES} B"}
    rows = captured.out.splitlines()
    assert f"image  {rebuild.image}" in rows

    assert main([*command, "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    document = json.loads(captured.out)
    assert set(document) == {"context", "dockerfile", "tag", "reference", "image", "base_layers", "steps"}
    assert document["reference"] == f"{ENGINES[engine].transport}:{TAG}" and document["image"] == rebuild.image
    assert [step["layer"] for step in document["steps"]] == [layer for _, layer in EXPECTED[engine]]
    assert set(document["steps"][0]) == {
        "step",
        "instruction",
        "layer",
        "diff_id",
        "size",
        "cached",
        "seconds",
        "image",
    }
    assert [step["cached"] for step in document["steps"]] == [None] + [True] * 6
    assert document["steps"][4]["size"] == rebuild.records[4].size


def test_no_engine_says_what_it_would_show_and_where_to_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.setenv("CONTAINER_HOST", f"unix://{tmp_path}/no-podman.sock")
    for choice in ("docker", "podman", "auto"):
        monkeypatch.setenv("OCILAB_ENGINE", choice)
        with pytest.raises(ComponentUnavailableError) as caught:
            ocilab.docker_build(tmp_path, TAG)
        message = str(caught.value)
        assert "\n" not in message and "ocilab.Builder" in message
        assert f"{tmp_path}/no-engine.sock" in message or choice == "podman"
        assert f"{tmp_path}/no-podman.sock" in message or choice == "docker"
        assert main(["docker-build", str(tmp_path), "--tag", TAG]) == 1
        assert capsys.readouterr().err == f"ocilab: {message}\n"


def test_a_bad_engine_name_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(InvalidInputError, match="engine='dockr' is not an engine: use docker, podman or auto"):
        docker_build(tmp_path, TAG, engine="dockr")
    monkeypatch.setenv("OCILAB_ENGINE", "rkt")
    with pytest.raises(InvalidInputError, match="OCILAB_ENGINE='rkt' is not an engine"):
        docker_build(tmp_path, TAG)


def test_each_stage_of_a_multi_stage_build_counts_its_own_layers(
    engine: str, engine_client: Any, tmp_path: Path
) -> None:
    """A second FROM starts again from its own base: only the last stage's layers reach the image."""
    context = busybox_context(
        tmp_path / "stages",
        "FROM scratch AS tools\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "echo artifact > /artifact"]\n'
        "FROM scratch\nCOPY --from=tools /artifact /artifact\nLABEL stage=final\n",
    )
    tag = "ocilab-test/docker-build-stages:1"
    try:
        build = docker_build(context, tag, engine=engine)
        assert [(keyword(s.instruction), s.layer) for s in build.records] == [
            ("FROM", None),
            ("COPY", 0),
            ("RUN", 1),
            ("FROM", None),
            ("COPY", 0),
            ("LABEL", None),
        ]
        assert build.base_layers == 0
        assert build.records[4].size == len("artifact\n") or engine == "podman"  # Podman counts the tar
        assert cli_inspect(engine, tag)["RootFS"]["Layers"] == [build.records[4].diff_id]
    finally:
        subprocess.run([ENGINES[engine].cli, "image", "rm", "--force", tag], capture_output=True, check=False)


def test_an_interrupted_build_is_cancelled_in_the_engine(docker_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C while a step runs (here: while its log line is shown) drops the connection; the engine kills the step.

    The traceback is held, as a notebook holds it, so only an explicit close can end the request.
    """
    context = busybox_context(
        tmp_path / "slow", 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sleep", "60"]\n'
    )

    lines: list[str] = []

    def interrupt(line: str) -> None:
        lines.append(line)
        if line.startswith(" ---> Running in "):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        docker_build(context, "ocilab-test/docker-build-slow:1", nocache=True, log=interrupt)
    assert caught.tb is not None  # held until the test ends, as a notebook holds sys.last_traceback
    container = lines[-1].split()[-1]
    waited = subprocess.run(["docker", "wait", container], capture_output=True, text=True, check=False)
    # Killed (137) or already removed: either way the 60-second sleep did not run to its end (exit 0).
    assert waited.stdout.strip() != "0", waited


def test_in_a_notebook_the_log_is_the_cells_output_line_by_line(
    fresh: tuple[DockerBuild, list[str]], context: Path
) -> None:
    """In a Jupyter kernel each line is printed to the cell's stdout as it comes, nothing on stderr."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(
        nbformat.v4.new_code_cell(f"import ocilab\nbuild = ocilab.docker_build({str(context)!r}, {TAG!r})")
    )
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    assert {output.get("name") for output in outputs} == {"stdout"}
    printed = "".join(output["text"] for output in outputs).splitlines()
    assert printed[0] == "Step 1/7 : FROM scratch" and printed[-1] == f"Successfully tagged {TAG}"


def test_compare_puts_the_engines_side_by_side(context: Path) -> None:
    """One Dockerfile, both engines: WORKDIR is a layer only in Docker, the RUN's history text differs."""
    for name in ENGINES:
        connect_or_skip(name)
    builds = [docker_build(context, TAG, engine=name) for name in ENGINES]
    table = compare(builds)
    assert list(table["instruction"]) == [step.instruction for step in builds[0].records]
    workdir, run_step = table.iloc[2], table.iloc[4]
    assert workdir["docker_layer"] == 1 and pandas.isna(workdir["podman_layer"])
    assert run_step["docker_created_by"] != run_step["podman_created_by"]
    assert [pandas.isna(value) for value in table["same_diff_id"]] == [
        step.layer is None and other.layer is None for step, other in zip(*(b.records for b in builds), strict=True)
    ]
    with pytest.raises(InvalidInputError, match="their instructions differ"):
        compare([builds[0], builds[0].__class__(**{**builds[0].__dict__, "records": builds[0].records[:2]})])
