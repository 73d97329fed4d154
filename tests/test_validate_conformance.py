"""Validation says exactly what the OCI image-spec says: one test per rule, the spec's sentence in the docstring.

Documents come from the spec's own examples (accepted) and invalid variants of
them (refused, naming the field). Whole images are OCI layouts written by hand
here, so the tests do not depend on ocilab's writers; umoci is the peer that
reads the same layers.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

import ocilab
from ocilab.errors import ValidationError
from ocilab.model import mediatype as mt
from ocilab.model import parse_config, parse_descriptor, parse_index, parse_manifest
from ocilab.operations.validate import validate_store
from ocilab.stores.layout import open_layout
from tests.conftest import require_tool
from tests.random_image import write_random_image
from tests.test_cli import ocilab as run_cli
from tests.test_model import DELETE, SPEC_CONFIG, SPEC_INDEX, SPEC_MANIFEST, encode, mutated

EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
EMPTY_DESCRIPTOR = {"mediaType": mt.OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2, "data": "e30="}

# descriptor.md's examples.
SPEC_DESCRIPTORS = [
    {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": 7682,
        "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
    },
    {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": 7682,
        "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
        "urls": ["https://example.com/example-manifest"],
    },
    {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": 123,
        "digest": "sha256:87923725d74f4bfb94c9e86d64170f7521aad8221a5de834851470ca142da630",
        "artifactType": "application/vnd.example.sbom.v1",
    },
    EMPTY_DESCRIPTOR,  # manifest.md, "Guidance for an Empty Descriptor"
]

# manifest.md's artifact examples ("Guidelines for Artifact Usage").
SPEC_ARTIFACTS = [
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example+type",
        "config": {k: v for k, v in EMPTY_DESCRIPTOR.items() if k != "data"},
        "layers": [{k: v for k, v in EMPTY_DESCRIPTOR.items() if k != "data"}],
        "annotations": {"oci.opencontainers.image.created": "2023-01-02T03:04:05Z", "com.example.data": "payload"},
    },
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example+type",
        "config": {k: v for k, v in EMPTY_DESCRIPTOR.items() if k != "data"},
        "layers": [
            {
                "mediaType": "application/vnd.example+type",
                "digest": "sha256:e258d248fda94c63753607f7c4494ee0fcbe92f1a76bfdac795c9d84101eb317",
                "size": 1234,
            }
        ],
    },
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example+type",
        "config": {
            "mediaType": "application/vnd.example.config.v1+json",
            "digest": "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            "size": 123,
        },
        "layers": [
            {
                "mediaType": "application/vnd.example.data.v1.tar+gzip",
                "digest": "sha256:e258d248fda94c63753607f7c4494ee0fcbe92f1a76bfdac795c9d84101eb317",
                "size": 1234,
            }
        ],
    },
]

# image-index.md's second example: an index nesting an index.
SPEC_NESTED_INDEX = {
    **SPEC_INDEX,
    "manifests": [
        SPEC_INDEX["manifests"][0],
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "size": 7682,
            "digest": "sha256:601570aaff1b68a61eb9c85b8beca1644e698003e0cdb5bce960f193d265a8b7",
        },
    ],
}


def refused(parse: Any, raw: bytes) -> str:
    """The ``field: problem`` of the ValidationError ``parse(raw)`` raises."""
    with pytest.raises(ValidationError) as caught:
        parse(raw)
    return f"{caught.value.field}: {caught.value.problem}"


def warnings_of(document: Any) -> list[str]:
    return [str(warning) for warning in document.warnings]


# --- the spec's own examples -------------------------------------------------------------------------------


def test_spec_examples_are_accepted_without_warnings() -> None:
    """config.md, manifest.md, image-index.md and descriptor.md examples are valid as written."""
    assert warnings_of(parse_config(encode(SPEC_CONFIG), layer_count=2)) == []
    assert warnings_of(parse_manifest(encode(SPEC_MANIFEST))) == []
    assert warnings_of(parse_index(encode(SPEC_INDEX))) == []
    assert warnings_of(parse_index(encode(SPEC_NESTED_INDEX))) == []
    for descriptor in SPEC_DESCRIPTORS:
        assert warnings_of(parse_descriptor(encode(descriptor))) == []


@pytest.mark.parametrize("artifact", SPEC_ARTIFACTS, ids=["minimal", "without-config", "with-config"])
def test_spec_artifact_examples_are_accepted_with_a_warning_that_they_are_not_images(artifact: dict) -> None:
    """manifest.md: "Content other than OCI container images MAY be packaged using the image manifest." """
    manifest = parse_manifest(encode(artifact))
    assert manifest.artifact_type == "application/vnd.example+type" and not manifest.is_image
    assert [w.field for w in manifest.warnings] == ["config.mediaType"]
    assert "is not an image config: this is an artifact" in manifest.warnings[0].message


# --- configs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["User", "WorkingDir", "StopSignal"])
def test_config_user_workingdir_and_stopsignal_are_strings(key: str) -> None:
    """config.md: **User**, **WorkingDir**, **StopSignal** _string_, OPTIONAL."""
    assert (
        refused(parse_config, mutated(SPEC_CONFIG, f"config.{key}", 0))
        == f"config.{key}: expected a string, got a number"
    )


@pytest.mark.parametrize("key", ["Env", "Entrypoint", "Cmd"])
def test_config_env_entrypoint_and_cmd_are_arrays_of_strings(key: str) -> None:
    """config.md: **Env**, **Entrypoint**, **Cmd** _array of strings_, OPTIONAL."""
    assert (
        refused(parse_config, mutated(SPEC_CONFIG, f"config.{key}", "sh"))
        == f"config.{key}: expected an array, got a string"
    )
    bad_item = mutated(SPEC_CONFIG, f"config.{key}", ["A=1", "B=2", ["nested"]])
    assert refused(parse_config, bad_item) == f"config.{key}[2]: expected a string, got an array"


@pytest.mark.parametrize("entry", ["NO_EQUALS", "=value"])
def test_config_env_entries_are_varname_equals_varvalue(entry: str) -> None:
    """config.md, Env: "Entries are in the format of `VARNAME=VARVALUE`." """
    raw = mutated(SPEC_CONFIG, "config.Env.2", entry)
    assert refused(parse_config, raw) == f"config.Env[2]: {entry!r} is not NAME=VALUE"
    assert parse_config(mutated(SPEC_CONFIG, "config.Env.2", "EMPTY=")).container_config["Env"][2] == "EMPTY="


@pytest.mark.parametrize("port", ["8080/tcp", "53/udp", "80"])
def test_config_exposed_ports_keys_are_port_slash_tcp_or_udp_or_port(port: str) -> None:
    """config.md, ExposedPorts: "Its keys can be in the format of: `port/tcp`, `port/udp`, `port`"."""
    config = parse_config(mutated(SPEC_CONFIG, "config.ExposedPorts", {port: {}}))
    assert warnings_of(config) == []


@pytest.mark.parametrize("port", ["http", "80/", "/tcp", "70000/tcp", "８０"])
def test_config_exposed_ports_key_that_is_not_a_port_is_refused(port: str) -> None:
    """config.md, ExposedPorts: keys are `port/tcp`, `port/udp` or `port`."""
    message = refused(parse_config, mutated(SPEC_CONFIG, "config.ExposedPorts", {port: {}}))
    assert message.startswith(f"config.ExposedPorts.{port}: is not a port")


def test_config_exposed_ports_with_another_protocol_is_a_warning() -> None:
    """config.md lists tcp and udp ("can be in the format of"), not as a MUST: sctp is odd, not invalid."""
    config = parse_config(mutated(SPEC_CONFIG, "config.ExposedPorts", {"9/sctp": {}}))
    assert warnings_of(config) == ["config.ExposedPorts.9/sctp: protocol 'sctp' is not one of the spec's (tcp, udp)"]


@pytest.mark.parametrize("key", ["ExposedPorts", "Volumes"])
def test_config_exposed_ports_and_volumes_map_keys_to_empty_objects(key: str) -> None:
    """config.md: "represented in JSON as an object mapping its keys to an empty object"."""
    assert refused(parse_config, mutated(SPEC_CONFIG, f"config.{key}", {"80": {"x": 1}})) == (
        f"config.{key}.80: expected an empty object, got one with key 'x'"
    )
    assert refused(parse_config, mutated(SPEC_CONFIG, f"config.{key}", {"80": True})) == (
        f"config.{key}.80: expected an empty object, got a boolean"
    )
    assert refused(parse_config, mutated(SPEC_CONFIG, f"config.{key}", ["80"])) == (
        f"config.{key}: expected an object, got an array"
    )


def test_config_labels_are_a_map_of_strings() -> None:
    """config.md, Labels: "This property MUST use the annotation rules" (keys and values are strings)."""
    raw = encode({**SPEC_CONFIG, "config": {**SPEC_CONFIG["config"], "Labels": {"com.example": 1}}})
    assert refused(parse_config, raw) == "config.Labels.com.example: expected a string, got a number"


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [("ArgsEscaped", "true", "a boolean"), ("Memory", "1g", "an integer"), ("Healthcheck", [], "an object")],
)
def test_config_legacy_fields_have_their_types(key: str, value: object, kind: str) -> None:
    """config.md: **ArgsEscaped** _boolean_, **Memory** _integer_, **Healthcheck** _object_, OPTIONAL."""
    assert refused(parse_config, mutated(SPEC_CONFIG, f"config.{key}", value)).startswith(
        f"config.{key}: expected {kind}"
    )


@pytest.mark.parametrize(
    "created",
    [
        "2015-10-31T22:22:56.015925234Z",
        "2015-10-31t22:22:56z",
        "2015-10-31T22:22:56+01:00",
        "2016-12-31T23:59:60Z",
        "2024-02-29T00:00:00-00:00",
        "0001-01-01T00:00:00Z",
    ],
)
def test_created_is_an_rfc3339_date_time(created: str) -> None:
    """config.md, created: "formatted as defined by RFC 3339, section 5.6" ("T" and "Z" may be lower case)."""
    config = parse_config(mutated(mutated_json(SPEC_CONFIG, "history.2.created", created), "created", created))
    assert config.created == created and config.history[2].created == created


@pytest.mark.parametrize(
    ("created", "problem"),
    [
        ("2015-10-31 22:22:56Z", "is not an RFC 3339 date-time"),
        ("2015-10-31T22:22:56", "is not an RFC 3339 date-time"),
        ("2015-10-31T22:22Z", "is not an RFC 3339 date-time"),
        ("yesterday", "is not an RFC 3339 date-time"),
        ("2023-02-29T00:00:00Z", "day 29 is out of range"),
        ("2015-13-01T00:00:00Z", "month 13 is out of range"),
        ("2015-10-31T24:00:00Z", "hour 24 is out of range"),
        ("2015-10-31T22:22:56+01:60", "offset minute 60 is out of range"),
    ],
)
def test_created_that_is_not_rfc3339_is_refused(created: str, problem: str) -> None:
    """config.md, created and history[].created: RFC 3339, section 5.6 date-time."""
    assert problem in refused(parse_config, mutated(SPEC_CONFIG, "created", created))
    assert refused(parse_config, mutated(SPEC_CONFIG, "history.1.created", created)).startswith("history[1].created: ")


def test_author_is_a_string() -> None:
    """config.md: **author** _string_, OPTIONAL (and history[].author)."""
    assert refused(parse_config, mutated(SPEC_CONFIG, "author", ["me"])) == "author: expected a string, got an array"
    assert (
        refused(parse_config, mutated(SPEC_CONFIG, "history.0.author", 7))
        == "history[0].author: expected a string, got a number"
    )


@pytest.mark.parametrize("key", ["architecture", "os"])
def test_architecture_and_os_are_required_non_empty_strings(key: str) -> None:
    """config.md: **architecture** and **os** _string_, REQUIRED."""
    assert refused(parse_config, mutated(SPEC_CONFIG, key, "")) == f"{key}: must not be empty"
    assert refused(parse_config, mutated(SPEC_CONFIG, key, None)) == f"{key}: expected a string, got null"
    assert refused(parse_config, mutated(SPEC_CONFIG, key, DELETE)) == f"{key}: required field is missing"


def test_optional_config_fields_may_be_null() -> None:
    """config.md: "Any OPTIONAL field MAY also be set to null, which is equivalent to being absent." """
    document = json.loads(encode(SPEC_CONFIG))
    document.update(author=None, created=None, variant=None)
    document["config"].update(Entrypoint=None, Volumes=None, Labels=None, Env=None, User=None)
    document["history"][0].update(created=None, empty_layer=None)
    config = parse_config(encode(document), layer_count=2)
    assert config.author is None and config.created is None and config.history[0].empty_layer is False
    assert parse_config(mutated(SPEC_CONFIG, "config", None)).container_config == {}


def test_extra_config_fields_are_not_errors() -> None:
    """config.md: "Any extra fields in the Image JSON struct ... MUST NOT generate an error"."""
    document = {**SPEC_CONFIG, "container_config": {"Hostname": "x"}, "docker_version": "20.10"}
    document["config"] = {**SPEC_CONFIG["config"], "OnBuild": None, "Hostname": "abc"}
    assert warnings_of(parse_config(encode(document))) == []


def test_rootfs_type_must_be_layers() -> None:
    """config.md, rootfs.type: "MUST be set to `layers`"."""
    assert (
        refused(parse_config, mutated(SPEC_CONFIG, "rootfs.type", "layer"))
        == "rootfs.type: must be \"layers\", got 'layer'"
    )


# --- descriptors -------------------------------------------------------------------------------------------

DESCRIPTOR = SPEC_DESCRIPTORS[0]


@pytest.mark.parametrize(
    "url",
    [
        "example.com/manifest",
        "//example.com/x",
        "https://example.com/a b",
        "https://x/%zz",
        "https://x/#a#b",
        "1http://x",
    ],
)
def test_descriptor_urls_are_rfc3986_uris(url: str) -> None:
    """descriptor.md, urls: "Each entry MUST conform to RFC 3986." (a URI has a scheme)."""
    raw = encode({**DESCRIPTOR, "urls": ["https://example.com/ok", url]})
    assert refused(parse_descriptor, raw) == f"urls[1]: {url!r} is not an RFC 3986 URI (a scheme, then URI characters)"


def test_descriptor_urls_other_than_http_are_a_warning() -> None:
    """descriptor.md, urls: "Entries SHOULD use the `http` and `https` schemes"."""
    descriptor = parse_descriptor(
        encode({**DESCRIPTOR, "urls": ["HTTPS://example.com/a?b=c#d", "ftp://example.com/x"]})
    )
    assert descriptor.urls == ("HTTPS://example.com/a?b=c#d", "ftp://example.com/x")
    assert warnings_of(descriptor) == ["urls[1]: scheme 'ftp': entries should use http or https"]


def test_descriptor_annotations_are_a_map_of_strings() -> None:
    """annotations.md: "Annotations MUST be a key-value map where both the key and value MUST be strings." """
    assert (
        refused(parse_descriptor, encode({**DESCRIPTOR, "annotations": {"a": None}}))
        == "annotations.a: expected a string, got null"
    )
    assert (
        refused(parse_descriptor, encode({**DESCRIPTOR, "annotations": ["a"]}))
        == "annotations: expected an object, got an array"
    )


def test_predefined_created_annotation_that_is_not_rfc3339_is_a_warning() -> None:
    """annotations.md: org.opencontainers.image.created "conforming to RFC 3339"; unknown values are not errors."""
    manifest = parse_manifest(mutated(SPEC_MANIFEST, "annotations", {"org.opencontainers.image.created": "today"}))
    assert [w.field for w in manifest.warnings] == ["annotations.org.opencontainers.image.created"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("e30", "data: is not base64 (RFC 4648 section 4: standard alphabet, padded)"),
        ("e3-=", "data: is not base64 (RFC 4648 section 4: standard alphabet, padded)"),
        ("e30=\n", "data: is not base64 (RFC 4648 section 4: standard alphabet, padded)"),
        ("é30=", "data: is not base64 (RFC 4648 section 4: standard alphabet, padded)"),
        ("e30AAA==", "data: decodes to 4 bytes, but size is 2"),
        ("W10=", f"data: decodes to content whose digest is not {EMPTY_DIGEST}"),
    ],
)
def test_descriptor_data_is_base64_of_the_content(data: str, problem: str) -> None:
    """descriptor.md, data: "Values MUST conform to the Base 64 encoding, as defined in RFC 4648. The decoded
    data MUST be identical to the referenced content" (so its size and digest are the descriptor's)."""
    assert refused(parse_descriptor, encode({**EMPTY_DESCRIPTOR, "data": data})) == problem


def test_descriptor_data_under_an_unregistered_algorithm_is_a_warning() -> None:
    """descriptor.md: data "SHOULD be verified against the digest": impossible for an unknown algorithm."""
    raw = encode({"mediaType": mt.OCI_EMPTY, "digest": "multihash+base58:QmRZxt2b1FVZPNqd8", "size": 2, "data": "e30="})
    assert [w.field for w in parse_descriptor(raw).warnings] == ["data"]


@pytest.mark.parametrize("value", ["sbom", "application/", "text/plain; charset=utf-8", 1])
def test_descriptor_artifact_type_is_a_media_type(value: object) -> None:
    """descriptor.md, artifactType: "the value MUST comply with RFC 6838"."""
    assert refused(parse_descriptor, encode({**DESCRIPTOR, "artifactType": value})).startswith("artifactType: ")


def test_descriptor_size_is_an_int64() -> None:
    """descriptor.md: **size** _int64_ ... "The size MUST NOT be negative"."""
    assert refused(parse_descriptor, encode({**DESCRIPTOR, "size": 2**63})) == f"size: {2**63} does not fit an int64"
    assert parse_descriptor(encode({**DESCRIPTOR, "size": 2**63 - 1})).size == 2**63 - 1


# --- manifests and indexes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("sha256:abc", "subject: expected an object, got a string"),
        ({"mediaType": mt.OCI_MANIFEST}, "subject.digest: required"),
    ],
)
@pytest.mark.parametrize("parse", [parse_manifest, parse_index])
def test_subject_is_a_descriptor(parse: Any, value: object, problem: str) -> None:
    """manifest.md, image-index.md: **subject** _descriptor_: "a descriptor of another manifest"."""
    document = SPEC_MANIFEST if parse is parse_manifest else SPEC_INDEX
    assert refused(parse, mutated(document, "subject", value)).startswith(problem)


@pytest.mark.parametrize("parse", [parse_manifest, parse_index])
def test_artifact_type_is_a_media_type(parse: Any) -> None:
    """manifest.md, image-index.md, artifactType: "the value MUST comply with RFC 6838"."""
    document = SPEC_MANIFEST if parse is parse_manifest else SPEC_INDEX
    assert (
        refused(parse, mutated(document, "artifactType", "sbom"))
        == "artifactType: 'sbom' is not a valid media type (RFC 6838)"
    )
    assert parse(mutated(document, "artifactType", "application/vnd.example.sbom.v1")).artifact_type is not None


def test_empty_config_needs_an_artifact_type() -> None:
    """manifest.md, artifactType: "This MUST be set when `config.mediaType` is set to the empty value."""
    raw = encode({k: v for k, v in SPEC_ARTIFACTS[0].items() if k != "artifactType"})
    assert refused(parse_manifest, raw) == f"artifactType: must be set when config.mediaType is {mt.OCI_EMPTY}"


@pytest.mark.parametrize("parse", [parse_manifest, parse_index])
def test_annotations_are_strings(parse: Any) -> None:
    """manifest.md, image-index.md: annotations "MUST use the annotation rules"."""
    document = SPEC_MANIFEST if parse is parse_manifest else SPEC_INDEX
    assert (
        refused(parse, mutated(document, "annotations", {"k": True}))
        == "annotations.k: expected a string, got a boolean"
    )


def test_unknown_layer_media_type_in_an_image_is_a_warning() -> None:
    """manifest.md, layers: "Implementations storing or copying image manifests MUST NOT error on encountering
    a `mediaType` that is unknown to the implementation." An image can still not be unpacked without
    knowing it: a warning."""
    manifest = parse_manifest(mutated(SPEC_MANIFEST, "layers.1.mediaType", "application/vnd.example.layer.v9"))
    assert [w.field for w in manifest.warnings] == ["layers[1].mediaType"]


def test_unknown_config_media_type_is_a_warning() -> None:
    """manifest.md, config.mediaType: "Implementations MUST NOT attempt to parse the referenced content if this
    media type is unknown"; storing or copying "MUST NOT error"."""
    manifest = parse_manifest(mutated(SPEC_MANIFEST, "config.mediaType", "application/vnd.example.config.v1+json"))
    assert [w.field for w in manifest.warnings] == ["config.mediaType"]


def test_empty_layers_are_a_warning() -> None:
    """manifest.md, layers: "For portability, `layers` SHOULD have at least one entry." """
    assert warnings_of(parse_manifest(mutated(SPEC_MANIFEST, "layers", []))) == [
        "layers: is empty; for portability a manifest should have at least one layer"
    ]


def test_unknown_media_types_in_an_index_are_not_errors() -> None:
    """image-index.md: "An encountered `mediaType` that is unknown to the implementation MUST NOT generate an error"."""
    index = parse_index(mutated(SPEC_INDEX, "manifests.0.mediaType", "application/vnd.example.future+json"))
    assert warnings_of(index) == [] and index.manifests[0].media_type == "application/vnd.example.future+json"


# --- whole images ------------------------------------------------------------------------------------------


def put(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_image(
    layout: Path,
    layers: list[bytes],
    *,
    config: dict[str, Any] | None = None,
    layer_type: str = mt.OCI_LAYER_GZIP,
    tag: str = "1",
) -> str:
    """An OCI layout holding one image of ``layers`` (uncompressed bytes, gzipped when ``layer_type`` says so).

    ``config`` entries replace the top-level config fields; the diff_ids are the layers' sha256.
    """
    (layout / "oci-layout").parent.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    descriptors = []
    for plain in layers:
        blob = gzip.compress(plain, mtime=0) if layer_type.endswith("gzip") else plain
        descriptors.append({"mediaType": layer_type, **put(layout, blob)})
    document = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(p).hexdigest()}" for p in layers]},
        **(config or {}),
    }
    config_descriptor = {"mediaType": mt.OCI_CONFIG, **put(layout, encode(document))}
    manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config_descriptor, "layers": descriptors}
    root = {"mediaType": mt.OCI_MANIFEST, **put(layout, encode(manifest))}
    root["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [root]}))
    return f"oci:{layout}:{tag}"


def tar_of(*members: tuple[str, bytes | None]) -> bytes:
    """A tar of regular files (bytes) and directories (None), in the order given."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return plain.getvalue()


GOOD_LAYER = tar_of(("etc", None), ("etc/motd", b"hello\n"))


def test_layer_of_random_bytes_is_refused_by_validate_as_by_changes(tmp_path: Path) -> None:
    """layer.md: a layer is a tar archive ("Layer Changesets ... packaged using tar"). A gzip of random bytes
    whose diff_id is right is still no layer: validate, changes and umoci all refuse it."""
    noise = random.Random(7).randbytes(10_000)
    reference = write_image(tmp_path / "noise", [GOOD_LAYER, noise])
    validated = run_cli("validate", reference, "--json")
    assert validated.returncode == 1
    report = json.loads(validated.stdout)
    assert [error["field"] for error in report["errors"]] == ["layers[1]"]
    assert "layer 1" in report["errors"][0]["message"] and "tar" in report["errors"][0]["message"]
    changes = run_cli("changes", reference)
    assert changes.returncode == 1 and "layer 1" in changes.stderr
    require_tool("umoci")
    peer = subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'noise'}:1", str(tmp_path / "bundle")],
        capture_output=True,
        text=True,
    )
    assert peer.returncode != 0


@pytest.mark.parametrize(
    ("layer", "entry"),
    [
        (tar_of(("etc", None), ("etc/a", b"1"), ("etc/a", b"2")), "/etc/a appears twice in the layer"),
        (tar_of(("etc", None), ("etc/.wh.gone", None)), "whiteout '/etc/.wh.gone' is a dir, not a file"),
        (tar_of(("etc", None), ("etc/.wh.", b"")), "whiteout '/etc/.wh.' names no file"),
    ],
    ids=["duplicate", "whiteout-dir", "whiteout-empty"],
)
def test_malformed_tar_entries_fail_validation_naming_layer_and_entry(tmp_path: Path, layer: bytes, entry: str) -> None:
    """layer.md: whiteouts are empty files named `.wh.<name>`; one layer describes each path once."""
    reference = write_image(tmp_path / "bad", [GOOD_LAYER, layer])
    report = ocilab.validate(reference)
    assert not report.ok
    assert [e.field for e in report.errors] == ["layers[1]"]
    assert "layer 1" in report.errors[0].message and entry in report.errors[0].message
    assert run_cli("changes", reference).returncode == 1


def test_good_image_is_valid_and_every_layer_read_once(tmp_path: Path) -> None:
    """The image checks read each layer blob once, to its end (digest, diff_id and tar in one pass)."""
    reference = write_image(tmp_path / "good", [GOOD_LAYER, tar_of(("etc/.wh.motd", b""))])
    opened: list[str] = []
    with open_layout(tmp_path / "good", "1") as store:
        real_open = store.open_raw
        store.open_raw = lambda d: opened.append(str(d.digest)) or real_open(d)  # type: ignore[method-assign]
        report = validate_store(store)
    assert report.ok and report.warnings == [], report.problems
    manifest = json.loads(encode_manifest_of(tmp_path / "good"))
    layers = [layer["digest"] for layer in manifest["layers"]]
    assert sorted(d for d in opened if d in layers) == sorted(layers)
    assert run_cli("validate", reference).returncode == 0


def encode_manifest_of(layout: Path) -> bytes:
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"].split(":")[1]
    return (layout / "blobs" / "sha256" / digest).read_bytes()


def test_history_out_of_line_with_layers_is_a_warning_and_exit_0(tmp_path: Path) -> None:
    """config.md, history: "Describes the history of each layer" with no MUST tying it to rootfs: a warning."""
    history = [{"created_by": "one"}, {"created_by": "two"}]
    reference = write_image(tmp_path / "hist", [GOOD_LAYER], config={"history": history})
    human = run_cli("validate", reference)
    assert human.returncode == 0, human.stderr
    assert (
        "warning  history: has 2 steps that made a layer, but rootfs has 1 diff_ids (in config sha256:" in human.stdout
    )
    report = ocilab.validate(reference)
    assert report.ok and [w.field for w in report.warnings] == ["history"]
    require_tool("umoci")
    peer = subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'hist'}:1", str(tmp_path / "bundle")],
        capture_output=True,
        text=True,
    )
    assert peer.returncode == 0, peer.stderr


def test_validate_json_shape(tmp_path: Path) -> None:
    """``validate --json``: {reference, valid, errors: [{field, message}], warnings: [{field, message}], checked}."""
    reference = write_image(
        tmp_path / "shape",
        [GOOD_LAYER, b"not a tar"],
        config={"history": [{"created_by": "only one"}], "config": {"ExposedPorts": {"9/sctp": {}}}},
        layer_type=mt.OCI_LAYER_TAR,
    )
    result = run_cli("validate", reference, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert list(report) == ["reference", "valid", "errors", "warnings", "checked"]
    assert report["reference"] == reference and report["valid"] is False
    assert all(list(item) == ["field", "message"] for item in report["errors"] + report["warnings"])
    assert [e["field"] for e in report["errors"]] == ["layers[1]"]
    assert [w["field"] for w in report["warnings"]] == ["history", "config.ExposedPorts.9/sctp"]
    assert any("diff_id" in line for line in report["checked"])


def test_unknown_layer_type_is_a_warning_but_its_blob_is_still_verified(tmp_path: Path) -> None:
    """manifest.md: unknown layer media types MUST NOT be an error; descriptor.md: content SHOULD be verified."""
    layout = tmp_path / "unknown"
    reference = write_image(layout, [b"opaque payload"], layer_type="application/vnd.example.layer.v1")
    report = ocilab.validate(reference)
    assert report.ok and [w.field for w in report.warnings] == ["layers[0].mediaType"]
    blob = layout / "blobs" / "sha256" / hashlib.sha256(b"opaque payload").hexdigest()
    blob.write_bytes(b"opaque PAYLOAD")
    damaged = ocilab.validate(reference)
    assert [e.field for e in damaged.errors] == ["layers[0]"]
    assert "does not match its digest" in damaged.errors[0].message


def test_artifact_blobs_are_verified_and_it_is_valid(tmp_path: Path) -> None:
    """manifest.md: an artifact's config "MUST NOT" be parsed when unknown; its blobs are still content by digest."""
    layout = tmp_path / "artifact"
    (layout / "oci-layout").parent.mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    empty = {"mediaType": mt.OCI_EMPTY, **put(layout, b"{}")}
    payload = {"mediaType": "application/vnd.example+type", **put(layout, b"sbom contents")}
    manifest = {**SPEC_ARTIFACTS[1], "config": empty, "layers": [payload]}
    root = {"mediaType": mt.OCI_MANIFEST, **put(layout, encode(manifest))}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [root]}))
    report = ocilab.validate(f"oci:{layout}")
    assert report.ok, report.problems
    assert [w.field for w in report.warnings] == ["config.mediaType"]
    assert sum("digest and size" in line for line in report.checked) == 2
    os.remove(layout / "blobs" / "sha256" / payload["digest"].split(":")[1])
    assert [e.field for e in ocilab.validate(f"oci:{layout}").errors] == ["layers[0]"]


@pytest.mark.parametrize("target", ["directory", "oci-layout"])
def test_validate_type_layout_takes_the_directory_or_its_oci_layout_file(tmp_path: Path, target: str) -> None:
    """image-layout.md: the `oci-layout` file "MUST exist" in the layout's directory; either names the layout."""
    layout = tmp_path / "layout"
    write_image(layout, [GOOD_LAYER])
    path = layout if target == "directory" else layout / "oci-layout"
    result = run_cli("validate", "--type", "layout", path, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["valid"] is True


def test_validate_type_layout_of_something_else_is_one_clear_error(tmp_path: Path) -> None:
    """image-layout.md: the `oci-layout` file "MUST exist"."""
    (tmp_path / "plain").mkdir()
    result = run_cli("validate", "--type", "layout", tmp_path / "plain")
    assert result.returncode == 1
    assert result.stderr.strip() == f"ocilab: {tmp_path / 'plain'}: not an OCI image layout (no oci-layout file)"


def test_document_warnings_are_printed_and_exit_0(tmp_path: Path) -> None:
    """``validate --type``: warnings are listed (``warning  field: message``) and never change the exit code."""
    raw = mutated(SPEC_CONFIG, "history.1.empty_layer", False)
    human = run_cli("validate", "--type", "config", "-", stdin=raw)
    assert human.returncode == 0
    assert human.stdout.splitlines()[1] == "warning  history: has 3 steps that made a layer, but rootfs has 2 diff_ids"
    machine = json.loads(run_cli("validate", "--type", "config", "-", "--json", stdin=raw).stdout)
    assert machine["warnings"] == [
        {"field": "history", "message": "has 3 steps that made a layer, but rootfs has 2 diff_ids"}
    ]


def mutated_json(document: dict, path: str, value: object) -> dict:
    return json.loads(mutated(document, path, value))


def test_base64_examples_agree_with_the_spec() -> None:
    """manifest.md: the empty descriptor's data "is the base64 encoding of `{}`: `e30=`"."""
    assert base64.b64encode(b"{}").decode() == EMPTY_DESCRIPTOR["data"]
    assert f"sha256:{hashlib.sha256(b'{}').hexdigest()}" == EMPTY_DIGEST


def test_index_validates_every_image_it_reaches(tmp_path: Path) -> None:
    """image-index.md: an index "points to specific image manifests": each is validated, and one whose layer
    is damaged is named by the index entry that reaches it."""
    image = write_random_image(tmp_path / "multi", seed=3, platforms=["linux/amd64", "linux/arm64"])
    report = ocilab.validate(image.reference)
    assert report.ok, report.problems
    assert sum(line.startswith("manifest ") for line in report.checked) == 2
    victim = tmp_path / "multi" / "blobs" / "sha256" / image.layers[-1].split(":")[1]
    victim.write_bytes(victim.read_bytes()[:-1])
    damaged = ocilab.validate(image.reference)
    assert [e.field for e in damaged.errors] == ["layers[1]"]
    assert "truncated" in damaged.errors[0].message
