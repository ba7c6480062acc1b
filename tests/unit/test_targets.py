"""Targets and pacing: the file's validation (file, line and reason in every message),
and pacing computed by hand for sums, ratios, weekday profiles and a DST month."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from streams.kpis.buckets import DAY, HOUR, Calendar
from streams.kpis.targets import (
    Target,
    TargetsError,
    load_targets,
    pace,
    pacing_fields,
    parse_targets,
    period_days,
    weekday_weights,
)

UTC_CAL = Calendar("UTC")
WARSAW = Calendar("Europe/Warsaw")


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * 1000


def target(kpi: str, goal: float, direction: str, tolerance: float = 0.05) -> Target:
    return Target(f"{kpi}-1mo", kpi, "1mo", (), goal, direction, tolerance)


# --- sums: the goal is spread over the period -----------------------------------------
# November 2026 has 30 days; at Nov 11 00:00 ten of them have passed: elapsed = 10/30.
NOV, DEC, NOV11 = ms("2026-11-01T00:00:00Z"), ms("2026-12-01T00:00:00Z"), \
    ms("2026-11-11T00:00:00Z")
LEADS = target("leads", 4000, "at_least")  # tolerance 0.05: on pace in [3800, 4200)


@pytest.mark.parametrize(("value", "projected", "attainment", "status"), [
    # 1500 / (1/3) = 4500 >= 4000 * 1.05 = 4200
    (1500, 4500.0, 0.375, "ahead"),
    # 1300 / (1/3) = 3900: 3800 <= 3900 < 4200
    (1300, 3900.0, 0.325, "on_pace"),
    # 1000 / (1/3) = 3000 < 4000 * 0.95 = 3800
    (1000, 3000.0, 0.25, "behind"),
    (None, None, None, "no_data"),
])
def test_a_sum_is_projected_at_its_run_rate(value: float | None, projected: float | None,
                                            attainment: float | None, status: str) -> None:
    p = pace(LEADS, "sum", value, NOV, DEC, NOV11)
    assert p.elapsed == pytest.approx(1 / 3)
    assert p.expected == pytest.approx(4000 / 3)  # 1333.33: where leads should be now
    assert p.projected == pytest.approx(projected)
    assert p.attainment == pytest.approx(attainment)
    assert p.status == status


def test_pacing_fields_are_rounded_and_keep_nulls() -> None:
    assert pacing_fields(pace(LEADS, "sum", 1500, NOV, DEC, NOV11)) == {
        "target": "leads-1mo", "goal": 4000.0, "direction": "at_least", "tolerance": 0.05,
        "profile": "linear", "elapsed": 0.3333, "value": 1500, "expected": 1333.333333,
        "projected": 4500.0, "attainment": 0.375, "status": "ahead", "covered": True}
    fields = pacing_fields(pace(LEADS, "sum", None, NOV, DEC, NOV11))
    assert (fields["value"], fields["projected"], fields["attainment"]) == (None, None, None)


def test_data_that_starts_inside_the_period_paces_over_the_part_observed() -> None:
    """A site that began sending events on 6 Nov 00:00: on 11 Nov 00:00 5 of the month's
    30 days are observed (1/6). 1,000 leads in them run at 6,000 a month: ahead of
    4,000, although 1,000 is under the 1,333 a whole month's data would expect by now."""
    p = pace(LEADS, "sum", 1000, NOV, DEC, NOV11, observed_from_ms=NOV + 5 * DAY)
    assert not p.covered and p.elapsed == pytest.approx(1 / 3)
    assert p.expected == pytest.approx(4000 / 6) and p.projected == pytest.approx(6000)
    assert p.status == "ahead" and p.attainment == 0.25
    # data from before the period: covered, as without the argument
    assert pace(LEADS, "sum", 1000, NOV, DEC, NOV11, observed_from_ms=NOV - DAY).covered
    # a ratio is judged as it is either way
    r = pace(CPL, "ratio", 45, NOV, DEC, NOV11, observed_from_ms=NOV + 5 * DAY)
    assert (r.expected, r.projected, r.status, r.covered) == (40, 45, "behind", False)


def test_a_few_hours_of_data_are_too_early_to_project_a_month() -> None:
    """Data from 10 Nov 21:00, judged at 11 Nov 00:00: three hours of a month. 40 leads
    in them would "project" 9,920: a sum is early until a day is covered. A ratio is
    judged as it is, and a day of data is enough."""
    three_h = NOV11 - 3 * HOUR
    p = pace(LEADS, "sum", 40, NOV, DEC, NOV11, observed_from_ms=three_h, min_observed_ms=DAY)
    assert (p.status, p.expected, p.projected, p.covered) == ("early", None, None, False)
    assert p.attainment == 0.01
    r = pace(CPL, "ratio", 45, NOV, DEC, NOV11, observed_from_ms=three_h, min_observed_ms=DAY)
    assert r.status == "behind"
    day = pace(LEADS, "sum", 200, NOV, DEC, NOV11, observed_from_ms=NOV11 - DAY,
               min_observed_ms=DAY)
    assert day.status == "ahead" and day.projected == pytest.approx(6000)


@pytest.mark.parametrize(("t", "value", "status"), [
    # nothing has passed yet: no run rate, so on pace unless the goal is already decided
    (LEADS, 0, "on_pace"),
    (LEADS, 4000, "ahead"),
    (target("spend", 10_000, "at_most"), 10_400, "on_pace"),  # within 10_500
    (target("spend", 10_000, "at_most"), 10_600, "behind"),
])
def test_a_sum_at_the_start_of_its_period(t: Target, value: float, status: str) -> None:
    p = pace(t, "sum", value, NOV, DEC, NOV)
    assert (p.elapsed, p.projected, p.status) == (0, None, status)


def test_now_is_clamped_to_the_period() -> None:
    before = pace(LEADS, "sum", 10, NOV, DEC, NOV - DAY)
    after = pace(LEADS, "sum", 4100, NOV, DEC, DEC + 5 * DAY)
    assert (before.elapsed, before.now_ms) == (0, NOV - DAY)
    assert (after.elapsed, after.expected, after.projected, after.status) == \
        (1, 4000, 4100, "on_pace")


# --- ratios: the value so far is the estimate ------------------------------------------
CPL = target("cpl", 40, "at_most")  # on pace in [38, 42]


@pytest.mark.parametrize("aggregation", ["ratio", "computed"])
@pytest.mark.parametrize(("value", "status"), [
    (45, "behind"),  # 45 > 40 * 1.05 = 42
    (41, "on_pace"),  # 38 < 41 <= 42
    (30, "ahead"),  # 30 <= 40 * 0.95 = 38
    (None, "no_data"),
])
def test_a_ratio_is_compared_as_it_is(aggregation: str, value: float | None,
                                      status: str) -> None:
    p = pace(CPL, aggregation, value, NOV, DEC, NOV11)
    assert (p.expected, p.projected, p.status) == (40, value, status)
    assert p.attainment == (None if value is None else pytest.approx(value / 40))


def test_a_ratio_at_least_and_a_tighter_band() -> None:
    rate = target("session_conversion_rate", 0.02, "at_least", tolerance=0.1)
    # the band is [0.018, 0.022)
    assert [pace(rate, "ratio", v, NOV, DEC, NOV11).status for v in (0.017, 0.019, 0.023)] \
        == ["behind", "on_pace", "ahead"]


# --- weekday profiles --------------------------------------------------------------------
MON, NEXT_MON = ms("2026-11-16T00:00:00Z"), ms("2026-11-23T00:00:00Z")


def history(cal: Calendar, values: dict[int, tuple[float, float]], end: int) -> dict[int, float]:
    """Eight weeks of daily values before ``end``: weekday -> (even weeks, odd weeks)."""
    days = period_days(cal, end - 56 * DAY, end)
    return {d0: values[i % 7][i // 7 % 2] for i, (d0, _) in enumerate(days) if i % 7 in values}


def test_weekday_weights_are_the_mean_of_each_weekday() -> None:
    # weekdays alternate 80 and 120 (mean 100), weekends 40 and 60 (mean 50):
    # weights 1 and 0.5 in proportion, 6 in all
    past = history(UTC_CAL, {i: (80, 120) if i < 5 else (40, 60) for i in range(7)}, MON)
    days = period_days(UTC_CAL, MON, NEXT_MON)
    shares = weekday_weights(past, days, UTC_CAL)
    assert [w for _, _, w in shares] == [100, 100, 100, 100, 100, 50, 50]
    weekly = target("leads", 600, "at_least")
    # Wednesday 00:00: Monday and Tuesday are done, 200 of 600
    wed = pace(weekly, "sum", 200, MON, NEXT_MON, MON + 2 * DAY, shares)
    assert wed.elapsed == pytest.approx(2 / 6)
    assert wed.expected == pytest.approx(200)
    assert (wed.projected, wed.status) == (pytest.approx(600), "on_pace")
    # Wednesday noon: half of Wednesday's 100 as well, (200 + 50) / 600
    assert pace(weekly, "sum", 0, MON, NEXT_MON, MON + 2 * DAY + 12 * HOUR,
                shares).elapsed == pytest.approx(5 / 12)
    # linear in time would have said 2/7
    assert pace(weekly, "sum", 0, MON, NEXT_MON, MON + 2 * DAY).elapsed == pytest.approx(2 / 7)


def test_a_weekday_without_history_gets_the_mean_of_the_others() -> None:
    past = history(UTC_CAL, {i: (100, 100) if i < 5 else (50, 50) for i in range(6)}, MON)
    shares = weekday_weights(past, period_days(UTC_CAL, MON, NEXT_MON), UTC_CAL)
    # no Sunday: (5 * 100 + 50) / 6
    assert shares[6][2] == pytest.approx(550 / 6)
    assert [w for _, _, w in weekday_weights({}, [(MON, MON + DAY)], UTC_CAL)] == [1]


def test_all_zero_weights_fall_back_to_linear_time() -> None:
    shares = [(d0, d1, 0.0) for d0, d1 in period_days(UTC_CAL, MON, NEXT_MON)]
    assert pace(LEADS, "sum", 1, MON, NEXT_MON, MON + DAY, shares).elapsed == \
        pytest.approx(1 / 7)


def test_weekdays_are_local() -> None:
    # Monday 00:00 in Warsaw is Sunday 23:00 UTC: it must count as a Monday
    mon, sun = ms("2026-11-09T00:00:00+01:00"), ms("2026-11-15T00:00:00+01:00")
    days = period_days(WARSAW, ms("2026-11-16T00:00:00+01:00"), ms("2026-11-23T00:00:00+01:00"))
    weights = [w for _, _, w in weekday_weights({mon: 7.0, sun: 3.0}, days, WARSAW)]
    assert weights == [7, 5, 5, 5, 5, 5, 3]  # the days between get the mean, (7 + 3) / 2


def test_a_dst_month_counts_local_days() -> None:
    # October 2026 in Warsaw: 31 local days, the 25th is 25 hours long (CEST -> CET)
    start = WARSAW.floor(ms("2026-10-15T12:00:00Z"), "1mo")
    end = WARSAW.end(start, "1mo")
    days = period_days(WARSAW, start, end)
    assert len(days) == 31
    assert sorted((d1 - d0) // HOUR for d0, d1 in days) == [24] * 30 + [25]
    shares = weekday_weights({}, days, WARSAW)  # no history: every day weighs 1
    day16 = ms("2026-10-16T00:00:00+02:00")
    assert pace(LEADS, "sum", 1, start, end, day16, shares).elapsed == pytest.approx(15 / 31)
    # linear in time counts hours: 15 * 24 of 31 * 24 + 1 (the 25-hour day is still to come)
    linear = pace(LEADS, "sum", 1, start, end, day16).elapsed
    assert linear == pytest.approx(360 / 745)
    assert linear < 15 / 31


# --- the file ------------------------------------------------------------------------------
GOOD = """\
# goals per KPI and period
targets:
  - kpi: leads
    period: 1mo
    at_least: 4000
  - kpi: cpl
    period: 1mo
    dims: {channel: paid_search}
    at_most: 40
  - name: quarterly-revenue
    kpi: revenue
    period: 1q
    at_least: 250000.5
    profile: weekday
    tolerance: 0.1
"""
WANT = (
    Target("leads-1mo", "leads", "1mo", (), 4000.0, "at_least", 0.05, "linear", 3),
    Target("cpl-1mo-channel-paid_search", "cpl", "1mo", (("channel", "paid_search"),), 40.0,
           "at_most", 0.05, "linear", 6),
    Target("quarterly-revenue", "revenue", "1q", (), 250000.5, "at_least", 0.1, "weekday", 10),
)


def test_a_good_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(GOOD)
    got = load_targets(path)
    assert got == WANT
    assert [t.dim_label for t in got] == ["", "channel=paid_search", ""]
    # JSON is YAML too: the same targets, from other lines
    doc = yaml.safe_load(GOOD)
    as_json = parse_targets(json.dumps(doc, indent=2), "targets.json")
    assert [t.name for t in as_json] == [t.name for t in WANT]
    assert [(t.goal, t.dims, t.profile) for t in as_json] == \
        [(t.goal, t.dims, t.profile) for t in WANT]
    assert parse_targets("targets: []\n", "t.yaml") == ()


def entry(*lines: str) -> str:
    """A file whose one target starts on line 2."""
    return "targets:\n  - " + "\n    ".join(lines) + "\n"


OK = ("kpi: leads", "period: 1mo", "at_least: 10")


@pytest.mark.parametrize(("text", "message"), [
    ("- kpi: leads\n", "line 1: expected a mapping with a 'targets' list"),
    ("", "line 1: expected a mapping"),
    ("{}\n", "line 1: 'targets' is missing"),
    ("targets: []\ngoals: []\n", "line 1: unknown keys ['goals']"),
    ("targets:\n  kpi: leads\n", "line 1: 'targets' must be a list"),
    ("targets:\n  - leads\n", "line 2: each target must be a mapping"),
    (entry(*OK, "goal: 5"), "line 5: unknown keys ['goal']"),
    (entry("period: 1mo", "kpi: lead", "at_least: 10"),
     "line 3: unknown KPI 'lead' (did you mean 'leads'?)"),
    (entry("period: 1mo", "at_least: 10"), "line 2: kpi is required"),
    (entry("kpi: leads", "period: 1d", "at_least: 10"), "line 3: period must be one of"),
    (entry(*OK, "dims: paid_search"), "line 5: dims must be a mapping"),
    (entry(*OK, "dims: {channel: a, device: b}"), "line 5: dims must be a mapping of at most"),
    (entry(*OK, "dims: {device: mobile}"), "line 5: leads has no dim 'device'"),
    (entry(*OK, "dims: {'': x}"), "line 5: leads has no dim ''"),
    (entry(*OK, "dims: {channel: ''}"), "line 5: dims.channel must be a non-empty string"),
    (entry(*OK, "at_most: 20"), "line 5: give exactly one of at_least, at_most"),
    (entry("kpi: leads", "period: 1mo"), "line 2: give exactly one of"),
    (entry("kpi: leads", "period: 1mo", "at_least: true"), "line 4: at_least must be a finite"),
    (entry("kpi: leads", "period: 1mo", "at_least: '10'"), "line 4: at_least must be a finite"),
    (entry("kpi: leads", "period: 1mo", "at_least: .inf"), "line 4: at_least must be a finite"),
    (entry("kpi: leads", "period: 1mo", "at_least: 0"), "line 4: at_least must be > 0"),
    (entry(*OK, "tolerance: 1"), "line 5: tolerance must be a number in [0, 1)"),
    (entry(*OK, "tolerance: -0.1"), "line 5: tolerance must be"),
    (entry(*OK, "tolerance: 5%"), "line 5: tolerance must be"),
    (entry(*OK, "profile: seasonal"), "line 5: profile must be one of linear, weekday"),
    (entry(*OK, "name: ''"), "line 5: name must be a non-empty string"),
    (entry(*OK) + "  - " + "\n    ".join(OK) + "\n",
     "line 5: target name 'leads-1mo' is used twice (first on line 2)"),
    (entry(*OK, "at_least: 20"), "line 5: not valid YAML (duplicate key 'at_least')"),
    ("targets: [\n", "line 2: not valid YAML"),
])
def test_bad_files_name_the_line_and_the_reason(text: str, message: str) -> None:
    with pytest.raises(TargetsError) as exc:
        parse_targets(text, "targets.yaml")
    assert f"targets.yaml {message}" in str(exc.value)


def test_a_ratio_may_aim_at_zero() -> None:
    (t,) = parse_targets(entry("kpi: cpl", "period: 1w", "at_most: 0"), "t.yaml")
    assert (t.goal, t.direction) == (0, "at_most")
    assert pace(t, "ratio", 0.0, NOV, DEC, NOV11).attainment is None  # no share of zero


def test_unreadable_and_unparsable_files_are_chained(tmp_path: Path) -> None:
    with pytest.raises(TargetsError, match="cannot read") as exc:
        load_targets(tmp_path / "missing.yaml")
    assert isinstance(exc.value.__cause__, OSError)
    bad = tmp_path / "t.yaml"
    bad.write_text("targets: [\n")
    with pytest.raises(TargetsError, match="not valid YAML") as exc:
        load_targets(bad)
    assert isinstance(exc.value.__cause__, yaml.YAMLError)
    assert str(bad) in str(exc.value)


def test_a_worker_with_a_bad_targets_file_stops_before_it_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """No broker is needed to learn that the file is wrong: the error names the line."""
    from streams.cli import main

    bad = tmp_path / "targets.yaml"
    bad.write_text("targets:\n  - kpi: leads\n    period: 1month\n    at_least: 10\n")
    monkeypatch.setenv("KPI_TARGETS", str(bad))
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "127.0.0.1:1")  # nothing listens there
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 3" in err and "1month" in err, err
