"""Registries (``docker://``): the distribution API over HTTP(S) to read, push and delete; Basic and Bearer auth."""

from ocilab.stores.registry.auth import (
    Authenticator,
    Challenge,
    Credentials,
    DockerConfig,
    docker_config_path,
    parse_challenges,
)
from ocilab.stores.registry.retry import RetryPolicy
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
    "RetryPolicy",
    "Transport",
    "docker_config_path",
    "is_loopback",
    "parse_challenges",
]
