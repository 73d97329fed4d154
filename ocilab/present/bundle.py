"""Notebook 04's displays: an image config beside the ``config.json`` made from it, refusals shown as a
sentence, and runc cells that say in one sentence why nothing ran (not root, or no runc)."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ocilab.errors import ComponentUnavailableError, InvalidInputError, OcilabError
from ocilab.present.engine import NoEngine
from ocilab.stores.image import Image

Result = TypeVar("Result")


@dataclass(frozen=True)
class SideBySide:
    """Rows of two cells, each ``"FIELD  VALUE"`` (two spaces between), under ``headers``.

    Its repr puts each right cell under its left one; its HTML is a table of
    two equal columns, the field in bold and the value as code, wrapped to fit.
    """

    headers: tuple[str, str]
    rows: tuple[tuple[str, str], ...]

    def __repr__(self) -> str:
        return "\n".join(f"{left}\n  → {right}" for left, right in (self.headers, *self.rows))

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left;width:50%'>{html.escape(cell)}</th>" for cell in self.headers)
        body = "".join("<tr>" + "".join(_html_cell(text) for text in row) + "</tr>" for row in self.rows)
        return f"<table style='width:100%'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_cell(text: str) -> str:
    field, _, value = text.partition("  ")
    wrap = "white-space:pre-wrap;word-break:break-all"
    return (
        f"<td style='text-align:left;vertical-align:top'><b>{html.escape(field)}</b><br>"
        f"<code style='{wrap}'>{html.escape(value)}</code></td>"
    )


def config_table(image: Image, bundle: str | Path) -> SideBySide:
    """Which field of ``image``'s config went where in ``bundle``'s ``config.json``, one row per rule.

    Entrypoint + Cmd -> process.args, Env -> process.env, WorkingDir ->
    process.cwd, User -> process.user, Labels (and the platform, created ...)
    -> annotations. InvalidInputError when ``bundle`` has no readable config.json.
    """
    path = Path(bundle) / "config.json"
    try:
        runtime = json.loads(path.read_text())
        process = runtime["process"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidInputError(f"{path}: not a runtime config with a process ({error})") from None
    section = image.config.container_config

    def show(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    rows = (
        (
            f"Entrypoint + Cmd  {show(section.get('Entrypoint'))} + {show(section.get('Cmd'))}",
            f"process.args  {show(process.get('args'))}",
        ),
        (f"Env  {show(section.get('Env'))}", f"process.env  {show(process.get('env'))}"),
        (f"WorkingDir  {show(section.get('WorkingDir'))}", f"process.cwd  {show(process.get('cwd'))}"),
        (
            f"User  {show(section.get('User'))}, looked up in the image's /etc/passwd",
            f"process.user  {show(process.get('user'))}",
        ),
        (f"Labels  {show(section.get('Labels'))}", f"annotations  {show(runtime.get('annotations'))}"),
    )
    return SideBySide((f"image config {image.config_digest.short}", "config.json"), rows)


@dataclass(frozen=True)
class Refused:
    """An operation refused on purpose: its one-sentence error, shown instead of a traceback."""

    message: str

    def __repr__(self) -> str:
        return f"refused: {self.message}"


def outcome(function: Callable[..., Result], *args: Any, **kwargs: Any) -> Result | Refused:
    """``function(*args, **kwargs)``, or a ``Refused`` holding the message of the OcilabError it raised."""
    try:
        return function(*args, **kwargs)
    except OcilabError as error:
        return Refused(str(error))


@dataclass(frozen=True)
class NoRunc(NoEngine):
    """What a runc cell shows when runc cannot run here: why (``reason``), and what it would have shown."""

    reason: str = ""

    def __repr__(self) -> str:
        return f"{self.reason}, so nothing ran. {self.otherwise}"

    def __getattr__(self, name: str) -> NoRunc:
        """A public attribute is the NoRunc itself (``container.status``), as NoEngine's are."""
        super().__getattr__(name)  # AttributeError for private names
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> NoRunc:
        """Calling it (``container.create()``) gives itself, so the next cells show the sentence too."""
        return self


def as_root() -> bool:
    """True when this process is root: runc can run, and an unpack keeps the image's owners."""
    return os.geteuid() == 0


def if_runc(function: Callable[..., Result], *args: Any, otherwise: str, **kwargs: Any) -> Result | NoRunc:
    """``function(*args, **kwargs)`` when runc can run here; else a ``NoRunc`` saying why and ``otherwise``.

    Not root is said before anything is tried (runc needs root for its
    namespaces and cgroups); a missing or failing runc (ComponentUnavailableError)
    becomes the sentence too. Every other error is raised as usual.
    """
    if not as_root():
        return NoRunc(otherwise, f"runc needs root and this notebook runs as uid {os.geteuid()}")
    try:
        return function(*args, **kwargs)
    except ComponentUnavailableError as error:
        return NoRunc(otherwise, str(error).rstrip("."))
