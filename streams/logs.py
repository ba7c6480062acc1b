"""Readable logs while the Kafka broker is away.

aiokafka logs every failed reconnect (ten a second, some with a stack trace).
``BrokerOutageLog`` turns that stream into three kinds of line an operator can
read: one warning when the broker goes away, a summary every
``report_every_s`` while it stays away, and one line when it is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

CONNECTION_ERRORS = (  # what aiokafka says, over and over, while a broker is down
    "Unable connect to node", "Unable to update metadata", "Connect call failed",
    "NodeNotReadyError", "KafkaConnectionError", "Unable to request metadata",
    "Failed fetch messages from",
)
ROUND_TRIPS = (  # what aiokafka says only after the broker answered
    "Discovered coordinator", "Successfully synced group", "Joined group",
)
LOGGERS = ("aiokafka", "aiokafka.conn", "aiokafka.cluster", "aiokafka.client",
           "aiokafka.consumer.group_coordinator", "aiokafka.consumer.fetcher",
           "aiokafka.consumer.consumer", "aiokafka.producer.sender",
           "aiokafka.producer.producer", "faust.transport.drivers.aiokafka")

log = logging.getLogger("kpi_streams.kafka")


class BrokerOutageLog(logging.Filter):
    """A logging filter that summarises connection errors (see the module docstring)."""

    def __init__(self, bootstrap: str, report_every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.report_every_s = report_every_s
        self.clock = clock
        self.since: float | None = None  # monotonic time the outage began
        self.last_report = 0.0
        self.suppressed = 0

    @property
    def away(self) -> bool:
        return self.since is not None

    def install(self) -> BrokerOutageLog:
        for name in LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record whose args do not format is not ours to judge
            return True
        if record.levelno < logging.WARNING or not any(p in text for p in CONNECTION_ERRORS):
            if self.since is not None and any(p in text for p in ROUND_TRIPS):
                self.reachable()  # a worker still joining its group has no lag probe yet
            return True
        now = self.clock()
        first = self.since is None
        if first:
            self.since = now
            self.last_report = now
            self.suppressed = 0
            msg = (f"Kafka broker unreachable at {self.bootstrap} ({text[:200]}); "
                   f"retrying, and summarising further connection errors every "
                   f"{self.report_every_s:g} s")
        elif now - self.last_report >= self.report_every_s:
            assert self.since is not None
            msg = (f"Kafka broker still unreachable at {self.bootstrap} after "
                   f"{now - self.since:.0f} s ({self.suppressed} connection errors "
                   f"since the last report); retrying")
            self.last_report = now
            self.suppressed = 0
        else:
            self.suppressed += 1
            return False
        record.msg, record.args = msg, ()
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True

    def reachable(self) -> None:
        """Call after any successful round trip to the broker."""
        if self.since is None:
            return
        away = self.clock() - self.since
        self.since = None
        log.warning("Kafka broker reachable again at %s after %.0f s (%d connection errors "
                    "not shown)", self.bootstrap, away, self.suppressed)
        self.suppressed = 0


class FreshAssignmentNoise(logging.Filter):
    """Drops Faust's false "no fetch since start" errors right after a rebalance.

    Faust's livelock check logs ``Aiokafka has not sent fetch request for TP(...)
    since start`` for every partition of a new assignment when the rebalance comes
    later than its stream processing timeout (5 min) after the worker started: it
    measures from the consumer's start, and a partition assigned a moment ago has
    not been fetched yet (faust-streaming#503, #629; processing is not affected).
    Within ``grace_s`` of an assignment those lines are dropped; a partition that
    is still not fetched after that is a real stall, and its line passes.
    """

    PATTERN = "has not sent fetch request"

    def __init__(self, grace_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.grace_s = grace_s
        self.clock = clock
        self.at: float | None = None  # monotonic time of the last assignment
        self.dropped = 0

    def install(self) -> FreshAssignmentNoise:
        logging.getLogger("faust.transport.drivers.aiokafka").addFilter(self)
        return self

    def assigned(self) -> None:
        """Call when the consumer group gave this worker a new assignment."""
        self.at = self.clock()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.at is None or self.clock() - self.at >= self.grace_s:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a record whose args do not format is not ours to judge
            return True
        if self.PATTERN in text and "since start" in text:
            self.dropped += 1
            return False
        return True
