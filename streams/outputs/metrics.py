"""Every pipeline-health metric, declared in one place against a registry passed in.

Label values are bounded: input (six event types), outcome, reason (the
dead-letter schema's reasons), stage, and partition numbers. No ids, no
campaigns. KPI values are not here: they are read out of the merge state at
scrape time by :mod:`streams.outputs.collector`.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

NS = "kpi_streams"


@dataclass(frozen=True)
class Metrics:
    events: Counter
    rejected: Counter
    dlq_records: Counter
    late_records: Counter
    flush_seconds: Histogram
    flushed_keys: Counter
    restore_records: Counter
    restore_progress: Gauge
    restore_seconds: Gauge
    partitions_owned: Gauge
    snapshots: Counter
    snapshots_waiting: Gauge
    emission_backlog: Gauge
    replayed_partials: Counter
    past_retention: Counter
    input_horizon: Gauge
    consumer_lag: Gauge
    state_keys: Gauge
    loop_lag: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            events=Counter(f"{NS}_events", "Input events by outcome "
                           "(accepted, rejected, duplicate, late).",
                           ["input", "outcome"], registry=registry),
            rejected=Counter(f"{NS}_rejected_events", "Rejected input by reason "
                             "(each one is on the dead-letter topic).",
                             ["input", "reason"], registry=registry),
            dlq_records=Counter(f"{NS}_dlq_records", "Records written to dead-letter topics.",
                                ["input"], registry=registry),
            late_records=Counter(f"{NS}_late_records",
                                 "Events written to the late-events topic.", ["input"],
                                 registry=registry),
            flush_seconds=Histogram(f"{NS}_flush_seconds",
                                    "Time to write one flush (state, outputs, meta).",
                                    ["stage"], registry=registry,
                                    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                             1, 2.5, 5)),
            flushed_keys=Counter(f"{NS}_state_writes", "State keys written to changelogs.",
                                 ["stage"], registry=registry),
            restore_records=Counter(f"{NS}_restore_records",
                                    "Changelog records read while restoring state.",
                                    ["stage"], registry=registry),
            restore_progress=Gauge(f"{NS}_restore_progress_ratio",
                                   "Progress of the running state restore (1 = done).",
                                   ["stage", "partition"], registry=registry),
            restore_seconds=Gauge(f"{NS}_restore_duration_seconds",
                                  "Duration of the last state restore.",
                                  ["stage", "partition"], registry=registry),
            partitions_owned=Gauge(f"{NS}_partitions_owned",
                                   "Partitions this worker processes.", ["stage"],
                                   registry=registry),
            snapshots=Counter(f"{NS}_snapshots", "KPI snapshots published on the KPI "
                              "topic.", ["final"], registry=registry),
            snapshots_waiting=Gauge(f"{NS}_snapshots_waiting",
                                    "Open KPI keys whose latest value waits for its cadence "
                                    "(or for the end of a catch-up) before the KPI topic.",
                                    ["partition"], registry=registry),
            emission_backlog=Gauge(f"{NS}_emission_backlog",
                                   "Changed KPI cells and rolling views whose snapshot "
                                   "documents are not built yet, with the open cells a "
                                   "catch-up holds back: a replay's publishing backlog, "
                                   "0 once the KPI topic has caught up.",
                                   ["partition"], registry=registry),
            replayed_partials=Counter(f"{NS}_replayed_partials",
                                      "Partial aggregates ignored because they were "
                                      "already applied (replays after a restart).",
                                      registry=registry),
            past_retention=Counter(f"{NS}_rows_past_retention",
                                   "Aggregate rows not sent to the merge stage because "
                                   "their bucket was past its retention from the inputs' "
                                   "horizon (a replay of history: minute cells of last "
                                   "month). The web and spend stages do not build those "
                                   "rows at all; this counts what other stages built and "
                                   "what was built before the horizon moved past it.",
                                   ["stage", "bucket"], registry=registry),
            input_horizon=Gauge(f"{NS}_input_horizon_seconds",
                                "Event time every watermark reaches once what the input "
                                "topics hold now is read, less a margin (Unix seconds; 0: "
                                "unknown). Minute cells past retention from it are skipped.",
                                registry=registry),
            consumer_lag=Gauge(f"{NS}_consumer_lag_messages",
                               "Messages on this worker's input partitions not processed "
                               "yet (log end offset minus processed offset).", ["stage"],
                               registry=registry),
            state_keys=Gauge(f"{NS}_state_keys",
                             "Entries held in memory (and in the state changelog) by this "
                             "worker, by stage and kind (visitor, message, event_id, contact, "
                             "customer, cell_<bucket>, view_<window>).", ["stage", "kind"],
                             registry=registry),
            loop_lag=Histogram(f"{NS}_event_loop_lag_seconds",
                               "How late a 100-ms sleep on the worker's event loop woke "
                               "up: the longest step that held the loop (decode, a "
                               "stage's batch, emission) shows here.", registry=registry,
                               buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                        5)),
        )
