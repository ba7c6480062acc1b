"""Incident in, page out: simulator -> Kafka -> worker -> Prometheus -> Alertmanager -> webhook.

Two simulated days are replayed through the real broker, with the incident in
their last four hours. Prometheus scrapes the worker's KPI gauges and evaluates
the project's alert rules (with ``for:`` shortened); Alertmanager delivers to a
webhook the test runs. The worker's /api/alerts (the wall's banner) must show
the alert too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.schemas import parse_rfc3339_ms
from streams.simulate import DAY, HOUR, Options, generate
from tests.e2e.stack import Webhook, prom_query, start_alertmanager, start_prometheus
from tests.fixtures_kafka import WorkerProcess, run, settings_from, wait_for
from tests.integration.kafkatools import produce_events

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

END = "2026-11-18T15:00:00Z"  # a Wednesday afternoon: busy hours before it


def incident_world(incident: str) -> list[dict[str, Any]]:
    end = parse_rfc3339_ms(END)
    start = end - 2 * DAY
    # Without off-site engagement: its topic is keyed by campaign, so during a replay
    # this fast some of its partitions fall silent for hours of event time, and an
    # hour that holds engagement is not final until the idle timeout catches up.
    # (Live, idle partitions follow the wall clock; see README "Time".)
    opts = Options(seed=31, sessions_per_day=12_000, email_list=500, incident=incident,
                   incident_start=end - 4 * HOUR, incident_duration_ms=4 * HOUR,
                   engagement=False)
    return [e for batch in generate(start, end, opts) for e in batch]


@pytest.mark.parametrize(("incident", "alert", "kpi"), [
    ("cpl-spike", "RisingCPL", "cpl"),
    ("bounce-spike", "RisingBounceRate", "bounce_rate"),
])
def test_incident_pages_through_alertmanager(kafka_env: dict[str, str], tmp_path: Path,
                                             workers: list[WorkerProcess], incident: str,
                                             alert: str, kpi: str) -> None:
    webhook = Webhook()
    am, am_url = start_alertmanager(tmp_path, webhook)
    env = {**kafka_env, "KPI_PUBLISH_WINDOWS": "1h,1d,24h,7d", "KPI_ALERTMANAGER_URL": am_url}
    w = WorkerProcess(env, tmp_path).start()
    workers.append(w)
    prom = None
    try:
        w.wait_healthy()
        prom, prom_url = start_prometheus(tmp_path, w.port, am_url)
        # the ad platforms report the last hours' cost (a zero-cost record on every
        # spend partition an hour after the end): until then every hour's CPL is
        # "cost pending" and, by design, the CPL rule stays silent
        from streams.simulate import closing_events

        s = settings_from(env)
        reported = [e for e in closing_events(s.input_partitions,
                                              parse_rfc3339_ms(END) + HOUR)
                    if e["event_type"] == "spend"]
        run(produce_events(s, incident_world(incident) + reported))

        def fired() -> list[dict[str, Any]]:
            w.assert_alive()
            return webhook.alerts(alert)

        try:
            alerts = wait_for(fired, 240, f"{alert} delivered to the webhook", interval=2)
        except AssertionError:
            gauges = prom_query(prom_url, f'{{__name__=~"kpi_streams_kpi_.*",kpi="{kpi}",'
                                          'window=~"1h|7d",channel=""}')
            raise AssertionError(f"no {alert}; gauges: {gauges}\n{prom.tail()}\n"
                                 f"{am.tail()}") from None
        assert alerts[0]["labels"]["severity"] in ("warning", "critical")
        assert alerts[0]["annotations"]["summary"]
        # a CPL incident does not page for bounce rate (a bounce spike may well raise
        # CPL too: bounced visits do not convert, so that direction is not checked)
        if alert == "RisingCPL":
            assert webhook.alerts("RisingBounceRate") == []
        # the wall's banner reads the same Alertmanager through the worker
        banner = wait_for(lambda: [a for a in orjson.loads(w.get("/api/alerts"))["alerts"]
                                   if a["name"] == alert], 30, "the alert in /api/alerts")
        assert banner[0]["summary"]
    finally:
        if prom is not None:
            prom.stop()
        am.stop()
        webhook.close()
