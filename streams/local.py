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
from .kpis.customers import CustomerPartition
from .kpis.deltas import merge_into
from .kpis.email import EmailConfig, EmailPartition
from .kpis.engagement import EngagementConfig, EngagementPartition
from .kpis.funnel import FunnelConfig, FunnelPartition
from .kpis.merge import MergeConfig, MergePartition
from .kpis.scoring import ScoringConfig
from .kpis.spend import SpendConfig, SpendPartition
from .kpis.stage import StageOutput
from .kpis.web import WebConfig, WebPartition
from .produce import partition_for
from .records import DealUpdate, EmailEvent, Engagement, FormSubmit, PageView, Spend
from .topics import dim_partition

TOPIC = {PageView: "page_views", FormSubmit: "form_submits", EmailEvent: "email_events",
         Spend: "spend", DealUpdate: "deal_updates", Engagement: "engagements"}


class LocalPipeline:
    def __init__(self, *, partitions: int = 3, kpi_partitions: int = 3,
                 web: WebConfig | None = None, email: EmailConfig | None = None,
                 spend: SpendConfig | None = None, attribution: str = "first_touch",
                 modes: Modes | None = None, lateness_ms: int = 600_000,
                 session_timeout_ms: int = 1_800_000,
                 retention: dict[str, int] | None = None, default_margin: float = 1.0,
                 publish: set[str] | None = None,
                 scoring: ScoringConfig | None = None) -> None:
        self.publish = publish  # windows to build snapshots for (None: all)
        self.partitions = partitions
        self.kpi_partitions = kpi_partitions
        web = web or WebConfig(lateness_ms=lateness_ms, session_timeout_ms=session_timeout_ms)
        if scoring is not None:
            web = replace(web, scoring=scoring)
            email = replace(email or EmailConfig(lateness_ms=lateness_ms), scoring=scoring)
        self.qualified: list[dict[str, Any]] = []  # lead-score MQLs, in emission order
        self.web = [WebPartition(web) for _ in range(partitions)]
        self.email = [EmailPartition(email or EmailConfig(lateness_ms=lateness_ms))
                      for _ in range(partitions)]
        self.spend = [SpendPartition(spend or SpendConfig(lateness_ms=lateness_ms))
                      for _ in range(partitions)]
        self.engagement = [EngagementPartition(EngagementConfig(lateness_ms, scoring))
                           for _ in range(partitions)]
        self.funnel = [FunnelPartition(FunnelConfig(attribution, lateness_ms, default_margin,
                                                    scoring))
                       for _ in range(partitions)]
        self.customers = [CustomerPartition() for _ in range(partitions)]
        cfg_kw: dict[str, Any] = {}
        if retention is not None:
            cfg_kw["retention"] = retention
        self.merge_cfg = MergeConfig(
            feeds={"web": ("page_views", "form_submits"), "email": ("email_events",),
                   "spend": ("spend",), "eng": ("engagements",), "lead": ("leads",),
                   "funnel": ("leads",), "score": ("leads",),
                   "cust": ("customers",)},
            partitions=partitions, lateness_ms=lateness_ms,
            session_timeout_ms=session_timeout_ms,
            modes=modes or Modes(attribution=attribution), **cfg_kw)
        self.merge = [MergePartition(self.merge_cfg) for _ in range(kpi_partitions)]
        self.seq = 0
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.late: list[Any] = []
        self.rejected_updates: list[Any] = []
        self.counts: dict[tuple[str, str], int] = defaultdict(int)

    def feed(self, records: list[Any], wall_ms: int = 0) -> None:
        """Process records as one batch per partition, in the given order."""
        by_part: dict[tuple[str, int], list[tuple[str, Any]]] = defaultdict(list)
        for rec in records:
            topic = TOPIC[type(rec)]
            key = {"page_views": "visitor_id", "form_submits": "visitor_id",
                   "email_events": "message_id", "spend": "channel",
                   "deal_updates": "contact_id", "engagements": "campaign"}[topic]
            kv = getattr(rec, key) or (rec.deal_id if topic == "deal_updates"
                                       else "unallocated")
            by_part[(topic, partition_for(kv, self.partitions))].append((topic, rec))
        lead_cands: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for p in range(self.partitions):
            web_items = by_part.get(("page_views", p), []) + by_part.get(("form_submits", p), [])
            web_items.sort(key=lambda x: 0)  # keep arrival order across the two topics
            out = self.web[p].process(_arrival(records, web_items), wall_ms)
            self._route(f"web/{p}", out, self._wm(self.web[p], p,
                                                  ("page_views", "form_submits")))
            for cand in out.leads:
                lead_cands[partition_for(cand["contact_id"], self.partitions)].append(cand)
            out = self.email[p].process(by_part.get(("email_events", p), []), wall_ms)
            self._route(f"email/{p}", out, self._wm(self.email[p], p, ("email_events",)))
            for cand in out.leads:  # lead-score facts of known contacts
                lead_cands[partition_for(cand["contact_id"], self.partitions)].append(cand)
            out = self.spend[p].process(by_part.get(("spend", p), []), wall_ms)
            self._route(f"spend/{p}", out, self._wm(self.spend[p], p, ("spend",)))
            out = self.engagement[p].process(by_part.get(("engagements", p), []), wall_ms)
            self._route(f"engagement/{p}", out, self._wm(self.engagement[p], p,
                                                         ("engagements",)))
            for cand in out.leads:
                lead_cands[partition_for(cand["contact_id"], self.partitions)].append(cand)
        web_marks = {}
        for p in range(self.partitions):
            web_marks.update(self._wm(self.web[p], p, ("page_views", "form_submits")))
        marks = [w for w in web_marks.values() if w is not None]
        facts: dict[int, list[dict[str, Any]]] = defaultdict(list)
        funnel_marks = []
        for q in range(self.partitions):
            out = self.funnel[q].process(by_part.get(("deal_updates", q), []),
                                         lead_cands.get(q, []), wall_ms)
            deal_wm = self._wm(self.funnel[q], q, ("deal_updates",))[f"deal_updates/{q}"]
            own = [w for w in [*marks, deal_wm] if w is not None]
            wm = min(own) if own else None
            funnel_marks.append(wm)
            scored = self.funnel[q].score_due(wm)
            merge_into(out.deltas, scored.deltas)
            self.qualified += scored.qualified
            self._route(f"funnel/{q}", out, {f"leads/{q}": wm})
            self.rejected_updates += out.rejected_updates
            for fact in out.customers:
                facts[partition_for(fact["customer_id"], self.partitions)].append(fact)
        known = [w for w in funnel_marks if w is not None]
        cust_wm = min(known) if known else None
        for q in range(self.partitions):
            out = self.customers[q].process(facts.get(q, []))
            self._route(f"customers/{q}", out, {f"customers/{q}": cust_wm})

    def _wm(self, proc: Any, p: int, topics: tuple[str, ...]) -> dict[str, int | None]:
        return {f"{t}/{p}": (proc.clocks[t].wm if t in proc.clocks else None) for t in topics}

    def _route(self, src: str, out: StageOutput, wm: dict[str, int | None]) -> None:
        for k, n in out.counts.items():
            self.counts[k] += n
        self.late += out.late
        self.seq += 1
        by_part: dict[int, dict[str, Any]] = {
            q: {"src": src, "seq": self.seq, "wm": wm, "d": [], "h": []}
            for q in range(self.kpi_partitions)}
        for (family, size, start, dim), comps in out.deltas.items():
            by_part[dim_partition(dim, self.kpi_partitions)]["d"].append(
                [family, size, start, dim, comps])
        for (family, size, start, dim), hashes in out.sketches.items():
            by_part[dim_partition(dim, self.kpi_partitions)]["h"].append(
                [family, size, start, dim, sorted(hashes)])
        for q, msg in by_part.items():
            self.merge[q].apply(msg)

    def expire(self) -> None:
        """What the worker's timer does every 30 s: drop state past retention and TTLs."""
        for m in self.merge:
            m.expire()
        for group in (self.web, self.email, self.spend, self.engagement, self.funnel):
            for proc in group:
                proc.prune()

    def state_keys(self) -> dict[str, int]:
        """Entries held by every stage, by kind (as ``kpi_streams_state_keys``)."""
        out: dict[str, int] = {}
        for group in (self.web, self.email, self.spend, self.engagement, self.funnel,
                      self.customers, self.merge):
            for proc in group:
                for kind, n in proc.state_keys().items():
                    out[kind] = out.get(kind, 0) + n
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
            for t in ("page_views", "form_submits", "email_events", "spend", "leads",
                      "customers", "deal_updates", "engagements"):
                for p in range(self.partitions):
                    m.src_wm[f"{t}/{p}"] = far_future_ms
        return self.emit()


def _arrival(records: list[Any], items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    order = {id(r): i for i, r in enumerate(records)}
    return sorted(items, key=lambda x: order[id(x[1])])


def decode_all(decoder: Decoder, events: list[dict[str, Any]], now_ms: int) -> list[Any]:
    import orjson

    out = []
    for ev in events:
        recs, _ = decoder.decode(orjson.dumps(ev), None, now_ms)
        out += recs
    return out
