"""The worker's HTTP API on a real worker: contract (schemathesis), filters, SSE, safety."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.conftest import event
from tests.fixtures_kafka import WorkerProcess, run, settings_from, wait_for
from tests.integration.kafkatools import produce_events

pytestmark = pytest.mark.kafka


@pytest.fixture
def fed_worker(kafka_env: dict[str, str], tmp_path: Path,
               workers: list[WorkerProcess]) -> WorkerProcess:
    w = WorkerProcess(kafka_env, tmp_path).start()
    workers.append(w)
    w.wait_healthy()
    events = [event("page_view", visitor_id=f"v{i}", occurred_at=f"2026-11-23T10:{i:02d}:00Z",
                    utm_medium="cpc" if i % 2 else None) for i in range(30)]
    events.append(event("spend", cost=120.0))
    run(produce_events(settings_from(kafka_env), events))
    wait_for(lambda: orjson.loads(w.get("/api/kpis?kpi=pageviews&bucket=1h&dim=total"))
             ["count"] == 1, 60, "the page views in the API")
    return w


def test_kpis_filters(fed_worker: WorkerProcess) -> None:
    w = fed_worker
    doc = orjson.loads(w.get("/api/kpis?kpi=pageviews&bucket=1h&dim=total"))
    snap = doc["snapshots"][0]
    assert snap["numerator"] == 30 and snap["dims"] == {} and snap["unit"] == "count"
    doc = orjson.loads(w.get("/api/kpis?kpi=pageviews,sessions&bucket=1h&channel=paid_search"))
    assert {(s["kpi"], s["numerator"]) for s in doc["snapshots"]} == {
        ("pageviews", 15), ("sessions", 15)}
    doc = orjson.loads(w.get("/api/kpis?kpi=pageviews&bucket=1m"
                             "&from=2026-11-23T10:10:00Z&to=2026-11-23T10:20:00Z&dim=total"))
    assert doc["count"] == 10
    # the same instants with offsets: escaped, and with a bare "+" (a space once decoded)
    for plus in ("%2B", "+"):
        doc = orjson.loads(w.get(f"/api/kpis?kpi=pageviews&bucket=1m&dim=total"
                                 f"&from=2026-11-23T11:10:00{plus}01:00"
                                 f"&to=2026-11-23T15:50:00{plus}05:30"))
        assert doc["count"] == 10, plus
    doc = orjson.loads(w.get("/api/kpis?kpi=spend&bucket=24h&dim=total"))
    assert doc["snapshots"][0]["numerator"] == pytest.approx(120.0)


def test_kpis_compare_with_the_period_before(fed_worker: WorkerProcess) -> None:
    doc = orjson.loads(fed_worker.get(
        "/api/kpis?kpi=pageviews&bucket=1m&dim=total&compare=previous"
        "&from=2026-11-23T10:00:00Z&to=2026-11-23T10:02:00Z"))
    first, second = doc["snapshots"]
    # one page view a minute: 10:01 against 10:00, which the data covers
    assert second["compare"] == {
        "basis": "previous", "window_start": "2026-11-23T10:00:00Z",
        "window_end": "2026-11-23T10:01:00Z", "covered": True, "value": 1,
        "numerator": 1, "denominator": 1, "change": 0, "relative_change": 0.0}
    # 10:00 is the first minute with page views: no page views before it (the spend
    # record's cells reach further back, so the data does cover 09:59)
    assert first["compare"]["value"] is None and first["compare"]["change"] is None


@pytest.mark.parametrize("query", ["kpi=nope", "bucket=2h", "from=yesterday", "final=maybe",
                                   "limit=0", "compare=lastweek"])
def test_bad_queries_are_400_with_a_reason(fed_worker: WorkerProcess, query: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        fed_worker.get(f"/api/kpis?{query}")
    with info.value as err:
        assert err.code == 400
        assert orjson.loads(err.read())["error"]


def test_sse_stream_delivers_snapshots(fed_worker: WorkerProcess,
                                       kafka_env: dict[str, str]) -> None:
    w = fed_worker
    req = urllib.request.Request(w.url("/api/kpis/stream?kpi=pageviews&bucket=1h&dim=total"))
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.readline() == b": connected\n"
        run(produce_events(settings_from(kafka_env), [
            event("page_view", visitor_id="late-comer", occurred_at="2026-11-23T10:45:00Z")]))
        seen = None
        for _ in range(200):
            line = resp.readline()
            if line.startswith(b"data: "):
                seen = orjson.loads(line[6:])
                if seen["numerator"] == 31:
                    break
        assert seen is not None and seen["kpi"] == "pageviews" and seen["numerator"] == 31


def test_read_only_and_no_faust_pages(fed_worker: WorkerProcess) -> None:
    w = fed_worker
    req = urllib.request.Request(w.url("/api/kpis"), data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    with info.value as err:
        assert err.code == 405
    for path in ("/table/", "/router/", "/graph/", "/api/kpis/../../etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as info:
            w.get(path)
        with info.value as err:
            assert err.code in (403, 404)


def test_binds_to_loopback_only(fed_worker: WorkerProcess) -> None:
    # the worker's port answers on 127.0.0.1 and not on the machine's other addresses
    addrs = {ai[4][0] for ai in socket.getaddrinfo(socket.gethostname(), None,
                                                    socket.AF_INET)} - {"127.0.0.1"}
    for addr in addrs:
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex((addr, fed_worker.port)) != 0, f"listening on {addr}"
    with socket.create_connection(("127.0.0.1", fed_worker.port), timeout=2):
        pass


def test_openapi_contract_holds(fed_worker: WorkerProcess) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(fed_worker.url("/api/openapi.json"))
    failures = []
    tested: set[str] = set()
    for op in schema.get_all_operations():
        operation = op.ok()
        if operation.path == "/api/kpis/stream":
            continue  # an endless stream; covered by test_sse_stream_delivers_snapshots

        @settings(max_examples=25, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: object) -> None:
            case.call_and_validate()  # type: ignore[attr-defined]

        try:
            check()
            tested.add(operation.path)
        # schemathesis reports failures as exception groups (BaseException): catch
        # them to report every operation's failures together
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{operation.method} {operation.path}: {exc!r}")
    assert not failures, "\n\n".join(failures)
    # (schemathesis leaves out the operation that serves the document itself)
    assert {"/api/kpis", "/api/health", "/api/alerts", "/api/catalogue"} <= tested


def _cli_kpis(w: WorkerProcess, *args: str) -> tuple[list[dict], str]:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "streams.cli", "kpis", "--kpi", "pageviews",
                          "--bucket", "1h", "--total", *args],
                         env=w.env, capture_output=True, timeout=120, check=False)
    assert res.returncode in (0, 1), res.stderr.decode()
    rows = [orjson.loads(line) for line in res.stdout.splitlines()] \
        if "jsonl" in args else []
    return rows, res.stderr.decode()


def test_cli_kpis_asks_the_worker_and_falls_back_to_the_topic(
        fed_worker: WorkerProcess) -> None:
    rows, _ = _cli_kpis(fed_worker, "--source", "api", "--format", "jsonl")
    assert [r["numerator"] for r in rows] == [30]
    # the same row reaches the compacted topic once the replayed hour has stopped
    # arriving (it is history: nothing is published while it streams in)
    rows = wait_for(lambda: _cli_kpis(fed_worker, "--source", "topic", "--format",
                                      "jsonl")[0], 60, "the hour on the KPI topic")
    assert [r["numerator"] for r in rows] == [30]
    _, err = _cli_kpis(fed_worker)  # auto: the worker answers
    assert "read from the worker" in err


def test_readiness_form_of_health(fed_worker: WorkerProcess) -> None:
    doc = orjson.loads(fed_worker.get("/api/health?ready=1"))  # 200: restored, holding
    assert doc["status"] == "ok"
