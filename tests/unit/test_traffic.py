"""Bot and internal traffic: classified, kept out of the KPIs, shown by traffic_type.

Hand table, one day (2026-11-23), session timeout 30 min:

    visitor  traffic   page views                      sessions  form
    h1       human     10:00, 10:05                    1         demo_request 10:06
    b1       bot       10:00, 10:01, 11:00             2         demo_request 10:02
    i1       internal  10:30                           1         -

    KPI (1d)     total (= human)   bot  internal
    pageviews    2                 3    1
    sessions     1                 2    1
    users        1                 1    1
    leads        1      (a bot's form is no lead)
"""

from __future__ import annotations

import orjson
import pytest

from streams.events import Decoder
from streams.traffic import classify, is_bot, parse_networks
from tests.unit.kpitables import FAR, form, pv, run_pipeline, snap

DAY = "2026-11-23T00:00:00Z"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")


def test_classify_by_user_agent_network_and_header() -> None:
    nets = parse_networks("10.0.0.0/8, 203.0.113.7, 2001:db8::/32")
    assert classify(CHROME, "198.51.100.1", nets) == "human"
    assert classify(GOOGLEBOT, "198.51.100.1", nets) == "bot"
    assert classify("curl/8.5.0", "198.51.100.1", nets) == "bot"
    assert classify("", "198.51.100.1", nets) == "bot"  # every browser sends one
    assert classify(CHROME, "10.1.2.3", nets) == "internal"
    assert classify(GOOGLEBOT, "2001:db8::5", nets) == "internal"  # your own monitor
    assert classify(CHROME, "198.51.100.1", nets, declared="internal") == "internal"
    assert classify(None, "198.51.100.1", ()) == "human"  # nothing known: human
    assert is_bot(CHROME) is False
    with pytest.raises(ValueError, match=r"'10\.0\.0\.999' is not an IP"):
        parse_networks("10.0.0.999")


def test_the_decoder_takes_a_declared_type_or_a_user_agent(decoder: Decoder) -> None:
    base = pv("v", "2026-11-23T10:00:00Z")
    (rec,), _ = decoder.decode(orjson.dumps({**base, "user_agent": GOOGLEBOT}), None, FAR)
    assert rec.traffic_type == "bot"
    (rec,), _ = decoder.decode(orjson.dumps({**base, "traffic_type": "internal"}), None, FAR)
    assert rec.traffic_type == "internal"
    (rec,), _ = decoder.decode(orjson.dumps(base), None, FAR)
    assert rec.traffic_type == "human"
    _, (rej,) = decoder.decode(orjson.dumps({**base, "traffic_type": "robot"}), None, FAR)
    assert (rej.reason, rej.field) == ("invalid_value", "traffic_type")


def test_only_human_traffic_counts_and_the_rest_is_shown(decoder: Decoder) -> None:
    events = [
        pv("h1", "2026-11-23T10:00:00Z"), pv("h1", "2026-11-23T10:05:00Z"),
        form("h1", "c-h1", "2026-11-23T10:06:00Z"),
        pv("b1", "2026-11-23T10:00:00Z", traffic_type="bot"),
        pv("b1", "2026-11-23T10:01:00Z", traffic_type="bot"),
        pv("b1", "2026-11-23T11:00:00Z", traffic_type="bot"),
        form("b1", "c-b1", "2026-11-23T10:02:00Z", traffic_type="bot"),
        pv("i1", "2026-11-23T10:30:00Z", traffic_type="internal"),
    ]
    snaps = run_pipeline(decoder, events)

    def v(kpi: str, d: str = "") -> float:
        return snap(snaps, kpi, "1d", DAY, d)["value"]

    table = {"pageviews": (2, 3, 1), "sessions": (1, 2, 1), "users": (1, 1, 1)}
    for kpi, (total, bot, internal) in table.items():
        assert (v(kpi), v(kpi, "traffic_type=bot"),
                v(kpi, "traffic_type=internal")) == (total, bot, internal), kpi
        assert f"{kpi}|1d|{DAY}|traffic_type=human" not in snaps  # that is the total
    assert v("leads") == 1
    assert v("bounce_rate") == 0.0  # the bot's one-page session is not a bounce of ours
    assert "bounce_rate|1d|2026-11-23T00:00:00Z|traffic_type=bot" not in snaps
    assert v("conversions") == 1
