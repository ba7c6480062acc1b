"""Broker outages log one clear warning, periodic summaries, and a recovery line."""

from __future__ import annotations

import logging

import pytest

from streams.logs import BrokerOutageLog, FreshAssignmentNoise


def test_outage_is_summarised_not_repeated(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    outage = BrokerOutageLog("127.0.0.1:9092", report_every_s=30, clock=lambda: now[0])
    aio = logging.getLogger("aiokafka")
    aio.addFilter(outage)
    try:
        with caplog.at_level(logging.INFO):
            aio.info("Kafka version: 4.1")  # unrelated records pass untouched
            for _ in range(50):  # ten a second for five seconds
                now[0] += 0.1
                try:
                    raise ConnectionRefusedError(111, "Connect call failed")
                except ConnectionRefusedError:
                    aio.error("Unable connect to node with id %d: [Errno 111] Connect call "
                              "failed ('127.0.0.1', 9092)", 1, exc_info=True)
            now[0] += 30
            aio.error("Unable to update metadata from [1]")
            aio.error("Unable to update metadata from [1]")
            now[0] += 5
            outage.reachable()
            outage.reachable()  # only once
    finally:
        aio.removeFilter(outage)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines[0] == ("INFO", "Kafka version: 4.1")
    assert len(lines) == 4, lines
    assert lines[1][0] == "WARNING" and "unreachable at 127.0.0.1:9092" in lines[1][1]
    assert "Connect call failed" in lines[1][1]
    assert "still unreachable" in lines[2][1] and "after 35 s" in lines[2][1]
    assert "49 connection errors" in lines[2][1]
    assert "reachable again" in lines[3][1] and "after 40 s" in lines[3][1]
    assert "1 connection errors not shown" in lines[3][1]
    assert all(r.exc_info is None for r in caplog.records)  # no stack trace per retry
    assert not outage.away


def test_only_the_cli_prints() -> None:
    """Library code reports through logging or a callback; stdout belongs to the CLI
    (conventions: no print inside agents), so `kpi-streams kpis --format json` stays
    parseable and a worker's output stays in its log."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "streams"
    offenders = []
    for path in root.rglob("*.py"):
        if path.relative_to(root).parts[0] == "cli":  # the CLI, a package since issue 16
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, offenders


def test_a_group_join_ends_the_outage(caplog: pytest.LogCaptureFixture) -> None:
    """A worker still joining its group has no lag probe to notice the broker is back;
    aiokafka finding the group coordinator is a round trip, so it ends the outage."""
    now = [0.0]
    outage = BrokerOutageLog("127.0.0.1:9092", clock=lambda: now[0])
    coord = logging.getLogger("aiokafka.consumer.group_coordinator")
    coord.addFilter(outage)
    try:
        with caplog.at_level(logging.INFO):
            coord.info("Discovered coordinator 1 for group g")  # not away: nothing extra
            coord.warning("Unable connect to node with id 1: Connect call failed")
            now[0] += 14
            coord.info("Discovered coordinator 1 for group g")
    finally:
        coord.removeFilter(outage)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines
    assert "unreachable" in lines[1]
    assert "reachable again" in lines[2] and "after 14 s" in lines[2]
    assert lines[3] == "Discovered coordinator 1 for group g"
    assert not outage.away


def test_faust_no_fetch_since_start_is_dropped_only_right_after_an_assignment(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    noise = FreshAssignmentNoise(grace_s=30, clock=lambda: now[0])
    thread = logging.getLogger("faust.transport.drivers.aiokafka")
    thread.addFilter(noise)
    line = ("[^---AIOKafkaConsumerThread]: Aiokafka has not sent fetch request for %r "
            "since start (started %s)")
    try:
        with caplog.at_level(logging.INFO):
            thread.error(line, "TP(topic='a', partition=0)", "5.42 minutes ago")  # no rebalance
            noise.assigned()
            now[0] += 1
            for p in range(3):  # every partition of the new assignment, a second later
                thread.error(line, f"TP(topic='a', partition={p})", "5.43 minutes ago")
            thread.error("Aiokafka stopped fetching from %r (last done %s)", "TP(b)",
                         "40 s ago")  # the "no recent fetch" check is not this one
            now[0] += 40  # still not fetched long after the assignment: a real stall
            thread.error(line, "TP(topic='a', partition=1)", "6.1 minutes ago")
    finally:
        thread.removeFilter(noise)
    kept = [r.getMessage() for r in caplog.records]
    assert len(kept) == 3, kept
    assert "partition=0" in kept[0] and "TP(b)" in kept[1] and "partition=1" in kept[2]
    assert noise.dropped == 3
