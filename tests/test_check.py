"""ocilab.check: the solutions pass, wrong answers fail with a hint, and nothing a learner types raises."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import ocilab
from ocilab.present.check import CHECKS, EXERCISES, Verdict, exercises

SOLUTIONS = Path(__file__).resolve().parent.parent / "notebooks" / "solutions"


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"solutions_{path.stem.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wrong(answer: Any) -> Any:
    """A near miss: one more for a number, the last hex digit changed for a digest."""
    if isinstance(answer, int):
        return answer + 1
    return answer[:-1] + ("0" if answer[-1] != "0" else "1")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ocilab.Image:
    layout = ocilab.busybox_layout(tmp_path_factory.mktemp("check") / "busybox", tag="1")
    return ocilab.open(f"oci:{layout}:1")


@pytest.mark.parametrize("path", sorted(SOLUTIONS.glob("*.py")), ids=lambda path: path.stem)
def test_each_solution_passes_and_a_near_miss_fails(path: Path, image: ocilab.Image) -> None:
    solved = load(path).solutions(image)
    assert [check.__name__ for check, _ in solved] == list(EXERCISES[path.stem]) and exercises(path.stem)
    for check, (answer, *context) in solved:
        right = check(answer, *context)
        assert isinstance(right, Verdict) and right and repr(right).startswith("✓"), right
        miss = check(wrong(answer), *context)
        assert not miss and repr(miss).startswith("✗ ") and len(miss.message) > 20, miss


def test_every_notebook_with_exercises_has_solutions() -> None:
    assert sorted(EXERCISES) == sorted(path.stem for path in SOLUTIONS.glob("*.py"))


def test_digest_of_agrees_with_sha256sum() -> None:
    peer = subprocess.run(["sha256sum"], input=b"ocilab", capture_output=True, check=True).stdout.split()[0]
    assert ocilab.check.digest_of(f"sha256:{peer.decode()}", b"ocilab")
    assert ocilab.check.digest_of(f"sha256:{hashlib.sha256(b'ocilab').hexdigest()}", "ocilab")


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (..., "Not answered yet"),
        (None, "Not answered yet"),
        (hashlib.sha256(b"ocilab").hexdigest(), "write 'sha256:' before the hex"),
        ("sha256:" + hashlib.sha256(b"ocilab").hexdigest()[:12], "write the whole digest"),
        ("sha256:" + hashlib.sha256(b"ocilab").hexdigest().upper(), "lowercase"),
        ("sha256:" + hashlib.sha256(b"ocilab\n").hexdigest(), "trailing newline|one changed byte"),
        (42, "not 42"),
        (["sha256:..."], "not \\["),
    ],
)
def test_a_wrong_digest_gets_a_hint_not_a_traceback(answer: Any, hint: str) -> None:
    verdict = ocilab.check.digest_of(answer, b"ocilab")
    assert not verdict
    assert __import__("re").search(hint, verdict.message), verdict


def test_a_digest_of_another_part_is_named(image: ocilab.Image) -> None:
    verdict = ocilab.check.config_digest(str(image.manifest_digest), image)
    assert not verdict and "the manifest" in verdict.message
    verdict = ocilab.check.layer_digest(str(image.layers[1].diff_id), image, 1)
    assert not verdict and "diff_id" in verdict.message
    assert ocilab.check.layer_digest(str(image.layers[1].digest), image, 1)
    assert ocilab.check.manifest_digest(str(image.manifest_digest), image.reference)


@pytest.mark.parametrize("answer", ["2", 2.0, True, -1])
def test_a_layer_count_of_the_wrong_kind_gets_a_hint(answer: Any, image: ocilab.Image) -> None:
    verdict = ocilab.check.layer_count(answer, image)
    assert not verdict and verdict.message


def test_an_image_that_cannot_be_read_is_a_cross_with_the_reason(tmp_path: Path) -> None:
    verdict = ocilab.check.layer_count(2, f"oci:{tmp_path}/missing:1")
    assert not verdict and verdict.message.startswith("Could not check this answer:") and "missing" in verdict.message
    assert not ocilab.check.layer_digest("sha256:" + "0" * 64, f"oci:{tmp_path}/missing:1", 5)


def test_every_check_is_registered_and_shows_as_html() -> None:
    assert set(CHECKS) >= {"digest_of", "layer_count", "manifest_digest", "config_digest", "layer_digest"}
    html = ocilab.check.digest_of(..., b"x")._repr_html_()
    assert html.startswith("<p") and "✗" in html and "&lt;" not in html
