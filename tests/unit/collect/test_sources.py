"""Source tokens, the per-source rate limit and cookieless ids (pure)."""

from __future__ import annotations

import pytest

from streams.collect.sources import CookielessIds, RateLimiter, TokenTable, parse_tokens
from streams.settings import SettingsError, load_settings


def test_tokens_name_their_source_and_types() -> None:
    site, ops = parse_tokens("site:pk_12345678:page_view,form_submit; ops:sk_12345678:*")
    assert (site.name, site.types) == ("site", frozenset({"page_view", "form_submit"}))
    assert site.allows("page_view") and not site.allows("spend")
    assert ops.allows("spend") and ops.allows("deal_update")
    table = TokenTable((site, ops))
    assert table.find("sk_12345678") is ops
    assert table.find("sk_1234567") is None and table.find(None) is None


@pytest.mark.parametrize(("text", "message"), [
    ("site:pk_12345678", "not name:token:types"),
    ("site:pk_12345678:page_views", "unknown event type(s) page_views"),
    ("site:short:page_view", "at least 8 characters"),
    ("a:pk_12345678:*;a:pk_87654321:*", "used twice"),
])
def test_a_bad_token_setting_names_the_entry(text: str, message: str) -> None:
    from streams.collect.server import CollectConfig

    with pytest.raises(SettingsError) as err:
        CollectConfig.from_settings(load_settings({"KPI_COLLECT_TOKENS": text}))
    assert message in str(err.value)
    assert "pk_12345678" not in str(err.value)  # a secret is never printed


def test_rate_limit_refills_at_its_rate() -> None:
    rl = RateLimiter(rate=2.0)
    assert [rl.take("s", 0.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert rl.take("other", 0.0) == 0.0  # per source
    assert rl.take("s", 0.5) == 0.0  # one request's worth refilled in half a second
    assert rl.take("s", 0.5) > 0


def test_cookieless_ids_are_stable_within_a_day_and_forgotten_the_next() -> None:
    ids = CookielessIds(random=b"fixed salt for the test")
    day = 86_400_000
    a = ids.visitor_id("site", "203.0.113.7", "Firefox", 5 * day + 10)
    assert a == ids.visitor_id("site", "203.0.113.7", "Firefox", 6 * day - 1)
    assert a != ids.visitor_id("site", "203.0.113.8", "Firefox", 5 * day + 10)
    assert a != ids.visitor_id("other", "203.0.113.7", "Firefox", 5 * day + 10)
    assert a != ids.visitor_id("site", "203.0.113.7", "Firefox", 6 * day)  # a new salt
    assert "203.0.113.7" not in a and a.startswith("anon-")
    # without a pinned salt, each process day draws a random one
    live = CookielessIds()
    assert live.salt(0) != CookielessIds().salt(0)


def test_hubspot_maps_name_the_bad_pair() -> None:
    s = load_settings({"KPI_HUBSPOT_STAGES": "appt_1=sal, won_2=won",
                       "KPI_HUBSPOT_KINDS": "upsell=expansion"})
    assert s.hubspot_stages == (("appt_1", "sal"), ("won_2", "won"))
    assert s.hubspot_kinds == (("upsell", "expansion"),)
    with pytest.raises(SettingsError, match="'renewal' is not one of mql"):
        load_settings({"KPI_HUBSPOT_STAGES": "x=renewal"})
    with pytest.raises(SettingsError, match="is not key=value"):
        load_settings({"KPI_HUBSPOT_KINDS": "upsell"})
