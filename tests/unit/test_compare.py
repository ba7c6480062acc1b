"""Period comparisons (?compare=previous|year): the compared windows by hand, and the
compare object a partition's view adds to each document."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from streams.events import Decoder
from streams.kpis import buckets as B
from streams.local import LocalPipeline
from streams.outputs.http import parse_kpi_query
from streams.settings import load_settings
from tests.unit.kpitables import FAR, ms, records
from tests.unit.test_kpis_funnel import GROWTH


def _w(window: str, start: str, end: str, basis: str) -> tuple[str, str]:
    s0, s1 = B.compared_window(window, ms(start), ms(end), basis)
    return B.iso(s0), B.iso(s1)


@pytest.mark.parametrize(("window", "start", "end", "basis", "want"), [
    ("1h", "2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z", "previous",
     ("2026-11-23T09:00:00Z", "2026-11-23T10:00:00Z")),
    ("1d", "2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z", "previous",
     ("2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z")),
    ("24h", "2026-11-22T10:00:00Z", "2026-11-23T10:00:00Z", "previous",
     ("2026-11-21T10:00:00Z", "2026-11-22T10:00:00Z")),
    ("1mo", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", "previous",
     ("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")),
    # a year: Monday 2026-11-23 against Monday 2025-11-24 (52 weeks)
    ("1d", "2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z", "year",
     ("2025-11-24T00:00:00Z", "2025-11-25T00:00:00Z")),
    ("1w", "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z", "year",
     ("2025-11-24T00:00:00Z", "2025-12-01T00:00:00Z")),
    ("7d", "2026-11-16T00:00:00Z", "2026-11-23T00:00:00Z", "year",
     ("2025-11-17T00:00:00Z", "2025-11-24T00:00:00Z")),
    # months and quarters: the same calendar period a year earlier
    ("1mo", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", "year",
     ("2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z")),
    ("1mo", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "year",
     ("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z")),
    ("1q", "2026-10-01T00:00:00Z", "2027-01-01T00:00:00Z", "year",
     ("2025-10-01T00:00:00Z", "2026-01-01T00:00:00Z")),
])
def test_compared_windows(window: str, start: str, end: str, basis: str,
                          want: tuple[str, str]) -> None:
    assert _w(window, start, end, basis) == want


def test_compared_local_days_across_a_clock_change() -> None:
    with B.zone("Europe/Warsaw"):
        # Monday 2026-03-30 (summer time) against Monday 2025-03-31 (also summer time)
        assert _w("1d", "2026-03-30T00:00:00+02:00", "2026-03-31T00:00:00+02:00",
                  "year") == ("2025-03-31T00:00:00+02:00", "2025-04-01T00:00:00+02:00")
        # the day after the change against the 23-hour day of the change
        assert _w("1d", "2026-03-30T00:00:00+02:00", "2026-03-31T00:00:00+02:00",
                  "previous") == ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00")


def test_unknown_basis_is_refused() -> None:
    with pytest.raises(ValueError, match="previous"):
        B.compared_window("1d", 0, B.DAY, "last_week")
    with pytest.raises(ValueError, match="compare must be one of previous, year"):
        parse_kpi_query(MultiDict({"compare": "yesterday"}))
    assert parse_kpi_query(MultiDict({"compare": "year"})).compare == "year"


def _revenue_view(compare: str) -> dict[str, dict]:
    lp = LocalPipeline()
    lp.feed(records(Decoder.from_settings(load_settings({})), GROWTH))
    lp.finish(FAR)
    docs = [d for m in lp.merge for d in m.view(kpis={"revenue"}, windows={"1d"},
                                                dims={""}, compare=compare)]
    return {d["window_start"]: d for d in docs}


def test_view_compares_with_the_day_before() -> None:
    docs = _revenue_view("previous")
    day2 = docs["2026-11-23T00:00:00Z"]
    assert day2["value"] == pytest.approx(1600.0)
    cmp = day2["compare"]
    assert cmp["basis"] == "previous"
    assert (cmp["window_start"], cmp["window_end"]) == ("2026-11-22T00:00:00Z",
                                                        "2026-11-23T00:00:00Z")
    assert (cmp["value"], cmp["numerator"], cmp["denominator"]) == pytest.approx(
        (1500.0, 1500.0, 1))
    assert cmp["change"] == pytest.approx(100.0)
    assert cmp["relative_change"] == pytest.approx(100 / 1500)
    assert cmp["covered"] is True
    # the first day: nothing before it, and the data does not reach back there
    cmp = docs["2026-11-22T00:00:00Z"]["compare"]
    assert cmp["value"] is None and cmp["change"] is None and cmp["relative_change"] is None
    assert cmp["covered"] is False


def test_view_compares_with_a_year_earlier_that_holds_no_data() -> None:
    cmp = _revenue_view("year")["2026-11-23T00:00:00Z"]["compare"]
    assert (cmp["window_start"], cmp["covered"], cmp["value"]) == (
        "2025-11-24T00:00:00Z", False, None)
