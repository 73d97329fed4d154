"""Pushing, mounting, deleting and listing referrers with RegistryStore against the real CNCF registry.

Images are seeded random OCI layouts (tests/random_image.py), pushed through
the Writer methods alone (no copy engine), and checked with skopeo: what skopeo
reads back must have the digests we pushed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pytest

from ocilab.errors import (
    AuthenticationError,
    ComponentUnavailableError,
    DigestFormatError,
    InvalidInputError,
    RegistryNotFoundError,
    UnsupportedError,
    VerificationError,
)
from ocilab.model import Descriptor, Digest, Reference, parse_index, parse_root
from ocilab.model import mediatype as mt
from ocilab.model.build import build_manifest, describe, encode
from ocilab.operations.registry_server import RegistryServer, find_registry_binary
from ocilab.stores.base import Store
from ocilab.stores.layout import open_layout
from ocilab.stores.registry import Credentials, RegistryStore, RequestsTransport, Response, RetryPolicy
from tests.conftest import require, require_tool, run
from tests.random_image import write_random_image

USER, PASSWORD = "pusher", "pa55:word,with-comma"
ARTIFACT_TYPE = "application/vnd.ocilab.test.note"


@dataclass
class Recording:
    """A transport over the real one that records every request; ``after`` may replace the answer."""

    verify: bool | str = False
    after: Callable[[str, str, Response], Response] = lambda method, url, response: response
    requests: list[tuple[str, str]] = field(default_factory=list)
    bodies: int = 0

    def __post_init__(self) -> None:
        self._real = RequestsTransport(verify=self.verify, trust_env=False)

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Response:
        self.requests.append((method, url))
        self.bodies += len(body or b"")
        return self.after(method, url, self._real.request(method, url, headers, body))

    def close(self) -> None:
        self._real.close()

    def count(self, method: str, part: str = "") -> int:
        return sum(1 for m, url in self.requests if m == method and part in url)


class CountingStream:
    """A source stream that counts the bytes read from it (a resumed upload must not read twice)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.read_bytes += len(data)
        return data

    def close(self) -> None:
        self._stream.close()


def store(host: str, repository: str, transport: Recording | None = None, **options: object) -> RegistryStore:
    return RegistryStore(Reference.parse(f"{host}/{repository}"), transport=transport, **options)  # type: ignore[arg-type]


def children(source: Store, descriptor: Descriptor) -> tuple[list[Descriptor], list[Descriptor]]:
    """The blobs and the child manifests of a manifest or index, read from ``source``."""
    document = parse_root(source.read_document(descriptor, "manifest"), "test", descriptor.media_type)
    if mt.is_index(document.media_type):
        return [], list(document.manifests)  # type: ignore[union-attr]
    return [document.config, *document.layers], []  # type: ignore[union-attr]


def push(source: Store, destination: RegistryStore, descriptor: Descriptor | None = None) -> Descriptor:
    """Push the image graph under ``descriptor`` (default: the source's root) children first, then tag it."""
    top = descriptor or source.root()
    blobs, manifests = children(source, top)
    for blob in blobs:
        if not destination.has_blob(blob):
            with source.open_blob(blob) as reader:
                destination.put_blob(blob, reader)  # type: ignore[arg-type]
    for child in manifests:
        push(source, destination, child)
    destination.put_manifest(top, source.read_document(top, "manifest"))
    if descriptor is None:
        destination.set_root(top)
    return top


def skopeo_raw(reference: str, *flags: str) -> bytes:
    return run("skopeo", "inspect", "--raw", "--tls-verify=false", *flags, f"docker://{reference}").stdout.encode()


def layout_blobs(layout: Path) -> set[str]:
    return {f"sha256:{path.name}" for path in (layout / "blobs" / "sha256").iterdir()}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return write_random_image(tmp_path_factory.mktemp("random") / "layout", 11, layers=3, files=4, size=50_000)


@pytest.fixture(scope="module")
def source(image) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    with open_layout(image.layout, image.tag) as opened:
        yield opened


# --- push, then read back with skopeo --------------------------------------------------------------


def test_pushed_image_is_what_skopeo_reads_back(registry: RegistryServer, image, source: Store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    require_tool("skopeo")
    with store(registry.host, "push/image:v1") as destination:
        pushed = push(source, destination)
    assert str(pushed.digest) == image.digest
    raw = skopeo_raw(f"{registry.host}/push/image:v1")
    assert Digest.of_bytes(raw) == pushed.digest  # the same bytes, not only the same JSON
    copied = tmp_path / "copied"
    run(
        "skopeo",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        f"docker://{registry.host}/push/image:v1",
        f"oci:{copied}:v1",
    )
    assert layout_blobs(copied) == set(image.blobs)
    assert json.loads((copied / "index.json").read_text())["manifests"][0]["digest"] == image.digest


def test_a_second_push_sends_no_blob(registry: RegistryServer, source: Store) -> None:
    with store(registry.host, "push/again:v1") as destination:
        push(source, destination)
    recording = Recording()
    with store(registry.host, "push/again:v2", recording) as destination:
        push(source, destination)
    assert recording.count("HEAD", "/blobs/") == 4  # config and three layers, each found
    assert recording.count("POST") == recording.count("PATCH") == 0
    assert [method for method, url in recording.requests if "/blobs/" in url] == ["HEAD"] * 4
    assert recording.count("PUT", "/manifests/") == 2  # by digest, then the tag


def test_mount_from_another_repository_sends_no_blob_bytes(registry: RegistryServer, source: Store) -> None:
    with store(registry.host, "mount/from:v1") as origin:
        pushed = push(source, origin)
    blobs, _ = children(source, pushed)
    recording = Recording()
    with store(registry.host, "mount/from:v1") as origin, store(registry.host, "mount/to:v1", recording) as target:
        assert all(target.mount_blob(blob, origin) for blob in blobs)
        target.put_manifest(pushed, source.read_document(pushed, "manifest"))
        target.set_root(pushed)
        assert all(target.has_blob(blob) for blob in blobs)
    assert recording.count("POST", "?mount=") == len(blobs)
    assert recording.count("PATCH") == 0 and recording.count("PUT", "/blobs/") == 0
    assert Digest.of_bytes(skopeo_raw(f"{registry.host}/mount/to:v1")) == pushed.digest


def test_mount_of_a_blob_the_source_lacks_is_cancelled(registry: RegistryServer) -> None:
    missing = Descriptor(mt.OCI_LAYER_GZIP, Digest.of_bytes(b"nowhere"), 7)
    recording = Recording()
    with store(registry.host, "mount/empty") as origin, store(registry.host, "mount/other", recording) as target:
        assert target.mount_blob(missing, origin) is False
        assert target.mount_blob(missing, target) is False  # same repository: nothing to mount
    assert recording.count("POST", "?mount=") == 1 and recording.count("DELETE", "/blobs/uploads/") == 1


def test_index_is_pushed_after_its_children(registry: RegistryServer, tmp_path: Path) -> None:
    require_tool("skopeo")
    image = write_random_image(tmp_path / "multi", 12, platforms=["linux/amd64", "linux/arm64"])
    with open_layout(image.layout, image.tag) as source, store(registry.host, "push/multi:v1") as destination:
        pushed = push(source, destination)
        assert pushed.media_type == mt.OCI_INDEX
    index = parse_index(skopeo_raw(f"{registry.host}/push/multi:v1"))
    assert index.digest == pushed.digest and len(index.manifests) == 2
    copied = tmp_path / "copied"
    run("skopeo", "copy", "--quiet", "--all", "--src-tls-verify=false",
        f"docker://{registry.host}/push/multi:v1", f"oci:{copied}:v1")  # fmt: skip
    assert layout_blobs(copied) == set(image.blobs)


# --- chunks, and an upload that survives a registry restart ------------------------------------------


def test_chunked_upload_resumes_after_a_registry_restart(tmp_path: Path, image, source: Store) -> None:  # type: ignore[no-untyped-def]
    """distribution-spec: after a failed chunk, GET the upload URL (204, Range: 0-<offset>) and go on from there."""
    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    blob = max(children(source, source.root())[0], key=lambda descriptor: descriptor.size)
    chunk = blob.size // 3 + 1
    with RegistryServer(tmp_path / "data") as server:

        class Restarting(Recording):
            """Stops the registry after the first PATCH; the next PATCH is refused for real, then it comes back."""

            def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Response:
                if method == "PATCH" and not server.running:
                    try:
                        return super().request(method, url, headers, body)
                    finally:
                        server.start()  # with the upload on disk and the same http.secret
                response = super().request(method, url, headers, body)
                if method == "PATCH" and self.count("PATCH") == 1:
                    server.stop()
                return response

        recording = Restarting()
        fast = RetryPolicy(sleep=lambda seconds: None)
        with store(server.host, "chunked/blob", recording, chunk_size=chunk, retry=fast) as destination:
            counted = CountingStream(source.open_blob(blob))
            destination.put_blob(blob, counted)  # type: ignore[arg-type]
            assert destination.has_blob(blob)
        assert counted.read_bytes == blob.size  # the source was read once
        assert recording.count("GET", "/blobs/uploads/") == 1  # asked for the offset once
        assert recording.count("PATCH") == 4  # three chunks, the second sent twice
        assert recording.bodies == blob.size + chunk
        with store(server.host, "chunked/blob") as check, check.open_blob(blob) as reader:
            reader.drain()
            assert reader.verified


def test_wrong_bytes_are_refused_before_the_registry_stores_them(registry: RegistryServer) -> None:
    data = b"the real content" * 1000
    wrong = Descriptor(mt.OCI_LAYER_GZIP, Digest.of_bytes(b"other content"), len(data))
    for chunk_size in (1 << 20, 4096):  # monolithic: no session at all; chunked: the session is cancelled
        recording = Recording()
        with store(registry.host, "push/wrong", recording, chunk_size=chunk_size) as destination:
            with pytest.raises(VerificationError, match="does not match its digest"):
                destination.put_blob(wrong, _stream(data))
            assert not destination.has_blob(wrong)
        if chunk_size > len(data):
            assert recording.count("POST") == 0
        else:
            assert recording.count("PUT") == 0 and recording.count("DELETE", "/blobs/uploads/") == 1


def test_short_stream_is_refused(registry: RegistryServer) -> None:
    data = b"x" * 10_000
    descriptor = Descriptor(mt.OCI_LAYER_GZIP, Digest.of_bytes(data), len(data))
    with store(registry.host, "push/short", chunk_size=4096) as destination:
        with pytest.raises(VerificationError, match="truncated or wrong size"):
            destination.put_blob(descriptor, _stream(data[:-1]))
        assert not destination.has_blob(descriptor)


# --- deletion ---------------------------------------------------------------------------------------


def test_delete_by_tag_reports_every_tag_of_the_digest(registry: RegistryServer, source: Store) -> None:
    with store(registry.host, "delete/tags:a") as destination:
        pushed = push(source, destination)
    with store(registry.host, "delete/tags:b") as other:
        other.set_root(pushed)
    with store(registry.host, "delete/tags:c") as unrelated:
        config = children(source, pushed)[0][0]
        manifest = build_manifest(config, [])
        unrelated.put_manifest(describe(manifest), manifest.raw)
        unrelated.set_root(describe(manifest))
    with store(registry.host, "delete/tags") as repository:
        digest, gone = repository.delete_tag("a")
        assert (digest, gone) == (pushed.digest, ["a", "b"])
        assert repository.tags() == ["c"]
        with pytest.raises(RegistryNotFoundError) as caught:
            repository.open_blob(pushed)
        assert caught.value.code == "MANIFEST_UNKNOWN"
    with store(registry.host, "delete/tags:a") as deleted, pytest.raises(RegistryNotFoundError, match="tag a"):
        deleted.root()


def test_delete_by_digest_and_delete_blob(registry: RegistryServer, source: Store) -> None:
    with store(registry.host, "delete/digest:v1") as destination:
        pushed = push(source, destination)
        destination.delete_manifest(str(pushed.digest))
        with pytest.raises(RegistryNotFoundError) as caught:
            destination.root()
        assert caught.value.code == "MANIFEST_UNKNOWN" and caught.value.status == 404
        layer = children(source, pushed)[0][1]
        destination.delete_blob(layer.digest)
        assert not destination.has_blob(layer)
        with pytest.raises(RegistryNotFoundError) as blob_gone:
            destination.open_blob(layer)
        assert blob_gone.value.code == "BLOB_UNKNOWN"
        with pytest.raises(RegistryNotFoundError) as again:
            destination.delete_manifest(pushed.digest)
        assert again.value.code == "MANIFEST_UNKNOWN"


# --- referrers -----------------------------------------------------------------------------------


def test_referrers_through_the_fallback_tag(registry: RegistryServer, source: Store) -> None:
    """distribution-spec 1.1: without the referrers API (registry 2.8 answers 404) the client keeps the tag
    ``<alg>-<ref>`` pointing at an index of the referrers."""
    with store(registry.host, "refer/image:v1") as destination:
        subject = push(source, destination)
        empty = b"{}"
        empty_blob = Descriptor(mt.OCI_EMPTY, Digest.of_bytes(empty), len(empty))
        destination.put_blob(empty_blob, _stream(empty))
        notes = []
        for text in ("first", "second"):
            note = build_manifest(
                empty_blob, [], subject=subject, artifact_type=ARTIFACT_TYPE, annotations={"note": text}
            )
            destination.put_manifest(describe(note), note.raw)
            notes.append(describe(note).digest)
        destination.put_manifest(describe(note), note.raw)  # pushed twice, listed once
        other = build_manifest(empty_blob, [], subject=subject, artifact_type="application/vnd.other")
        destination.put_manifest(describe(other), other.raw)
        listed = destination.referrers(subject.digest)
        assert [item.digest for item in listed] == [*notes, describe(other).digest]
        assert listed[0].artifact_type == ARTIFACT_TYPE and listed[0].annotations == {"note": "first"}
        assert [item.digest for item in destination.referrers(str(subject.digest), ARTIFACT_TYPE)] == notes
        assert destination.referrers(Digest.of_bytes(b"no one refers to this")) == []
    fallback = parse_index(skopeo_raw(f"{registry.host}/refer/image:sha256-{subject.digest.encoded}"))
    assert [item.digest for item in fallback.manifests] == [item.digest for item in listed]


# --- authentication and TLS --------------------------------------------------------------------------


def test_push_with_basic_auth(tmp_path: Path, image, source: Store) -> None:  # type: ignore[no-untyped-def]
    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(run(require_tool("htpasswd"), "-Bbn", USER, PASSWORD).stdout)
    with RegistryServer(tmp_path / "data", htpasswd=htpasswd) as server:
        with store(server.host, "private/image:v1", credentials=Credentials(USER, PASSWORD)) as destination:
            pushed = push(source, destination)
            assert PASSWORD not in repr(destination)
        raw = skopeo_raw(f"{server.host}/private/image:v1", f"--creds={USER}:{PASSWORD}")
        assert Digest.of_bytes(raw) == pushed.digest
        with store(server.host, "private/image:v2", credentials=Credentials(USER, "wrong")) as refused:
            with pytest.raises(AuthenticationError) as caught:
                push(source, refused)
        assert caught.value.status == 401 and "wrong" not in str(caught.value) and PASSWORD not in str(caught.value)


def test_push_over_tls(tmp_path: Path, source: Store) -> None:
    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    require_tool("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    run(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert,
    )  # fmt: skip
    with RegistryServer(tmp_path / "data", tls=(cert, key)) as server:
        with store(server.host, "tls/image:v1", insecure=False, ca_file=cert, chunk_size=30_000) as destination:
            pushed = push(source, destination)
        assert Digest.of_bytes(skopeo_raw(f"{server.host}/tls/image:v1")) == pushed.digest
        untrusted = Recording(verify=True)  # the system's CAs do not know this certificate
        with store(server.host, "tls/image:v2", untrusted, insecure=False) as destination:
            with pytest.raises(ComponentUnavailableError, match="TLS failed"):
                push(source, destination)
        assert len(untrusted.requests) == 1  # a failed handshake is not retried


# --- bad input is refused before any request ---------------------------------------------------------


@pytest.mark.parametrize("tag", ["", "-leading-dash", "has space", "a" * 129, "with/slash", "x@sha256:0", "ü"])
def test_bad_tags_are_refused(tag: str) -> None:
    recording = Recording()
    with store("127.0.0.1:9", "a/b", recording) as repository, pytest.raises(InvalidInputError, match="tag"):
        repository.delete_tag(tag)
    assert recording.requests == []


@pytest.mark.parametrize(
    "digest", ["sha256:abc", "SHA256:" + "0" * 64, "sha256:" + "A" * 64, "sha256" + "0" * 64, "md5:../../etc"]
)
def test_bad_digests_are_refused(digest: str) -> None:
    recording = Recording()
    with store("127.0.0.1:9", "a/b", recording) as repository:
        for operation in (repository.delete_manifest, repository.delete_blob, repository.referrers):
            with pytest.raises(DigestFormatError):
                operation(digest)
    assert recording.requests == []


@pytest.mark.parametrize(
    "reference",
    [
        Reference("127.0.0.1:9", "Upper/Case", "v1"),
        Reference("127.0.0.1:9", "a//b", "v1"),
        Reference("127.0.0.1:9", "../escape", "v1"),
        Reference("127.0.0.1:9", "a/b", "bad tag"),
        Reference("bad host!", "a/b", "v1"),
    ],
)
def test_bad_references_are_refused(reference: Reference) -> None:
    with pytest.raises(InvalidInputError):
        RegistryStore(reference, transport=Recording())


def test_bad_writes_are_refused_before_any_request() -> None:
    recording = Recording()
    raw = encode({"schemaVersion": 2})
    with store("127.0.0.1:9", "a/b", recording) as repository:
        with pytest.raises(VerificationError, match="do not match its descriptor"):
            repository.put_manifest(Descriptor(mt.OCI_MANIFEST, Digest.of_bytes(b"other"), len(raw)), raw)
        with pytest.raises(InvalidInputError, match="mediaType|config"):
            repository.put_manifest(Descriptor(mt.OCI_MANIFEST, Digest.of_bytes(raw), len(raw)), raw)
        unknown = Descriptor(mt.OCI_LAYER_GZIP, Digest("blake3", "0" * 64), 1)
        with pytest.raises(UnsupportedError, match="blake3"):
            repository.put_blob(unknown, _stream(b"x"))
    with pytest.raises(InvalidInputError, match="chunk_size"):
        store("127.0.0.1:9", "a/b", recording, chunk_size=0)
    pinned = RegistryStore(Reference.parse(f"127.0.0.1:9/a/b@{Digest.of_bytes(b'pinned')}"), transport=recording)
    with pinned, pytest.raises(VerificationError, match="not sha256"):
        pinned.set_root(Descriptor(mt.OCI_MANIFEST, Digest.of_bytes(b"another"), 7))
    assert recording.requests == []


def _stream(data: bytes) -> BinaryIO:
    import io

    return io.BytesIO(data)
