"""Docker builds made visible: the engine's classic builder, its log streamed, each Dockerfile step mapped to a layer.

The classic builder (Docker 20.10 through the SDK, no BuildKit) writes a text
stream: ``Step N/M : INSTRUCTION``, then the step's output, ``---> Using cache``
when the step was not run again, and ``---> <id>``, the intermediate image the
step committed. Podman (``engine="podman"``, its Docker-compatible API, which
builds with Buildah) writes ``STEP N/M: INSTRUCTION``, ``--> Using cache <id>``,
``COMMIT NAME`` before the last step's image and ``--> <id>``; it names no
image for FROM, so the base is looked up by name. Where the engines differ
(the history text of each step, which steps make a layer, sizes), ``compare``
puts builds side by side instead of hiding it. Each step's image is inspected afterwards: when its
``RootFS.Layers`` is one longer than the step before's, the step made that
layer (its diff_id is the new entry, its size the growth of the image's
``Size``, as ``docker history`` reports it); when unchanged, the step only
changed the config ("no layer", an ``empty_layer`` history entry). Seconds per
step are measured between the arrival of one ``Step`` line and the next.

The engine is found as everywhere (``ocilab.stores.daemon.connect_engine``:
``docker``, ``podman`` or ``auto``, default ``OCILAB_ENGINE``) and
the ``docker`` package imported inside functions. The build request has no
read timeout (the SDK's default for builds): a silent step may take as long as
it needs. An interrupt closes the connection at once (even while a traceback
holds the stream), and the engine then cancels the build and removes its container.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocilab.errors import ComponentUnavailableError, InvalidInputError, VerificationError
from ocilab.model import Reference
from ocilab.stores.daemon import ENGINES, Engine, choose_engine, connect_engine, engine_of, engine_unavailable

if TYPE_CHECKING:
    import docker
    import pandas

Log = Callable[[str], None]
"""Receives each line of the build's log as it arrives, without its newline."""

STEP_COLUMNS = ["step", "instruction", "layer", "diff_id", "size", "cached", "seconds", "image"]
STEP_DTYPES = {"layer": "Int64", "diff_id": "string", "size": "Int64", "cached": "boolean", "image": "string"}
"""Nullable types, so a step without a layer (or FROM's cache flag) reads <NA>."""
TAIL_LINES = 3
"""How many of a failed step's last output lines its error quotes."""

_STEP = re.compile(r"(?:\[\d+/\d+\] )?(?:Step|STEP) (\d+)/(\d+) ?: (.*)")
"""Docker's ``Step N/M : ...``; Podman's ``STEP N/M: ...``, with ``[STAGE/STAGES]`` before it in multi-stage builds."""
_IMAGE = re.compile(r" ?---?> ([0-9a-f]{11,64})")
_USING_CACHE = re.compile(r" ?---?> Using cache( [0-9a-f]{64})?")
_BUILDER_LINES = (" ---> ", "--> ", "Removing intermediate container ", "Successfully built ", "Successfully tagged ")
_BUILDER_LINE = re.compile(r"(?:\[\d+/\d+\] )?COMMIT .*|[0-9a-f]{64}")
"""Podman's commit line and the final image's full ID, which it prints alone."""
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class DockerBuildError(InvalidInputError):
    """A Dockerfile step failed (a RUN exited non-zero, a COPY source is missing ...).

    ``build`` holds what the build did up to the failure: its steps and its whole log.
    """

    def __init__(self, message: str, build: DockerBuild) -> None:
        super().__init__(message)
        self.build = build


@dataclass
class Step:
    """One Dockerfile instruction as the builder ran it, and the layer it made (``layer`` None: no layer)."""

    number: int
    total: int
    instruction: str
    started: float
    seconds: float = 0.0
    cached: bool | None = None
    """None for FROM, which the classic builder never runs or caches."""
    image: str | None = None
    output: list[str] = field(default_factory=list)
    layer: int | None = None
    diff_id: str | None = None
    size: int | None = None
    created_by: str | None = None
    """The history text the engine recorded for the step (not in ``steps``; ``compare`` shows it)."""

    @property
    def is_from(self) -> bool:
        words = self.instruction.split(maxsplit=1)
        return bool(words) and words[0].upper() == "FROM"

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "instruction": self.instruction,
            "layer": self.layer,
            "diff_id": self.diff_id,
            "size": self.size,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
            "image": self.image,
        }


@dataclass
class DockerBuild:
    """A finished (or failed) build: ``image`` the final image ID, ``steps`` one row per instruction."""

    context: str
    dockerfile: str
    tag: str
    image: str | None
    records: list[Step]
    log: list[str]
    base_layers: int = 0
    """Layers the FROM image brought (0 for scratch); later steps' layer indexes start here."""
    engine: str = "docker"
    """The engine whose store holds it: ``docker`` or ``podman``."""
    builder: str | None = None
    """What built it when that is not the engine itself (``buildah``)."""

    @property
    def reference(self) -> str:
        """The transport string that opens the result: ``docker-daemon:NAME:TAG`` or ``containers-storage:NAME:TAG``
        (``:latest`` when untagged)."""
        tagged = ":" in self.tag.rpartition("/")[2]
        return f"{ENGINES[self.engine].transport}:{self.tag if tagged else self.tag + ':latest'}"

    @property
    def steps(self) -> pandas.DataFrame:
        """One row per Dockerfile instruction: step, instruction, layer, diff_id, size, cached, seconds, image.

        ``layer``, ``diff_id`` and ``size`` are missing (<NA>) for a step that made
        no layer (ENV, LABEL, CMD ... and FROM); ``cached`` is missing for FROM.
        """
        import pandas

        frame = pandas.DataFrame([step.to_json() for step in self.records], columns=STEP_COLUMNS)
        frame = frame.astype(STEP_DTYPES)
        frame.attrs.update(tag=self.tag, image=self.image, base_layers=self.base_layers, engine=self.engine)
        return frame

    def to_json(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "dockerfile": self.dockerfile,
            "tag": self.tag,
            "reference": self.reference,
            "image": self.image,
            "base_layers": self.base_layers,
            "steps": [step.to_json() for step in self.records],
        }


def docker_build(
    context: str | Path,
    tag: str,
    *,
    dockerfile: str | Path | None = None,
    buildargs: Mapping[str, str] | None = None,
    nocache: bool = False,
    log: Log | None = None,
    engine: str | None = None,
) -> DockerBuild:
    """Build ``context`` with the engine's classic builder, tag it ``tag``, and map its steps to layers.

    ``dockerfile`` is relative to the context (absolute paths are taken as they
    are; default ``CONTEXT/Dockerfile``). ``log`` receives every line as it
    arrives. ``engine`` is ``docker``, ``podman`` or ``auto`` (default
    ``OCILAB_ENGINE``, else ``auto``: Docker when it answers, else Podman).
    Raises InvalidInputError for a missing context or Dockerfile or a bad tag
    (before any engine is asked), DockerBuildError when a step fails (naming the
    step and the end of its output), ComponentUnavailableError when no engine
    answers. Failed steps' containers are removed (``forcerm``).
    """
    directory, file = dockerfile_path(context, dockerfile)
    Reference.parse(tag)  # a malformed tag is refused here, in ocilab's words
    try:
        client = connect_engine(choose_engine(engine))
    except ComponentUnavailableError as error:
        raise ComponentUnavailableError(
            f"{str(error).rstrip('.')}, so there is no engine build to show step by step;"
            " ocilab.Builder (ocilab build) builds images without an engine"
        ) from None
    kind = engine_of(client)
    transcript = Transcript(log or (lambda line: None))
    chunks = _stream(client, directory, str(file.resolve()), tag, buildargs, nocache, kind)
    transcript.read(chunks, str(directory), kind)
    build = DockerBuild(str(directory), str(file), tag, None, transcript.steps, transcript.lines, engine=kind.name)
    if transcript.error is not None:
        raise DockerBuildError(failure_message(transcript.error, build), build)
    map_layers(client, build)
    if build.image != transcript.image_id:
        raise VerificationError(f"{tag}: the builder announced {transcript.image_id}, its last step made {build.image}")
    return build


def _stream(
    client: docker.DockerClient,
    directory: Path,
    dockerfile: str,
    tag: str,
    buildargs: Mapping[str, str] | None,
    nocache: bool,
    engine: Engine,
) -> Iterable[dict[str, Any]]:
    """The engine's decoded build stream, started (the context is tarred and sent); a refusal comes as it is read."""
    import docker
    import requests

    try:
        return client.api.build(
            path=str(directory),
            dockerfile=dockerfile,
            tag=tag,
            buildargs=dict(buildargs or {}),
            nocache=nocache,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
    except OSError as error:
        raise InvalidInputError(f"{directory}: cannot read the build context: {error}") from None
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise engine_unavailable(error, f"building {directory}", engine) from error


class Transcript:
    """Reads a build stream (Docker's, Podman's, Buildah's): lines to ``log``, steps, output, cache, images, times."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.lines: list[str] = []
        self.steps: list[Step] = []
        self.image_id: str | None = None
        self.error: str | None = None
        self._partial = ""

    def read(self, chunks: Iterable[dict[str, Any]], where: str, engine: Engine) -> None:
        import docker
        import requests

        try:
            for chunk in chunks:
                self._feed(chunk, time.monotonic())
        except docker.errors.APIError as error:
            self.error = str(error.explanation or error)
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise engine_unavailable(error, f"building {where}", engine) from error
        finally:
            _close(chunks)  # an interrupt (or a log that raised) drops the connection now, so the engine cancels
        self._flush(time.monotonic())

    def _feed(self, chunk: dict[str, Any], now: float) -> None:
        if "error" in chunk or "errorDetail" in chunk:
            self.error = str(chunk.get("error") or chunk["errorDetail"].get("message", chunk))
            return
        aux = chunk.get("aux")
        if isinstance(aux, dict) and "ID" in aux:
            self.image_id = str(aux["ID"])
        text = chunk.get("stream")
        if text is None and "status" in chunk:
            text = " ".join(str(chunk[key]) for key in ("id", "status") if chunk.get(key)) + "\n"
        if not text:
            return
        *complete, self._partial = (self._partial + str(text)).split("\n")
        for line in complete:
            self._line(line, now)

    def _flush(self, now: float) -> None:
        if self._partial:
            self._line(self._partial, now)
            self._partial = ""
        if self.steps:
            self.steps[-1].seconds = now - self.steps[-1].started

    def _line(self, raw: str, now: float) -> None:
        line = _ANSI.sub("", raw).rstrip("\r")
        self.lines.append(line)
        self.log(line)
        match = _STEP.fullmatch(line)
        if match is not None:
            if self.steps:
                self.steps[-1].seconds = now - self.steps[-1].started
            self.steps.append(Step(int(match[1]), int(match[2]), match[3], now))
            return
        if not self.steps:
            return
        step = self.steps[-1]
        if _USING_CACHE.fullmatch(line):
            step.cached = True
        elif (image := _IMAGE.fullmatch(line)) is not None:
            step.image = image[1]
            if step.cached is None and not step.is_from:
                step.cached = False
        elif line.strip() and not line.startswith(_BUILDER_LINES) and not _BUILDER_LINE.fullmatch(line):
            step.output.append(line)


def _close(chunks: Iterable[dict[str, Any]]) -> None:
    """Close the stream's generator, and with it the connection: the engine then cancels the build."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def failure_message(message: str, build: DockerBuild) -> str:
    """One line: which step failed, the engine's reason, and the end of the step's output."""
    reason = " ".join(message.split())
    if not build.records:
        return f"{ENGINES[build.engine].title} refused to build {build.dockerfile}: {reason}"
    step = build.records[-1]
    tail = [" ".join(line.split()) for line in step.output[-TAIL_LINES:]]
    ending = f"; its output ends: {' | '.join(tail)}" if tail else "; it printed nothing"
    return f"step {step.number}/{step.total} ({_cut(step.instruction, 80)}) failed: {reason}{ending}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def map_layers(client: docker.DockerClient, build: DockerBuild) -> None:
    """Fill each step's full image ID and, from the images' RootFS, the layer it made (if any).

    Each FROM starts a stage from its base's layers (none for scratch), so in a
    multi-stage build a step's layer index counts within its own stage's image.
    """
    layers: list[str] = []
    size = 0
    for step in build.records:
        if step.is_from:
            step.image = step.image or _base_name(step.instruction)  # Podman names no image for FROM
            found = _inspect(client, step) if step.image else {}
            layers, size = _layers_and_size(found)
            build.base_layers = len(layers)
            continue
        if step.image is None:
            continue
        found = _inspect(client, step)
        step.created_by = _created_by(client, step)
        now, now_size = _layers_and_size(found)
        if len(now) == len(layers) + 1 and now[:-1] == layers:
            step.layer, step.diff_id, step.size = len(layers), now[-1], now_size - size
        elif now != layers:
            raise VerificationError(
                f"step {step.number} ({step.instruction}): image {step.image} does not extend the last step's layers"
            )
        layers, size = now, now_size
        build.image = step.image


def _base_name(instruction: str) -> str | None:
    """The image a ``FROM [--platform=P] IMAGE [AS NAME]`` names; None for scratch."""
    words = [word for word in instruction.split()[1:] if not word.startswith("--")]
    return None if not words or words[0] == "scratch" else words[0]


def _created_by(client: docker.DockerClient, step: Step) -> str | None:
    """The history text the engine recorded for the step: the newest entry of its image's history."""
    import docker
    import requests

    try:
        history = client.api.history(step.image)
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise engine_unavailable(error, f"reading the history of step {step.number}", engine_of(client)) from error
    return str(history[0].get("CreatedBy") or "") if history else None


def _inspect(client: docker.DockerClient, step: Step) -> dict[str, Any]:
    """``docker image inspect`` of the step's image; its full ID is written back into the step."""
    import docker
    import requests

    try:
        found: dict[str, Any] = client.api.inspect_image(step.image)
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise engine_unavailable(
            error, f"inspecting image {step.image} of step {step.number}", engine_of(client)
        ) from error
    step.image = str(found["Id"])
    return found


def _layers_and_size(found: Mapping[str, Any]) -> tuple[list[str], int]:
    return [str(diff_id) for diff_id in (found.get("RootFS") or {}).get("Layers") or []], int(found.get("Size") or 0)


def compare(builds: Sequence[DockerBuild]) -> pandas.DataFrame:
    """The same Dockerfile built by several engines, one row per step, one column group per build.

    Columns ``step``, ``instruction``, then per build (named by its engine, or
    ``engine#N`` when one engine appears twice) ``layer``, ``size``, ``cached``
    and ``created_by`` (the history text each engine recorded), and
    ``same_diff_id``: True when every build made the same layer for the step,
    False when they differ, <NA> when no build made one. InvalidInputError when
    the builds do not have the same instructions.
    """
    import pandas

    if not builds:
        raise InvalidInputError("compare needs at least one build")
    instructions = [[step.instruction for step in build.records] for build in builds]
    if any(other != instructions[0] for other in instructions[1:]):
        raise InvalidInputError("compare needs builds of the same Dockerfile: their instructions differ")
    names = [build.builder or build.engine for build in builds]
    names = [f"{name}#{index}" if names.count(name) > 1 else name for index, name in enumerate(names)]
    rows = []
    for number, instruction in enumerate(instructions[0]):
        row: dict[str, Any] = {"step": number + 1, "instruction": instruction}
        steps = [build.records[number] for build in builds]
        for name, step in zip(names, steps, strict=True):
            row |= {
                f"{name}_layer": step.layer,
                f"{name}_size": step.size,
                f"{name}_cached": step.cached,
                f"{name}_created_by": step.created_by,
            }
        diff_ids = {step.diff_id for step in steps}
        row["same_diff_id"] = None if diff_ids == {None} else len(diff_ids) == 1
        rows.append(row)
    types = {f"{name}_{column}": STEP_DTYPES[column] for name in names for column in ("layer", "size", "cached")}
    return pandas.DataFrame(rows).astype({**types, "same_diff_id": "boolean"})


def dockerfile_path(context: str | Path, dockerfile: str | Path | None) -> tuple[Path, Path]:
    """The build context directory and its Dockerfile; InvalidInputError when either is missing."""
    directory = Path(context)
    if not directory.is_dir():
        raise InvalidInputError(f"build context {str(context)!r} is not a directory")
    file = directory / (dockerfile if dockerfile is not None else "Dockerfile")
    if not file.is_file():
        raise InvalidInputError(f"no Dockerfile at {str(file)!r}: write one there or pass its path as dockerfile")
    return directory, file
