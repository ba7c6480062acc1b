"""Decode, validate, normalise: every reject reason and every channel rule."""

from __future__ import annotations

import base64

import orjson
import pytest

from streams.channels import ChannelRules, ConfigError, Currency
from streams.events import Decoder, dead_letter_record
from streams.records import DealUpdate, FormSubmit, PageView, Spend
from tests.conftest import NOW, REMOVE, event


def one(decoder: Decoder, ev: object, expected: str | None = None):
    records, rejects = decoder.decode(orjson.dumps(ev), expected, NOW)
    assert len(records) + len(rejects) == 1
    return records[0] if records else rejects[0]


# -- every reject reason ---------------------------------------------------------------
@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "malformed_json"),
    (b'{"a": NaN}', "malformed_json"),
    (b'{"a": Infinity}', "malformed_json"),
    (b'"\xed\xa0\x80"', "malformed_json"),  # a lone surrogate is not UTF-8
    (b"", "malformed_json"),
    (b"42", "not_an_object"),
    (b'"page_view"', "not_an_object"),
    (b"[" * 2000 + b"]" * 2000, "malformed_json"),  # nesting deeper than the parser allows
])
def test_message_level_rejects(decoder: Decoder, raw: bytes, reason: str) -> None:
    records, rejects = decoder.decode(raw, "page_view", NOW)
    assert records == []
    assert [r.reason for r in rejects] == [reason]
    assert rejects[0].original == raw


def test_tombstone_is_rejected_not_crashing(decoder: Decoder) -> None:
    records, rejects = decoder.decode(None, "page_view", NOW)
    assert records == [] and rejects[0].reason == "malformed_json"


def test_too_large_message(settings) -> None:
    small = Decoder.from_settings(settings.replace(max_message_bytes=100))
    raw = orjson.dumps(event("page_view", url="https://x.example/" + "a" * 200))
    _, rejects = small.decode(raw, "page_view", NOW)
    assert rejects[0].reason == "too_large" and rejects[0].original == raw


def test_too_many_events_in_one_array(settings) -> None:
    small = Decoder.from_settings(settings.replace(max_batch_events=3))
    raw = orjson.dumps([event("page_view") for _ in range(4)])
    records, rejects = small.decode(raw, "page_view", NOW)
    assert records == [] and rejects[0].reason == "too_large"


@pytest.mark.parametrize(("ev", "reason", "field"), [
    (event("page_view", event_type=REMOVE), "missing_field", "event_type"),
    (event("page_view", event_type="page_veiw"), "unknown_event_type", "event_type"),
    (event("page_view", event_type=7), "unknown_event_type", "event_type"),
    (event("page_view", visitor_id=REMOVE), "missing_field", "visitor_id"),
    (event("page_view", occurred_at=REMOVE), "missing_field", "occurred_at"),
    (event("page_view", event_id=REMOVE), "missing_field", "event_id"),
    (event("page_view", visitor_id=12), "wrong_type", "visitor_id"),
    (event("page_view", engaged_ms="40s"), "wrong_type", "engaged_ms"),
    (event("page_view", engaged_ms=True), "wrong_type", "engaged_ms"),
    (event("page_view", engaged_ms=1.5), "wrong_type", "engaged_ms"),
    (event("page_view", schema_version="one"), "wrong_type", "schema_version"),
    (event("page_view", schema_version=2), "unsupported_schema_version", "schema_version"),
    (event("page_view", page_type="home"), "invalid_value", "page_type"),
    (event("page_view", device="watch"), "invalid_value", "device"),
    (event("page_view", channel="tv"), "invalid_value", "channel"),
    (event("page_view", event_id=""), "invalid_value", "event_id"),
    (event("page_view", occurred_at="yesterday"), "invalid_value", "occurred_at"),
    (event("page_view", occurred_at="2026-11-23T10:00:00"), "invalid_value", "occurred_at"),
    (event("page_view", occurred_at="2026-02-30T10:00:00Z"), "invalid_value", "occurred_at"),
    (event("page_view", engaged_ms=-1), "invalid_value", "engaged_ms"),
    (event("email_event", type="read"), "invalid_value", "type"),
    (event("email_event", machine_open="yes"), "wrong_type", "machine_open"),
    (event("form_submit", goal="signup"), "invalid_value", "goal"),
    (event("deal_update", amount=-5.0), "negative_amount", "amount"),
    (event("deal_update", gross_profit=-1), "negative_amount", "gross_profit"),
    (event("deal_update", amount="100"), "wrong_type", "amount"),
    (event("deal_update", currency="XYZ"), "unknown_currency", "currency"),
    (event("deal_update", currency="eur"), "unknown_currency", "currency"),
    (event("deal_update", stage="closed"), "invalid_value", "stage"),
    (event("spend", cost=-0.01), "negative_amount", "cost"),
    (event("spend", currency="BTC"), "unknown_currency", "currency"),
    (event("spend", impressions=-3), "invalid_value", "impressions"),
    (event("spend", period_end="2026-11-23T09:00:00Z"), "bad_period", "period_end"),
    (event("spend", period_end="2026-11-23T08:00:00Z"), "bad_period", "period_end"),
    (event("engagement", count=0), "invalid_value", "count"),
    (event("engagement", kind="poke"), "invalid_value", "kind"),
])
def test_event_rejects(decoder: Decoder, ev: dict, reason: str, field: str) -> None:
    rej = one(decoder, ev)
    assert (rej.reason, rej.field) == (reason, field), rej.detail
    assert rej.detail


def test_future_event_beyond_skew(decoder: Decoder) -> None:
    ev = event("page_view", occurred_at="2026-11-23T20:00:00Z")  # 1h07 after NOW
    assert one(decoder, ev).reason == "future_event"
    ev = event("page_view", occurred_at="2026-11-23T19:30:00Z")  # within the 1h skew
    assert isinstance(one(decoder, ev), PageView)


def test_wrong_topic(decoder: Decoder) -> None:
    rej = one(decoder, event("spend"), expected="page_view")
    assert (rej.reason, rej.field) == ("wrong_topic", "event_type")


def test_batch_keeps_good_events_and_names_bad_positions(decoder: Decoder) -> None:
    good, bad = event("page_view"), event("page_view", page_type="home")
    raw = orjson.dumps([good, bad, 3, good])
    records, rejects = decoder.decode(raw, "page_view", NOW)
    assert len(records) == 2
    assert [(r.reason, r.batch_index) for r in rejects] == [
        ("invalid_value", 1), ("not_an_object", 2)]
    # the element is kept as it arrived (re-encoded JSON), with its event id
    assert orjson.loads(rejects[0].original) == bad
    assert rejects[0].event_id == bad["event_id"]


def test_unknown_extra_fields_are_kept(decoder: Decoder) -> None:
    rec = one(decoder, event("page_view", tracker_version="4.2", extra={"a": 1}))
    assert rec.raw["tracker_version"] == "4.2" and rec.raw["extra"] == {"a": 1}


def test_null_optionals_are_absent(decoder: Decoder) -> None:
    rec = one(decoder, event("page_view", referrer=None, utm_medium=None, device=None,
                             engaged_ms=None, channel=None))
    assert (rec.channel, rec.device, rec.engaged_ms) == ("direct", "unknown", 0)


def test_offsets_and_fractions_are_parsed(decoder: Decoder) -> None:
    a = one(decoder, event("page_view", occurred_at="2026-11-23T11:00:00.250+01:00"))
    b = one(decoder, event("page_view", occurred_at="2026-11-23T10:00:00.25Z"))
    assert a.t == b.t == 1_795_428_000_250


def test_dead_letter_record_shape(decoder: Decoder) -> None:
    rej = one(decoder, event("page_view", page_type="home"))
    doc = dead_letter_record(rej, "mkt.page_views.v1", 3, 42, NOW)
    assert doc["reason"] == "invalid_value" and doc["field"] == "page_type"
    assert doc["partition"] == 3 and doc["offset"] == 42
    assert orjson.loads(base64.b64decode(doc["original"]))["page_type"] == "home"
    assert doc["received_at"] == "2026-11-23T18:53:20.000Z"


# -- normalisation ---------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "channel"), [
    ({"channel": "offline", "utm_medium": "cpc"}, "offline"),  # explicit channel wins
    ({"utm_medium": "cpc"}, "paid_search"),
    ({"utm_medium": "ppc"}, "paid_search"),
    ({"utm_medium": "paidsearch"}, "paid_search"),
    ({"utm_medium": "CPC "}, "paid_search"),  # case and spaces do not matter
    ({"utm_medium": "paid_social"}, "paid_social"),
    ({"utm_medium": "paidsocial"}, "paid_social"),
    ({"utm_medium": "social"}, "organic_social"),
    ({"utm_medium": "email"}, "email"),
    ({"utm_medium": "display"}, "display"),
    ({"utm_medium": "banner"}, "display"),
    ({"utm_medium": "cpm"}, "display"),
    ({"utm_medium": "affiliate"}, "affiliate"),
    ({"utm_medium": "referral"}, "referral"),
    ({"utm_medium": "cpc", "referrer": "https://www.google.com/"}, "paid_search"),
    # an unmapped medium falls through to the referrer, then to direct
    ({"utm_medium": "newsletter", "referrer": "https://www.bing.com/search?q=a"},
     "organic_search"),
    ({"utm_medium": "newsletter"}, "direct"),
    ({"referrer": "https://www.google.com/"}, "organic_search"),
    ({"referrer": "https://www.google.co.uk/search?q=kpi"}, "organic_search"),
    ({"referrer": "https://news.google.de/"}, "organic_search"),
    ({"referrer": "https://duckduckgo.com/"}, "organic_search"),
    ({"referrer": "https://www.linkedin.com/feed/"}, "organic_social"),
    ({"referrer": "https://t.co/abc"}, "organic_social"),
    ({"referrer": "https://partner-blog.example/post"}, "referral"),
    ({"referrer": "https://notgoogle.com/"}, "referral"),  # label match, not substring
    ({"referrer": "https://www.acme.example/blog/"}, "direct"),  # our own site
    ({"referrer": "https://acme.example/"}, "direct"),  # with or without www
    ({"referrer": ""}, "direct"),
    ({"referrer": "not a url"}, "referral"),
    ({}, "direct"),
])
def test_page_view_channel_rules(decoder: Decoder, fields: dict, channel: str) -> None:
    rec = one(decoder, event("page_view", **fields))
    assert rec.channel == channel


def test_internal_hosts_from_configuration(tmp_path) -> None:
    rules_file = tmp_path / "rules.json"
    rules_file.write_text('{"utm_medium": {"newsletter": "email"}, '
                          '"search_engines": ["search.example"], "social_networks": [], '
                          '"internal_hosts": ["shop.acme.example"]}')
    rules = ChannelRules.load(rules_file)
    assert rules.channel(None, "newsletter", None, None) == "email"
    assert rules.channel(None, None, "https://search.example/q", None) == "organic_search"
    assert rules.channel(None, None, "https://shop.acme.example/x",
                         "https://www.acme.example/") == "direct"
    assert rules.channel(None, None, "https://www.linkedin.com/", None) == "referral"


def test_channel_rules_reject_unknown_channels(tmp_path) -> None:
    rules_file = tmp_path / "rules.json"
    rules_file.write_text('{"utm_medium": {"tv": "television"}}')
    with pytest.raises(ConfigError, match="television"):
        ChannelRules.load(rules_file)


def test_form_channel_is_a_touch_only_when_given(decoder: Decoder) -> None:
    assert one(decoder, event("form_submit")).channel is None
    assert one(decoder, event("form_submit", utm_medium="cpc")).channel == "paid_search"
    assert one(decoder, event("form_submit", channel="offline")).channel == "offline"
    rec = one(decoder, event("form_submit", utm_campaign="x"))
    assert isinstance(rec, FormSubmit) and rec.channel == "direct"


def test_currency_conversion(decoder: Decoder) -> None:
    deal = one(decoder, event("deal_update", amount=100.0, currency="USD", gross_profit=50))
    assert isinstance(deal, DealUpdate)
    assert deal.amount == pytest.approx(92.0) and deal.gross_profit == pytest.approx(46.0)
    spend = one(decoder, event("spend", cost=10.0, currency="GBP"))
    assert isinstance(spend, Spend) and spend.cost == pytest.approx(11.7)


def test_reporting_currency_other_than_base(tmp_path) -> None:
    cur = Currency.load("USD")
    assert cur.convert(92.0, "EUR") == pytest.approx(100.0)
    assert cur.convert(100.0, "USD") == pytest.approx(100.0)
    assert cur.convert(1.0, "XYZ") is None
    with pytest.raises(ConfigError, match="reporting currency"):
        Currency.load("BTC")


def test_an_empty_batch_is_rejected_not_dropped(decoder: Decoder) -> None:
    records, rejects = decoder.decode(b"[]", "page_view", 0)
    assert records == [] and [r.reason for r in rejects] == ["malformed_json"]
    assert "empty batch" in rejects[0].detail
