"""The msgspec gates agree with the JSON Schemas, and decoding through them changes nothing.

A gate (``streams.gates.gate_type``) lets a whole message of events past the
compiled checks in one C call. It may refuse more than the schema (then the checks
judge, and give the reasons), never less: every event it passes, the reference
``jsonschema`` validator and the compiled check pass too. And whatever a message
holds, the decoder answers the same with its gates as without them.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.events import Decoder
from streams.gates import date_fields, gate_type, load_gates, through_gate
from streams.schemas import compile_schema, load_schema
from streams.settings import load_settings
from streams.topics import EVENT_TYPES
from tests.conftest import NOW, event

GATED = Decoder.from_settings(load_settings({"KPI_MAX_BATCH_EVENTS": "50"}))
PLAIN = Decoder.from_settings(load_settings({"KPI_MAX_BATCH_EVENTS": "50"}))
PLAIN.gates = {}
REFERENCE = {t: jsonschema.Draft202012Validator(load_schema(t)) for t in EVENT_TYPES}
CHECKS = {t: compile_schema(load_schema(t)) for t in EVENT_TYPES}
GATES = load_gates(list(EVENT_TYPES))
FUZZ = settings(max_examples=600, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# what a field may be replaced with: near misses of every keyword the schemas use
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from([2**63, -(2**70), 10**30]),
    st.floats(-2, 2), st.sampled_from([0.0, 1.0, 2.0, -1.0, 1e300, -0.0]),
    st.text(max_size=5), st.just(""), st.just(" "), st.just("x" * 201), st.just("x" * 4001),
    st.just([]), st.just({}), st.just({"a": [1]}), st.just([{"b": None}]),
    st.sampled_from(["landing", "open", "won", "media", "EUR", "usd", "XYZ", "EUR\n",
                     "desktop", "bot", "human", "page_view", "form_submit", "1"]),
    st.sampled_from(["2026-11-23T10:00:00Z", "2026-11-23T10:00:00.123Z",
                     "2026-11-23T10:00:60.000Z", "2026-02-30T10:00:00.000Z",
                     "2026-11-23T24:00:00.000Z", "2026-11-23T10:00:00.000Z\n",
                     "2026-11-23t10:00:00.5+05:30", "2026-11-23T10:00:0\u0661.000Z",
                     "2026-11-23 10:00:00Z", "2999-01-01T00:00:00.000Z"]),
)


@st.composite
def mutated(draw: Any) -> tuple[str, dict[str, Any]]:
    """A valid event of some type with up to three fields dropped, replaced or added."""
    kind = draw(st.sampled_from(EVENT_TYPES))
    ev = event(kind)
    names = [*sorted(load_schema(kind)["properties"]), "extra", "x"]
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(names))
        if draw(st.integers(0, 3)) == 0:
            ev.pop(name, None)
        else:
            ev[name] = draw(VALUES)
    return kind, ev


def gate_passes(kind: str, ev: Any) -> bool:
    """What the decoder's gate lets through: the type, then every date-time parsing."""
    return through_gate([ev], *GATES[kind]) is not None


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_every_event_type_has_a_gate(kind: str) -> None:
    assert kind in GATES
    assert "occurred_at" in date_fields(load_schema(kind))


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_a_valid_event_passes_its_gate(kind: str) -> None:
    assert gate_passes(kind, event(kind))


@FUZZ
@given(mutated())
def test_what_a_gate_passes_the_schema_accepts(case: tuple[str, dict[str, Any]]) -> None:
    kind, ev = case
    if gate_passes(kind, ev):
        assert REFERENCE[kind].is_valid(ev), dumps(ev)
        assert CHECKS[kind](ev) is None, dumps(ev)


def test_a_gate_is_not_laxer_than_the_schema_on_near_misses() -> None:
    for kind in EVENT_TYPES:
        good = event(kind)
        for name in [*load_schema(kind)["properties"], "event_type"]:
            for value in (None, True, 1.5, "", "x" * 5000, [], {}, -1, 2**64):
                ev = {**good, name: value}
                if gate_passes(kind, ev):
                    assert REFERENCE[kind].is_valid(ev), (kind, name, value)
            dropped = {k: v for k, v in good.items() if k != name}
            if gate_passes(kind, dropped):
                assert REFERENCE[kind].is_valid(dropped), (kind, name)


def test_a_schema_the_gate_cannot_express_has_none() -> None:
    nested = {"type": "object", "properties": {"a": {"type": "object", "properties": {}}}}
    assert gate_type(nested, "nested") is None
    enum_of_numbers = {"type": "object", "properties": {"a": {"enum": [1, 2]}}}
    assert gate_type(enum_of_numbers, "numbers") is None
    constrained_enum = {"type": "object",
                        "properties": {"a": {"enum": ["ab"], "maxLength": 1}}}
    assert gate_type(constrained_enum, "constrained") is None


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()  # orjson refuses integers past 64 bits; a producer may not


def _same(raw: bytes, expected: str | None) -> None:
    got = GATED.decode(raw, expected, NOW)
    want = PLAIN.decode(raw, expected, NOW)
    assert got == want, raw


@FUZZ
@given(st.lists(mutated(), min_size=1, max_size=6), st.booleans())
def test_decoding_through_the_gates_changes_nothing(cases: list[tuple[str, dict[str, Any]]],
                                                   single: bool) -> None:
    kind = cases[0][0]
    events = [ev for _, ev in cases]
    _same(dumps(events), kind)
    _same(dumps(events[0]), kind)
    _same(dumps(events), None)
    if single:  # the common case: a batch of valid events of the topic's type
        valid = [event(kind, event_id=f"e{i}") for i in range(len(events))]
        _same(dumps(valid), kind)
        records, rejects = GATED.decode(dumps(valid), kind, NOW)
        assert len(records) == len(valid) and not rejects


def test_the_gate_path_gives_the_same_rejects_for_future_events_and_currencies() -> None:
    future = event("page_view", occurred_at="2999-01-01T00:00:00.000Z")
    _same(dumps([event("page_view"), future]), "page_view")
    _same(dumps(future), "page_view")
    odd = event("deal_update", currency="XYZ")
    _same(dumps([odd, event("deal_update")]), "deal_update")


def test_repeated_keys_are_judged_as_the_checks_judge_them() -> None:
    text = dumps(event("page_view")).decode()
    for extra in ('"visitor_id": 5', '"page_type": "nope"', '"visitor_id": "v-other"'):
        raw = ("[" + text[:-1] + ", " + extra + "}]").encode()
        _same(raw, "page_view")


def test_the_decoder_uses_its_gates() -> None:
    assert set(GATED.gates) == set(EVENT_TYPES)
    rejects_only = replace(GATED.decode(b"[1]", "page_view", NOW)[1][0], original=b"")
    assert rejects_only.reason == "not_an_object"
