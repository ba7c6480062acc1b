"""KPI gauges for Prometheus, read out of the merge state at scrape time.

Nothing is stored twice: a scrape looks up, in the cells this worker owns, the
current and the newest final cell of each channel and device (the merge partition
keeps its dims and newest final cells for this), evaluates them and the rolling
views, and yields gauge families. Labels are bounded: ``kpi`` (the catalogue), ``window``
(1m, 1h, 1d, 15m, 24h, 7d, 30d), ``period`` (``current``: the bucket holding
the event-time "now"; ``last_final``: the newest final bucket; ``rolling``:
the rolling view ending with the current bucket), ``channel`` and ``device``
(empty for the total). Campaigns, goals and page types stay on the KPI topic
and the API: they are unbounded or too many for a time series database.

One family per unit, so every metric name carries its unit:
``kpi_streams_kpi_ratio``, ``_count``, ``_currency`` (label ``currency``),
``_seconds`` and ``_pages``. A KPI whose value is null has no sample.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..kpis import buckets as B
from ..kpis.catalogue import Modes, evaluate, kpis_for
from ..kpis.merge import MergePartition, present

BUCKET_WINDOWS = ("1m", "1h", "1d")
ROLLING_WINDOWS = ("15m", "24h", "7d", "30d", "1w", "1mo", "1q")
UNIT_FAMILY = {"ratio": "ratio", "count": "count", "CURRENCY": "currency", "s": "seconds",
               "pages": "pages", "days": "days", "points": "points"}
PROM_DIMS = ("channel", "device")


def _labels(dim: str) -> tuple[str, str]:
    if not dim:
        return "", ""
    name, value = dim.split("=", 1)
    return (value, "") if name == "channel" else ("", value)


class KpiCollector(Collector):
    """Yields the KPI gauges and the event-time health gauges of the merge stage."""

    def __init__(self, procs: Callable[[], list[MergePartition]], modes: Modes,
                 currency: str, clock: Callable[[], float] = time.time) -> None:
        self.procs = procs
        self.modes = modes
        self.currency = currency
        self.clock = clock

    def describe(self) -> Iterable[Any]:
        return []  # collected lazily: do not evaluate at registration

    def collect(self) -> Iterable[Any]:
        families = {
            unit: GaugeMetricFamily(
                f"kpi_streams_kpi_{name}",
                f"KPI values in {name} (see the KPI reference in README.md).",
                labels=["kpi", "window", "period", "channel", "device",
                        *(["currency"] if name == "currency" else [])])
            for unit, name in UNIT_FAMILY.items()}
        final_age = GaugeMetricFamily(
            "kpi_streams_last_final_bucket_age_seconds",
            "Wall-clock seconds since the end of the newest final bucket (total dim).",
            labels=["window"])
        wm_ts = GaugeMetricFamily(
            "kpi_streams_watermark_timestamp_seconds",
            "Lowest watermark of each input, as seen by the merge stage (event time).",
            labels=["input"])
        wm_delay = GaugeMetricFamily(
            "kpi_streams_watermark_delay_seconds",
            "Wall clock minus the lowest watermark of each input (large while replaying "
            "history, by design).", labels=["input"])
        cost = GaugeMetricFamily(
            "kpi_streams_cost_complete",
            "1 when the spend input's watermark has passed the end of the bucket (or view) "
            "that the cost-based KPI gauges of this window and period show, else 0: cost "
            "is reported after the fact, and until then a low CPL is no good news.",
            labels=["window", "period"])
        now_wall = self.clock()
        procs = self.procs()
        newest_final: dict[str, int] = {}
        marks: dict[str, int] = {}
        complete: dict[tuple[str, str], bool] = {}
        for proc in procs:
            self._collect_proc(proc, families, newest_final, complete)
            for name, wm in proc.src_wm.items():
                if wm is None:
                    continue
                topic = name.rsplit("/", 1)[0]
                marks[topic] = min(wm, marks.get(topic, wm))
        for window, end in newest_final.items():
            final_age.add_metric([window], max(0.0, now_wall - end / 1000))
        for topic, wm in sorted(marks.items()):
            wm_ts.add_metric([topic], wm / 1000)
            wm_delay.add_metric([topic], max(0.0, now_wall - wm / 1000))
        for (window, period), ok in sorted(complete.items()):
            cost.add_metric([window, period], 1.0 if ok else 0.0)
        yield from families.values()
        yield cost
        yield final_age
        yield wm_ts
        yield wm_delay

    def _collect_proc(self, proc: MergePartition, families: dict[str, GaugeMetricFamily],
                      newest_final: dict[str, int],
                      complete: dict[tuple[str, str], bool]) -> None:
        now = proc.event_time_now()
        if now is None:
            return
        currents = {size: B.floor(now, size) for size in BUCKET_WINDOWS}

        def cost(window: str, period: str, end: int) -> None:
            # every merge partition hears every spend partition: all must agree
            key = (window, period)
            complete[key] = complete.get(key, True) and proc.cost_complete(end)

        for size, start in currents.items():
            cost(size, "current", B.bucket_end(start, size))
        for window in ROLLING_WINDOWS:
            cost(window, "rolling", B.view_end_at(window, now))
        # the current cell and the newest final cell per (dim, size), looked up: the
        # partition keeps its dims and its newest final cells, so a scrape does not
        # walk every cell it holds
        current: dict[tuple[str, str], Any] = {}
        last_final: dict[tuple[str, str], tuple[int, Any]] = {}
        dims = [d for d in proc.dims if not d or d.split("=", 1)[0] in PROM_DIMS]
        for dim in dims:
            for size, start in currents.items():
                cell = proc.cells.get((size, start, dim))
                if cell is not None:
                    current[(dim, size)] = cell
                newest = proc.newest_final.get((size, dim))
                if newest is not None:
                    last_final[(dim, size)] = (newest, proc.cells[(size, newest, dim)])
        for (dim, size), cell in current.items():
            channel, device = _labels(dim)
            start = currents[size]
            self._add(families, dim, size, "current", present(cell.comps), channel, device,
                      lambda d=dim, s=start, z=size: proc.context(d, s, B.bucket_end(s, z), z))
        for (dim, size), (start, cell) in last_final.items():
            channel, device = _labels(dim)
            self._add(families, dim, size, "last_final", present(cell.comps), channel, device,
                      lambda d=dim, s=start, z=size: proc.context(d, s, B.bucket_end(s, z), z))
            if not dim:
                newest_final[size] = max(newest_final.get(size, 0), B.bucket_end(start, size))
                cost(size, "last_final", B.bucket_end(start, size))
        for dim in dims:
            channel, device = _labels(dim)
            for window in ROLLING_WINDOWS:
                end = B.view_end_at(window, now)
                comps, found = proc.rolling_comps(window, end, dim)
                if found:
                    begin = B.view_start(window, end)
                    self._add(families, dim, window, "rolling", comps, channel, device,
                              lambda d=dim, s=begin, e=end, w=window: proc.context(d, s, e, w))

    def _add(self, families: dict[str, GaugeMetricFamily], dim: str, window: str,
             period: str, comps: Any, channel: str, device: str, context: Any) -> None:
        for kpi in kpis_for(dim, comps):
            value, _, _ = evaluate(kpi, comps, self.modes, context)
            if value is None:
                continue
            unit = UNIT_FAMILY[kpi.unit]
            labels = [kpi.name, window, period, channel, device]
            if unit == "currency":
                labels.append(self.currency)
            families[kpi.unit].add_metric(labels, value)


__all__ = ["KpiCollector"]
