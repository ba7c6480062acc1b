"""The collector's own metrics, declared together against a registry passed in.

Labels are bounded: the route (a fixed list), the status code, the source (names
from ``KPI_COLLECT_TOKENS``), the event type, the reason (the dead-letter
schema's reasons plus the collector's own few). Never a token, an IP or an id.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

NS = "kpi_streams_collect"


@dataclass(frozen=True)
class CollectMetrics:
    requests: Counter
    events: Counter
    rejected: Counter
    skipped: Counter
    rate_limited: Counter
    produce_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CollectMetrics:
        return cls(
            requests=Counter(f"{NS}_requests", "HTTP requests by route and status code.",
                             ["route", "code"], registry=registry),
            events=Counter(f"{NS}_events", "Events received, by source, type and outcome "
                           "(accepted: acknowledged by Kafka; rejected: answered with the "
                           "reason and on the dead-letter topic; forbidden: a type the "
                           "source's token may not send).",
                           ["source", "event_type", "outcome"], registry=registry),
            rejected=Counter(f"{NS}_rejected_events", "Rejected events by reason.",
                             ["reason"], registry=registry),
            skipped=Counter(f"{NS}_hook_skipped", "Provider events a webhook adapter "
                            "maps to no event of ours (e.g. SendGrid deferred), by reason.",
                            ["hook", "reason"], registry=registry),
            rate_limited=Counter(f"{NS}_rate_limited", "Requests refused with 429.",
                                 ["source"], registry=registry),
            produce_seconds=Histogram(f"{NS}_produce_seconds", "From a request's events "
                                      "being ready to Kafka acknowledging all of them.",
                                      registry=registry,
                                      buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                               0.25, 0.5, 1, 2.5, 5, 10)),
        )
