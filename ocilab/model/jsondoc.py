"""Loading JSON documents with a size cap, and typed field access whose errors name the field.

Errors raise (a ValidationError naming the field). What the spec allows but
calls odd (a SHOULD not followed) is a ``Finding`` appended to the warnings
that every ``Fields`` of one document shares.
"""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import dataclass
from typing import Any

from ocilab.errors import DocumentTooLargeError, ValidationError

CREATED_ANNOTATION = "org.opencontainers.image.created"
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
"""Cap for manifests, indexes, configs and layout files, as registries commonly enforce."""


def load_object(raw: bytes, source: str, limit: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """Parse ``raw`` as a JSON object; refuse oversized, non-UTF-8, malformed or non-object input."""
    value = _decode(raw, source, limit)
    if not isinstance(value, dict):
        raise ValidationError("", f"expected a JSON object, got {_kind(value)}", source)
    return value


def load_array(raw: bytes, source: str, limit: int = MAX_DOCUMENT_BYTES) -> list[Any]:
    """Parse ``raw`` as a JSON array (such as ``docker save``'s manifest.json), with the same refusals."""
    value = _decode(raw, source, limit)
    if not isinstance(value, list):
        raise ValidationError("", f"expected a JSON array, got {_kind(value)}", source)
    return value


def _decode(raw: bytes, source: str, limit: int) -> Any:
    if len(raw) > limit:
        raise DocumentTooLargeError(f"{source}: {len(raw)} bytes is over the {limit}-byte limit for documents")
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_refuse_duplicate_keys(source))
    except UnicodeDecodeError as error:
        raise ValidationError("", f"not UTF-8 ({error.reason} at byte {error.start})", source) from None
    except json.JSONDecodeError as error:
        raise ValidationError(
            "", f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}", source
        ) from None
    except RecursionError:
        raise ValidationError("", "JSON nested too deeply", source) from None


def _refuse_duplicate_keys(source: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValidationError(key, "duplicate key in JSON object", source)
            result[key] = value
        return result

    return hook


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


@dataclass(frozen=True)
class Finding:
    """One problem or warning: the JSON path of the field (``""`` when none applies) and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


# RFC 6838 section 4.2: type "/" subtype, each a restricted-name of 1 to 127 characters (the spec's own JSON schema).
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")

# RFC 3339 section 5.6 date-time; "T" and "Z" are case-insensitive (ABNF), DIGIT is ASCII.
_DATE_TIME = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?P<offset_hour>[0-9]{2}):(?P<offset_minute>[0-9]{2}))"
)


def date_time_problem(text: str) -> str | None:
    """Why ``text`` is not an RFC 3339 (section 5.6) date-time; None when it is one."""
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        return f"{text!r} is not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or +HH:MM)"
    part = {name: int(value) for name, value in match.groupdict(default="0").items()}
    limits = [
        ("month", 1, 12),
        ("day", 1, calendar.monthrange(part["year"], part["month"])[1] if 1 <= part["month"] <= 12 else 31),
        ("hour", 0, 23),
        ("minute", 0, 59),
        ("second", 0, 60),
        ("offset_hour", 0, 23),
        ("offset_minute", 0, 59),
    ]
    for name, low, high in limits:
        if not low <= part[name] <= high:
            return f"{text!r} is not an RFC 3339 date-time ({name.replace('_', ' ')} {part[name]} is out of range)"
    return None


class Fields:
    """Typed access to one JSON object; every error carries the dotted path of the field.

    ``warnings`` is shared with every ``nested`` object of the same document.
    With ``null_is_absent`` (image configs: "any OPTIONAL field MAY also be set
    to null"), an optional field set to null reads as missing.
    """

    def __init__(
        self,
        obj: Any,
        path: str,
        source: str,
        *,
        warnings: list[Finding] | None = None,
        null_is_absent: bool = False,
    ) -> None:
        if not isinstance(obj, dict):
            raise ValidationError(path, f"expected an object, got {_kind(obj)}", source)
        self.obj = obj
        self.path = path
        self.source = source
        self.warnings: list[Finding] = [] if warnings is None else warnings
        self.null_is_absent = null_is_absent

    def nested(self, obj: Any, path: str) -> Fields:
        """Fields for an object inside this document, at ``path``, sharing its warnings and null rule."""
        return Fields(obj, path, self.source, warnings=self.warnings, null_is_absent=self.null_is_absent)

    def at(self, key: str) -> str:
        """The path of ``key`` inside this object."""
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> ValidationError:
        """A ValidationError for ``key``."""
        return ValidationError(self.at(key), problem, self.source)

    def warn(self, key: str, message: str) -> None:
        """Record a warning for ``key`` (allowed by the spec, but worth telling)."""
        self.warnings.append(Finding(self.at(key), message))

    def _get(self, key: str, required: bool, kinds: tuple[type, ...], label: str) -> Any:
        if key not in self.obj or (self.obj[key] is None and self.null_is_absent and not required):
            if required:
                raise self.error(key, "required field is missing")
            return None
        value = self.obj[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.error(key, f"expected {label}, got {_kind(value)}")
        return value

    def string(self, key: str, required: bool = False) -> str | None:
        return self._get(key, required, (str,), "a string")

    def integer(self, key: str, required: bool = False) -> int | None:
        return self._get(key, required, (int,), "an integer")

    def obj_field(self, key: str, required: bool = False) -> dict[str, Any] | None:
        return self._get(key, required, (dict,), "an object")

    def array(self, key: str, required: bool = False) -> list[Any] | None:
        return self._get(key, required, (list,), "an array")

    def boolean(self, key: str) -> bool | None:
        return self._get(key, False, (bool,), "a boolean")

    def media_type(self, key: str, required: bool = False) -> str | None:
        """A string that must be an RFC 6838 media type."""
        value = self.string(key, required)
        if value is not None and not _MEDIA_TYPE.fullmatch(value):
            raise self.error(key, f"{value!r} is not a valid media type (RFC 6838)")
        return value

    def date_time(self, key: str) -> str | None:
        """An optional string that must be an RFC 3339 date-time."""
        value = self.string(key)
        problem = None if value is None else date_time_problem(value)
        if problem:
            raise self.error(key, problem)
        return value

    def string_map(self, key: str) -> dict[str, str]:
        """An optional object whose values are all strings (annotations, labels)."""
        value = self.obj_field(key) or {}
        for name, item in value.items():
            if not isinstance(item, str):
                raise ValidationError(f"{self.at(key)}.{name}", f"expected a string, got {_kind(item)}", self.source)
        return dict(value)

    def annotations(self, key: str = "annotations") -> dict[str, str]:
        """A string-string map under the annotation rules; a malformed pre-defined ``created`` is a warning."""
        value = self.string_map(key)
        created = value.get(CREATED_ANNOTATION)
        problem = None if created is None else date_time_problem(created)
        if problem:
            self.warn(f"{key}.{CREATED_ANNOTATION}", f"{problem}, as this pre-defined annotation should be")
        return value

    def empty_object_map(self, key: str) -> list[str]:
        """The keys of an optional object whose values must be empty objects (Go's ``map[string]struct{}``)."""
        value = self.obj_field(key) or {}
        for name, item in value.items():
            if not isinstance(item, dict) or item:
                got = f"one with key {next(iter(item))!r}" if isinstance(item, dict) else _kind(item)
                raise ValidationError(f"{self.at(key)}.{name}", f"expected an empty object, got {got}", self.source)
        return list(value)

    def string_list(self, key: str, required: bool = False) -> list[str] | None:
        """An optional (or required) array of strings."""
        value = self.array(key, required)
        if value is None:
            return None
        for position, item in enumerate(value):
            if not isinstance(item, str):
                raise ValidationError(
                    f"{self.at(key)}[{position}]", f"expected a string, got {_kind(item)}", self.source
                )
        return list(value)
