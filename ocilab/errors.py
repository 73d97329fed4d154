"""The one exception tree of ocilab.

Every error says what was wrong, where (file, entry, field, digest) and,
where it helps, what to do::

    OcilabError
    ├── InvalidInputError          bad input refused before any work is done
    │   ├── DigestFormatError      a string that is not an OCI digest
    │   ├── ReferenceFormatError   an image reference that cannot be parsed
    │   ├── ValidationError        a JSON document that breaks the spec (names the field)
    │   └── DocumentTooLargeError  a document over its size cap
    ├── VerificationError          content whose digest or size does not match
    ├── UnsupportedError           valid, but beyond what ocilab can do (unknown digest algorithm)
    ├── NotFoundError              a tag, image, blob or platform that is not there
    ├── UnsafePathError            a path that escapes its root or goes through a symlink
    ├── ComponentUnavailableError  an engine, registry or tool that cannot be reached
    └── RegistryError              the registry answered with an error (``code``: DENIED, UNSUPPORTED ...)
        ├── AuthenticationError    credentials missing or refused
        ├── RegistryNotFoundError  MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN ... (also a NotFoundError)
        ├── RegistryVerificationError  DIGEST_INVALID, SIZE_INVALID ... (also a VerificationError)
        └── DeletionDisabledError  the registry refuses deletes (405 / UNSUPPORTED)
"""

from __future__ import annotations


class OcilabError(Exception):
    """Root of every error ocilab raises on purpose."""


class InvalidInputError(OcilabError, ValueError):
    """Input was refused before any work was done."""


class DigestFormatError(InvalidInputError):
    """A string is not a well-formed OCI digest; ``problem`` says why without repeating the string."""

    def __init__(self, text: object, problem: str) -> None:
        self.problem = problem
        super().__init__(f"{text!r} is not a valid digest: {problem}")


class ReferenceFormatError(InvalidInputError):
    """An image reference or transport string cannot be parsed."""


class ValidationError(InvalidInputError):
    """A document breaks the spec; ``field`` is the JSON path, e.g. ``layers[2].digest``."""

    def __init__(self, field: str, problem: str, source: str = "") -> None:
        self.field = field
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        location = f"{field}: " if field else ""
        super().__init__(f"{where}{location}{problem}")


class DocumentTooLargeError(InvalidInputError):
    """A JSON document is larger than the cap for its kind."""


class VerificationError(OcilabError):
    """Content does not match the digest or size it was promised to have."""


class UnsupportedError(OcilabError):
    """Well-formed input that ocilab cannot process (e.g. an unknown digest algorithm)."""


class NotFoundError(OcilabError, LookupError):
    """A tag, image, blob or platform is not where it was looked for."""


class UnsafePathError(OcilabError):
    """A path escapes its root directory or archive, or passes through a symlink."""


class ComponentUnavailableError(OcilabError):
    """A component (Docker engine, registry, runc, skopeo, umoci) cannot be reached or run."""


class RegistryError(OcilabError):
    """A registry answered a request with an error.

    ``status`` is the HTTP status, ``code`` the distribution-spec error code of
    the answer's first error (``MANIFEST_UNKNOWN``, ``DENIED`` ...), when there was one.
    """

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class AuthenticationError(RegistryError):
    """The registry asked for credentials that are missing or were refused."""


class RegistryNotFoundError(RegistryError, NotFoundError):
    """The registry does not have the repository, manifest, tag, blob or upload session asked for."""


class RegistryVerificationError(RegistryError, VerificationError):
    """The registry refused content whose digest or size does not match (DIGEST_INVALID, SIZE_INVALID)."""


class DeletionDisabledError(RegistryError, UnsupportedError):
    """The registry does not allow deletes (``storage.delete.enabled`` is off in its config)."""
