"""`kpi-streams kpis` for people, and a --help that teaches every argument."""

from __future__ import annotations

import argparse

import pytest

from streams.cli import build_parser
from streams.outputs.table import csv_text, period_text, table, value_text


def doc(kpi: str, value: float | None, num: float, den: float, unit: str,
        bucket: str = "1h", start: str = "2026-10-25T02:00:00+01:00",
        end: str = "2026-10-25T03:00:00+01:00", **dims: str) -> dict:
    return {"kpi": kpi, "bucket": bucket, "window_start": start, "window_end": end,
            "dims": dims, "value": value, "numerator": num, "denominator": den,
            "unit": unit, "final": True, "revision": 2, "tz": "Europe/Warsaw"}


@pytest.mark.parametrize(("value", "unit", "text"), [
    (0.1234, "ratio", "12.3 %"),
    (1.0, "ratio", "100.0 %"),
    (None, "ratio", "—"),
    (1234567.891, "EUR", "€1,234,567.89"),
    (-12.5, "USD", "-$12.50"),
    (40.0, "PLN", "40.00 PLN"),
    (1234.0, "count", "1,234"),
    (2.0e-07, "EUR", "€0.00"),  # never scientific notation
    (2.3456, "pages", "2.35"),
    (95.25, "s", "95.2 s"),
])
def test_values_read_as_people_write_them(value: float | None, unit: str,
                                          text: str) -> None:
    assert value_text(value, unit) == text


def test_periods_name_their_span_and_offset() -> None:
    assert period_text(doc("x", 1, 1, 1, "count")) == "2026-10-25 02:00 → 03:00 +01:00"
    assert period_text(doc("x", 1, 1, 1, "count", bucket="1d", start="2026-10-25T00:00:00Z",
                           end="2026-10-26T00:00:00Z")) == "2026-10-25"
    assert period_text(doc("x", 1, 1, 1, "count", bucket="24h", start="2026-10-24T10:15:00Z",
                           end="2026-10-25T10:15:00Z")) == "last 24h to 2026-10-25 10:15"


def test_the_table_and_the_csv() -> None:
    rows = [doc("cpl", 41.5, 4150.0, 100.0, "EUR", channel="paid_search"),
            doc("bounce_rate", 0.4, 40.0, 100.0, "ratio"),
            doc("cpl", None, 1200.0, 0.0, "EUR")]
    text = table(rows).splitlines()
    assert text[0].split() == ["kpi", "period", "dims", "value", "numerator",
                               "denominator", "final", "rev"]
    assert "€41.50" in text[1] and "€4,150.00" in text[1] and "channel=paid_search" in text[1]
    assert "40.0 %" in text[2]
    assert "—" in text[3]  # no leads: no CPL, not 0 and not inf
    lines = csv_text(rows).splitlines()
    assert lines[1].startswith("cpl,1h,2026-10-25T02:00:00+01:00,2026-10-25T03:00:00+01:00,"
                               "Europe/Warsaw,channel=paid_search,41.5,4150.0,100.0,EUR")
    assert ",," in lines[3]  # null is empty in CSV


def test_money_parts_of_a_ratio_read_as_money() -> None:
    """ROAS divides revenue by media spend: both parts are money (their components'
    scale), shown in the reporting currency; a rate of counts keeps counts."""
    rows = [doc("roas", 2.5, 5000.0, 2000.0, "ratio"),
            doc("lead_to_mql_rate", 0.25, 3.0, 12.0, "ratio")]
    roas, rate = table(rows, "EUR").splitlines()[1:]
    assert "€5,000.00" in roas and "€2,000.00" in roas and "250.0 %" in roas
    assert "€" not in rate and "25.0 %" in rate

def test_every_argument_of_every_command_has_help() -> None:
    missing = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    assert sub.description, f"{' '.join([*path, name])} has no description"
                    walk(sub, [*path, name])
            elif not isinstance(a, argparse._HelpAction) and not a.help:
                missing.append(f"{' '.join(path)} {a.dest}")

    walk(build_parser(), ["kpi-streams"])
    assert not missing, missing


def test_broker_actions_each_explain_themselves(capsys: pytest.CaptureFixture[str]) -> None:
    texts = []
    for action in ("start", "stop", "status", "logs"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["broker", action, "--help"])
        texts.append(capsys.readouterr().out)
    assert len(set(texts)) == 4  # not one generic text for all
    assert "--follow" in texts[3] and "--follow" not in texts[0]


def _day(kpi: str, value: float | None, unit: str, start: str, end: str) -> dict:
    return doc(kpi, value, value or 0, 1, unit, bucket="1d", start=start, end=end)


def test_compare_within_the_topic_and_the_change_column() -> None:
    from streams.kpis import buckets as B
    from streams.outputs.table import change_text
    from streams.readback import compare_within

    docs = [_day("leads", 40, "count", "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"),
            _day("leads", 50, "count", "2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z"),
            _day("bounce_rate", 0.40, "ratio", "2026-11-22T00:00:00Z",
                 "2026-11-23T00:00:00Z"),
            _day("bounce_rate", 0.45, "ratio", "2026-11-23T00:00:00Z",
                 "2026-11-24T00:00:00Z"),
            doc("leads", 90, 90, 1, "count", bucket="24h", start="2026-11-23T00:00:00Z",
                end="2026-11-24T00:00:00Z")]
    B.use("UTC")
    compare_within(docs, "previous")
    day2, rate2, rolling = docs[1]["compare"], docs[3]["compare"], docs[4]["compare"]
    assert (day2["value"], day2["change"], day2["covered"]) == (40, 10, True)
    assert day2["relative_change"] == pytest.approx(0.25)
    assert change_text(docs[1]) == "▲ 25.0 %"
    assert change_text(docs[3]) == "▲ 5.0 pp"  # a rate changes in percentage points
    assert rate2["value"] == pytest.approx(0.40)
    # the first day: nothing before it on the topic; a rolling view keeps no history
    assert docs[0]["compare"]["covered"] is False and change_text(docs[0]) == "—"
    assert rolling["value"] is None and change_text(docs[4]) == "—"
    text = table(docs)
    assert text.splitlines()[0].split()[-3:] == ["previous", "value", "change"]
    assert "▲ 25.0 %" in text.splitlines()[2]
    lines = csv_text(docs).splitlines()
    assert lines[0].endswith("compare_value,change,relative_change")
    assert lines[2].endswith("previous,2026-11-22T00:00:00Z,true,40,10,0.25")


def test_kpis_takes_compare() -> None:
    args = build_parser().parse_args(["kpis", "--compare", "year"])
    assert args.compare == "year"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["kpis", "--compare", "lastweek"])


def test_kpis_filters_as_the_api_does_whichever_it_reads() -> None:
    """The command asks the API with its query and filters what the topic holds with
    the same query: two dims show both (a snapshot has one dim), --total the total."""
    from multidict import MultiDict

    from streams.cli.read import query_of
    from streams.kpis.query import SnapshotQuery

    args = build_parser().parse_args(["kpis", "--kpi", "leads", "--kpi", "cpl",
                                      "--bucket", "1d", "--channel", "email",
                                      "--device", "mobile", "--total", "--final"])
    query = query_of(args)
    assert query == SnapshotQuery(kpis=frozenset({"leads", "cpl"}),
                                  windows=frozenset({"1d"}),
                                  dims=frozenset({"channel=email", "device=mobile", ""}),
                                  final=True)
    doc = {"kpi": "leads", "bucket": "1d", "window_start": "2026-10-01T00:00:00Z",
           "final": True, "dims": {"device": "mobile"}}
    assert [d["dims"] for d in query.select([doc, {**doc, "dims": {}},
                                             {**doc, "dims": {"channel": "paid_search"}}])] \
        == [{"device": "mobile"}, {}]
    assert SnapshotQuery.parse(MultiDict(query.params())) == query
