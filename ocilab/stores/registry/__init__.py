"""Registries (``docker://``): the distribution API over HTTP(S), with Basic and Bearer authentication."""

from ocilab.stores.registry.auth import (
    Authenticator,
    Challenge,
    Credentials,
    DockerConfig,
    docker_config_path,
    parse_challenges,
)
from ocilab.stores.registry.store import RegistryStore, is_loopback
from ocilab.stores.registry.transport import RequestsTransport, Response, Transport

__all__ = [
    "Authenticator",
    "Challenge",
    "Credentials",
    "DockerConfig",
    "RegistryStore",
    "RequestsTransport",
    "Response",
    "Transport",
    "docker_config_path",
    "is_loopback",
    "parse_challenges",
]
