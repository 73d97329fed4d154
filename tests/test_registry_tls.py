"""A real registry serving TLS with a certificate made here: verified with its CA, refused without it."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocilab.errors import ComponentUnavailableError, RegistryError
from ocilab.model import Reference
from ocilab.operations.registry_server import RegistryServer, find_registry_binary
from ocilab.stores.image import load_image
from ocilab.stores.registry import RegistryStore
from tests.conftest import require, require_tool, run


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by openssl."""
    require_tool("openssl")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    run(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]) -> Iterator[RegistryServer]:
    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    with RegistryServer(tmp_path_factory.mktemp("tls-registry"), tls=certificate) as server:
        yield server


@pytest.fixture(scope="module")
def tls_image(tls_registry: RegistryServer, oci_layout: Path) -> Reference:
    """The test image pushed over TLS by skopeo (which is told to skip the check: we test our side)."""
    target = f"{tls_registry.host}/ocilab/busybox:tls"
    run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{oci_layout}:v1", f"docker://{target}")
    return Reference.parse(target)


def test_server_presents_the_certificate_made_here(
    tls_registry: RegistryServer, certificate: tuple[Path, Path]
) -> None:
    """The handshake itself, not the URL ocilab built: the registry's port answers TLS with our certificate."""
    host, port = tls_registry.host.rsplit(":", 1)
    presented = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, int(port)), timeout=10))
    assert presented == ssl.PEM_cert_to_DER_cert(certificate[0].read_text())
    assert tls_registry.url == f"https://{tls_registry.host}"


def test_verified_with_the_ca(tls_image: Reference, certificate: tuple[Path, Path]) -> None:
    peer = json.loads(run("skopeo", "inspect", "--tls-verify=false", f"docker://{tls_image}").stdout)
    with RegistryStore(tls_image, insecure=False, ca_file=certificate[0]) as store:
        image = load_image(store)
        assert str(image.manifest_digest) == peer["Digest"]
        assert [str(layer.digest) for layer in image.layers] == peer["Layers"]
        image.open_layer(0).drain()


def test_unknown_certificate_is_refused(tls_image: Reference) -> None:
    with RegistryStore(tls_image, insecure=False) as store, pytest.raises(ComponentUnavailableError) as caught:
        store.root()
    message = str(caught.value)
    assert f"TLS failed for https://{tls_image.host}/v2/" in message
    assert "certificate verify failed" in message and "ca_file" in message


def test_verification_can_be_skipped(tls_image: Reference) -> None:
    peer = json.loads(run("skopeo", "inspect", "--tls-verify=false", f"docker://{tls_image}").stdout)
    with RegistryStore(tls_image, insecure=False, tls_verify=False) as store:
        image = load_image(store)
        assert str(image.manifest_digest) == peer["Digest"]
        image.open_layer(1).drain()


def test_plain_http_to_a_tls_registry_fails_cleanly(tls_image: Reference) -> None:
    """Loopback defaults to plain HTTP; against a TLS-only registry that is a clear error, not a hang."""
    with RegistryStore(tls_image) as store, pytest.raises(RegistryError) as caught:
        store.root()
    assert caught.value.status == 400
    assert f"GET http://{tls_image.host}/v2/" in str(caught.value) and "insecure=False" in str(caught.value)
