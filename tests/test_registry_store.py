"""RegistryStore against the real CNCF registry, compared with skopeo; failures injected through the transport seam."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from ocilab.errors import ComponentUnavailableError, NotFoundError, RegistryError, VerificationError
from ocilab.model import Descriptor, Digest, Platform, Reference
from ocilab.model import mediatype as mt
from ocilab.operations.registry_server import RegistryServer
from ocilab.stores.image import Image, ImageIndex, load_image, resolve
from ocilab.stores.registry import RegistryStore, RequestsTransport, Response, Transport, is_loopback
from tests.conftest import require_tool, run

OTHER_DIGEST = Digest.of_bytes(b"not the manifest")


def open_store(reference: str, transport: Transport | None = None) -> RegistryStore:
    return RegistryStore(Reference.parse(reference.removeprefix("docker://")), transport=transport)


@pytest.fixture(scope="module")
def skopeo_inspect(pushed_image: str) -> dict:
    require_tool("skopeo")
    return json.loads(run("skopeo", "inspect", "--tls-verify=false", pushed_image).stdout)


class FakeResponse:
    """A response made up in the test."""

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str] | None = None, url: str = "fake") -> None:
        self.status = status
        self.headers = CaseInsensitiveDict(headers or {})
        self.url = url
        self._body = body
        self.closed = False

    def read(self, size: int) -> bytes:
        chunk, self._body = self._body[:size], self._body[size:]
        return chunk

    def close(self) -> None:
        self.closed = True


class Tampering:
    """A transport that passes requests to the real one and lets a test rewrite responses."""

    def __init__(self, rewrite: Callable[[str, Response], Response] = lambda url, response: response) -> None:
        self._real = RequestsTransport(trust_env=False)
        self._rewrite = rewrite
        self.urls: list[str] = []

    def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
        self.urls.append(url)
        return self._rewrite(url, self._real.request(method, url, headers))

    def close(self) -> None:
        self._real.close()


def replaced(response: Response, body: bytes | None = None, **headers: str) -> FakeResponse:
    """A copy of a real response, with another body and/or other headers (an empty value hides a header)."""
    if body is None:
        body = read_whole(response)
    response.close()
    merged = CaseInsensitiveDict(response.headers)
    merged.pop("Content-Length", None)
    merged.update({key.replace("_", "-"): value for key, value in headers.items()})
    return FakeResponse(response.status, body, merged, response.url)


def read_whole(response: Response) -> bytes:
    return b"".join(iter(lambda: response.read(65536), b""))


def is_layer(url: str, image: Image) -> bool:
    return any(url.endswith(f"/blobs/{layer.digest}") for layer in image.layers)


def drain_layers(image: Image) -> None:
    for position in range(len(image.layers)):
        with image.open_layer(position) as reader:
            reader.drain()


# --- real registry, compared with skopeo ---------------------------------------------------------


def test_manifest_and_layer_digests_match_skopeo(pushed_image: str, skopeo_inspect: dict) -> None:
    with open_store(pushed_image) as store:
        image = resolve(store)
        assert isinstance(image, Image)
        assert str(image.manifest_digest) == skopeo_inspect["Digest"]
        assert [str(layer.digest) for layer in image.layers] == skopeo_inspect["Layers"]
        assert image.media_type == mt.OCI_MANIFEST
        assert str(image.platform) == f"{skopeo_inspect['Os']}/{skopeo_inspect['Architecture']}"


def test_layers_stream_and_verify(pushed_image: str) -> None:
    with open_store(pushed_image) as store:
        image = load_image(store)
        for position in range(len(image.layers)):
            with image.open_layer(position) as reader:
                reader.drain()
                assert reader.verified


def test_root_describes_the_manifest_and_the_document_is_not_fetched_twice(pushed_image: str) -> None:
    counting = Tampering()
    with open_store(pushed_image, counting) as store:
        descriptor = store.root()
        raw = store.read_document(descriptor, "manifest")
        assert descriptor.media_type == mt.OCI_MANIFEST
        assert descriptor.size == len(raw)
        assert descriptor.digest == Digest.of_bytes(raw)
        load_image(store)
    assert store.reference == pushed_image
    assert sum("/manifests/" in url for url in counting.urls) == 2  # one per root(), none per read_document


def test_pinned_by_digest(pushed_image: str, skopeo_inspect: dict) -> None:
    name = pushed_image.removeprefix("docker://").rsplit(":", 1)[0]
    for text in (f"{name}@{skopeo_inspect['Digest']}", f"{name}:1@{skopeo_inspect['Digest']}"):
        with open_store(text) as store:
            assert str(load_image(store).manifest_digest) == skopeo_inspect["Digest"]


def test_wrong_digest_is_not_found(pushed_image: str) -> None:
    name = pushed_image.removeprefix("docker://").rsplit(":", 1)[0]
    with open_store(f"{name}@{OTHER_DIGEST}") as store, pytest.raises(NotFoundError, match=str(OTHER_DIGEST)):
        store.root()


def test_unknown_tag_is_not_found(pushed_image: str) -> None:
    name = pushed_image.removeprefix("docker://").rsplit(":", 1)[0]
    with open_store(f"{name}:no-such-tag") as store, pytest.raises(NotFoundError, match="no-such-tag"):
        store.root()


def test_unknown_repository_is_not_found(registry: RegistryServer, pushed_image: str) -> None:
    with open_store(f"{registry.host}/ocilab/nothing-here:1") as store:
        with pytest.raises(NotFoundError, match="ocilab/nothing-here"):
            store.root()
        with pytest.raises(NotFoundError, match="ocilab/nothing-here"):
            store.tags()


def test_unknown_blob_is_not_found(pushed_image: str) -> None:
    with open_store(pushed_image) as store:
        missing = Descriptor(mt.OCI_LAYER_GZIP, OTHER_DIGEST, 10)
        with pytest.raises(NotFoundError, match=f"blob {OTHER_DIGEST}"):
            store.open_blob(missing)


def test_index_and_its_manifest_by_digest(registry: RegistryServer, oci_layout: Path, skopeo_inspect: dict) -> None:
    repository = f"{registry.host}/ocilab/indexed"
    run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{oci_layout}:v1", f"docker://{repository}:single")
    with open_store(f"{repository}:single") as store:
        manifest = store.root()
    platform = {"os": skopeo_inspect["Os"], "architecture": skopeo_inspect["Architecture"]}
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [{**manifest.to_json(), "platform": platform}]}
    ).encode()
    put = requests.put(
        f"{registry.url}/v2/ocilab/indexed/manifests/multi",
        data=index,
        headers={"Content-Type": mt.OCI_INDEX},
        timeout=10,
    )
    assert put.status_code == 201, put.text
    with open_store(f"{repository}:multi") as store:
        node = resolve(store)
        assert isinstance(node, ImageIndex) and node.descriptor.digest == Digest.of_bytes(index)
        image = node.image(Platform(platform["os"], platform["architecture"]))
        assert str(image.manifest_digest) == skopeo_inspect["Digest"]
        drain_layers(image)


def test_tags_and_paginated_catalog(registry: RegistryServer, oci_layout: Path, pushed_image: str) -> None:
    for tag in ("a", "b", "c"):
        destination = f"docker://{registry.host}/ocilab/tagged:{tag}"
        run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{oci_layout}:v1", destination)

    class OnePerPage(Tampering):
        def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
            return super().request(method, url + "?n=1" if url.endswith("/_catalog") else url, headers)

    paged = OnePerPage()
    with open_store(f"{registry.host}/ocilab/tagged", paged) as store:
        assert sorted(store.tags()) == ["a", "b", "c"]
        assert {"ocilab/busybox", "ocilab/tagged"} <= set(store.catalog())
    assert sum("/_catalog" in url for url in paged.urls) >= 2  # one page per repository


def test_tags_follow_relative_link_headers() -> None:
    pages = {
        "http://127.0.0.1:9/v2/a/b/tags/list": (["1", "2"], '</v2/a/b/tags/list?last=2&n=2>; rel="next"'),
        "http://127.0.0.1:9/v2/a/b/tags/list?last=2&n=2": (["3"], ""),
    }

    class Pages:
        def request(self, method: str, url: str, headers: Mapping[str, str]) -> Response:
            tags, link = pages[url]
            return FakeResponse(200, json.dumps({"name": "a/b", "tags": tags}).encode(), {"Link": link}, url)

        def close(self) -> None:
            pass

    with open_store("127.0.0.1:9/a/b", Pages()) as store:
        assert store.tags() == ["1", "2", "3"]


def test_stopped_registry_is_unavailable(tmp_path: Path) -> None:
    with RegistryServer(tmp_path / "data") as server:
        host = server.host
    with open_store(f"{host}/ocilab/busybox:1") as store:
        with pytest.raises(ComponentUnavailableError, match=rf"http://{host}/v2/.*is the registry running"):
            store.root()


def test_https_to_a_plain_http_registry_fails_cleanly(registry: RegistryServer) -> None:
    reference = Reference.parse(f"{registry.host}/ocilab/busybox:1")
    with RegistryStore(reference, insecure=False) as store:
        assert store.base_url.startswith("https://")
        with pytest.raises(ComponentUnavailableError, match="TLS"):
            store.root()


# --- schemes and hosts (no network) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1:5000", True),
        ("127.3.4.5", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("registry.example.com", False),
        ("10.0.0.1:5000", False),
        ("[2001:db8::1]:443", False),
    ],
)
def test_loopback_hosts(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_scheme_follows_host_and_options() -> None:
    def base(text: str, **options: bool) -> str:
        with RegistryStore(Reference.parse(text), **options) as store:  # type: ignore[arg-type]
            return store.base_url

    assert base("localhost:5000/a/b") == "http://localhost:5000"
    assert base("registry.example.com/a/b") == "https://registry.example.com"
    assert base("registry.example.com/a/b", insecure=True) == "http://registry.example.com"
    assert base("127.0.0.1:5000/a/b", insecure=False) == "https://127.0.0.1:5000"
    assert base("busybox") == "https://registry-1.docker.io"


# --- failures the real registry cannot produce, through the transport seam ------------------------


def test_server_error_is_a_registry_error_with_the_registry_message(pushed_image: str) -> None:
    body = json.dumps({"errors": [{"code": "UNKNOWN", "message": "storage backend exploded"}]}).encode()
    failing = Tampering(lambda url, response: FakeResponse(500, body))
    with open_store(pushed_image, failing) as store, pytest.raises(RegistryError) as caught:
        store.root()
    assert caught.value.status == 500
    assert "HTTP 500" in str(caught.value) and "UNKNOWN: storage backend exploded" in str(caught.value)
    assert not isinstance(caught.value, NotFoundError)


def test_connection_dropped_mid_blob_is_never_silent(pushed_image: str) -> None:
    with open_store(pushed_image) as store:
        image = load_image(store)

    def truncate(url: str, response: Response) -> Response:
        if not is_layer(url, image):
            return response
        whole = read_whole(response)
        return replaced(response, whole[: len(whole) // 2])

    with open_store(pushed_image, Tampering(truncate)) as store:
        with pytest.raises(VerificationError, match="truncated"):
            drain_layers(load_image(store))


def test_connection_reset_mid_blob_is_unavailable(pushed_image: str) -> None:
    with open_store(pushed_image) as store:
        image = load_image(store)

    class Resetting(FakeResponse):
        def read(self, size: int) -> bytes:
            if not self._body:
                raise ConnectionResetError(104, "Connection reset by peer")
            return super().read(min(size, 100))

    def reset(url: str, response: Response) -> Response:
        if not is_layer(url, image):
            return response
        response.close()
        return Resetting(200, b"x" * 300, url=url)

    with open_store(pushed_image, Tampering(reset)) as store:
        with pytest.raises(ComponentUnavailableError, match="failed while reading the response: .*reset by peer"):
            drain_layers(load_image(store))


def test_blob_with_other_bytes_fails_verification(pushed_image: str) -> None:
    with open_store(pushed_image) as store:
        image = load_image(store)

    def corrupt(url: str, response: Response) -> Response:
        if not is_layer(url, image):
            return response
        whole = bytearray(read_whole(response))
        whole[len(whole) // 2] ^= 0xFF
        return replaced(response, bytes(whole))

    with open_store(pushed_image, Tampering(corrupt)) as store:
        with pytest.raises(VerificationError, match="does not match its digest"):
            drain_layers(load_image(store))


def test_announced_length_that_differs_from_the_descriptor_fails_before_reading(pushed_image: str) -> None:
    with open_store(pushed_image) as store:
        image = load_image(store)

    def lie(url: str, response: Response) -> Response:
        return replaced(response, content_length="1") if is_layer(url, image) else response

    with open_store(pushed_image, Tampering(lie)) as store:
        with pytest.raises(VerificationError, match="announces 1 bytes"):
            load_image(store).open_layer(0)


def test_manifest_not_matching_docker_content_digest_fails(pushed_image: str) -> None:
    def lie(url: str, response: Response) -> Response:
        return replaced(response, docker_content_digest=str(OTHER_DIGEST)) if "/manifests/" in url else response

    with open_store(pushed_image, Tampering(lie)) as store:
        with pytest.raises(VerificationError, match="Docker-Content-Digest"):
            store.root()


def test_manifest_not_matching_the_pinned_digest_fails(pushed_image: str, skopeo_inspect: dict) -> None:
    name = pushed_image.removeprefix("docker://").rsplit(":", 1)[0]

    def swap(url: str, response: Response) -> Response:
        if "/manifests/" not in url:
            return response
        original = read_whole(response)
        return replaced(response, original + b"\n", docker_content_digest="")

    with open_store(f"{name}@{skopeo_inspect['Digest']}", Tampering(swap)) as store:
        with pytest.raises(VerificationError, match="digest is sha256:"):
            store.root()


# --- a real HTTP server that drops the connection, through the default transport ------------------


@pytest.fixture
def dropping_server() -> Iterator[str]:
    """A registry impostor that promises 1000 bytes of every blob and closes after 10."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_real_connection_closed_mid_blob(dropping_server: str) -> None:
    blob = Descriptor(mt.OCI_LAYER_GZIP, Digest.of_bytes(b"x" * 1000), 1000)
    with open_store(f"{dropping_server}/ocilab/busybox:1") as store:
        with pytest.raises(ComponentUnavailableError, match=f"connection to http://{dropping_server}/.* failed"):
            with store.open_blob(blob) as reader:
                reader.drain()
