"""All stages in one process, without Kafka: for tests, profiling and what-if runs.

The same pure processors the worker runs, wired the way the worker wires them:
stage-1 partitions by the same key hashing, partials applied to stage-3
partitions by dim, watermarks reported the same way. What is missing is only
Kafka (durability, consumer groups), which the integration tests cover.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from .events import Decoder
from .kpis.catalogue import Modes
from .kpis.customers import CustomerConfig
from .kpis.deltas import merge_into
from .kpis.email import EmailConfig
from .kpis.engagement import EngagementConfig
from .kpis.funnel import FunnelConfig
from .kpis.merge import MergeConfig
from .kpis.messages import drop_past_retention, partial_messages, skip_horizons
from .kpis.scoring import ScoringConfig
from .kpis.spend import SpendConfig
from .kpis.stage import StageOutput
from .kpis.web import WebConfig
from .produce import partition_for
from .topology import (
    BY_NAME,
    EVENT_OF_RECORD,
    INPUT_STAGES,
    LEADS,
    LOCAL_NAMES,
    STAGE_OF_EVENT,
    STAGES,
    StageDecl,
    feeds,
    input_key,
)


class LocalPipeline:
    """Every stage of :mod:`streams.topology`, ``partitions`` partitions each (the
    merge stage ``kpi_partitions``), fed in process. The keyword arguments are the
    stages' configurations (defaults: the settings' defaults)."""

    def __init__(self, *, partitions: int = 3, kpi_partitions: int = 3,
                 web: WebConfig | None = None, email: EmailConfig | None = None,
                 spend: SpendConfig | None = None, attribution: str = "first_touch",
                 modes: Modes | None = None, lateness_ms: int = 600_000,
                 session_timeout_ms: int = 1_800_000,
                 retention: dict[str, int] | None = None, default_margin: float = 1.0,
                 publish: set[str] | None = None,
                 scoring: ScoringConfig | None = None) -> None:
        self.publish = publish  # windows to build snapshots for (None: all)
        # as KPI_REPLAY_SKIP_EXPIRED: the inputs' horizon (streams.agents.horizon), set
        # by the caller; minute cells past retention from it are not built
        self.input_horizon: int | None = None
        self.skipped_rows = 0  # rows not sent for it (kpi_streams_rows_past_retention)
        self.sent_rows = 0  # rows of deltas and sketches sent to the merge stage
        self.partitions = partitions
        self.kpi_partitions = kpi_partitions
        web = web or WebConfig(lateness_ms=lateness_ms, session_timeout_ms=session_timeout_ms)
        if retention is not None and "1m" in retention:
            web = replace(web, retention_1m_ms=retention["1m"])
        if scoring is not None:
            web = replace(web, scoring=scoring)
            email = replace(email or EmailConfig(lateness_ms=lateness_ms), scoring=scoring)
        self.qualified: list[dict[str, Any]] = []  # lead-score MQLs, in emission order
        cfg_kw: dict[str, Any] = {}
        if retention is not None:
            cfg_kw["retention"] = retention
        self.merge_cfg = MergeConfig(
            feeds=feeds(LOCAL_NAMES.__getitem__), partitions=partitions,
            lateness_ms=lateness_ms, session_timeout_ms=session_timeout_ms,
            modes=modes or Modes(attribution=attribution), **cfg_kw)
        configs: dict[str, Any] = {
            "web": web, "email": email or EmailConfig(lateness_ms=lateness_ms),
            "spend": spend or SpendConfig(lateness_ms=lateness_ms),
            "engagement": EngagementConfig(lateness_ms, scoring),
            "funnel": FunnelConfig(attribution, lateness_ms, default_margin, scoring),
            "customers": CustomerConfig(), "merge": self.merge_cfg}
        # stage name -> its processors, one a partition (no local store: all on the heap)
        self.stages: dict[str, list[Any]] = {
            d.name: [d.processor(configs[d.name], None)
                     for _ in range(kpi_partitions if d.partitions == "kpi" else partitions)]
            for d in STAGES}
        self.web = self.stages["web"]
        self.email = self.stages["email"]
        self.spend = self.stages["spend"]
        self.engagement = self.stages["engagement"]
        self.funnel = self.stages["funnel"]
        self.customers = self.stages["customers"]
        self.merge = self.stages["merge"]
        self.seq = 0
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.late: list[Any] = []
        self.rejected_updates: list[Any] = []
        self.counts: dict[tuple[str, str], int] = defaultdict(int)

    def feed(self, records: list[Any], wall_ms: int = 0) -> None:
        """Process records as one batch per partition, in the given order."""
        n = self.partitions
        # (stage, partition) -> its input, in arrival order, keyed as a producer keys it
        by_part: dict[tuple[str, int], list[tuple[str, Any]]] = defaultdict(list)
        for rec in records:
            et = EVENT_OF_RECORD[type(rec)]
            p = partition_for(input_key(et, rec), n)
            by_part[(STAGE_OF_EVENT[et].name, p)].append((LOCAL_NAMES[et], rec))
        lead_cands: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for p in range(n):
            for decl in INPUT_STAGES:
                proc = self.stages[decl.name][p]
                proc.input_horizon = self.input_horizon
                out = proc.process(by_part.get((decl.name, p), []), wall_ms)
                self._route(f"{decl.name}/{p}", out, self._wm(proc, p, decl.reads))
                for cand in out.leads:  # to the funnel, keyed by contact
                    lead_cands[partition_for(cand["contact_id"], n)].append(cand)
        # what each stream's partitions report downstream: (stream) -> [wm per partition]
        reported: dict[str, list[int | None]] = {
            t: [self._wm(self.stages[d.name][p], p, (t,))[f"{LOCAL_NAMES[t]}/{p}"]
                for p in range(n)]
            for d in INPUT_STAGES for t in d.event_types}
        funnel = BY_NAME["funnel"]
        facts: dict[int, list[dict[str, Any]]] = defaultdict(list)
        reported[LEADS] = []
        for q in range(n):
            proc = self.funnel[q]
            out = proc.process(by_part.get((funnel.name, q), []), lead_cands.get(q, []),
                               wall_ms)
            own = self._wm(proc, q, funnel.event_types)[f"{LOCAL_NAMES['deal_update']}/{q}"]
            wm = _lowest(funnel, reported, own)
            reported[LEADS].append(wm)
            scored = proc.score_due(wm)
            merge_into(out.deltas, scored.deltas)
            self.qualified += scored.qualified
            self._route(f"{funnel.name}/{q}", out, {f"{LOCAL_NAMES[LEADS]}/{q}": wm})
            self.rejected_updates += out.rejected_updates
            for fact in out.customers:
                facts[partition_for(fact["customer_id"], n)].append(fact)
        customers = BY_NAME["customers"]
        cust_wm = _lowest(customers, reported, None)
        assert customers.reports_as is not None
        for q in range(n):
            out = self.customers[q].process(facts.get(q, []))
            self._route(f"{customers.name}/{q}", out,
                        {f"{LOCAL_NAMES[customers.reports_as]}/{q}": cust_wm})

    def _wm(self, proc: Any, p: int, streams: tuple[str, ...]) -> dict[str, int | None]:
        """A stage-1/2 partition's watermark of each of the (input) streams it reads."""
        out = {}
        for t in streams:
            if t in LOCAL_NAMES and t in STAGE_OF_EVENT:
                name = LOCAL_NAMES[t]
                out[f"{name}/{p}"] = proc.clocks[name].wm if name in proc.clocks else None
        return out

    def _route(self, src: str, out: StageOutput, wm: dict[str, int | None]) -> None:
        for k, count in out.counts.items():
            self.counts[k] += count
        self.late += out.late
        self.seq += 1
        hz = self.input_horizon
        self.skipped_rows += drop_past_retention(out.deltas, out.sketches,
                                                 skip_horizons(hz, self.merge_cfg.retention))
        self.sent_rows += len(out.deltas) + len(out.sketches)
        for q, msg in partial_messages(self.kpi_partitions, src, self.seq, wm, out.deltas,
                                       out.sketches, horizon=hz):
            self.merge[q].apply(msg)

    def expire(self) -> None:
        """What the worker's timer does every 30 s: drop state past retention and TTLs."""
        for m in self.merge:
            m.expire()
        for decl in (*INPUT_STAGES, BY_NAME["funnel"]):
            for proc in self.stages[decl.name]:
                proc.prune()

    def state_keys(self) -> dict[str, int]:
        """Entries held by every stage, by kind (as ``kpi_streams_state_keys``)."""
        out: dict[str, int] = {}
        for group in self.stages.values():
            for proc in group:
                for kind, count in proc.state_keys().items():
                    out[kind] = out.get(kind, 0) + count
        return out

    def emit(self, wall_ms: int = 0) -> dict[str, dict[str, Any]]:
        for m in self.merge:
            for key, doc in m.emit(wall_ms, publish=self.publish):
                if doc is None:
                    self.snapshots.pop(key, None)
                else:
                    self.snapshots[key] = doc
        return self.snapshots

    def finish(self, far_future_ms: int) -> dict[str, dict[str, Any]]:
        """Advance every watermark far ahead (as idle partitions would) and emit finals."""
        for q, funnel in enumerate(self.funnel):
            scored = funnel.score_due(far_future_ms)
            self.qualified += scored.qualified
            self._route(f"funnel-final/{q}", scored, {})
        for m in self.merge:
            for name in list(m.src_wm):
                m.src_wm[name] = far_future_ms
            for streams in self.merge_cfg.feeds.values():
                for t in streams:
                    for p in range(self.partitions):
                        m.src_wm[f"{t}/{p}"] = far_future_ms
        return self.emit()


def _lowest(decl: StageDecl, reported: dict[str, list[int | None]],
            own: int | None) -> int | None:
    """A derived stage's watermark: the lowest its upstream partitions reported, and
    its own input's clock (as :class:`streams.agents.derived.DerivedStage` computes)."""
    marks = [w for t in decl.watermark_from for w in reported[t] if w is not None]
    if own is not None:
        marks.append(own)
    return min(marks) if marks else None


def decode_all(decoder: Decoder, events: list[dict[str, Any]], now_ms: int) -> list[Any]:
    import orjson

    out = []
    for ev in events:
        recs, _ = decoder.decode(orjson.dumps(ev), None, now_ms)
        out += recs
    return out
