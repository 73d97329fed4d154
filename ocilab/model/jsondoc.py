"""Loading JSON documents with a size cap, and typed field access whose errors name the field."""

from __future__ import annotations

import json
from typing import Any

from ocilab.errors import DocumentTooLargeError, ValidationError

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


class Fields:
    """Typed access to one JSON object; every error carries the dotted path of the field."""

    def __init__(self, obj: Any, path: str, source: str) -> None:
        if not isinstance(obj, dict):
            raise ValidationError(path, f"expected an object, got {_kind(obj)}", source)
        self.obj = obj
        self.path = path
        self.source = source

    def at(self, key: str) -> str:
        """The path of ``key`` inside this object."""
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> ValidationError:
        """A ValidationError for ``key``."""
        return ValidationError(self.at(key), problem, self.source)

    def _get(self, key: str, required: bool, kinds: tuple[type, ...], label: str) -> Any:
        if key not in self.obj:
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

    def string_map(self, key: str) -> dict[str, str]:
        """An optional object whose values are all strings (annotations, labels)."""
        value = self.obj_field(key) or {}
        for name, item in value.items():
            if not isinstance(item, str):
                raise ValidationError(f"{self.at(key)}.{name}", f"expected a string, got {_kind(item)}", self.source)
        return dict(value)

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
