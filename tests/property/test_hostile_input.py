"""Hostile input: the decode/validate path never raises, and every reject is a valid
dead-letter record with a known reason.

Inputs: random bytes, truncated JSON, deep nesting, huge messages, NaN/Infinity,
lone surrogates and odd unicode, timestamps far in the past and the future, and
valid events with one field replaced by arbitrary JSON. Accepted events are
cross-checked against the published JSON Schemas with the reference
``jsonschema`` validator, so the compiled validator cannot be laxer than the contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.events import Decoder, dead_letter_record
from streams.settings import load_settings
from tests.conftest import NOW, event

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {p.name.split(".")[0]: json.loads(p.read_text())
           for p in (ROOT / "schemas").glob("*.v1.json")}
DLQ = jsonschema.Draft202012Validator(SCHEMAS["dead_letter"])
REASONS = set(SCHEMAS["dead_letter"]["properties"]["reason"]["enum"])
LIMIT = 64 * 1024
DECODER = Decoder.from_settings(load_settings({"KPI_MAX_MESSAGE_BYTES": str(LIMIT),
                                               "KPI_MAX_BATCH_EVENTS": "50"}))
TYPES = ("page_view", "form_submit", "email_event", "deal_update", "spend", "engagement")
FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check(raw: bytes, expected: str | None = None) -> tuple[list[Any], list[Any]]:
    """Decode; nothing raises, and every input part is either a record or a reject."""
    records, rejects = DECODER.decode(raw, expected, NOW)
    assert records or rejects, "input vanished: neither accepted nor rejected"
    for rej in rejects:
        assert rej.reason in REASONS, rej.reason
        doc = dead_letter_record(rej, "t.dlq-source", 0, 7, NOW)
        DLQ.validate(orjson.loads(orjson.dumps(doc)))
    for rec in records:
        et = rec.raw["event_type"]
        # what we accepted, the reference validator accepts too
        jsonschema.Draft202012Validator(SCHEMAS[et]).validate(rec.raw)
        if expected is not None:
            assert et == expected
    return records, rejects


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                   max_size=4),
    max_leaves=12)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.sampled_from(TYPES), st.data())
def test_truncated_json(et: str, data: st.DataObject) -> None:
    raw = orjson.dumps([event(et, event_id="fuzz-1"), event(et, event_id="fuzz-2")])
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    records, rejects = check(raw[:cut], et)
    assert records == [] and rejects[0].reason in ("malformed_json",)


@FUZZ
@given(st.sampled_from(TYPES), st.data(), json_values)
def test_one_field_replaced_by_arbitrary_json(et: str, data: st.DataObject,
                                              value: Any) -> None:
    ev = event(et)
    field = data.draw(st.sampled_from([*sorted(ev), "unexpected"]))
    ev[field] = value
    check(orjson.dumps(ev), et)
    check(orjson.dumps([ev, event(et)]), et)


@FUZZ
@given(st.sampled_from(TYPES), st.data())
def test_field_removed(et: str, data: st.DataObject) -> None:
    ev = event(et)
    del ev[data.draw(st.sampled_from(sorted(ev)))]
    check(orjson.dumps(ev), et)


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=64))
def test_odd_unicode_in_strings(text: str) -> None:
    for et, field in (("page_view", "visitor_id"), ("page_view", "utm_campaign"),
                      ("email_event", "campaign"), ("spend", "campaign")):
        check(orjson.dumps(event(et, **{field: text})), et)


@FUZZ
@given(st.sampled_from([b"\\ud800", b"\\udfff", b"\\ud83d", b"\\u0000", b"\\uffff",
                        b"\xed\xa0\x80", b"\xff\xfe", b"\xc0\xaf", b"\\ud83d\\ude00"]),
       st.sampled_from(["visitor_id", "url", "utm_campaign", "event_id"]))
def test_surrogates_and_invalid_utf8(fragment: bytes, field: str) -> None:
    raw = orjson.dumps(event("page_view", **{field: "MARK"})).replace(b"MARK", fragment)
    check(raw, "page_view")


@FUZZ
@given(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"nan"]),
       st.sampled_from(["cost", "impressions", "amount"]))
def test_nan_and_infinity(literal: bytes, field: str) -> None:
    raw = orjson.dumps(event("spend", cost=424242.0, impressions=424242)).replace(
        b"424242.0", literal).replace(b"424242", literal)
    _, rejects = check(raw, "spend")
    assert rejects and rejects[0].reason == "malformed_json"


@FUZZ
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from([b"[", b'{"a":']))
def test_deep_nesting(depth: int, opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    raw = opener * depth + b"1" + closer * depth
    _, rejects = check(raw)
    if depth > 32 and len(raw) <= LIMIT:
        assert rejects[0].reason in ("too_large", "malformed_json")
    nested = orjson.dumps([event("page_view", extra="X")]).replace(
        b'"X"', (b"[" * min(depth, 300)) + (b"]" * min(depth, 300)))
    check(nested, "page_view")


@FUZZ
@given(st.integers(min_value=LIMIT - 64, max_value=4 * LIMIT))
def test_huge_messages_rejected_above_the_setting(size: int) -> None:
    ev = event("page_view")
    pad = size - len(orjson.dumps({**ev, "pad": ""}))
    raw = orjson.dumps({**ev, "pad": "x" * max(pad, 0)})
    records, rejects = check(raw, "page_view")
    if len(raw) > LIMIT:
        assert rejects[0].reason == "too_large"
    else:
        assert len(records) == 1


@FUZZ
@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_000),
       st.sampled_from(["Z", "+00:00", "+14:00", "-12:00"]))
def test_timestamps_far_past_and_future(ms: int, tz: str) -> None:
    import datetime as dt

    when = dt.datetime(1, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        milliseconds=ms + 62_135_596_800_000)
    text = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}" + tz
    records, rejects = check(orjson.dumps(event("page_view", occurred_at=text)),
                             "page_view")
    if records:
        assert records[0].t <= NOW + DECODER.max_future_skew_ms
    else:
        assert rejects[0].reason in ("future_event", "invalid_value")
        if rejects[0].reason == "future_event":
            assert records == []


def test_year_zero_and_out_of_range_dates_do_not_crash() -> None:
    for text in ("0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999-23:59",
                 "2026-02-30T00:00:00Z", "2026-11-23T24:00:00Z", "2026-11-23T10:00:60Z",
                 "+002026-11-23T10:00:00Z", "2026-11-23 10:00:00Z", "2026-11-23T10:00:00",
                 "1970-01-01T00:00:00Z", "1900-01-01T00:00:00+01:00"):
        check(orjson.dumps(event("page_view", occurred_at=text)), "page_view")


def _series(n_campaigns: int) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every Prometheus series the KPI collector exposes after a campaign flood."""
    from prometheus_client import CollectorRegistry

    from streams.kpis.catalogue import Modes
    from streams.local import LocalPipeline, decode_all
    from streams.outputs.collector import KpiCollector

    t0 = NOW - 3 * 3_600_000
    events: list[dict[str, Any]] = []
    for i in range(n_campaigns):
        at = f"2026-11-23T{15 + i % 3:02d}:{i % 60:02d}:00Z"
        name = f"flood-{i:05d}-" + "ü" * (i % 7)
        events.append(event("page_view", event_id=f"pv{i}", visitor_id=f"v{i % 50}",
                            utm_campaign=name, utm_source="newsletter", utm_medium="email",
                            occurred_at=at))
        events.append(event("email_event", event_id=f"em{i}", message_id=f"m{i}",
                            campaign=name, occurred_at=at))
        events.append(event("spend", event_id=f"sp{i}", campaign=name, cost=1.0,
                            period_start=at, period_end=at.replace(":00Z", ":30Z")))
    lp = LocalPipeline()
    lp.feed(decode_all(DECODER, events, NOW), wall_ms=t0)
    lp.finish(NOW + 86_400_000)
    registry = CollectorRegistry()
    registry.register(KpiCollector(lambda: lp.merge, Modes(), "EUR", clock=lambda: NOW / 1000))
    out = set()
    for fam in registry.collect():
        for sample in fam.samples:
            labels = tuple(sorted(sample.labels.items()))
            assert not any("flood-" in v for _, v in labels), (sample.name, labels)
            out.add((sample.name, labels))
    return out


def test_campaign_flood_does_not_grow_prometheus_labels() -> None:
    few, many = _series(3), _series(1500)
    assert few, "the collector exposed nothing"
    assert len(many) == len(few), sorted(many - few)[:5]
