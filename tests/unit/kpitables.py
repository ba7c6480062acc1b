"""Helpers for hand-computed KPI tables: build records, run the pure pipeline, look up."""

from __future__ import annotations

from typing import Any

import orjson

from streams.events import Decoder
from streams.local import LocalPipeline
from streams.schemas import parse_rfc3339_ms
from tests.conftest import NOW, event

FAR = NOW + 400 * 86_400_000


def records(decoder: Decoder, events: list[dict[str, Any]]) -> list[Any]:
    out = []
    for ev in events:
        recs, rejects = decoder.decode(orjson.dumps(ev), None, FAR)
        assert not rejects, rejects
        out += recs
    return out


def run_pipeline(decoder: Decoder, events: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    lp = LocalPipeline(**kw)
    lp.feed(records(decoder, events))
    return lp.finish(FAR)


def snap(snaps: dict[str, Any], kpi: str, bucket: str, start: str, dim: str = "") -> Any:
    key = f"{kpi}|{bucket}|{start}|{dim}"
    assert key in snaps, f"no snapshot {key}; have e.g. {sorted(snaps)[:5]}"
    return snaps[key]


def value(snaps: dict[str, Any], kpi: str, bucket: str, start: str, dim: str = "") -> Any:
    return snap(snaps, kpi, bucket, start, dim)["value"]


def pv(visitor: str, at: str, **kw: Any) -> dict[str, Any]:
    return event("page_view", visitor_id=visitor, occurred_at=at, **kw)


def form(visitor: str, contact: str, at: str, goal: str = "demo_request",
         **kw: Any) -> dict[str, Any]:
    return event("form_submit", visitor_id=visitor, contact_id=contact, occurred_at=at,
                 goal=goal, **kw)


def ms(text: str) -> int:
    return parse_rfc3339_ms(text)


def simulated(start_ms: int, span_ms: int, seed: int, sessions_per_day: int,
              **kw: Any) -> LocalPipeline:
    """The pure pipeline fed ``span_ms`` of simulated traffic from ``start_ms`` in one
    batch (its watermarks where the events leave them: nothing forced final)."""
    from streams.local import decode_all
    from streams.settings import load_settings
    from streams.simulate import DAY, Options, generate

    events = [e for b in generate(start_ms, start_ms + span_ms,
                                  Options(seed=seed, sessions_per_day=sessions_per_day))
              for e in b]
    recs = decode_all(Decoder.from_settings(load_settings({})), events,
                      start_ms + 400 * DAY)
    lp = LocalPipeline(**kw)
    lp.feed(recs, wall_ms=start_ms)
    return lp
