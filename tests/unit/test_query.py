"""One snapshot filter: the merge partitions' view, the live stream, the CLI and the API
select the same snapshots for the same query."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import MultiDict

from streams.kpis.query import SnapshotQuery, sort_key
from streams.local import LocalPipeline
from streams.simulate import DAY
from tests.unit.kpitables import simulated

START = 1_790_812_800_000  # 2026-10-01T00:00:00Z


@pytest.fixture(scope="module")
def merged() -> LocalPipeline:
    return simulated(START, DAY // 4, seed=4, sessions_per_day=600, kpi_partitions=1)


def _ids(docs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(sort_key(d) for d in docs)


QUERIES = [
    {},
    {"kpi": "bounce_rate,sessions"},
    {"bucket": "1h", "channel": "email"},
    {"channel": "email", "device": "mobile"},  # two dims: both, not their intersection
    {"dim": "total", "bucket": "1d,24h"},
    {"from": "2026-10-01T06:00:00Z", "to": "2026-10-01T09:00:00Z", "bucket": "1h,24h"},
    {"final": "false", "kpi": "pageviews"},
]


@pytest.mark.parametrize("params", QUERIES, ids=[str(q) for q in QUERIES])
def test_the_view_and_the_document_filter_agree(merged: LocalPipeline,
                                                params: dict[str, str]) -> None:
    m = merged.merge[0]
    query = SnapshotQuery.parse(MultiDict(params))
    everything = m.view(computed_at_ms=START)
    at_source = [d for d in m.view(query=query, computed_at_ms=START)
                 if query.final is None or d["final"] == query.final]
    assert at_source, "the query should select something in six simulated hours"
    assert _ids(at_source) == _ids(query.select(everything))


def test_two_dims_select_both_and_a_query_round_trips_through_its_parameters() -> None:
    query = SnapshotQuery.parse(MultiDict({"channel": "email", "device": "mobile",
                                           "kpi": "sessions", "final": "true"}))
    assert query.dims == {"channel=email", "device=mobile"}
    doc = {"kpi": "sessions", "bucket": "1h", "final": True,
           "window_start": "2026-10-01T06:00:00Z", "dims": {"device": "mobile"}}
    assert query.accepts(doc)
    assert not query.accepts({**doc, "dims": {}})
    assert not query.accepts({**doc, "final": False})
    assert SnapshotQuery.parse(MultiDict(query.params())) == query


@pytest.mark.parametrize("params, error", [
    ({"kpi": "cpl_typo"}, "unknown kpi"), ({"bucket": "2h"}, "bucket must be"),
    ({"final": "yes"}, "final must be"), ({"limit": "0"}, "limit must be between"),
    ({"from": "yesterday"}, "from:"), ({"compare": "week"}, "compare must be"),
])
def test_a_bad_filter_is_refused_with_what_is_wrong(params: dict[str, str],
                                                    error: str) -> None:
    with pytest.raises(ValueError, match=error):
        SnapshotQuery.parse(MultiDict(params))
