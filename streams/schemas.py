"""Load the JSON Schemas in ``schemas/`` and compile them into fast checks.

The worker validates every event, so a general JSON Schema library (tens of
microseconds per event) would dominate the hot path. The schemas use a small
subset of JSON Schema 2020-12; :func:`compile_schema` turns that subset into
closures that return the first problem as ``(reason, field, detail)``. The test
suite checks the compiled checks against the ``jsonschema`` reference
implementation on generated events, and :func:`load_schemas` refuses a schema
that uses a keyword outside the subset, so the two cannot silently disagree.

Reasons: ``missing_field``, ``wrong_type``, ``invalid_value``; a property may
name another reason with the annotation ``x-reject-reason`` (for example
``negative_amount`` on money fields).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

Problem = tuple[str, str | None, str]
Check = Callable[[Any], Problem | None]

SUPPORTED_KEYWORDS = frozenset({
    "$schema", "$id", "title", "description", "type", "required", "properties",
    "additionalProperties", "const", "enum", "minimum", "maximum", "minLength",
    "maxLength", "pattern", "format", "maxProperties", "x-reject-reason", "$comment",
})

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class SchemaError(ValueError):
    """A schema file is unreadable or uses a keyword the compiler does not support."""


def schema_dir() -> Path:
    """The schemas/ directory: next to the package in a checkout, inside it in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "schemas", here / "_schemas"):
        if candidate.is_dir():
            return candidate
    raise SchemaError(f"no schemas directory next to {here}")


def parse_rfc3339_ms(text: str) -> int:
    """RFC 3339 timestamp with offset -> epoch milliseconds. Raises ValueError."""
    if not _RFC3339.match(text):
        raise ValueError("not an RFC 3339 date-time with an offset")
    if len(text) == 24 and text[19] == "." and text[23] == "Z" and text[10] == "T" \
            and text.isascii():
        # the shape every producer of ours writes (…T10:00:05.123Z): the minute is
        # parsed once, seconds and milliseconds are added (a leap second 60 is not
        # a time: the full parse below refuses it)
        second = int(text[17:19])
        if second < 60 and text[11:13] < "24":  # (some Pythons read 24:00 as midnight)
            minute = _MINUTES.get(text[:16])
            if minute is None:
                minute = _parse(text[:16] + ":00Z")
                if len(_MINUTES) >= 4096:
                    _MINUTES.clear()
                _MINUTES[text[:16]] = minute
            return minute + second * 1000 + int(text[20:23])
    return _parse(text)


_MINUTES: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM" -> epoch ms of that UTC minute


def _parse(text: str) -> int:
    dt = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    # integer arithmetic: float timestamps lose the millisecond (…302.9999 -> 302)
    return (dt - _EPOCH) // _MS


def _is_type(value: Any, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    raise SchemaError(f"unknown type {name!r}")


def _check_keywords(schema: dict[str, Any], where: str) -> None:
    unknown = set(schema) - SUPPORTED_KEYWORDS
    if unknown:
        raise SchemaError(f"{where}: unsupported keyword(s) {sorted(unknown)}")


def _compile_value(schema: dict[str, Any], path: str) -> Check:
    """Compile the checks of one property value (everything but object structure)."""
    _check_keywords(schema, path)
    reason = schema.get("x-reject-reason", "invalid_value")
    checks: list[Check] = []
    types = schema.get("type")
    if types is not None:
        type_list = [types] if isinstance(types, str) else list(types)
        wanted = " or ".join(type_list)

        def check_type(v: Any) -> Problem | None:
            for t in type_list:
                if _is_type(v, t):
                    return None
            return ("wrong_type", path, f"expected {wanted}, got {_json_type(v)}")

        checks.append(check_type)
    if "const" in schema:
        const = schema["const"]

        def check_const(v: Any) -> Problem | None:
            # JSON equality: 1 == 1.0, but true is not 1
            if v == const and isinstance(v, bool) == isinstance(const, bool):
                return None
            return ("invalid_value", path, f"must be {const!r}")

        checks.append(check_const)
    if "enum" in schema:
        allowed = list(schema["enum"])
        allowed_set = {a for a in allowed if a is not None}
        allow_null = None in allowed

        def check_enum(v: Any) -> Problem | None:
            if v is None and allow_null:
                return None
            if isinstance(v, str) and v in allowed_set:
                return None
            shown = ", ".join(str(a) for a in allowed if a is not None)
            return ("invalid_value", path, f"{_short(v)} is not one of: {shown}")

        checks.append(check_enum)
    if "minimum" in schema:
        lo = schema["minimum"]

        def check_min(v: Any) -> Problem | None:
            if isinstance(v, int | float) and not isinstance(v, bool) and v < lo:
                return (reason, path, f"{v} is below the minimum {lo}")
            return None

        checks.append(check_min)
    if "maximum" in schema:
        hi = schema["maximum"]

        def check_max(v: Any) -> Problem | None:
            if isinstance(v, int | float) and not isinstance(v, bool) and v > hi:
                return (reason, path, f"{v} is above the maximum {hi}")
            return None

        checks.append(check_max)
    if "minLength" in schema or "maxLength" in schema:
        lo_len = schema.get("minLength", 0)
        hi_len = schema.get("maxLength")

        def check_len(v: Any) -> Problem | None:
            if isinstance(v, str):
                n = len(v)
                if n < lo_len:
                    return ("invalid_value", path, "must not be empty" if lo_len == 1
                            else f"shorter than {lo_len} characters")
                if hi_len is not None and n > hi_len:
                    return ("invalid_value", path, f"longer than {hi_len} characters")
            return None

        checks.append(check_len)
    if "pattern" in schema:
        rx = re.compile(schema["pattern"])

        def check_pattern(v: Any) -> Problem | None:
            if isinstance(v, str) and not rx.search(v):
                return (reason, path, f"{_short(v)} does not match {rx.pattern}")
            return None

        checks.append(check_pattern)
    if schema.get("format") == "date-time":

        def check_dt(v: Any) -> Problem | None:
            if isinstance(v, str):
                try:
                    parse_rfc3339_ms(v)
                except ValueError as exc:
                    return ("invalid_value", path, f"{_short(v)}: {exc}")
            return None

        checks.append(check_dt)
    elif "format" in schema:
        raise SchemaError(f"{path}: unsupported format {schema['format']!r}")
    if "properties" in schema or "required" in schema:
        checks.append(_compile_object(schema, path))
    elif "additionalProperties" in schema or "maxProperties" in schema:
        checks.append(_compile_map(schema, path))

    if len(checks) == 1:
        return checks[0]

    def run_all(v: Any) -> Problem | None:
        for c in checks:
            p = c(v)
            if p is not None:
                return p
        return None

    return run_all


def _compile_map(schema: dict[str, Any], path: str) -> Check:
    max_props = schema.get("maxProperties")
    extra = schema.get("additionalProperties", True)
    extra_check = _compile_value(extra, path + ".*") if isinstance(extra, dict) else None

    def check_map(v: Any) -> Problem | None:
        if not isinstance(v, dict):
            return None
        if max_props is not None and len(v) > max_props:
            return ("invalid_value", path, f"at most {max_props} entries")
        if extra_check is not None:
            for item in v.values():
                p = extra_check(item)
                if p is not None:
                    return p
        return None

    return check_map


def _compile_object(schema: dict[str, Any], path: str) -> Check:
    _check_keywords(schema, path or "<root>")
    required = list(schema.get("required", ()))
    props = {
        name: _compile_value(sub, f"{path}.{name}" if path else name)
        for name, sub in schema.get("properties", {}).items()
    }
    closed = schema.get("additionalProperties", True) is False
    order = required + [p for p in props if p not in required]

    def check_object(v: Any) -> Problem | None:
        if not isinstance(v, dict):
            return ("wrong_type", path or None, f"expected object, got {_json_type(v)}")
        for name in required:
            if name not in v:
                return ("missing_field", f"{path}.{name}" if path else name, "is required")
        for name in order:
            if name in v:
                p = props[name](v[name]) if name in props else None
                if p is not None:
                    return p
        if closed:
            for name in v:
                if name not in props:
                    return ("invalid_value", f"{path}.{name}" if path else name,
                            "is not allowed here")
        return None

    return check_object


def compile_schema(schema: dict[str, Any]) -> Check:
    """Compile a top-level object schema into a check returning the first problem."""
    return _compile_object(schema, "")


def load_schema(name: str, directory: Path | None = None) -> dict[str, Any]:
    path = (directory or schema_dir()) / f"{name}.v1.json"
    try:
        data: dict[str, Any] = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise SchemaError(f"cannot load schema {path}: {exc}") from exc
    return data


def load_checks(names: list[str], directory: Path | None = None) -> dict[str, Check]:
    """Load and compile the named schemas; fails at start on any unsupported keyword."""
    return {name: compile_schema(load_schema(name, directory)) for name in names}


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
