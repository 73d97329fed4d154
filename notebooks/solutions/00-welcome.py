"""00 · Welcome: the answers to "Your turn", for instructors.

Each entry is the check a learner's cell calls and the arguments of a right
answer (the answer first); tests/test_check.py runs each one, expects ✓, and
expects ✗ for a wrong answer. Answers are computed on this machine, as the
checks do, so they hold for any busybox version.
"""

from __future__ import annotations

from typing import Any

from ocilab import Image, check
from ocilab.model import Digest


def solutions(image: Image) -> list[tuple[Any, tuple[Any, ...]]]:
    """(check, arguments) per exercise, in the notebook's order; ``image`` is the notebook's busybox image."""
    return [
        # 1. The digest of the six bytes "ocilab": str(Digest.of_bytes(b"ocilab")), or `printf ocilab | sha256sum`.
        (check.digest_of, (str(Digest.of_bytes(b"ocilab")), b"ocilab")),
        # 2. The busybox image has two layers: the binary, then the links.
        (check.layer_count, (2, image)),
        # 3. The config's digest: image.config_digest, or the "config" line of `ocilab inspect`.
        (check.config_digest, (str(image.config_digest), image)),
    ]
