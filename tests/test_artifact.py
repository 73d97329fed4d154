"""Artifacts attached to an image: the manifest image-spec 1.1 describes, found as a referrer, kept by layout GC.

Checked against the real registry (distribution 2.8, which has no referrers
API), against skopeo reading the same registry, and against the files on disk.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from urllib.error import HTTPError

import pytest

from ocilab.errors import InvalidInputError, NotFoundError, UnsupportedError
from ocilab.model import mediatype as mt
from ocilab.operations.artifact import EMPTY_CONFIG, attach
from ocilab.operations.layout_gc import collect_layout
from ocilab.present.descriptors import descriptor_table
from ocilab.stores.layout_writer import remove_layout_tag
from ocilab.stores.transports import open_store
from tests.conftest import require_tool, run
from tests.random_image import RandomImage, write_random_image
from tests.test_layout_writer import index_entries, snapshot

SPDX = "application/spdx+json"
SBOM = {"spdxVersion": "SPDX-2.3", "name": "random", "packages": []}


@pytest.fixture
def image(tmp_path: Path) -> RandomImage:
    return write_random_image(tmp_path / "layout", seed=6, tag="1")


def skopeo_raw(reference: str) -> bytes:
    require_tool("skopeo")
    return run("skopeo", "inspect", "--raw", "--tls-verify=false", reference).stdout.encode()


def test_an_artifact_manifest_has_the_empty_config_its_type_the_document_and_the_subject(image: RandomImage) -> None:
    """image-spec manifest.md: artifactType; config = the empty descriptor; subject = the image's descriptor."""
    attached = attach(image.reference, SBOM, artifact_type=SPDX, media_type=SPDX)
    document = json.loads(attached.manifest.raw)
    assert document["artifactType"] == SPDX
    assert document["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
    }
    assert document["subject"] == image.root
    [layer] = document["layers"]
    assert layer["mediaType"] == SPDX and attached.document == json.dumps(SBOM, separators=(",", ":")).encode()
    assert layer["digest"] == f"sha256:{hashlib.sha256(attached.document).hexdigest()}"


def test_in_a_layout_the_blobs_are_named_by_their_sha256_and_index_json_lists_the_artifact(image: RandomImage) -> None:
    attached = attach(image.reference, SBOM, artifact_type=SPDX, media_type=SPDX, tag="sbom")
    blobs = image.layout / "blobs" / "sha256"
    for data in (attached.manifest.raw, EMPTY_CONFIG, attached.document):
        assert (blobs / hashlib.sha256(data).hexdigest()).read_bytes() == data
    entries = {
        entry["annotations"]["org.opencontainers.image.ref.name"]: entry["digest"]
        for entry in index_entries(image.layout)
    }  # type: ignore[index]
    assert entries == {"1": image.digest, "sbom": str(attached.digest)}
    assert attached.reference == f"oci:{image.layout}:sbom"


def test_without_a_tag_a_layout_lists_the_artifact_unnamed(image: RandomImage) -> None:
    attached = attach(image.reference, b"plain text", artifact_type="text/plain", media_type="text/plain")
    unnamed = [entry for entry in index_entries(image.layout) if entry["digest"] == str(attached.digest)]
    assert len(unnamed) == 1 and "annotations" not in unnamed[0]


def test_layout_gc_keeps_the_referrer_of_a_kept_image_and_collects_it_with_its_subject(image: RandomImage) -> None:
    attached = attach(image.reference, SBOM, artifact_type=SPDX, media_type=SPDX, tag="sbom")
    remove_layout_tag(image.layout, "sbom")
    assert collect_layout(image.layout).removed == ()
    remove_layout_tag(image.layout, "1")
    removed = {str(digest) for digest, _ in collect_layout(image.layout).removed}
    artifact_blobs = {
        str(attached.digest),
        str(attached.manifest.config.digest),
        str(attached.manifest.layers[0].digest),
    }
    assert removed == set(image.blobs) | artifact_blobs
    assert list((image.layout / "blobs" / "sha256").iterdir()) == []


def test_in_a_registry_without_the_referrers_api_the_fallback_tag_lists_the_artifact(
    registry,
    image: RandomImage,  # type: ignore[no-untyped-def]
) -> None:
    """distribution-spec 1.1, "Referrers Tag Schema": <alg>-<ref>, an image index of the referrers' descriptors."""
    subject = f"docker://{registry.host}/artifacts/random:1"
    run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", image.reference, subject)
    attached = attach(subject, SBOM, artifact_type=SPDX, media_type=SPDX)
    repository = f"docker://{registry.host}/artifacts/random"
    assert attached.reference == f"{repository}@{attached.digest}"
    assert skopeo_raw(attached.reference) == attached.manifest.raw
    hexadecimal = image.digest.removeprefix("sha256:")
    with pytest.raises(HTTPError) as missing:  # the registry itself has no referrers API
        urllib.request.urlopen(f"http://{registry.host}/v2/artifacts/random/referrers/{image.digest}")
    assert missing.value.code == 404
    index = json.loads(skopeo_raw(f"{repository}:sha256-{hexadecimal}"))
    assert index["mediaType"] == mt.OCI_INDEX
    assert index["manifests"] == [
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": str(attached.digest),
            "size": len(attached.manifest.raw),
            "artifactType": SPDX,
        }
    ]
    with open_store(subject) as store:
        table = descriptor_table(store.referrers(image.digest))
        assert store.referrers(image.digest, artifact_type="text/plain") == []
    assert table.to_dict("records") == [
        {
            "digest": str(attached.digest),
            "media_type": "oci.manifest",
            "artifact_type": SPDX,
            "size": len(attached.manifest.raw),
        }
    ]


def test_a_second_document_joins_the_referrers_and_the_same_one_twice_is_listed_once(
    registry,
    image: RandomImage,  # type: ignore[no-untyped-def]
) -> None:
    subject = f"docker://{registry.host}/artifacts/twice:1"
    run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", image.reference, subject)
    first = attach(subject, SBOM, artifact_type=SPDX, media_type=SPDX)
    assert attach(subject, SBOM, artifact_type=SPDX, media_type=SPDX).digest == first.digest
    second = attach(subject, b"signed", artifact_type="application/vnd.example.signature", media_type="text/plain")
    with open_store(subject) as store:
        assert [item.digest for item in store.referrers(image.digest)] == [first.digest, second.digest]


def test_the_same_document_on_the_same_image_has_the_same_digest_in_a_layout_and_in_a_registry(
    registry,
    image: RandomImage,  # type: ignore[no-untyped-def]
) -> None:
    subject = f"docker://{registry.host}/artifacts/same:1"
    run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", image.reference, subject)
    assert attach(subject, SBOM, artifact_type=SPDX).digest == attach(image.reference, SBOM, artifact_type=SPDX).digest


@pytest.mark.parametrize(
    ("artifact_type", "media_type", "error", "words"),
    [
        ("not a type", SPDX, InvalidInputError, "artifactType"),
        (SPDX, "no-slash", InvalidInputError, "mediaType"),
    ],
)
def test_a_bad_media_type_is_refused_by_field_and_nothing_is_written(
    image: RandomImage, artifact_type: str, media_type: str, error: type[Exception], words: str
) -> None:
    before = snapshot(image.layout)
    with pytest.raises(error, match=words):
        attach(image.reference, SBOM, artifact_type=artifact_type, media_type=media_type, tag="sbom")
    assert snapshot(image.layout) == before


def test_a_missing_image_is_named_and_nothing_is_written(image: RandomImage) -> None:
    before = snapshot(image.layout)
    with pytest.raises(NotFoundError, match="nope"):
        attach(f"oci:{image.layout}:nope", SBOM, artifact_type=SPDX, tag="sbom")
    assert snapshot(image.layout) == before


def test_archives_are_refused_with_where_artifacts_go(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match=r"docker://.*oci:"):
        attach(f"docker-archive:{tmp_path}/image.tar", SBOM, artifact_type=SPDX)


def test_the_referrers_tag_check_explains_each_wrong_answer(registry, image: RandomImage) -> None:  # type: ignore[no-untyped-def]
    from ocilab import check

    subject = f"docker://{registry.host}/artifacts/check:1"
    run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", image.reference, subject)
    attach(subject, SBOM, artifact_type=SPDX)
    tag = image.digest.replace(":", "-")
    assert check.referrers_tag(f" {tag} ", subject)
    for answer, hint in [(image.digest, "cannot contain ':'"), ("1", "names an image"), ("latest", "has no tag")]:
        verdict = check.referrers_tag(answer, subject)
        assert not verdict and hint in verdict.message, verdict


def test_the_changes_only_check_names_what_else_changed(tmp_path: Path, image: RandomImage) -> None:
    from ocilab import Builder, check

    base = Builder.from_image(image.reference).add_files({"/app/app.conf": b"a\n"})
    base.write(f"oci:{tmp_path}/apps:v2")
    v2 = f"oci:{tmp_path}/apps:v2"
    Builder.from_image(v2).add_files({"/app/app.conf": b"b\n"}).write(f"oci:{tmp_path}/apps:right")
    Builder.from_image(v2).add_files({"/app/app.conf": b"b\n", "/etc/motd": b"hi\n"}).write(f"oci:{tmp_path}/apps:more")
    Builder.scratch().add_files({"/app/app.conf": b"b\n"}).write(f"oci:{tmp_path}/apps:scratch")
    assert check.changes_only(f"oci:{tmp_path}/apps:right", v2, "/app/app.conf")
    for tag, hint in [("more", "/etc/motd"), ("scratch", "Builder.from_image"), ("v2", "the same in both")]:
        verdict = check.changes_only(f"oci:{tmp_path}/apps:{tag}", v2, "/app/app.conf")
        assert not verdict and hint in verdict.message, verdict
