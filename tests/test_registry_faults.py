"""Faults a real registry cannot be made to produce on demand, injected through the transport seam.

Where it can, each test still talks to the real CNCF registry and only bends
one answer (a 429, a 500, a body corrupted on the way); the rest is a small
in-memory registry that keeps upload offsets on the server, as newer
registries do, so a chunk cut in half can be resumed.
"""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
from requests.structures import CaseInsensitiveDict

from ocilab.errors import (
    ComponentUnavailableError,
    DeletionDisabledError,
    RegistryError,
    RegistryNotFoundError,
    RegistryVerificationError,
    VerificationError,
)
from ocilab.model import Descriptor, Digest, Reference, VerifyingReader
from ocilab.model import mediatype as mt
from ocilab.model.build import build_manifest, describe
from ocilab.operations.registry_server import RegistryServer
from ocilab.stores.registry import Credentials, RegistryStore, Response, RetryPolicy
from tests.test_registry_push import Recording

DATA = bytes(range(256)) * 40  # 10240 bytes
BLOB = Descriptor(mt.OCI_LAYER_GZIP, Digest.of_bytes(DATA), len(DATA))


class Answer:
    """A response made up in the test."""

    def __init__(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None, url: str = "") -> None:
        self.status = status
        self.headers = CaseInsensitiveDict(headers or {})
        self.url = url
        self._body = io.BytesIO(body)

    def read(self, size: int) -> bytes:
        return self._body.read(size)

    def close(self) -> None:
        pass


def read_whole(reader: VerifyingReader) -> bytes:
    return b"".join(iter(lambda: reader.read(65536), b""))


def error_body(code: str, message: str = "") -> bytes:
    return f'{{"errors":[{{"code":"{code}","message":"{message or code.lower()}"}}]}}'.encode()


@dataclass
class Sleeps:
    """A RetryPolicy's sleep that records instead of waiting."""

    seconds: list[float] = field(default_factory=list)

    def policy(self, **options: float) -> RetryPolicy:
        return RetryPolicy(sleep=self.seconds.append, **options)  # type: ignore[arg-type]


def real_store(registry: RegistryServer, repository: str, transport: Recording, **options: object) -> RegistryStore:
    return RegistryStore(Reference.parse(f"{registry.host}/{repository}"), transport=transport, **options)  # type: ignore[arg-type]


def first_answers(*answers: Answer, when: Callable[[str, str], bool]) -> Callable[[str, str, Response], Response]:
    """Replace the real answers of the first matching requests by ``answers``, in order."""
    pending = list(answers)

    def rewrite(method: str, url: str, response: Response) -> Response:
        if pending and when(method, url):
            response.close()
            return pending.pop(0)
        return response

    return rewrite


@pytest.fixture(scope="module")
def pushed(registry: RegistryServer) -> str:
    """A blob in the real registry, in repository ``faults/base``."""
    with RegistryStore(Reference.parse(f"{registry.host}/faults/base")) as store:
        store.put_blob(BLOB, io.BytesIO(DATA))
    return "faults/base"


# --- retries -------------------------------------------------------------------------------------


def test_429_waits_as_long_as_retry_after_says(registry: RegistryServer, pushed: str) -> None:
    sleeps = Sleeps()
    busy = Answer(429, error_body("TOOMANYREQUESTS"), {"Retry-After": "3"})
    recording = Recording(after=first_answers(busy, when=lambda method, url: method == "HEAD"))
    with real_store(registry, pushed, recording, retry=sleeps.policy()) as store:
        assert store.has_blob(BLOB)
    assert sleeps.seconds == [3.0]
    assert recording.count("HEAD") == 2


def test_500_twice_then_success(registry: RegistryServer, pushed: str) -> None:
    sleeps = Sleeps()
    failing = [Answer(500, error_body("UNKNOWN", "storage backend busy")) for _ in range(2)]
    recording = Recording(after=first_answers(*failing, when=lambda method, url: method == "GET"))
    with real_store(registry, pushed, recording, retry=sleeps.policy()) as store, store.open_blob(BLOB) as reader:
        assert read_whole(reader) == DATA and reader.verified
    assert sleeps.seconds == [0.25, 0.5]  # exponential backoff


def test_retries_are_bounded_in_count_and_time(registry: RegistryServer, pushed: str) -> None:
    sleeps = Sleeps()
    always = Recording(after=lambda method, url, response: Answer(503, error_body("UNAVAILABLE")))
    with real_store(registry, pushed, always, retry=sleeps.policy(attempts=3)) as store:
        with pytest.raises(RegistryError) as caught:
            store.has_blob(BLOB)
    assert (caught.value.status, always.count("HEAD"), sleeps.seconds) == (503, 3, [0.25, 0.5])
    sleeps.seconds.clear()
    slow = Answer(429, b"", {"Retry-After": "100"})
    patient = Recording(after=lambda method, url, response: slow)
    with real_store(registry, pushed, patient, retry=sleeps.policy(cap=20, budget=30)) as store:
        with pytest.raises(RegistryError, match="HTTP 429"):
            store.has_blob(BLOB)
    assert sleeps.seconds == [20.0]  # capped; a second wait would pass the budget


def test_a_push_is_not_repeated_blindly(registry: RegistryServer) -> None:
    """POST (opening a session) and the closing PUT are not safe to repeat: one try each."""
    sleeps = Sleeps()
    failing = Recording(after=first_answers(Answer(500), when=lambda method, url: method == "POST"))
    with real_store(registry, "faults/post", failing, retry=sleeps.policy()) as store:
        with pytest.raises(RegistryError, match="HTTP 500"):
            store.put_blob(BLOB, io.BytesIO(DATA))
    assert failing.count("POST") == 1 and sleeps.seconds == []


# --- uploads -------------------------------------------------------------------------------------


@dataclass
class MemoryRegistry:
    """A registry in memory that keeps each upload's offset itself; ``drop`` cuts the n-th PATCH after half its body."""

    drop: int | None = None
    uploads: dict[str, bytearray] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    patches: int = 0
    log: list[tuple[str, str, str | None]] = field(default_factory=list)

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Answer:
        parts = urlsplit(url)
        self.log.append((method, parts.path, headers.get("Content-Range")))
        name = parts.path.rsplit("/", 1)[-1]
        if method == "POST":
            self.uploads[str(len(self.uploads))] = bytearray()
            return Answer(202, headers={"Location": f"/v2/a/b/blobs/uploads/{len(self.uploads) - 1}"})
        if method == "HEAD":
            return Answer(200 if name in self.blobs else 404)
        data = self.uploads.get(name)
        if data is None:
            return Answer(404, error_body("BLOB_UPLOAD_UNKNOWN"))
        if method == "PATCH":
            return self._patch(data, url, headers, body or b"")
        if method == "GET":
            return Answer(204, headers={"Range": f"0-{max(len(data) - 1, 0)}", "Location": url})
        if method == "DELETE":
            del self.uploads[name]
            return Answer(204)
        digest = parse_qs(parts.query)["digest"][0]
        data += body or b""
        if str(Digest.of_bytes(bytes(data))) != digest:
            return Answer(400, error_body("DIGEST_INVALID", "provided digest did not match uploaded content"))
        self.blobs[digest] = bytes(data)
        del self.uploads[name]
        return Answer(201, headers={"Docker-Content-Digest": digest})

    def _patch(self, data: bytearray, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
        assert headers["Content-Type"] == "application/octet-stream"
        first, last = (int(number) for number in headers["Content-Range"].split("-"))
        if first != len(data) or last - first + 1 != len(body):
            return Answer(416, error_body("BLOB_UPLOAD_INVALID", "wrong range"))
        self.patches += 1
        if self.patches == self.drop:
            data += body[: len(body) // 2]
            raise ComponentUnavailableError(f"the connection to {url} failed: connection reset by peer")
        data += body
        return Answer(202, headers={"Location": url, "Range": f"0-{len(data) - 1}"})

    def close(self) -> None:
        pass


def memory_store(registry: MemoryRegistry, **options: object) -> RegistryStore:
    return RegistryStore(Reference.parse("127.0.0.1:9/a/b"), transport=registry, **options)  # type: ignore[arg-type]


def test_connection_dropped_mid_patch_resumes_from_the_registry_offset() -> None:
    registry = MemoryRegistry(drop=2)
    sleeps = Sleeps()
    with memory_store(registry, chunk_size=4096, retry=sleeps.policy()) as store:
        store.put_blob(BLOB, io.BytesIO(DATA))
    assert registry.blobs == {str(BLOB.digest): DATA}
    ranges = [(method, content_range) for method, path, content_range in registry.log if method in ("PATCH", "GET")]
    assert ranges == [
        ("PATCH", "0-4095"),
        ("PATCH", "4096-8191"),  # cut after 2048 bytes
        ("GET", None),
        ("PATCH", "6144-8191"),  # the rest of the chunk, from memory
        ("PATCH", "8192-10239"),
    ]
    assert len(sleeps.seconds) == 1


def test_a_blob_that_fits_in_one_chunk_is_one_put() -> None:
    registry = MemoryRegistry()
    with memory_store(registry, chunk_size=len(DATA)) as store:
        store.put_blob(BLOB, io.BytesIO(DATA))
    assert [method for method, path, content_range in registry.log] == ["POST", "PUT"]
    assert registry.blobs == {str(BLOB.digest): DATA}


def test_a_lost_upload_session_is_one_clear_error(registry: RegistryServer) -> None:
    """Registry 2.8 keeps the offset in the upload URL's signed state: after part of a chunk it cannot resume."""

    class LostAnswer(Recording):
        def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Response:
            response = super().request(method, url, headers, body)
            if method == "PATCH" and self.count("PATCH") == 2:  # the registry took the chunk, the answer is lost
                response.close()
                raise ComponentUnavailableError(f"the connection to {url} failed: connection reset by peer")
            return response

    recording = LostAnswer()
    sleeps = Sleeps()
    with real_store(registry, "faults/lost", recording, chunk_size=4096, retry=sleeps.policy()) as store:
        with pytest.raises(RegistryNotFoundError, match="lost the upload session.*push the image again") as caught:
            store.put_blob(BLOB, io.BytesIO(DATA))
        assert caught.value.code == "BLOB_UPLOAD_INVALID"
        assert not store.has_blob(BLOB)


def test_digest_invalid_from_the_registry_is_a_verification_error(registry: RegistryServer) -> None:
    """Bytes corrupted after our own check: the registry's DIGEST_INVALID, the session cancelled, nothing stored."""

    class Corrupting(Recording):
        def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Response:
            if method == "PUT" and body:
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            return super().request(method, url, headers, body)

    corrupting = Corrupting()
    with real_store(registry, "faults/corrupt", corrupting) as store:
        with pytest.raises(RegistryVerificationError) as caught:
            store.put_blob(BLOB, io.BytesIO(DATA))
        assert caught.value.code == "DIGEST_INVALID" and isinstance(caught.value, VerificationError)
        assert "refused blob" in str(caught.value)
        assert not store.has_blob(BLOB)
    assert corrupting.count("DELETE", "/blobs/uploads/") == 1


# --- deletion, content types, redirects, scopes ----------------------------------------------------


def test_delete_refused_with_405_is_one_sentence() -> None:
    class NoDeletes(MemoryRegistry):
        def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Answer:
            return Answer(405, error_body("UNSUPPORTED", "The operation is unsupported."))

    with memory_store(NoDeletes()) as store:
        for delete in (store.delete_manifest, store.delete_blob):
            with pytest.raises(DeletionDisabledError) as caught:
                delete(BLOB.digest)
            message = str(caught.value)
            assert caught.value.code == "UNSUPPORTED" and caught.value.status == 405
            assert "deletion is disabled" in message and "storage.delete.enabled" in message
            assert message.count(". ") == 0 and "\n" not in message


def test_content_type_contradicting_the_manifest_is_refused(registry: RegistryServer, pushed: str) -> None:
    with RegistryStore(Reference.parse(f"{registry.host}/{pushed}:v1")) as store:
        manifest = build_manifest(Descriptor(mt.OCI_CONFIG, BLOB.digest, BLOB.size), [])
        store.put_manifest(describe(manifest), manifest.raw)
        store.set_root(describe(manifest))

    def retype(method: str, url: str, response: Response) -> Response:
        if "/manifests/" not in url:
            return response
        body = b"".join(iter(lambda: response.read(65536), b""))
        headers = dict(response.headers, **{"Content-Type": mt.DOCKER_MANIFEST})
        response.close()
        return Answer(response.status, body, headers, url)

    with real_store(registry, f"{pushed}:v1", Recording(after=retype)) as store:
        with pytest.raises(RegistryError, match="serves tag v1 as .*docker.*mediaType is .*oci.image.manifest"):
            store.root()


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str, list[str | None]]]:
    """127.0.0.1 asks for Basic credentials and redirects blob reads to 127.0.0.2, which records what it was sent."""
    seen: list[str | None] = []

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            self.wfile.write(DATA)

        def log_message(self, *args: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Other)

    class Registry(Other):
        def do_GET(self) -> None:  # noqa: N802
            if self.headers.get("Authorization") is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="test"')
                self.send_header("Content-Length", "0")
            else:
                self.send_response(307)
                self.send_header("Location", f"http://127.0.0.2:{other.server_address[1]}/storage/blob")
                self.send_header("Content-Length", "0")
            self.end_headers()

    registry = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
               for server in (other, registry)]  # fmt: skip
    for thread in threads:
        thread.start()
    try:
        yield f"127.0.0.1:{registry.server_address[1]}", f"127.0.0.2:{other.server_address[1]}", seen
    finally:
        for server in (other, registry):
            server.shutdown()
            server.server_close()


def test_authorization_is_not_forwarded_to_another_host(two_hosts: tuple[str, str, list[str | None]]) -> None:
    registry, storage, seen = two_hosts
    credentials = Credentials("alice", "secret")
    with RegistryStore(Reference.parse(f"{registry}/a/b"), credentials=credentials) as store:
        with store.open_blob(BLOB) as reader:
            assert read_whole(reader) == DATA and reader.verified
    assert seen == [None]  # the storage host got the request, without the registry's credentials


def test_push_and_mount_ask_for_push_scopes_before_any_body() -> None:
    """Body-less requests (HEAD, POST) meet the 401 first; the token covers push, and the mount's source for pull."""
    tokens: list[list[str]] = []
    sent: list[tuple[str, bool, bool]] = []

    class Bearer(MemoryRegistry):
        def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Answer:
            parts = urlsplit(url)
            if parts.path == "/token":
                tokens.append(parse_qs(parts.query)["scope"])
                return Answer(200, b'{"token": "t"}')
            sent.append((method, body is not None, headers.get("Authorization") == "Bearer t"))
            if headers.get("Authorization") != "Bearer t":
                challenge = 'Bearer realm="http://127.0.0.1:9/token",service="test"'
                return Answer(401, error_body("UNAUTHORIZED"), {"WWW-Authenticate": challenge})
            if "mount=" in parts.query:
                return Answer(201)
            return super().request(method, url, headers, body)

    registry = Bearer()
    with memory_store(registry) as store, RegistryStore(Reference.parse("127.0.0.1:9/c/d")) as origin:
        assert not store.has_blob(BLOB)
        store.put_blob(BLOB, io.BytesIO(DATA))
        assert store.mount_blob(BLOB, origin)
    assert tokens == [["repository:a/b:pull,push"], ["repository:a/b:pull,push", "repository:c/d:pull"]]
    assert all(authorised for method, has_body, authorised in sent if has_body)
