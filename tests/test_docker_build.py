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
from ocilab.engines.docker_build import DockerBuild, DockerBuildError, docker_build
from ocilab.errors import ComponentUnavailableError, InvalidInputError, ReferenceFormatError
from ocilab.present.text import human_size
from tests.conftest import BUSYBOX, require, require_tool, run

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
EXPECTED = [
    # (instruction keyword, layer index or None for "no layer")
    ("FROM", None),
    ("COPY", 0),
    ("WORKDIR", 1),
    ("ENV", None),
    ("RUN", 2),
    ("LABEL", None),
    ("CMD", None),
]
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


def docker_history(tag: str) -> list[dict[str, Any]]:
    """``docker history`` of ``tag``, oldest entry first, sizes in bytes."""
    output = run("docker", "history", "--no-trunc", "--human=false", "--format", "{{json .}}", tag).stdout
    return [json.loads(line) for line in reversed(output.splitlines())]


@pytest.fixture(scope="module")
def context(docker_client, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    return busybox_context(tmp_path_factory.mktemp("docker-build"), DOCKERFILE)


@pytest.fixture(scope="module")
def fresh(docker_client, context: Path) -> Iterator[tuple[DockerBuild, list[str]]]:  # type: ignore[no-untyped-def]
    """A --no-cache build of the context, and the lines its log received."""
    lines: list[str] = []
    yield docker_build(context, TAG, nocache=True, log=lines.append), lines
    subprocess.run(["docker", "image", "rm", "--force", TAG], capture_output=True, check=False)


@pytest.fixture(scope="module")
def rebuild(fresh: tuple[DockerBuild, list[str]], context: Path) -> DockerBuild:
    """The same context built again, the cache allowed."""
    return docker_build(context, TAG)


def test_each_instruction_maps_to_the_layer_it_made_or_to_none(fresh: tuple[DockerBuild, list[str]]) -> None:
    build, _ = fresh
    steps = build.steps
    assert list(steps.columns) == ["step", "instruction", "layer", "diff_id", "size", "cached", "seconds", "image"]
    assert list(steps["step"]) == list(range(1, len(EXPECTED) + 1))
    made = [
        (keyword(instruction), None if pandas.isna(layer) else int(layer))
        for instruction, layer in zip(steps["instruction"], steps["layer"], strict=True)
    ]
    assert made == EXPECTED
    no_layer = steps[steps["layer"].isna()]
    assert no_layer["diff_id"].isna().all() and no_layer["size"].isna().all()
    run_row = steps.iloc[4]
    assert run_row["size"] == GREETING_BYTES  # the one file the RUN wrote
    assert steps.iloc[1]["size"] == BUSYBOX.stat().st_size  # the COPY's one file
    assert build.base_layers == 0 and build.records[0].image is None  # FROM scratch brings nothing


def test_steps_agree_with_docker_history(fresh: tuple[DockerBuild, list[str]]) -> None:
    """Each step's intermediate image is a ``docker history`` entry, in order, with the step's size."""
    require_tool("docker")
    build, _ = fresh
    history = docker_history(TAG)
    steps = [step for step in build.records if keyword(step.instruction) != "FROM"]
    assert [entry["ID"] for entry in history] == [step.image for step in steps]
    for step, entry in zip(steps, history, strict=True):
        assert int(entry["Size"]) == (step.size if step.layer is not None else 0), step.instruction
        verb = keyword(step.instruction)
        if verb == "RUN":
            assert entry["CreatedBy"].startswith("/bin/busybox sh -c echo $GREETING")
        else:
            assert f"#(nop) {verb}" in " ".join(entry["CreatedBy"].split()), entry["CreatedBy"]
    assert build.image == history[-1]["ID"]


def test_diff_ids_and_empty_layers_match_the_image_ocilab_reads(fresh: tuple[DockerBuild, list[str]]) -> None:
    """The steps' diff_ids are the config's rootfs.diff_ids; the no-layer steps are its ``empty_layer`` entries."""
    require_tool("docker")
    build, _ = fresh
    with ocilab.open(build.reference) as image:
        diff_ids = [str(diff_id) for diff_id in image.config.diff_ids]
        history = image.config.history
        assert str(image.config_digest) == build.image  # the engine's image ID is its config digest
    assert diff_ids == [step.diff_id for step in build.records if step.layer is not None]
    inspected = json.loads(run("docker", "image", "inspect", TAG).stdout)[0]
    assert inspected["RootFS"]["Layers"] == diff_ids
    steps = [step for step in build.records if keyword(step.instruction) != "FROM"]
    assert [not entry.empty_layer for entry in history] == [step.layer is not None for step in steps]


def test_the_log_arrives_line_by_line_with_each_steps_output(fresh: tuple[DockerBuild, list[str]]) -> None:
    build, lines = fresh
    assert lines == build.log
    assert lines[0] == "Step 1/7 : FROM scratch"
    assert lines[-1] == f"Successfully tagged {TAG}"
    assert all("\n" not in line for line in lines)
    run_step = build.records[4]
    assert run_step.output == [RUN_OUTPUT]  # builder chatter (---> , Removing ...) is not the step's output


def test_no_cache_runs_every_step(fresh: tuple[DockerBuild, list[str]]) -> None:
    build, lines = fresh
    cached = build.steps["cached"]
    assert cached.isna().iloc[0]  # FROM is never run nor cached
    assert not cached.iloc[1:].any()
    assert RUN_OUTPUT in lines


def test_a_rebuild_takes_every_step_from_the_cache(
    fresh: tuple[DockerBuild, list[str]], rebuild: DockerBuild, docker_client
) -> None:  # type: ignore[no-untyped-def]
    cached = rebuild.steps["cached"]
    assert cached.iloc[1:].all() and cached.isna().iloc[0]
    assert rebuild.records[4].output == []  # the RUN did not run again
    assert RUN_OUTPUT not in rebuild.log
    assert [s.layer for s in rebuild.records] == [s.layer for s in fresh[0].records]
    assert rebuild.image == docker_client.images.get(TAG).id
    assert all(step.seconds >= 0 for step in rebuild.records)


def test_from_a_local_image_counts_its_layers_as_the_base(
    fresh: tuple[DockerBuild, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A FROM image brings its layers; the next steps' indexes continue after them. The default log is stderr."""
    base, _ = fresh
    context = tmp_path / "child"
    context.mkdir()
    (context / "Dockerfile").write_text(f'FROM {TAG}\nRUN ["/bin/busybox", "touch", "/srv/child"]\n')
    tag = "ocilab-test/docker-build-child:1"
    try:
        child = ocilab.docker_build(context, tag)
        assert child.base_layers == 3
        assert child.records[0].image == base.image and child.records[0].layer is None
        assert child.records[1].layer == 3 and child.records[1].size == 0  # an empty file: a layer of 0 bytes
        captured = capsys.readouterr()
        assert captured.out == "" and f"Step 1/2 : FROM {TAG}" in captured.err.splitlines()
        ocilab.docker_build(context, tag, quiet=True)
        assert capsys.readouterr() == ("", "")
    finally:
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, check=False)


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
    assert main(["docker-build", str(context), "--tag", TAG, "--file", str(context / "Dockerfile")]) == 0
    captured = capsys.readouterr()
    assert "Step 5/7 : RUN" in " ".join(captured.err.split())  # the log on stderr
    rows = [re.split(r"\s{2,}", line) for line in captured.out.splitlines()]
    assert rows[0] == ["STEP", "INSTRUCTION", "LAYER", "SIZE", "CACHED", "SECONDS"]
    table = {keyword(row[1]): row[2:5] for row in rows[1:8]}
    assert table == {
        "FROM": ["scratch", "-", "-"],
        "COPY": ["0", human_size(BUSYBOX.stat().st_size), "yes"],
        "WORKDIR": ["1", "0 B", "yes"],
        "ENV": ["no layer", "-", "yes"],
        "RUN": ["2", f"{GREETING_BYTES} B", "yes"],
        "LABEL": ["no layer", "-", "yes"],
        "CMD": ["no layer", "-", "yes"],
    }
    rows = captured.out.splitlines()
    assert f"image  {rebuild.image}" in rows

    assert main(["docker-build", str(context), "--tag", TAG, "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    document = json.loads(captured.out)
    assert set(document) == {"context", "dockerfile", "tag", "reference", "image", "base_layers", "steps"}
    assert document["reference"] == f"docker-daemon:{TAG}" and document["image"] == rebuild.image
    assert [step["layer"] for step in document["steps"]] == [layer for _, layer in EXPECTED]
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
    assert document["steps"][4]["size"] == GREETING_BYTES


def test_no_engine_says_what_it_would_show_and_where_to_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(ComponentUnavailableError) as caught:
        ocilab.docker_build(tmp_path, TAG)
    message = str(caught.value)
    assert "\n" not in message and "ocilab.Builder" in message and f"{tmp_path}/no-engine.sock" in message
    assert main(["docker-build", str(tmp_path), "--tag", TAG]) == 1
    assert capsys.readouterr().err == f"ocilab: {message}\n"


def test_each_stage_of_a_multi_stage_build_counts_its_own_layers(docker_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A second FROM starts again from its own base: only the last stage's layers reach the image."""
    context = busybox_context(
        tmp_path / "stages",
        "FROM scratch AS tools\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "echo artifact > /artifact"]\n'
        "FROM scratch\nCOPY --from=tools /artifact /artifact\nLABEL stage=final\n",
    )
    tag = "ocilab-test/docker-build-stages:1"
    try:
        build = docker_build(context, tag)
        assert [(keyword(s.instruction), s.layer) for s in build.records] == [
            ("FROM", None),
            ("COPY", 0),
            ("RUN", 1),
            ("FROM", None),
            ("COPY", 0),
            ("LABEL", None),
        ]
        assert build.base_layers == 0 and build.records[4].size == len("artifact\n")
        inspected = json.loads(run("docker", "image", "inspect", tag).stdout)[0]
        assert inspected["RootFS"]["Layers"] == [build.records[4].diff_id]
    finally:
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, check=False)


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
