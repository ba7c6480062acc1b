"""Targets and pacing, read out of the merge state this worker holds.

A target's KPI and dims live on one merge partition (``topics.dim_partition``),
so the worker holding that partition is the one that answers for the target:
``/api/targets``, the ``kpi_streams_target_*`` gauges and the target's record
on the KPI topic (key ``target|<name>|<period>``, one key per target updated in
place: its current period is in the value, as for a rolling view). Nothing is
stored: a target document is a function of the cells, computed when asked.

"Now" is the partition's event time (its newest watermark), as for the
calendar views: a replay of last month paces last month, and the live wall
paces the current one.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..kpis import buckets as B
from ..kpis.catalogue import BY_NAME
from ..kpis.merge import MergePartition
from ..kpis.merge.documents import iso_s
from ..kpis.merge.state import NEVER
from ..kpis.targets import Target, pace, pacing_fields, period_days, weekday_weights
from ..schemas import parse_rfc3339_ms
from ..topics import dim_partition

HISTORY_DAYS = 56  # the weekday profile learns from the last 8 weeks of daily values
# families fed by the same input: a KPI's data starts where its inputs' data starts
# (no lead in the first week of traffic is a week of zero leads, not missing data)
INPUT_OF = {"web": "web", "lead": "web", "score": "web", "funnel": "deals", "cust": "deals",
            "spend": "spend", "email": "email", "eng": "eng"}


def input_families(families: frozenset[str]) -> frozenset[str]:
    """``families`` and every family fed by the same inputs."""
    inputs = {INPUT_OF.get(f, f) for f in families}
    return frozenset(f for f, i in INPUT_OF.items() if i in inputs) | families
TOPIC_PREFIX = "target|"
# a sum whose data starts inside the period is judged once it covers a day of it
MIN_OBSERVED_MS = B.DAY


def target_key(t: Target) -> str:
    """The target's key on the KPI topic."""
    return f"{TOPIC_PREFIX}{t.name}|{t.period}"


class TargetBoard:
    """The targets this worker answers for, and their pacing now."""

    def __init__(self, targets: tuple[Target, ...],
                 parts: Callable[[], dict[int, MergePartition]], partitions: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.targets = targets
        self.parts = parts
        self.partitions = partitions
        self.clock = clock
        self._published: dict[str, bytes] = {}  # key -> what was last sent (sans clock)
        # proc -> families -> (when it was found, where the data starts); weak, so a
        # partition that moved away takes its entry with it
        self._starts: weakref.WeakKeyDictionary[
            MergePartition, dict[frozenset[str], tuple[float, int]]] = \
            weakref.WeakKeyDictionary()

    def evaluate(self) -> list[dict[str, Any]]:
        """One document per target whose partition this worker holds."""
        computed_at = int(self.clock() * 1000)
        held = self.parts()
        out = []
        for t in self.targets:
            proc = held.get(dim_partition(t.dim_label, self.partitions))
            if proc is not None:
                families = input_families(BY_NAME[t.kpi].families)
                out.append(self.document(t, proc, computed_at,
                                         self.data_start(proc, families)))
        return out

    def data_start(self, proc: MergePartition, families: frozenset[str]) -> int | None:
        """Where the partition's data of these families (a KPI's inputs) starts: its
        oldest hour, or its oldest day when the hours (kept 90 days) no longer reach
        back to it. One pass over the cells, so it is remembered for half a minute (it
        moves only with expiry or with data older than any held)."""
        now = self.clock()
        known = self._starts.setdefault(proc, {})
        held = known.get(families)
        if held is not None and now - held[0] < 30:
            return held[1]
        first: dict[str, int] = {}
        for (size, start, _), cell in proc.cells.items():
            if size != "1m" and start < first.get(size, NEVER) and \
                    not families.isdisjoint(cell.comps):
                first[size] = start
        day, hour = first.get("1d"), first.get("1h")
        found = hour if hour is not None and (day is None or hour < day + B.DAY) else day
        if found is not None:  # no data yet is not remembered: the next call looks again
            known[families] = (now, found)
        return found

    @staticmethod
    def document(t: Target, proc: MergePartition, computed_at_ms: int,
                 data_start: int | None = None) -> dict[str, Any]:
        kpi = BY_NAME[t.kpi]
        now = proc.event_time_now()
        as_of = computed_at_ms if now is None else now
        end = B.view_end_at(t.period, as_of)
        start = B.view_start(t.period, end)
        docs = [] if now is None else [
            d for d in proc.view(kpis={t.kpi}, windows={t.period}, dims={t.dim_label},
                                 computed_at_ms=computed_at_ms)
            if d["window_start"] == iso_s(start)]
        value = docs[0]["value"] if docs else None
        shares = None
        if t.profile == "weekday" and kpi.aggregation == "sum":
            days = period_days(B.active(), start, end)
            daily = {parse_rfc3339_ms(d["window_start"]): d["value"] or 0.0
                     for d in proc.view(kpis={t.kpi}, windows={"1d"}, dims={t.dim_label},
                                        start_ms=start - HISTORY_DAYS * B.DAY, end_ms=start)}
            shares = weekday_weights(daily, days, B.active())
        # no data of its inputs at all: nothing of the period is observed yet
        p = pace(t, kpi.aggregation, value, start, end, as_of, shares,
                 as_of if data_start is None else data_start, MIN_OBSERVED_MS)
        doc: dict[str, Any] = {
            "kpi": t.kpi, "period": t.period, "dims": dict(t.dims),
            "window_start": iso_s(start), "window_end": iso_s(end), "as_of": iso_s(as_of),
            "unit": proc.cfg.currency if kpi.unit == "CURRENCY" else kpi.unit,
            **pacing_fields(p), "tz": B.active().zone,
            "computed_at": iso_s(computed_at_ms), "schema_version": 1}
        if kpi.cost_based:
            doc["cost_complete"] = bool(docs and docs[0].get("cost_complete"))
        return doc

    def changed(self, docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """(key, document) of the targets whose document changed since last returned
        here, apart from its clock: what goes to the KPI topic."""
        by_name = {t.name: t for t in self.targets}
        out = []
        for doc in docs:
            key = target_key(by_name[doc["target"]])
            body = orjson.dumps({k: v for k, v in doc.items() if k != "computed_at"},
                                option=orjson.OPT_SORT_KEYS)
            if self._published.get(key) != body:
                self._published[key] = body
                out.append((key, doc))
        return out

    def forget(self, keys: list[str]) -> None:
        """These keys did not reach the topic: the next ``changed`` returns them again."""
        for key in keys:
            self._published.pop(key, None)


class TargetCollector(Collector):
    """``kpi_streams_target_*`` gauges: each relative to its target's goal, so one
    metric serves every unit. Labels: ``target`` (names from the targets file, so
    bounded by it), ``kpi``, ``period`` and ``direction``."""

    def __init__(self, board: TargetBoard) -> None:
        self.board = board

    def describe(self) -> Iterable[Any]:
        return []  # collected lazily: do not evaluate at registration

    def collect(self) -> Iterable[Any]:
        labels = ["target", "kpi", "period", "direction"]
        fams = {
            "attainment": GaugeMetricFamily(
                "kpi_streams_target_attainment_ratio",
                "The KPI so far in the target's current period / the goal.", labels=labels),
            "expected": GaugeMetricFamily(
                "kpi_streams_target_expected_ratio",
                "Where the KPI should be now (linear or weekday profile) / the goal.",
                labels=labels),
            "projected": GaugeMetricFamily(
                "kpi_streams_target_projected_ratio",
                "End-of-period value at the current run rate / the goal.", labels=labels),
            "elapsed": GaugeMetricFamily(
                "kpi_streams_target_elapsed_ratio",
                "Share of the period passed (by the target's profile).", labels=labels),
        }
        behind = GaugeMetricFamily(
            "kpi_streams_target_behind",
            "1 while the target is behind pace (its projection misses the goal by more "
            "than its tolerance), else 0.", labels=labels)
        status = GaugeMetricFamily(
            "kpi_streams_target_status",
            "1 for the target's pacing status (ahead, on_pace, behind, early, no_data).",
            labels=[*labels, "status"])
        for doc in self.board.evaluate():
            lv = [doc["target"], doc["kpi"], doc["period"], doc["direction"]]
            goal = doc["goal"]
            for name, fam in fams.items():
                x = doc[name] if name == "elapsed" else doc.get(name)
                if name in ("expected", "projected"):
                    x = None if x is None or not goal else x / goal
                if x is not None:
                    fam.add_metric(lv, x)
            behind.add_metric(lv, 1.0 if doc["status"] == "behind" else 0.0)
            status.add_metric([*lv, doc["status"]], 1.0)
        yield from fams.values()
        yield behind
        yield status
