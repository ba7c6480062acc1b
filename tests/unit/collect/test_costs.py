"""Cost tables -> spend events, and a row uploaded again replaces the earlier one.

Hand tables: a GA4-style table of two rows on 2026-11-20 (Europe/Warsaw and UTC
days), a revision of one row, a duplicate upload, and an older upload arriving
after a newer one. Expected CPL = the newest upload's cost / leads that day.
"""

from __future__ import annotations

from itertools import permutations
from typing import Any

import orjson
import pytest

from streams.channels import ChannelRules
from streams.collect.costs import CostTableError, rows_to_events
from streams.events import Decoder
from tests.unit.kpitables import form, ms, run_pipeline, snap

HEADER = "date,source,medium,campaign,cost,clicks,impressions,currency\n"
T0 = ms("2026-11-21T08:00:00Z")  # the first upload, the morning after
RULES = ChannelRules.load(None)


def table(google_cost: str, clicks: int = 30, day: str = "2026-11-20") -> str:
    return (HEADER + f"{day},google,cpc,brand,{google_cost},{clicks},{clicks * 40},EUR\n"
            f"{day},newsletter-co,email,weekly,20,0,0,EUR\n")


def upload(text: str, at: int, tz: str = "UTC") -> list[dict[str, Any]]:
    return rows_to_events(text, now_ms=at, currency="EUR", tz=tz, rules=RULES)


def test_rows_become_spend_events_over_the_local_day() -> None:
    utc, warsaw = upload(table("100.50"), T0), upload(table("100.50"), T0, "Europe/Warsaw")
    google = utc[0]
    assert google["channel"] == "paid_search" and utc[1]["channel"] == "email"
    assert (google["cost"], google["clicks"], google["impressions"]) == (100.5, 30, 1200)
    assert (google["period_start"], google["period_end"]) == (
        "2026-11-20T00:00:00.000Z", "2026-11-21T00:00:00.000Z")
    assert warsaw[0]["period_start"] == "2026-11-19T23:00:00.000Z"  # local midnight, +01:00
    assert google["restates"] == "2026-11-20|google|cpc|brand"
    assert google["occurred_at"] == "2026-11-21T08:00:00.000Z"  # reported at upload time
    # every upload has its own ids: a repeat of an old revision still replaces
    assert upload(table("100.50"), T0 + 1)[0]["event_id"] != google["event_id"]


def test_ga4_column_names_yyyymmdd_and_a_category_are_understood() -> None:
    text = ("utm_source,utm_medium,utm_campaign,date,daily_cost,daily_clicks,"
            "daily_impressions,category\nmeta,paid_social,launch,20261120,55.5,12,900,agency\n")
    (ev,) = rows_to_events(text, now_ms=T0, currency="EUR", tz="UTC", rules=RULES)
    assert (ev["channel"], ev["category"], ev["currency"], ev["cost"]) == (
        "paid_social", "agency", "EUR", 55.5)
    assert ev["period_start"] == "2026-11-20T00:00:00.000Z"


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("date,source,medium,cost\n", "missing column(s) campaign"),
    (HEADER + "2026-11-20,google,cpc,brand,ten,1,1,EUR\n", "line 2: cost 'ten' is not a"),
    (HEADER + "2026-13-01,google,cpc,brand,1,1,1,EUR\n", "line 2: date"),
    (HEADER + "2026-11-20,google,cpc,brand,-5,1,1,EUR\n", "line 2: cost is negative"),
    (HEADER + "2026-11-20,google,cpc,brand,5,1.5,1,EUR\n", "clicks '1.5' is not a whole"),
    (HEADER + "2026-11-20,google,cpc,,5,1,1,EUR\n", "line 2: campaign is empty"),
    (HEADER + "2026-11-20,google,cpc,b,5,1,1,EUR\n2026-11-20,google,cpc,b,6,1,1,EUR\n",
     "line 3: the same date, source, medium and campaign as line 2"),
])
def test_a_bad_table_is_refused_whole_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(CostTableError) as err:
        upload(text, T0)
    assert message in str(err.value)


def leads() -> list[dict[str, Any]]:
    return [form(f"v{i}", f"c{i}", f"2026-11-20T1{i}:00:00Z") for i in range(4)]


def cpl_day(decoder: Decoder, events: list[dict[str, Any]]) -> Any:
    snaps = run_pipeline(decoder, events)
    return snap(snaps, "cpl", "1d", "2026-11-20T00:00:00Z")


def test_a_revised_upload_replaces_the_row_not_adds_to_it(decoder: Decoder) -> None:
    first = upload(table("100"), T0)
    revised = upload(table("160", clicks=41), T0 + 3_600_000)
    again = upload(table("160", clicks=41), T0 + 7_200_000)
    cell = cpl_day(decoder, [*leads(), *first])
    assert (cell["numerator"], cell["denominator"], cell["value"]) == (120, 4, 30.0)
    cell = cpl_day(decoder, [*leads(), *first, *revised])
    assert (cell["numerator"], cell["value"]) == (180, 45.0)
    cell = cpl_day(decoder, [*leads(), *first, *revised, *again])
    assert (cell["numerator"], cell["value"]) == (180, 45.0)
    snaps = run_pipeline(decoder, [*leads(), *first, *revised, *again])
    cpc = snap(snaps, "cpc", "1d", "2026-11-20T00:00:00Z")
    assert (cpc["numerator"], cpc["denominator"]) == (180, 41)  # media spend / clicks
    assert snap(snaps, "spend", "1h", "2026-11-20T05:00:00Z",
                "campaign=brand")["numerator"] == pytest.approx(160 / 24, abs=1e-6)


@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_the_newest_upload_wins_whatever_order_they_arrive_in(decoder: Decoder,
                                                             order: tuple[int, ...]) -> None:
    uploads = [upload(table("100"), T0), upload(table("130"), T0 + 60_000),
               upload(table("160"), T0 + 120_000)]
    events = [*leads()]
    for i in order:
        events += uploads[i]
    cell = cpl_day(decoder, events)
    assert (cell["numerator"], cell["value"]) == (180, 45.0)  # 160 + 20, the last upload


def test_rows_are_state_that_survives_a_restart() -> None:
    from streams.kpis.spend import ROW_PREFIX, SpendConfig, SpendPartition
    from streams.settings import load_settings

    dec = Decoder.from_settings(load_settings({}))
    part = SpendPartition(SpendConfig())
    recs = [dec.event(e, None, T0 + 10**9, None)[0] for e in upload(table("100"), T0)]
    out = part.process([("spend", r) for r in recs], T0)
    keys = sorted(k for k in out.dirty if k.startswith(ROW_PREFIX))
    assert len(keys) == 2
    restored = SpendPartition(SpendConfig())
    for k in out.dirty:
        restored.load(k, part.dump(k))
    restored.clocks = part.clocks
    revised = [dec.event(e, None, T0 + 10**9, None)[0]
               for e in upload(table("160"), T0 + 60_000)]
    out2 = restored.process([("spend", r) for r in revised], T0 + 60_000)
    total = sum(v.get("cost", 0) for (fam, size, _b, d), v in out2.deltas.items()
                if size == "1d" and d == "")
    assert total == 60_000_000  # only the difference: +60 EUR in millionths


def test_every_upload_of_a_row_goes_to_one_partition_whatever_its_channel() -> None:
    from streams.produce import event_key

    first = upload(table("100"), T0)[0]
    revised = {**upload(table("160"), T0 + 1)[0], "channel": "paid_social"}  # new rules
    assert event_key(first) == event_key(revised) == "restates:2026-11-20|google|cpc|brand"


def test_import_costs_dry_run_checks_and_prints(tmp_path: Any, capsys: Any) -> None:
    from streams.cli import main

    good = tmp_path / "costs.csv"
    good.write_text(table("100"))
    assert main(["import-costs", str(good), "--dry-run"]) == 0
    out = capsys.readouterr()
    lines = [orjson.loads(line) for line in out.out.splitlines()]
    assert [e["restates"] for e in lines] == ["2026-11-20|google|cpc|brand",
                                             "2026-11-20|newsletter-co|email|weekly"]
    assert "nothing sent" in out.err
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "2026-11-20,google,cpc,brand,ten,1,1,EUR\n")
    assert main(["import-costs", str(bad), "--dry-run"]) == 1
    assert "line 2: cost 'ten'" in capsys.readouterr().err
