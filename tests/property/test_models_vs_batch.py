"""A simulated week of web, email, spend and funnel activity: the stages, run in
process, equal the independent batch recomputation under every attribution model."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.events import Decoder
from streams.kpis.attribution import MODELS
from streams.kpis.catalogue import Modes
from streams.kpis.merge import snapshot_key
from streams.local import LocalPipeline
from streams.schemas import parse_rfc3339_ms
from streams.settings import load_settings
from streams.simulate import DAY, Options, generate
from tests.batch import recompute

START = parse_rfc3339_ms("2026-11-16T00:00:00Z")


@pytest.fixture(scope="module")
def week() -> list[Any]:
    decoder = Decoder.from_settings(load_settings({}))
    events = [e for batch in generate(START, START + 7 * DAY,
                                      Options(seed=4, sessions_per_day=500, email_list=150,
                                              installed_base=60)) for e in batch]
    records = []
    for ev in events:
        recs, rejects = decoder.decode(orjson.dumps(ev), None, START + 400 * DAY)
        assert not rejects
        records += recs
    assert sum(1 for e in events if e["event_type"] == "deal_update") > 50
    return records


@pytest.mark.parametrize("model", MODELS)
def test_week_matches_batch(week: list[Any], model: str) -> None:
    lp = LocalPipeline(attribution=model, modes=Modes(attribution=model), publish={"1d"})
    for i in range(0, len(week), 2000):
        lp.feed(week[i:i + 2000])
    snaps = lp.finish(START + 400 * DAY)
    want = recompute(week, model)
    compared, bad = 0, []
    for (kpi, size, start, dim), (num, den) in want.items():
        if size != "1d":
            continue
        doc = snaps.get(snapshot_key(kpi, size, start, dim))
        compared += 1
        if doc is None or abs(doc["numerator"] - num) > 1e-3 or \
                abs(doc["denominator"] - den) > 1e-3:
            bad.append((kpi, start, dim, doc and (doc["numerator"], doc["denominator"]),
                        (num, den)))
    assert not bad, bad[:10]
    funnel_keys = [k for k in want if k[0] in ("won_deals", "mqls", "revenue", "new_customers")]
    assert compared > 1000 and len(funnel_keys) > 20
    eng_keys = [k for k in want if k[0] in ("social_engagement_rate", "offline_reach",
                                            "content_views", "offline_response_rate")]
    assert len(eng_keys) > 20
