"""Unit tests of the pure image model: the spec's examples and invalid variants of them."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from ocilab.errors import (
    DigestFormatError,
    DocumentTooLargeError,
    ReferenceFormatError,
    UnsupportedError,
    ValidationError,
    VerificationError,
)
from ocilab.model import (
    Digest,
    Platform,
    Reference,
    VerifyingReader,
    parse_config,
    parse_descriptor,
    parse_index,
    parse_manifest,
    parse_root,
    read_all,
)
from ocilab.model import mediatype as mt
from ocilab.model.digest import CHUNK_SIZE, read_capped

HEX = "a" * 64

# The image-spec's example manifest (manifest.md), verbatim in content.
SPEC_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7",
        "size": 7023,
    },
    "layers": [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0",
            "size": 32654,
        },
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": "sha256:3c3a4604a545cdc127456d94e421cd355bca5b528f4a9c1905b15da2eb4a4c6b",
            "size": 16724,
        },
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": "sha256:ec4b8955958665577945c89419d1af06b5f7636b4ac3da7f12184802ad867736",
            "size": 73109,
        },
    ],
    "subject": {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
        "size": 7682,
    },
    "annotations": {"com.example.key1": "value1", "com.example.key2": "value2"},
}

# The image-spec's example index (image-index.md).
SPEC_INDEX = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 7143,
            "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f",
            "platform": {"architecture": "ppc64le", "os": "linux"},
        },
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 7682,
            "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
            "platform": {"architecture": "amd64", "os": "linux"},
        },
    ],
    "annotations": {"com.example.key1": "value1", "com.example.key2": "value2"},
}

# The image-spec's example config (config.md), trimmed of nothing that matters here.
SPEC_CONFIG = {
    "created": "2015-10-31T22:22:56.015925234Z",
    "author": "Alyssa P. Hacker <alyspdev@example.com>",
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "User": "alice",
        "ExposedPorts": {"8080/tcp": {}},
        "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "FOO=oci_is_a",
            "BAR=well_written_spec",
        ],
        "Entrypoint": ["/bin/my-app-binary"],
        "Cmd": ["--foreground", "--config", "/etc/my-app.d/default.cfg"],
        "Volumes": {"/var/job-result-data": {}, "/var/log/my-app-logs": {}},
        "WorkingDir": "/home/alice",
        "Labels": {
            "com.example.project.git.url": "https://example.com/project.git",
            "com.example.project.git.commit": "45a939b2999782a3f005621a8d0f29aa387e1d6b",
        },
    },
    "rootfs": {
        "diff_ids": [
            "sha256:c6f988f4874bb0add23a778f753c65efe992244e148a1d2ec2a8b664fb66bbd1",
            "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef",
        ],
        "type": "layers",
    },
    "history": [
        {
            "created": "2015-10-31T22:22:54.690851953Z",
            "created_by": "/bin/sh -c #(nop) ADD file:"
            "a3bc1e842b69636f9df5256c49c5374fb4eef1e281fe3f282c65fb853ee171c5 in /",
        },
        {
            "created": "2015-10-31T22:22:55.613815829Z",
            "created_by": '/bin/sh -c #(nop) CMD ["sh"]',
            "empty_layer": True,
        },
        {"created": "2015-10-31T22:22:56.329850019Z", "created_by": "/bin/sh -c apk add curl"},
    ],
}


def encode(document: dict) -> bytes:
    return json.dumps(document).encode()


def mutated(document: dict, path: str, value: object) -> bytes:
    """A deep copy of ``document`` with ``path`` (dotted, list indexes as numbers) set; DELETE removes it."""
    copy = json.loads(json.dumps(document))
    *parents, last = path.split(".")
    node = copy
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[int(last) if isinstance(node, list) else last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return encode(copy)


DELETE = object()


class TestDigest:
    def test_parses_registered_algorithms(self) -> None:
        assert str(Digest.parse(f"sha256:{HEX}")) == f"sha256:{HEX}"
        assert Digest.parse("sha512:" + "b" * 128).algorithm == "sha512"

    def test_unknown_algorithm_parses_but_cannot_be_verified(self) -> None:
        digest = Digest.parse("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8")
        assert not digest.verifiable
        with pytest.raises(UnsupportedError, match="multihash\\+base58"):
            VerifyingReader(io.BytesIO(b"x"), digest, 1, "blob")

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("sha256:" + "A" * 64, "uppercase hex is not allowed"),
            ("sha256:" + "a" * 63, "needs 64 hex characters, got 63"),
            ("sha256:" + "g" * 64, "must be hex"),
            ("sha512:" + "a" * 64, "needs 128 hex characters"),
            ("sha256" + HEX, "missing ':'"),
            ("SHA256:" + HEX, "bad algorithm"),
            ("sha256:", "encoded part"),
            ("sha256:abc/def", "encoded part"),
            (":" + HEX, "bad algorithm"),
        ],
    )
    def test_refuses_malformed(self, text: str, problem: str) -> None:
        with pytest.raises(DigestFormatError, match=problem):
            Digest.parse(text)

    def test_of_bytes_matches_hashlib(self) -> None:
        assert Digest.of_bytes(b"hello").encoded == hashlib.sha256(b"hello").hexdigest()
        assert Digest.of_bytes(b"hello", "sha512").encoded == hashlib.sha512(b"hello").hexdigest()


class TestVerifyingReader:
    data = b"0123456789" * 1000

    def reader(self, data: bytes, size: int | None = None, digest: Digest | None = None) -> VerifyingReader:
        digest = digest or Digest.of_bytes(self.data)
        return VerifyingReader(io.BytesIO(data), digest, len(self.data) if size is None else size, "test blob")

    def test_good_content_verifies_at_eof(self) -> None:
        reader = self.reader(self.data)
        assert reader.read(100) == self.data[:100]
        assert not reader.verified
        reader.drain()
        assert reader.verified

    def test_truncated_content_is_refused(self) -> None:
        with pytest.raises(
            VerificationError, match="test blob: truncated or wrong size: expected 10000 bytes, got 9999"
        ):
            self.reader(self.data[:-1]).drain()

    def test_extra_content_is_refused_before_it_is_returned(self) -> None:
        with pytest.raises(VerificationError, match="more than the expected 10000 bytes"):
            self.reader(self.data + b"x").read()

    def test_altered_content_is_refused(self) -> None:
        altered = b"X" + self.data[1:]
        with pytest.raises(VerificationError, match="does not match its digest"):
            self.reader(altered).drain()

    def test_read_all_caps_documents(self) -> None:
        with pytest.raises(DocumentTooLargeError, match="over the 100-byte limit"):
            read_all(self.reader(self.data), limit=100)
        assert read_all(self.reader(self.data), limit=len(self.data)) == self.data

    def test_read_all_refuses_an_unannounced_oversized_document_while_reading(self) -> None:
        with pytest.raises(DocumentTooLargeError, match="test blob: more than the 100-byte limit"):
            read_all(VerifyingReader(io.BytesIO(self.data), Digest.of_bytes(self.data), None, "test blob"), limit=100)


class TestReadCapped:
    """The one capped-read loop: every small document (files, archive members, HTTP bodies) goes through it."""

    def test_an_endless_source_is_refused_after_limit_plus_one_bytes(self) -> None:
        with open("/dev/zero", "rb") as zeros, pytest.raises(DocumentTooLargeError, match="zeros: more than the"):
            read_capped(Counting(zeros), 5 * CHUNK_SIZE, "zeros")
        assert Counting.last_total == 5 * CHUNK_SIZE + 1

    @pytest.mark.parametrize("size", [1, CHUNK_SIZE - 1, CHUNK_SIZE, 3 * CHUNK_SIZE + 7])
    def test_a_source_up_to_the_limit_is_read_whole_and_one_byte_more_is_refused(self, size: int) -> None:
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        assert read_capped(Trickle(data), size, "doc") == data
        with pytest.raises(DocumentTooLargeError, match=f"doc: more than the {size - 1}-byte limit"):
            read_capped(Trickle(data), size - 1, "doc")

    def test_an_empty_source_is_empty(self) -> None:
        assert read_capped(Trickle(b""), 0, "doc") == b""


class Counting:
    """Counts what a real stream hands out."""

    last_total = 0

    def __init__(self, raw: io.BufferedReader) -> None:
        self.raw = raw
        Counting.last_total = 0

    def read(self, n: int) -> bytes:
        data = self.raw.read(n)
        Counting.last_total += len(data)
        return data


class Trickle(io.RawIOBase):
    """A stream that gives at most 1000 bytes per read, as a socket may: the loop must keep reading."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int = -1) -> bytes:
        piece, self.data = self.data[: min(n, 1000)], self.data[min(n, 1000) :]
        return piece


class TestLayerMediaTypes:
    """One table from media type to compression, read both ways."""

    @pytest.mark.parametrize("image_format", ["oci", "docker"])
    @pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
    def test_layer_type_and_compression_are_inverse(self, image_format: str, compression: str) -> None:
        media_type = mt.layer_type(image_format, compression)
        if (image_format, compression) == ("docker", "zstd"):
            assert media_type is None  # Docker's schema 2 has no zstd layer type
            return
        assert media_type is not None
        assert mt.layer_compression(media_type) == compression
        assert media_type.startswith("application/vnd.docker." if image_format == "docker" else "application/vnd.oci.")
        assert media_type not in mt.NONDISTRIBUTABLE

    def test_the_spec_suffixes_name_the_compression(self) -> None:
        """image-spec media-types.md: ``+gzip``/``+zstd`` suffixes; Docker's ``.tar.gzip``; a bare tar is none."""
        for media_type in (value for name, value in vars(mt).items() if "_LAYER_" in name):
            expected = "gzip" if media_type.endswith("gzip") else "zstd" if media_type.endswith("zstd") else "none"
            assert mt.layer_compression(media_type) == expected, media_type
        assert mt.layer_compression(mt.OCI_CONFIG) is None


class TestReference:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("busybox", ("docker.io", "library/busybox", "latest", None)),
            ("library/busybox:1.36", ("docker.io", "library/busybox", "1.36", None)),
            ("localhost/app", ("localhost", "app", "latest", None)),
            ("localhost:5000/a/b-c__d.e:v_1.0-x", ("localhost:5000", "a/b-c__d.e", "v_1.0-x", None)),
            ("127.0.0.1:5000/ocilab/busybox:1", ("127.0.0.1:5000", "ocilab/busybox", "1", None)),
            ("ghcr.io/org/repo@sha256:" + HEX, ("ghcr.io", "org/repo", None, "sha256:" + HEX)),
            ("[::1]:5000/repo:t@sha256:" + HEX, ("[::1]:5000", "repo", "t", "sha256:" + HEX)),
        ],
    )
    def test_parses_and_normalises(self, text: str, expected: tuple) -> None:
        ref = Reference.parse(text)
        assert (ref.host, ref.repository, ref.tag, str(ref.digest) if ref.digest else None) == expected

    def test_round_trip(self) -> None:
        text = "127.0.0.1:5000/a/b:t@sha256:" + HEX
        assert str(Reference.parse(text)) == text
        assert Reference.parse(text).identifier == "sha256:" + HEX

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("", "cannot be empty"),
            ("Busybox", "repository component 'Busybox'"),
            ("a//b", "repository component ''"),
            ("repo:" + "t" * 129, "tag"),
            ("repo:-bad", "tag '-bad'"),
            ("repo@sha256:XYZ", "not a valid digest"),
            ("host.io:port/repo", "host 'host.io:port'"),
            ("a/b_-c", "repository component"),
        ],
    )
    def test_refuses_malformed(self, text: str, problem: str) -> None:
        with pytest.raises(ReferenceFormatError, match=problem):
            Reference.parse(text)


class TestManifest:
    def test_spec_example(self) -> None:
        raw = encode(SPEC_MANIFEST)
        manifest = parse_manifest(raw)
        assert manifest.media_type == mt.OCI_MANIFEST
        assert [layer.size for layer in manifest.layers] == [32654, 16724, 73109]
        assert manifest.subject is not None and manifest.subject.size == 7682
        assert manifest.digest == Digest.of_bytes(raw)
        assert manifest.raw is raw

    def test_digest_is_over_the_raw_bytes(self) -> None:
        compact = json.dumps(SPEC_MANIFEST, separators=(",", ":")).encode()
        assert parse_manifest(compact).digest != parse_manifest(encode(SPEC_MANIFEST)).digest

    def test_media_type_may_be_omitted(self) -> None:
        assert parse_manifest(mutated(SPEC_MANIFEST, "mediaType", DELETE)).media_type == mt.OCI_MANIFEST

    def test_unknown_fields_and_layer_types_are_tolerated(self) -> None:
        raw = mutated(SPEC_MANIFEST, "layers.0.mediaType", "application/vnd.example.future+tar")
        document = json.loads(raw)
        document["x-future-field"] = {"anything": 1}
        assert parse_manifest(encode(document)).layers[0].media_type == "application/vnd.example.future+tar"

    @pytest.mark.parametrize(
        ("path", "value", "message"),
        [
            ("layers.2.digest", "sha256:" + "A" * 64, "layers[2].digest: uppercase hex is not allowed"),
            ("layers.1.size", -1, "layers[1].size: must not be negative, got -1"),
            ("layers.0.size", "12", "layers[0].size: expected an integer, got a string"),
            ("layers.0.size", True, "layers[0].size: expected an integer, got a boolean"),
            (
                "layers.0.mediaType",
                "not a media type",
                "layers[0].mediaType: 'not a media type' is not a valid media type",
            ),
            ("config", DELETE, "config: required field is missing"),
            ("config.digest", DELETE, "config.digest: required field is missing"),
            ("layers", DELETE, "layers: required field is missing"),
            ("layers", {}, "layers: expected an array, got an object"),
            ("schemaVersion", 3, "schemaVersion: must be 2, got 3"),
            ("schemaVersion", 1, "Docker schema 1"),
            ("mediaType", mt.OCI_INDEX, "is not an image manifest media type"),
            ("annotations", {"k": 1}, "annotations.k: expected a string, got a number"),
            ("subject.size", DELETE, "subject.size: required field is missing"),
        ],
    )
    def test_invalid_variants_name_the_field(self, path: str, value: object, message: str) -> None:
        with pytest.raises(ValidationError) as caught:
            parse_manifest(mutated(SPEC_MANIFEST, path, value), "m.json")
        assert message in str(caught.value)
        assert str(caught.value).startswith("m.json: ")

    def test_manifest_carrying_manifests_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="must not carry 'manifests'"):
            parse_manifest(mutated(SPEC_MANIFEST, "manifests", []))

    def test_media_type_contradicting_the_descriptor_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="contradicts the descriptor's media type"):
            parse_manifest(encode(SPEC_MANIFEST), declared_media_type=mt.DOCKER_MANIFEST)

    def test_docker_manifest_needs_docker_config(self) -> None:
        raw = mutated(SPEC_MANIFEST, "mediaType", mt.DOCKER_MANIFEST)
        with pytest.raises(ValidationError, match="config.mediaType"):
            parse_manifest(raw)

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (b"{", "malformed JSON"),
            (b"[]", "expected a JSON object, got an array"),
            (b"\xff\xfe", "not UTF-8"),
            (b'{"schemaVersion": 2, "schemaVersion": 2}', "duplicate key"),
            (b"[" * 100000 + b"]" * 100000, "nested too deeply|expected a JSON object"),
        ],
    )
    def test_malformed_json(self, raw: bytes, message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            parse_manifest(raw)

    def test_oversized_document(self) -> None:
        document = dict(SPEC_MANIFEST, annotations={"pad": "x" * (4 * 1024 * 1024)})
        with pytest.raises(DocumentTooLargeError, match="4194304-byte limit"):
            parse_manifest(encode(document))


class TestIndex:
    def test_spec_example_and_platform_selection(self) -> None:
        index = parse_index(encode(SPEC_INDEX))
        assert len(index.manifests) == 2
        chosen = index.select(Platform.parse("linux/amd64"))
        assert chosen is not None and chosen.size == 7682
        assert index.select(Platform.parse("linux/arm64")) is None

    def test_index_carrying_layers_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="layers: an image index must not carry 'layers'"):
            parse_index(mutated(SPEC_INDEX, "layers", []))

    def test_platform_fields_are_required(self) -> None:
        with pytest.raises(ValidationError, match=r"manifests\[1\].platform.os: required field is missing"):
            parse_index(mutated(SPEC_INDEX, "manifests.1.platform.os", DELETE))

    def test_parse_root_tells_index_from_manifest(self) -> None:
        assert type(parse_root(encode(SPEC_INDEX), "x")).__name__ == "Index"
        assert type(parse_root(mutated(SPEC_INDEX, "mediaType", DELETE), "x")).__name__ == "Index"
        assert type(parse_root(encode(SPEC_MANIFEST), "x")).__name__ == "Manifest"
        assert type(parse_root(encode(SPEC_MANIFEST), "x", mt.OCI_MANIFEST)).__name__ == "Manifest"


class TestConfig:
    def test_spec_example(self) -> None:
        config = parse_config(encode(SPEC_CONFIG), layer_count=2)
        assert str(config.platform) == "linux/amd64"
        assert config.container_config["User"] == "alice"
        assert [entry.empty_layer for entry in config.history] == [False, True, False]
        assert len(config.diff_ids) == 2

    @pytest.mark.parametrize(
        ("path", "value", "message"),
        [
            ("rootfs.type", "tarballs", "rootfs.type: must be \"layers\", got 'tarballs'"),
            ("rootfs.diff_ids.1", "sha256:zz", r"rootfs.diff_ids\[1\]: sha256 needs 64|must be hex"),
            ("rootfs", DELETE, "rootfs: required field is missing"),
            ("os", DELETE, "os: required field is missing"),
            ("history.0.empty_layer", "yes", r"history\[0\].empty_layer: expected a boolean, got a string"),
        ],
    )
    def test_invalid_variants_name_the_field(self, path: str, value: object, message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            parse_config(mutated(SPEC_CONFIG, path, value))

    def test_history_that_does_not_line_up_is_a_warning(self) -> None:
        """config.md gives history no rule tying it to diff_ids: a mismatch is odd, not invalid."""
        config = parse_config(mutated(SPEC_CONFIG, "history.1.empty_layer", False), layer_count=2)
        assert [str(w) for w in config.warnings] == [
            "history: has 3 steps that made a layer, but rootfs has 2 diff_ids"
        ]

    def test_diff_ids_must_match_layer_count(self) -> None:
        with pytest.raises(ValidationError, match="rootfs.diff_ids: has 2 entries but the manifest has 3 layers"):
            parse_config(encode(SPEC_CONFIG), layer_count=3)


class TestDescriptor:
    def test_standalone_descriptor(self) -> None:
        raw = json.dumps({"mediaType": mt.OCI_MANIFEST, "digest": f"sha256:{HEX}", "size": 10, "urls": ["https://x/y"]})
        descriptor = parse_descriptor(raw.encode())
        assert descriptor.urls == ("https://x/y",) and descriptor.size == 10

    @pytest.mark.parametrize("bad", ["linux", "linux/", "/amd64", "a/b/c/d"])
    def test_platform_strings(self, bad: str) -> None:
        with pytest.raises(ValidationError, match="is not OS/ARCH"):
            Platform.parse(bad)
        assert str(Platform.parse("linux/arm/v7")) == "linux/arm/v7"
