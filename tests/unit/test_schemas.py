"""The compiled checks agree with the jsonschema reference implementation."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.schemas import SUPPORTED_KEYWORDS, SchemaError, compile_schema, load_schema
from streams.topics import EVENT_TYPES
from tests.conftest import event

ALL = [*EVENT_TYPES, "kpi_snapshot", "dead_letter"]


@pytest.mark.parametrize("name", ALL)
def test_schema_is_valid_2020_12(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_event_schema_pins_its_event_type(name: str) -> None:
    schema = load_schema(name)
    assert schema["properties"]["event_type"] == {
        "const": name, "description": schema["properties"]["event_type"]["description"]}


def test_unsupported_keyword_is_refused() -> None:
    with pytest.raises(SchemaError, match="oneOf"):
        compile_schema({"type": "object", "properties": {"a": {"oneOf": []}}})
    assert "oneOf" not in SUPPORTED_KEYWORDS


# Mutations of a valid event: drop a field, or replace a value with something of
# another type or out of range. The fast checks must say "bad" exactly when the
# reference validator does (formats are compared separately below).
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(-2, 2),
                   st.sampled_from([0.0, 1.0, 2.0, -1.0]),
                   st.text(max_size=5), st.just(""), st.just([]), st.just({}),
                   st.sampled_from(["landing", "open", "won", "media", "EUR", "usd", "XYZ"]))


@st.composite
def mutated(draw: Any) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(EVENT_TYPES))
    ev = event(kind)
    schema = load_schema(kind)
    names = sorted(schema["properties"])
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(names))
        if name in ("occurred_at", "created_at", "period_start", "period_end"):
            continue  # date-time format: see test_date_time_format
        if draw(st.booleans()):
            ev.pop(name, None)
        else:
            ev[name] = draw(VALUES)
    return kind, ev


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_compiled_checks_agree_with_reference(case: tuple[str, dict[str, Any]]) -> None:
    kind, ev = case
    schema = load_schema(kind)
    reference_ok = jsonschema.Draft202012Validator(schema).is_valid(ev)
    assert (compile_schema(schema)(ev) is None) == reference_ok, json.dumps(ev)


@pytest.mark.parametrize(("text", "ok"), [
    ("2026-11-23T10:00:00Z", True), ("2026-11-23T10:00:00.5+05:30", True),
    ("2026-11-23t10:00:00z", True), ("2026-11-23T10:00:00", False),
    ("2026-11-23 10:00:00Z", False), ("2026-13-01T00:00:00Z", False),
    ("23/11/2026", False), ("", False),
])
def test_date_time_format(text: str, ok: bool) -> None:
    check = compile_schema(load_schema("page_view"))
    assert (check(event("page_view", occurred_at=text)) is None) == ok
