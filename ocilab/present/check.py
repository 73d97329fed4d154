"""Exercises that check themselves: ``ocilab.check``.

Each check takes the learner's ``answer`` first, then what to check it
against (an image or a reference string, some bytes), computes the right
answer on this machine with the kit itself, and returns a ``Verdict``: ✓, or
✗ with a hint. A check never raises: an unanswered exercise (``...``), an
answer of the wrong kind, or an image that cannot be read all come back as ✗
with one sentence saying what to do.

``EXERCISES`` names the checks each notebook's "Your turn" uses;
``notebooks/solutions/`` holds the right answers, and CI calls every check
with them (✓) and with a wrong one (✗).
"""

from __future__ import annotations

import functools
import html
import json
import os
import posixpath
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ocilab.model import Digest
from ocilab.present.text import shorten
from ocilab.stores.image import Image
from ocilab.tar.resolve import resolve_parent

EXERCISES: dict[str, tuple[str, ...]] = {
    "00-welcome": ("digest_of", "layer_count", "config_digest"),
    "05-deletion-and-gc": ("layer_digest", "layout_gc_removes"),
    "01-image-spec": ("diff_id", "blob_count", "valid_image"),
    "03-registry": ("manifest_digest", "registry_blobs", "same_image"),
    "02-building": ("layer_count", "wasted_bytes", "wastes_nothing"),
    "06-beyond": ("referrers_tag", "layout_gc_removes", "changes_only"),
    "04-runtime-bundle": ("process_uid", "landed_at", "runs_as"),
}
"""Notebook -> the checks its "Your turn" section calls, in order."""

CHECKS: dict[str, Callable[..., Verdict]] = {}
"""Every check by name."""

_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Verdict:
    """✓ or ✗ and one sentence; true when the answer is right."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.message}"

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.ok else "#cf222e"
        mark = "✓" if self.ok else "✗"
        return f'<p style="color:{color};font-weight:bold">{mark} {html.escape(self.message)}</p>'


class _Wrong(Exception):
    """Raised inside a check to answer ✗ with its message as the hint."""


Check = TypeVar("Check", bound=Callable[..., Verdict])


def _check(function: Check) -> Check:
    """Register ``function`` in CHECKS and make it answer ✗ instead of raising."""

    @functools.wraps(function)
    def checked(answer: Any, *args: Any, **kwargs: Any) -> Verdict:
        if answer is ... or answer is None:
            return Verdict(False, "Not answered yet: replace the ... with your answer, then run the cell again.")
        try:
            return function(answer, *args, **kwargs)
        except _Wrong as hint:
            return Verdict(False, str(hint))
        except Exception as error:  # noqa: BLE001 - a check answers, it never shows a traceback
            return Verdict(False, f"Could not check this answer: {error}")

    CHECKS[function.__name__] = checked
    return checked  # type: ignore[return-value]


@contextmanager
def _image(image: Image | str) -> Iterator[Image]:
    if isinstance(image, Image):
        yield image
    else:
        from ocilab.api import open as open_image

        with open_image(image) as opened:
            yield opened


def _digest_text(answer: Any) -> str:
    """The answer as a digest string; _Wrong with a hint when it cannot be one."""
    if isinstance(answer, Digest):
        return str(answer)
    if not isinstance(answer, str):
        quoted = shorten(repr(answer), 40)
        raise _Wrong(f"A digest is a string like 'sha256:' followed by 64 hex characters, not {quoted}.")
    text = answer.strip()
    if _HEX.fullmatch(text):
        raise _Wrong("Almost: a digest names its algorithm first; write 'sha256:' before the hex.")
    return text


def _compare_digest(answer: Any, right: Digest, what: str, others: dict[str, Digest]) -> Verdict:
    text = _digest_text(answer)
    if text == str(right):
        return Verdict(True, f"Right: {what} is {right}.")
    if text.lower() == str(right):
        raise _Wrong("Digests are written in lowercase hex.")
    prefix = text.removeprefix(f"{right.algorithm}:")
    if 6 <= len(prefix) < len(right.encoded) and right.encoded.startswith(prefix):
        raise _Wrong("That is how it starts; write the whole digest: 'sha256:' and all 64 hex characters.")
    for name, digest in others.items():
        if text == str(digest):
            raise _Wrong(f"That is the digest of {name}, not of {what}.")
    raise _Wrong(f"That is not {what}. Look again at where the kit shows it (one changed byte changes the digest).")


@_check
def digest_of(answer: Any, data: bytes | str) -> Verdict:
    """Is ``answer`` the sha256 digest of ``data`` (text is encoded as UTF-8)?"""
    raw = data.encode() if isinstance(data, str) else data
    return _compare_digest(answer, Digest.of_bytes(raw), f"the digest of these {len(raw)} bytes", {})


@_check
def layer_count(answer: Any, image: Image | str) -> Verdict:
    """Is ``answer`` the number of layers of ``image``?"""
    with _image(image) as opened:
        right = len(opened.layers)
    side = _off_by(answer, right)
    if side is None:
        return Verdict(True, f"Right: {right} layers, one per build step that changed files.")
    raise _Wrong(f"Not {answer}: there are {side}. Count the rows of the layers table (or len(image.layers)).")


@_check
def manifest_digest(answer: Any, image: Image | str) -> Verdict:
    """Is ``answer`` the digest of ``image``'s manifest (the digest that names the image)?"""
    with _image(image) as opened:
        return _compare_digest(
            answer, opened.manifest_digest, "the manifest", {"the config": opened.config_digest, **_layers(opened)}
        )


@_check
def config_digest(answer: Any, image: Image | str) -> Verdict:
    """Is ``answer`` the digest of ``image``'s config?"""
    with _image(image) as opened:
        return _compare_digest(
            answer, opened.config_digest, "the config", {"the manifest": opened.manifest_digest, **_layers(opened)}
        )


@_check
def layer_digest(answer: Any, image: Image | str, layer: int) -> Verdict:
    """Is ``answer`` the (compressed) blob digest of ``image``'s layer ``layer``?"""
    with _image(image) as opened:
        right = opened.layers[layer].digest
        others = {name: digest for name, digest in _layers(opened).items() if digest != right}
        for position, entry in enumerate(opened.layers):
            others[f"layer {position}'s uncompressed tar (its diff_id)"] = entry.diff_id
        others.update({"the manifest": opened.manifest_digest, "the config": opened.config_digest})
        return _compare_digest(answer, right, f"layer {layer}'s blob", others)


@_check
def diff_id(answer: Any, image: Image | str, layer: int) -> Verdict:
    """Is ``answer`` the diff_id (the digest of the uncompressed tar) of ``image``'s layer ``layer``?"""
    with _image(image) as opened:
        right = opened.layers[layer].diff_id
        others = {f"layer {entry.index}'s compressed blob": entry.digest for entry in opened.layers}
        others.update({"the manifest": opened.manifest_digest, "the config": opened.config_digest})
        others = {name: digest for name, digest in others.items() if digest != right}
        return _compare_digest(answer, right, f"layer {layer}'s diff_id", others)


@_check
def blob_count(answer: Any, layout: Path | str) -> Verdict:
    """Is ``answer`` the number of blob files in the OCI layout ``layout`` (a directory or ``oci:DIR[:TAG]``)?"""
    directory = Path(layout) if isinstance(layout, Path) else Path(layout.removeprefix("oci:").partition(":")[0])
    blobs = directory / "blobs"
    if not blobs.is_dir():
        raise _Wrong(f"{directory} is not an OCI image layout: it has no blobs/ directory.")
    right = sum(1 for path in blobs.rglob("*") if path.is_file())
    side = _off_by(answer, right)
    if side is None:
        return Verdict(True, f"Right: {right} blob files, each stored once however many documents point at it.")
    raise _Wrong(
        f"Not {answer}: there are {side}. Count each document and each layer once (a shared one is stored once),"
        f" then check with ls {blobs}/sha256."
    )


@_check
def valid_image(answer: Any) -> Verdict:
    """Does the reference ``answer`` name an image that ``ocilab.validate`` finds valid?"""
    if not isinstance(answer, str):
        raise _Wrong(f"Answer with the reference you wrote to, like 'oci:DIR:TAG', not {shorten(repr(answer), 40)}.")
    from ocilab.api import validate

    report = validate(answer)
    if report.ok:
        return Verdict(True, f"Right: {answer} is valid; every digest, size and diff_id checks out.")
    raise _Wrong(f"Not valid yet: {report.problems[0]}")


@_check
def layout_gc_removes(answer: Any, layout: Path | str) -> Verdict:
    """Is ``answer`` the number of blobs the collector would remove from the OCI layout directory ``layout`` now?"""
    from ocilab.operations.layout_gc import collect_layout

    right = len(collect_layout(Path(layout), dry_run=True).removed)
    side = _off_by(answer, right)
    if side is None:
        return Verdict(True, f"Right: {right} blobs that no tag reaches any more; the rest stay.")
    if right == 0:
        raise _Wrong(
            "The collector would remove nothing now: a tag reaches every blob left. Remove the tag first (the cell"
            " above); if you already ran the collector, compare your answer with what it removed."
        )
    raise _Wrong(
        f"Not {answer}: it removes {side}. Count what only the removed tag reached: its manifest, its config,"
        " and each layer that no other tag's image lists."
    )


@_check
def registry_blobs(answer: Any, data_dir: Path) -> Verdict:
    """Is ``answer`` the number of blob files in the storage of the registry serving ``data_dir``?"""
    from ocilab.operations.registry_storage import storage_map

    right = len(storage_map(Path(data_dir)).blobs)
    side = _off_by(answer, right)
    if side is None:
        return Verdict(True, f"Right: {right} blob files; a blob several repositories link is stored once.")
    raise _Wrong(
        f"Not {answer}: there are {side}. Count every layer, config and manifest pushed, once each,"
        " however many repositories link it."
    )


@_check
def same_image(answer: Any, reference: str) -> Verdict:
    """Does the reference ``answer`` name, by a tag, the manifest ``reference`` names?"""
    if not isinstance(answer, str) or "@" in answer:
        raise _Wrong(f"Answer with a reference by tag, like 'docker://HOST/REPO:TAG', not {shorten(repr(answer), 60)}.")
    from ocilab.stores.transports import open_store

    with open_store(reference) as store:
        right = store.root().digest
    with open_store(answer) as store:
        given = store.root().digest
    if given == right:
        return Verdict(True, f"Right: {answer} names {right}, the same manifest, under another name.")
    raise _Wrong(f"{answer} names {given}, not {right}: give the tag to the original digest.")


@_check
def wasted_bytes(answer: Any, image: Image | str) -> Verdict:
    """Is ``answer`` the number of bytes ``image``'s layers ship that a later layer hides or removes?"""
    from ocilab.api import efficiency

    right = int(efficiency(image).attrs["wasted_bytes"])
    side = _off_by(answer, right, "a whole number of bytes, like 1024")
    if side is None:
        return Verdict(True, f"Right: {right} bytes ship in a layer and no container sees them.")
    raise _Wrong(
        f"Not {answer}: there are {side}. A file that a later layer replaces or deletes still ships,"
        " whole, in the layer that added it; ocilab.efficiency(image) lists them."
    )


@_check
def wastes_nothing(answer: Any, base: Image | str) -> Verdict:
    """Does the reference ``answer`` name an image built on ``base`` (its layers first, one or more of its own)
    in which no layer ships bytes that a later layer hides or removes?"""
    if not isinstance(answer, str):
        raise _Wrong(f"Answer with the reference you wrote to, like 'oci:DIR:TAG', not {shorten(repr(answer), 40)}.")
    from ocilab.api import efficiency

    with _image(base) as start, _image(answer) as built:
        lower = [layer.digest for layer in start.layers]
        layers = [layer.digest for layer in built.layers]
    if layers[: len(lower)] != lower:
        raise _Wrong("That image does not start with the base's layers: build it with ocilab.Builder.from_image(...).")
    if len(layers) == len(lower):
        raise _Wrong("That image is the base itself: add at least one layer of your own.")
    frame = efficiency(answer)
    wasted = int(frame.attrs["wasted_bytes"])
    if wasted:
        raise _Wrong(
            f"It still ships {wasted} bytes no container sees ({frame.iloc[0]['path']} the most):"
            " add only what the image keeps; a file a later step deletes still ships in the layer that added it."
        )
    return Verdict(True, f"Right: {len(layers) - len(lower)} layer(s) of your own, and not one wasted byte.")


@_check
def referrers_tag(answer: Any, reference: str) -> Verdict:
    """Is ``answer`` the tag under which the registry repository of ``reference`` lists the referrers of the
    image ``reference`` names (the OCI 1.1 fallback for a registry without the referrers API)?"""
    if not isinstance(answer, str):
        raise _Wrong(f"Answer with the tag's name, a string, not {shorten(repr(answer), 40)}.")
    tag = answer.strip()
    if ":" in tag:
        raise _Wrong("A tag cannot contain ':': the referrers tag writes the digest with '-' in its place.")
    from ocilab.model import Reference, parse_root
    from ocilab.model.manifest import Index
    from ocilab.stores.registry import RegistryStore

    ref = Reference.parse(reference.removeprefix("docker://"))
    with RegistryStore(ref) as store:
        subject = store.root().digest
        listed = [item.digest for item in store.referrers(subject)]
        if tag not in store.tags():
            raise _Wrong(
                f"{ref.repository} has no tag {shorten(repr(tag), 40)}. The referrers tag is named after the"
                " digest of the image the artifacts are about."
            )
    with RegistryStore(Reference(ref.host, ref.repository, tag)) as tagged:
        document = parse_root(tagged.read_document(tagged.root(), "manifest"), f"tag {tag}")
    if not isinstance(document, Index) or [item.digest for item in document.manifests] != listed or not listed:
        raise _Wrong(f"The tag {tag} names an image, not the index of {subject.short}'s referrers.")
    return Verdict(True, f"Right: {tag} is {subject} with '-' for ':', an index of its {len(listed)} referrer(s).")


@_check
def changes_only(answer: Any, base: Image | str, path: str) -> Verdict:
    """Does the reference ``answer`` name an image built on ``base`` (all its layers shared) whose files differ
    from ``base``'s at ``path`` only?"""
    if not isinstance(answer, str):
        raise _Wrong(f"Answer with the reference you wrote to, like 'oci:DIR:TAG', not {shorten(repr(answer), 40)}.")
    from ocilab.api import diff

    frame = diff(base, answer)
    if frame.attrs["layers"]["only_a"]:
        raise _Wrong("That image does not keep every layer of the base: build it with ocilab.Builder.from_image(...).")
    paths = list(frame["path"])
    if path not in paths:
        raise _Wrong(f"{path} is the same in both images: add a new {path} with different content.")
    if paths != [path]:
        others = ", ".join(item for item in paths if item != path)
        raise _Wrong(f"Other files changed too ({shorten(others, 60)}): add only {path}.")
    return Verdict(True, f"Right: one file changed, {path}, in one new layer on top of every layer of the base.")


def _runtime_process(bundle: Path | str) -> dict[str, Any]:
    """The ``process`` of ``bundle``'s config.json; _Wrong with a hint when it is not a bundle."""
    path = Path(bundle) / "config.json"
    if not path.is_file() or not (Path(bundle) / "rootfs").is_dir():
        raise _Wrong(f"{bundle} is not a bundle: it has no config.json and rootfs/ (make it with ocilab.unpack).")
    process: dict[str, Any] = json.loads(path.read_text())["process"]
    return process


@_check
def process_uid(answer: Any, bundle: Path | str) -> Verdict:
    """Is ``answer`` the uid that ``bundle``'s config.json gives the container's process?"""
    right = int(_runtime_process(bundle)["user"]["uid"])
    if _off_by(answer, right, "the number, like 1000") is None:
        return Verdict(True, f"Right: uid {right}, the number the image's /etc/passwd gives its User.")
    raise _Wrong(
        f"Not {answer}. The image names its user; config.json holds the number the image's own /etc/passwd"
        " gives it (look at process.user in the table)."
    )


def _link_in(rootfs: Path, path: str) -> str | None:
    """The target of the symlink at ``path`` (``/...``) inside ``rootfs``, or None (a ``ReadLink``)."""
    where = rootfs / path.lstrip("/")
    return os.readlink(where) if where.is_symlink() else None


@_check
def landed_at(answer: Any, bundle: Path | str, name: str) -> Verdict:
    """Does ``answer`` (``/...``, links followed inside ``bundle``'s rootfs) name the file called ``name`` there?"""
    if not isinstance(answer, str):
        raise _Wrong(f"Answer with a path inside the rootfs, like '/etc/hosts', not {shorten(repr(answer), 40)}.")
    _runtime_process(bundle)
    rootfs = Path(bundle) / "rootfs"
    found = sorted(
        "/" + str((Path(directory) / file).relative_to(rootfs))
        for directory, _, files in os.walk(rootfs)
        for file in files
        if file == name
    )
    if not found:
        raise _Wrong(f"There is no file called {name} in {rootfs}: unpack the image first (the cell above).")
    path = answer.strip()
    if path.startswith(str(rootfs)):
        raise _Wrong("Give the path as the container sees it, starting at the rootfs's '/', not the host's path.")
    if not path.startswith("/"):
        raise _Wrong(
            f"Start the path with '/', the rootfs's root, as the container sees it: not {shorten(path, 40)!r}."
        )
    if resolve_parent(posixpath.normpath(path), functools.partial(_link_in, rootfs), "answer") in found:
        return Verdict(True, f"Right: {path}, inside the bundle; '/' in a link means the rootfs's root.")
    raise _Wrong(
        f"Not {shorten(answer, 40)}. The unpacker follows the link inside the rootfs: '/' there is the rootfs's root."
    )


@_check
def runs_as(answer: Any, uid: int, cwd: str) -> Verdict:
    """Is ``answer`` a bundle directory whose config.json runs its process as ``uid`` in ``cwd``?"""
    if not isinstance(answer, str | Path):
        raise _Wrong(f"Answer with the bundle's directory, like str(lab / 'mine'), not {shorten(repr(answer), 40)}.")
    process = _runtime_process(answer)
    given = (int(process["user"]["uid"]), process["cwd"])
    if given == (uid, cwd):
        return Verdict(True, f"Right: this bundle's process runs as uid {uid} in {cwd}.")
    raise _Wrong(
        f"Its process runs as uid {given[0]} in {given[1]}, not uid {uid} in {cwd}: set user= and workdir= with"
        " Builder.config, write the image, and unpack it into a new directory."
    )


def _layers(image: Image) -> dict[str, Digest]:
    return {f"layer {layer.index}": layer.digest for layer in image.layers}


def exercises(notebook: str) -> list[Callable[..., Verdict]]:
    """The checks ``notebook``'s exercises call, in order; KeyError for a notebook with none registered."""
    return [CHECKS[name] for name in EXERCISES[notebook]]


def _off_by(answer: Any, right: int, kind: str = "a whole number, like 3") -> str | None:
    """None when the count ``answer`` is ``right``; else which way it is off ("fewer" or "more").

    An answer that is not a whole number is answered ✗ with ``kind`` as the example.
    """
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise _Wrong(f"Answer with {kind}, not {shorten(repr(answer), 40)}.")
    if answer == right:
        return None
    return "fewer" if answer > right else "more"
