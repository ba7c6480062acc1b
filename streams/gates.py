"""The JSON Schemas of ``schemas/`` as msgspec types: a batch validated in one C call.

A msgspec type derived from a schema validates a whole batch in one call. It is a
gate, not a second judge: it must accept nothing the compiled check of
:mod:`streams.schemas` refuses (it may refuse more, e.g. 1.0 for an integer, or a
repeated key), and whatever it refuses goes through the compiled checks, which alone
give reasons. A schema it cannot express exactly (nested objects, non-string enums)
has no gate. ``tests/property/test_gates.py`` holds the gates against ``jsonschema``.
"""

from __future__ import annotations

from pathlib import Path
from types import GenericAlias
from typing import Annotated, Any, Literal, Union

from .schemas import SUPPORTED_KEYWORDS, _is_type, load_schema, parse_rfc3339_ms

_PY_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float,
                             "boolean": bool, "null": None, "object": dict, "array": list}
_ANNOTATIONS = frozenset({"title", "description", "$comment", "x-reject-reason"})


class _NoGate(Exception):
    """A property the msgspec gate cannot express exactly."""


def _gate_value(schema: dict[str, Any]) -> Any:
    import msgspec

    unknown = set(schema) - _ANNOTATIONS - {"type", "const", "enum", "minimum", "maximum",
                                            "minLength", "maxLength", "pattern", "format"}
    if unknown:
        raise _NoGate(f"keywords {sorted(unknown)}")
    types = schema.get("type")
    names = None if types is None else [types] if isinstance(types, str) else list(types)
    if ("const" in schema or "enum" in schema) and set(schema) & {
            "minimum", "maximum", "minLength", "maxLength", "pattern", "format"}:
        raise _NoGate("a const or enum with other constraints")
    if "const" in schema:
        const = schema["const"]
        if not isinstance(const, str | int) or isinstance(const, bool):
            raise _NoGate("a const that is not a string or an integer")
        if names is not None and not any(_is_type(const, n) for n in names):
            raise _NoGate("a const its type refuses")
        return Literal[const]
    if "enum" in schema:
        allowed = schema["enum"]
        if not all(a is None or isinstance(a, str) for a in allowed):
            raise _NoGate("an enum of values other than strings and null")
        strings = [a for a in allowed if a is not None] \
            if names is None or "string" in names else []
        null = None in allowed and (names is None or "null" in names)
        options: list[Any] = [Literal[tuple(strings)]] if strings else []
        if null:
            options.append(None)
        if not options:
            raise _NoGate("an enum its type refuses entirely")
        return Union[tuple(options)]  # noqa: UP007
    if names is None:
        raise _NoGate("no type")
    options = []
    for name in names:
        py = _PY_TYPES[name]
        meta: dict[str, Any] = {}
        if name == "string":
            if "minLength" in schema:
                meta["min_length"] = schema["minLength"]
            if "maxLength" in schema:
                meta["max_length"] = schema["maxLength"]
            if "pattern" in schema:
                meta["pattern"] = schema["pattern"]
            if schema.get("format") == "date-time":
                # the shape and the date itself are checked by parsing it, after the
                # gate (see date_fields): matching the pattern here would double that
                pass
            elif "format" in schema:
                raise _NoGate(f"format {schema['format']}")
        elif name in ("integer", "number"):
            if "minimum" in schema:
                meta["ge"] = schema["minimum"]
            if "maximum" in schema:
                meta["le"] = schema["maximum"]
        options.append(Annotated[py, msgspec.Meta(**meta)] if meta else py)
    return Union[tuple(options)]  # noqa: UP007


def gate_type(schema: dict[str, Any], name: str) -> Any | None:
    """A msgspec Struct type for events of a flat object schema (None: no gate). Fields
    the schema does not name are ignored, as the schemas allow them; a
    ``date-time`` field is checked for its shape only (see :func:`date_fields`)."""
    import msgspec

    if schema.get("type") != "object" or set(schema) - SUPPORTED_KEYWORDS \
            or "maxProperties" in schema:
        return None
    required = set(schema.get("required", ()))
    fields: list[tuple[str, Any, Any] | tuple[str, Any]] = []
    try:
        for prop, sub in schema.get("properties", {}).items():
            value = _gate_value(sub)
            fields.append((prop, value) if prop in required else (prop, value, None))
    except _NoGate:
        return None
    if required - set(schema.get("properties", {})):
        return None  # a required field with no definition: leave it to the checks
    closed = schema.get("additionalProperties", True) is False
    return msgspec.defstruct(f"{name}_gate", fields, kw_only=True,
                             forbid_unknown_fields=closed)


def date_fields(schema: dict[str, Any]) -> tuple[str, ...]:
    """Properties of ``format: date-time``: what a gate passes must still parse."""
    return tuple(p for p, sub in schema.get("properties", {}).items()
                 if sub.get("format") == "date-time")


def load_gates(names: list[str], directory: Path | None = None
               ) -> dict[str, tuple[Any, tuple[str, ...]]]:
    """Per event type with a gate: (msgspec type of a list of its events, date fields)."""
    gates: dict[str, tuple[Any, tuple[str, ...]]] = {}
    for name in names:
        schema = load_schema(name, directory)
        gate = gate_type(schema, name)
        if gate is not None:
            gates[name] = (GenericAlias(list, (gate,)), date_fields(schema))
    return gates


def through_gate(events: list[Any], gate: Any, dates: tuple[str, ...]) -> list[int] | None:
    """The events' ``occurred_at`` in epoch ms if they all pass ``gate`` (a type from
    :func:`load_gates`) and every date-time of theirs parses; else None."""
    import msgspec

    try:
        msgspec.convert(events, gate)
        times = [parse_rfc3339_ms(obj["occurred_at"]) for obj in events]
        for name in dates:  # the gate checks a date-time's type; parsing, the rest
            if name != "occurred_at":  # (parsed above)
                for obj in events:
                    value = obj.get(name)
                    if value is not None:
                        parse_rfc3339_ms(value)
    except (msgspec.ValidationError, ValueError):
        return None
    return times
