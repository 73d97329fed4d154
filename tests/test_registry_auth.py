"""Registry authentication: challenge parsing, Docker's config.json, Basic against a real htpasswd registry,
and the Bearer token exchange against a small local token server."""

from __future__ import annotations

import base64
import http.server
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ocilab.errors import AuthenticationError, InvalidInputError
from ocilab.model import Digest, Reference
from ocilab.model import mediatype as mt
from ocilab.operations.registry_server import RegistryServer, find_registry_binary
from ocilab.stores.image import Image, load_image
from ocilab.stores.registry import (
    Challenge,
    Credentials,
    DockerConfig,
    RegistryStore,
    docker_config_path,
    parse_challenges,
)
from tests.conftest import require, require_tool, run

USER, PASSWORD = "alice", "s3cret,with:colon"


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DOCKER_CONFIG directory, so the user's own credentials never take part."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory / "config.json"


def write_config(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document))


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def drain(image: Image) -> None:
    for position in range(len(image.layers)):
        with image.open_layer(position) as reader:
            reader.drain()
            assert reader.verified


# --- challenges -----------------------------------------------------------------------------------


def test_basic_challenge() -> None:
    assert parse_challenges('Basic realm="Registry Realm"') == [Challenge("basic", {"realm": "Registry Realm"})]


def test_bearer_challenge_with_commas_inside_quotes() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:samalba/my-app:pull,push"'
    )
    [challenge] = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.example/token"
    assert challenge.service == "registry.example"
    assert challenge.scope == "repository:samalba/my-app:pull,push"


def test_several_challenges_spaces_escapes_and_case() -> None:
    header = 'Newauth realm="apps", type=1, title="Login to \\"apps\\"", BASIC REALM="simple" , bearer realm=x'
    assert parse_challenges(header) == [
        Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
        Challenge("basic", {"realm": "simple"}),
        Challenge("bearer", {"realm": "x"}),
    ]


def test_token68_and_bare_schemes() -> None:
    assert parse_challenges("Negotiate abc123==, Basic") == [
        Challenge("negotiate", {}, "abc123=="),
        Challenge("basic"),
    ]


@pytest.mark.parametrize("header", ["", "   ", ",,", '="x"'])
def test_no_challenge(header: str) -> None:
    assert parse_challenges(header) == []


# --- Docker's config.json -------------------------------------------------------------------------


def test_config_path_follows_docker_config(docker_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert docker_config_path() == docker_config
    monkeypatch.delenv("DOCKER_CONFIG")
    assert docker_config_path() == Path.home() / ".docker" / "config.json"


def test_credentials_from_auth_and_from_fields(docker_config: Path) -> None:
    write_config(
        docker_config,
        {
            "auths": {
                "127.0.0.1:5000": {"auth": basic(USER, PASSWORD)},
                "https://registry.example.com/v1/": {"username": "bob", "password": "pw"},
                "https://index.docker.io/v1/": {"auth": basic("hubuser", "hubpw")},
            }
        },
    )
    config = DockerConfig()
    found = config.credentials("127.0.0.1:5000")
    assert found is not None and (found.username, found.password) == (USER, PASSWORD)
    assert str(docker_config) in found.source and PASSWORD not in repr(found)
    other = config.credentials("registry.example.com")
    assert other is not None and (other.username, other.password) == ("bob", "pw")
    hub = config.credentials("docker.io")
    assert hub is not None and hub.username == "hubuser"
    assert config.credentials("127.0.0.1:5001") is None


def test_missing_config_means_no_credentials(docker_config: Path) -> None:
    assert not docker_config.exists()
    assert DockerConfig().credentials("127.0.0.1:5000") is None


def test_credential_helpers_are_named_not_used(docker_config: Path) -> None:
    write_config(
        docker_config, {"auths": {"127.0.0.1:5000": {}}, "credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud"}}
    )
    config = DockerConfig()
    assert config.credentials("127.0.0.1:5000") is None
    assert config.helper("127.0.0.1:5000") == "desktop"
    assert config.helper("gcr.io") == "gcloud"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({"auths": {"h:1": {"auth": "!!!"}}}), "not base64"),
        (json.dumps({"auths": {"h:1": {"auth": base64.b64encode(b"nocolon").decode()}}}), "user:password"),
    ],
)
def test_bad_config_is_refused_naming_the_file(docker_config: Path, text: str, problem: str) -> None:
    docker_config.write_text(text)
    with pytest.raises(InvalidInputError, match=problem) as caught:
        DockerConfig().credentials("h:1")
    assert str(docker_config) in str(caught.value)


# --- Basic, against a real registry with htpasswd --------------------------------------------------


@dataclass
class Protected:
    server: RegistryServer
    reference: str
    digest: str


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory, oci_layout: Path) -> Iterator[Protected]:
    """A real registry demanding Basic auth (bcrypt htpasswd made by apache2-utils), with the test image pushed."""
    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    htpasswd_tool = require_tool("htpasswd")
    root = tmp_path_factory.mktemp("protected-registry")
    htpasswd = root / "htpasswd"
    htpasswd.write_text(run(htpasswd_tool, "-Bbn", USER, PASSWORD).stdout)
    with RegistryServer(root / "data", htpasswd=htpasswd) as server:
        reference = f"{server.host}/ocilab/private:1"
        creds = f"--dest-creds={USER}:{PASSWORD}"
        run(
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            creds,
            f"oci:{oci_layout}:v1",
            f"docker://{reference}",
        )
        inspect = run("skopeo", "inspect", "--tls-verify=false", f"--creds={USER}:{PASSWORD}", f"docker://{reference}")
        yield Protected(server, reference, json.loads(inspect.stdout)["Digest"])


def test_no_credentials_is_an_authentication_error(protected: Protected, docker_config: Path) -> None:
    with RegistryStore(Reference.parse(protected.reference)) as store, pytest.raises(AuthenticationError) as caught:
        store.root()
    message = str(caught.value)
    assert caught.value.status == 401
    assert protected.server.host in message and "ocilab/private" in message
    assert f"docker login {protected.server.host}" in message and str(docker_config) in message


def test_credentials_from_docker_config(protected: Protected, docker_config: Path) -> None:
    write_config(docker_config, {"auths": {protected.server.host: {"auth": basic(USER, PASSWORD)}}})
    with RegistryStore(Reference.parse(protected.reference)) as store:
        image = load_image(store)
        assert str(image.manifest_digest) == protected.digest
        drain(image)


def test_username_and_password_fields_under_a_url_key(protected: Protected, docker_config: Path) -> None:
    key = f"http://{protected.server.host}/v1/"
    write_config(docker_config, {"auths": {key: {"username": USER, "password": PASSWORD}}})
    with RegistryStore(Reference.parse(protected.reference)) as store:
        assert str(load_image(store).manifest_digest) == protected.digest


def test_given_credentials(protected: Protected) -> None:
    with RegistryStore(Reference.parse(protected.reference), credentials=Credentials(USER, PASSWORD)) as store:
        assert str(load_image(store).manifest_digest) == protected.digest


def test_wrong_password_is_refused(protected: Protected, docker_config: Path) -> None:
    write_config(docker_config, {"auths": {protected.server.host: {"auth": basic(USER, "wrong")}}})
    with RegistryStore(Reference.parse(protected.reference)) as store, pytest.raises(AuthenticationError) as caught:
        store.root()
    assert "refused the credentials from" in str(caught.value) and str(docker_config) in str(caught.value)


def test_a_credential_helper_is_named_in_the_error(protected: Protected, docker_config: Path) -> None:
    write_config(docker_config, {"auths": {protected.server.host: {}}, "credsStore": "desktop"})
    with RegistryStore(Reference.parse(protected.reference)) as store:
        with pytest.raises(AuthenticationError, match="credential helper 'desktop', which ocilab does not read"):
            store.root()


# --- Bearer, against a local token server ---------------------------------------------------------


@dataclass
class TokenRegistry:
    """A tiny registry on 127.0.0.1 that demands Bearer tokens and issues them at /token."""

    host: str = ""
    service: str = "ocilab-test"
    token_field: str = "token"
    required_basic: str | None = None
    token_requests: list[dict[str, object]] = field(default_factory=list)
    registry_authorizations: list[str | None] = field(default_factory=list)
    documents: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return "t0ken-for-ocilab"

    def challenge(self, repository: str) -> str:
        return f'Bearer realm="http://{self.host}/token",service="{self.service}",scope="repository:{repository}:pull"'


def tiny_image() -> dict[str, tuple[str, bytes]]:
    """Manifest (by tag ``1`` and by digest), config and layer of a one-file image, by URL path."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"hello through a bearer token\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    layer = buffer.getvalue()
    layer_digest = str(Digest.of_bytes(layer))
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": str(Digest.of_bytes(config)), "size": len(config)},
            "layers": [{"mediaType": mt.OCI_LAYER_TAR, "digest": layer_digest, "size": len(layer)}],
        }
    ).encode()
    prefix = "/v2/ocilab/tokened"
    return {
        f"{prefix}/manifests/1": (mt.OCI_MANIFEST, manifest),
        f"{prefix}/manifests/{Digest.of_bytes(manifest)}": (mt.OCI_MANIFEST, manifest),
        f"{prefix}/blobs/{Digest.of_bytes(config)}": ("application/octet-stream", config),
        f"{prefix}/blobs/{layer_digest}": ("application/octet-stream", layer),
    }


@pytest.fixture
def token_registry() -> Iterator[TokenRegistry]:
    state = TokenRegistry(documents=tiny_image())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urlsplit(self.path)
            if url.path == "/token":
                self._token(parse_qs(url.query))
            else:
                self._registry(url.path)

        def _token(self, query: dict[str, list[str]]) -> None:
            state.token_requests.append({"query": query, "authorization": self.headers.get("Authorization")})
            if state.required_basic is not None and self.headers.get("Authorization") != state.required_basic:
                return self._send(401, "application/json", b'{"details":"bad credentials"}')
            body = json.dumps({state.token_field: state.token, "expires_in": 300}).encode()
            return self._send(200, "application/json", body)

        def _registry(self, path: str) -> None:
            state.registry_authorizations.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                error = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                return self._send(401, "application/json", error, state.challenge("ocilab/tokened"))
            if path not in state.documents:
                return self._send(404, "application/json", b'{"errors":[{"code":"BLOB_UNKNOWN","message":"?"}]}')
            return self._send(200, *state.documents[path])

        def _send(self, status: int, content_type: str, body: bytes, challenge: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if challenge:
                self.send_header("WWW-Authenticate", challenge)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 5
    state.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_anonymous_bearer_token_is_fetched_once_per_scope(token_registry: TokenRegistry) -> None:
    with RegistryStore(Reference.parse(f"{token_registry.host}/ocilab/tokened:1")) as store:
        drain(load_image(store))
    [request] = token_registry.token_requests
    assert request["query"] == {"service": ["ocilab-test"], "scope": ["repository:ocilab/tokened:pull"]}
    assert request["authorization"] is None
    # one anonymous try, then manifest, config and layer all with the cached token
    assert token_registry.registry_authorizations == [None] + [f"Bearer {token_registry.token}"] * 3


def test_bearer_token_server_gets_basic_credentials(token_registry: TokenRegistry, docker_config: Path) -> None:
    token_registry.required_basic = f"Basic {basic(USER, PASSWORD)}"
    token_registry.token_field = "access_token"
    write_config(docker_config, {"auths": {token_registry.host: {"auth": basic(USER, PASSWORD)}}})
    with RegistryStore(Reference.parse(f"{token_registry.host}/ocilab/tokened:1")) as store:
        drain(load_image(store))
    assert [request["authorization"] for request in token_registry.token_requests] == [token_registry.required_basic]


def test_bearer_token_server_refusing_is_an_authentication_error(token_registry: TokenRegistry) -> None:
    token_registry.required_basic = f"Basic {basic(USER, PASSWORD)}"
    with RegistryStore(Reference.parse(f"{token_registry.host}/ocilab/tokened:1")) as store:
        with pytest.raises(AuthenticationError, match=rf"token server http://{token_registry.host}/token refused"):
            store.root()
