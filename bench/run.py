"""Throughput of the pipeline against its ceiling and its floor, measured in one run.

    .venv/bin/python bench/run.py [--events 200000] [--single-events 40000]

Same broker, same simulated events, same machine, one after the other:

  (a) ceiling   bare aiokafka getmany + orjson decode of the batched messages
  (b) floor     a Faust agent that does nothing, on single-event messages
  (c) pipeline  kpi-streams worker, end to end, on single-event messages and on
                batched messages (arrays of up to 500 events per message)

The pipeline is timed from its first event to the moment the last input event
is accounted for (accepted, duplicate, late or rejected) *and* every page view
has reached the merged 1d total in stage 3 (the API). ``topic_seconds`` goes on
until no changed cell or view waits for its documents
(``kpi_streams_emission_backlog`` 0: the KPI topic has caught up, which takes
the end of a catch-up, 10 s without data, or 1 s once the finals are built and
the worker's other stages are idle, and the views' cadence).
Figures are ratios against (a) and
(b) from the same run, because these machines are shared and noisy. Results go
to bench/results/<timestamp>.json. Set KAFKA_BOOTSTRAP to use another cluster;
otherwise the local broker is started if needed. KPI_PROFILE=FILE makes the
pipeline worker write a cProfile of itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams import broker  # noqa: E402
from streams.kafka import client_kwargs, consumer, ensure_topics, producer  # noqa: E402
from streams.produce import BatchProducer  # noqa: E402
from streams.schemas import parse_rfc3339_ms  # noqa: E402
from streams.settings import load_settings  # noqa: E402
from streams.simulate import DAY, Options, generate  # noqa: E402
from streams.topics import Topics, TopicSpec  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


DENSITY = 1_000_000  # simulated sessions per day: a busy site, ~1,700 events a minute


def consumed_types() -> set[str]:
    """Event types some stage of the worker reads (the others are not accounted)."""
    from streams.app import build_pipeline

    s = load_settings({})
    topics = Topics(s)
    return {topics.event_type_of(t) or "" for r in build_pipeline(s).runners.values()
            for t in r.input_topics} - {""}


def simulated(n: int, seed: int) -> list[dict[str, Any]]:
    """n events of a dense simulated stream, of the types the worker consumes."""
    start = parse_rfc3339_ms("2026-10-06T08:40:00Z")  # a Tuesday: the newsletter goes at 9
    kinds = consumed_types()
    events: list[dict[str, Any]] = []
    t = start
    for batch in generate(t, t + 30 * DAY, Options(seed=seed, sessions_per_day=DENSITY,
                                                   email_list=5_000), chunk_ms=600_000):
        events += [e for e in batch if e["event_type"] in kinds]
        if len(events) >= n:
            break
    return events[:n]


async def produce(settings: Any, events: list[dict[str, Any]], batch_size: int) -> int:
    await ensure_topics(settings)
    p = producer(settings, linger_ms=20)
    await p.start()
    try:
        bp = BatchProducer(p, Topics(settings), settings.input_partitions, batch_size)
        for i in range(0, len(events), 20_000):
            await bp.send(events[i:i + 20_000])
        return bp.messages
    finally:
        await p.stop()


async def produce_floor(settings: Any, topic: str, events: list[dict[str, Any]]) -> None:
    await ensure_topics(settings, [TopicSpec(topic, settings.input_partitions)])
    p = producer(settings, linger_ms=20)
    await p.start()
    try:
        futures = [await p.send(topic, orjson.dumps(e)) for e in events]
        for f in futures:
            await f
    finally:
        await p.stop()


async def ceiling(settings: Any) -> dict[str, float]:
    """(a) getmany + orjson over every input partition, from the beginning."""
    topics = Topics(settings)
    c = consumer(settings, max_partition_fetch_bytes=8 * 1024 * 1024,
                 fetch_max_bytes=64 * 1024 * 1024)
    await c.start()
    try:
        tps = []
        for name in topics.inputs.values():
            for p in range(settings.input_partitions):
                tps.append(TopicPartition(name, p))
        c.assign(tps)
        ends = await c.end_offsets(tps)
        await c.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        events = 0
        started = time.perf_counter()
        while remaining:
            batch = await c.getmany(timeout_ms=500, max_records=100_000)
            for tp, msgs in batch.items():
                for m in msgs:
                    doc = orjson.loads(m.value)
                    events += len(doc) if isinstance(doc, list) else 1
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        seconds = time.perf_counter() - started
        return {"events": events, "seconds": seconds, "events_per_s": events / seconds}
    finally:
        await c.stop()


async def drop_namespace(settings: Any) -> int:
    """Delete a run's topics (every name under its namespace). The local broker keeps
    its data across restarts, and its start-up grows with its partitions: the topics
    of a few dozen runs (some 19,000 partitions, 40 GB) kept it from answering within
    ``broker start``'s 90 s. Returns how many were deleted."""
    prefix = f"{settings.namespace}."
    if prefix == ".":
        return 0  # no namespace: these are not a bench run's own topics
    admin = AIOKafkaAdminClient(**client_kwargs(settings), request_timeout_ms=30_000)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if ours:
            await admin.delete_topics(ours)
        return len(ours)
    finally:
        await admin.close()


def floor(settings: Any, topic: str, n: int) -> dict[str, float]:
    """(b) a Faust agent that does nothing."""
    group = f"{settings.namespace}-floor-agent"  # not the topic name: Faust then stalls
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "faust_floor.py"),
                             settings.bootstrap, group, topic, str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the agent prints one JSON line when it has seen n
            if '{"messages"' in line:  # Faust's terminal codes may precede it
                doc = orjson.loads(line[line.index("{"):])
                return {"events": doc["messages"], "seconds": doc["seconds"],
                        "events_per_s": doc["messages"] / doc["seconds"]}
        raise RuntimeError(f"the floor agent exited with {proc.wait()} before finishing")
    finally:
        proc.kill()  # Faust does not stop promptly from inside an agent; we are done
        proc.wait()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return bytes(resp.read())


TOPIC_WAIT_S = 120  # after the API has every page view: how long to wait for the topic
WEB_SCRAPE_EVERY = 10  # polls (0.5 s apart): the web /metrics is timed every ~5 s


def _progress(port: int) -> tuple[float, float]:
    """From a worker's metrics: the input events accounted for, and the emission
    backlog (cells and views whose documents are not built yet)."""
    accounted = backlog = 0.0
    for line in _get(f"http://127.0.0.1:{port}/metrics").decode().splitlines():
        if line.startswith("kpi_streams_events_total{"):
            accounted += float(line.rsplit(" ", 1)[1])
        elif line.startswith("kpi_streams_emission_backlog{"):
            backlog += float(line.rsplit(" ", 1)[1])
    return accounted, backlog


def _merged_pageviews(port: int) -> float:
    doc = orjson.loads(_get(f"http://127.0.0.1:{port}/api/kpis?kpi=pageviews&bucket=1d"
                            "&dim=total&limit=100000"))
    return sum(s["numerator"] for s in doc["snapshots"])


def _loop_lag(text: str, flush_s: float) -> dict[str, Any]:
    """From a worker's /metrics: how often its event loop was held longer than a flush
    interval, and the highest bucket any wake-up reached (streams.app.watch_loop)."""
    buckets: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("kpi_streams_event_loop_lag_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] = float(line.rsplit(" ", 1)[1])
    if not buckets:
        return {"samples": 0}
    bounds = sorted((float(le), n) for le, n in buckets.items())
    total = buckets["+Inf"]
    at_flush = max((n for b, n in bounds if b <= flush_s), default=0.0)
    worst = next((b for b, n in bounds if n >= total), None)
    return {"samples": int(total), "over_flush_interval": int(total - at_flush),
            "worst_bucket_s": worst}


def _overlaps(text: str, slack_s: float) -> dict[str, int]:
    """mode's "Timer X is overlapping" lines, by timer, whose runtime passed its
    interval by more than ``slack_s`` (the issue's bound: a flush interval)."""
    over: dict[str, int] = {}
    for m in re.finditer(r"Timer (\S+) is overlapping \(interval=([0-9.]+) "
                         r"runtime=([0-9.]+)\)", text):
        if float(m.group(3)) - float(m.group(2)) > slack_s:
            over[m.group(1)] = over.get(m.group(1), 0) + 1
    return over


def _quantiles_ms(seconds: list[float]) -> dict[str, Any]:
    """n, p50, p99 and max of sorted durations, in milliseconds."""
    if not seconds:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {"n": len(seconds), "p50": round(1000 * seconds[len(seconds) // 2], 1),
            "p99": round(1000 * seconds[int(0.99 * len(seconds))], 1),
            "max": round(1000 * seconds[-1], 1)}


class CpuMeter:
    """Cores used by the workers and the broker, and the machine's busy share, from
    /proc between two ``sample`` calls: whether a run was bound by the machine's
    cores or by each worker's interpreter (one core at most)."""

    def __init__(self, workers: list[int], broker_pid: int | None) -> None:
        self.pids = {"worker": workers, "broker": [broker_pid] if broker_pid else []}
        self.samples: list[dict[str, float]] = []
        self._last = self._read()

    @staticmethod
    def _ticks(pid: int) -> int:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0
        return int(fields[11]) + int(fields[12])  # utime + stime

    def _read(self) -> tuple[float, dict[str, int], int, int]:
        cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle, total = cpu[3] + cpu[4], sum(cpu)
        return (time.monotonic(), {k: sum(self._ticks(p) for p in pids)
                                   for k, pids in self.pids.items()}, idle, total)

    def reset(self) -> None:
        """Measure from now on."""
        self.samples.clear()
        self._last = self._read()

    def sample(self) -> None:
        now = self._read()
        (t0, used0, idle0, total0), (t1, used1, idle1, total1) = self._last, now
        self._last = now
        if t1 - t0 < 0.2:
            return
        hz = os.sysconf("SC_CLK_TCK")
        row = {f"{k}_cores": round((used1[k] - used0[k]) / hz / (t1 - t0), 2) for k in used1}
        row["machine_busy"] = round(1 - (idle1 - idle0) / max(total1 - total0, 1), 2)
        self.samples.append(row)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {}
        out: dict[str, Any] = {f"{k}_mean": round(sum(r[k] for r in self.samples)
                                                  / len(self.samples), 2)
                               for k in self.samples[0]}
        out["cores"] = os.cpu_count()
        out["worker_cores_timeline"] = [r["worker_cores"] for r in self.samples]
        return out


def pipeline(settings: Any, env: dict[str, str], n_events: int, n_pageviews: int,
             log: Path, workers: int = 1) -> dict[str, Any]:
    """(c) the worker(s), from the first event to the last, through stage 3."""
    import tempfile

    ports = [free_port() for _ in range(workers)]
    mports = [free_port() for _ in range(workers)]  # KPI_METRICS_PORT: the metrics process
    procs = []
    state = Path(tempfile.mkdtemp(prefix="kpi-bench-"))
    for i, port in enumerate(ports):
        wenv = {**os.environ, **env, "KPI_WEB_PORT": str(port), "KPI_LOG_LEVEL": "warning",
                "KPI_METRICS_PORT": str(mports[i]),
                "KPI_STATE_DIR": str(state / f"w{i}"), "KPI_WORKER_ID": f"bench-{i}"}
        path = log if workers == 1 else log.with_suffix(f".w{i}.log")
        with path.open("wb") as fh:
            procs.append(subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                          env=wenv, stdout=fh, stderr=subprocess.STDOUT,
                                          cwd=ROOT))
    try:
        first = last_in = api_done = topic_done = None
        deadline = time.monotonic() + 3600
        scrape: list[float] = []  # seconds per /metrics answer, under the run's load
        thread_scrape: list[float] = []  # the same from the metrics port (KPI_METRICS_PORT)
        polls = 0
        meter = CpuMeter([p.pid for p in procs], broker.recorded_pid(settings))
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"worker exited; see {log}")
            try:
                # progress from the metrics port, as Prometheus would read it; the
                # web server's /metrics (which evaluates every KPI gauge on the loop)
                # is timed at a scrape interval, not polled: polled twice a second it
                # cost the worker ~6 % of a backfill
                asked = time.perf_counter()
                progress = [_progress(mport) for mport in mports]
                accounted = sum(a for a, _ in progress)
                backlog = sum(b for _, b in progress)
                thread_done = time.perf_counter()
                web = first is not None and last_in is None and polls % WEB_SCRAPE_EVERY == 0
                for port in ports if web else ():
                    _get(f"http://127.0.0.1:{port}/metrics")
            except OSError:
                time.sleep(0.2)
                continue
            polls += 1
            now = time.perf_counter()
            if first is not None and last_in is None:
                thread_scrape.append((thread_done - asked) / len(ports))
                if web:
                    scrape.append((now - thread_done) / len(ports))
            if first is not None:
                meter.sample()  # each poll, from the first event to the last
            elif accounted > 0:
                first = now
                meter.reset()
            if last_in is None and accounted >= n_events:
                last_in = now
            if last_in is not None and api_done is None and \
                    sum(_merged_pageviews(port) for port in ports) >= n_pageviews:
                api_done = now
            if api_done is not None and (backlog == 0 or now - api_done > TOPIC_WAIT_S):
                topic_done = now if backlog == 0 else None
                break
            time.sleep(0.5)  # polling is not free for the worker: keep it sparse
        else:
            raise RuntimeError(f"pipeline did not finish; see {log}")
        assert first is not None and last_in is not None and api_done is not None
        if topic_done is None:
            print(f"the KPI topic did not catch up within {TOPIC_WAIT_S}s", file=sys.stderr)
        flush_s = load_settings({**os.environ, **env}).flush_interval_ms / 1000
        lag = [_loop_lag(_get(f"http://127.0.0.1:{m}/metrics").decode(), flush_s)
               for m in mports]
        scrape.sort()
        thread_scrape.sort()
        logs = [log] if workers == 1 else [log.with_suffix(f".w{i}.log")
                                           for i in range(workers)]
        text = "".join(p.read_text(errors="replace") for p in logs if p.exists())
        return {"events": n_events, "seconds": api_done - first,
                "events_per_s": n_events / (api_done - first),
                "stage1_seconds": last_in - first,
                # until no document is left to build: the KPI topic has caught up
                "topic_seconds": None if topic_done is None else topic_done - first,
                "topic_events_per_s": None if topic_done is None else
                n_events / (topic_done - first),
                "metrics_scrape_ms": _quantiles_ms(scrape),
                # (the metrics port's answers; a thread of the worker served it before
                # 2026-12-06's last release, a process of its own since)
                "metrics_thread_scrape_ms": _quantiles_ms(thread_scrape),
                "timer_overlaps_logged": text.count("is overlapping"),
                "timer_overlaps_beyond_flush_interval": _overlaps(text, flush_s),
                "event_loop_lag": lag if workers > 1 else lag[0],
                "cpu": meter.summary(),
                "producer_timeouts_logged": text.count("KafkaTimeoutError")}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        import shutil

        shutil.rmtree(state, ignore_errors=True)
        try:
            asyncio.run(drop_namespace(settings))
        except Exception as exc:  # the figures stand; the broker just keeps the topics
            print(f"could not delete the run's topics: {exc}", file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000,
                    help="events for the batched runs (default 200000)")
    ap.add_argument("--single-events", type=int, default=40_000,
                    help="events for the single-event runs (default 40000)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    base = load_settings()
    broker.start(base)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    ns_b, ns_s = f"bench{stamp}b", f"bench{stamp}s"
    env_common = {"KAFKA_BOOTSTRAP": base.bootstrap}
    sb = load_settings({**os.environ, **env_common, "KPI_NAMESPACE": ns_b})
    ss = load_settings({**os.environ, **env_common, "KPI_NAMESPACE": ns_s})

    print(f"simulating {args.events} events ...", file=sys.stderr)
    events = simulated(args.events, args.seed)
    single = events[:args.single_events]

    def distinct_pageviews(evs: list[dict[str, Any]]) -> int:
        return len({e["event_id"] for e in evs if e["event_type"] == "page_view"})

    print("producing ...", file=sys.stderr)
    msgs_b = asyncio.run(produce(sb, events, 500))
    msgs_s = asyncio.run(produce(ss, single, 1))
    floor_topic = f"{ns_s}.floor"
    asyncio.run(produce_floor(ss, floor_topic, single))

    results: dict[str, Any] = {}
    print("(a) ceiling ...", file=sys.stderr)
    results["a_ceiling"] = asyncio.run(ceiling(sb))
    print("(b) Faust floor ...", file=sys.stderr)
    results["b_faust_floor"] = floor(ss, floor_topic, len(single))
    logs = ROOT / "bench" / "results"
    logs.mkdir(parents=True, exist_ok=True)
    print("(c) pipeline, batched messages ...", file=sys.stderr)
    results["c_pipeline_batched"] = pipeline(sb, {**env_common, "KPI_NAMESPACE": ns_b},
                                             len(events), distinct_pageviews(events),
                                             logs / f"{stamp}-batched.log")
    print("(c) pipeline, single-event messages ...", file=sys.stderr)
    results["c_pipeline_single"] = pipeline(ss, {**env_common, "KPI_NAMESPACE": ns_s},
                                            len(single), distinct_pageviews(single),
                                            logs / f"{stamp}-single.log")
    a = results["a_ceiling"]["events_per_s"]
    b = results["b_faust_floor"]["events_per_s"]
    cb = results["c_pipeline_batched"]["events_per_s"]
    cs = results["c_pipeline_single"]["events_per_s"]
    results["ratios"] = {"c_batched/a": cb / a, "c_batched/b": cb / b,
                         "c_single/a": cs / a, "c_single/b": cs / b}
    results["meta"] = {"timestamp": stamp, "density_sessions_per_day": DENSITY,
                       "event_time_span_minutes": round(
                           (parse_rfc3339_ms(events[-1]["occurred_at"])
                            - parse_rfc3339_ms(events[0]["occurred_at"])) / 60_000),
                       "events": len(events), "single_events": len(single),
                       "messages_batched": msgs_b, "messages_single": msgs_s,
                       "python": platform.python_version(), "cpus": os.cpu_count(),
                       "partitions": sb.input_partitions, "bootstrap": sb.bootstrap}
    out = args.out or logs / f"{stamp}.json"
    out.write_text(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")

    print(f"\n{'run':34} {'events':>9} {'seconds':>8} {'events/s':>10}")
    for name in ("a_ceiling", "b_faust_floor", "c_pipeline_batched", "c_pipeline_single"):
        r = results[name]
        print(f"{name:34} {r['events']:>9.0f} {r['seconds']:>8.2f} {r['events_per_s']:>10,.0f}")
    for name, ratio in results["ratios"].items():
        print(f"{name:34} {ratio:>8.3f}")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
