"""The ``kpi-streams`` command.

Every option that has a setting shows its environment variable and default in
``--help``; the environment is read once, into :class:`streams.settings.Settings`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from . import broker, statecodec
from .channels import ConfigError
from .kpis.buckets import ALL_WINDOWS
from .settings import SPECS, Settings, SettingsError, load_settings
from .simulate.model import INCIDENTS
from .up import DEMO_RATE

DIM_FILTERS = ("channel", "device", "campaign", "page_type", "goal", "traffic_type")

EPILOG = """\
environment:
  Settings come from environment variables; `kpi-streams settings` lists them all
  with their current values (secrets masked). The most used:
    KAFKA_BOOTSTRAP   use an existing cluster (nothing is started locally)
    KPI_NAMESPACE     prefix for every topic and the consumer group
    KPI_WEB_HOST/PORT where the worker serves the wall, API and /metrics

examples:
  kpi-streams broker start                      # local Kafka on 127.0.0.1:9092
  kpi-streams worker                            # process events (run several to scale)
  kpi-streams simulate --rate 200               # live simulated traffic
  kpi-streams simulate --from 2026-11-01 --to 2026-11-08 --out week.jsonl
  kpi-streams ingest week.jsonl                 # replay a file at full speed
  kpi-streams kpis --kpi cpl --bucket 1d --final
"""


def _env_help(env: str, text: str) -> str:
    spec = next((s for s in SPECS if s.env == env), None)
    default = spec.default if spec else ""
    return f"{text} [env {env}, default {default or 'empty'}]"


def _settings(args: argparse.Namespace) -> Settings:
    env = dict(os.environ)
    for attr, envname in (("namespace", "KPI_NAMESPACE"), ("bootstrap", "KAFKA_BOOTSTRAP")):
        value = getattr(args, attr, None)
        if value is not None:
            env[envname] = value
    return load_settings(env)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _parse_time(text: str) -> int:
    from .schemas import parse_rfc3339_ms

    if len(text) == 10:
        text += "T00:00:00Z"
    try:
        return parse_rfc3339_ms(text)
    except ValueError:
        raise SystemExit(f"not a date or RFC 3339 time: {text!r} "
                         "(use 2026-11-01 or 2026-11-01T06:00:00Z)") from None


# -- broker -------------------------------------------------------------------------
def _progress(line: str) -> None:
    """Progress of long work (fetching Kafka, starting the broker), on stderr."""
    print(line, file=sys.stderr, flush=True)


def cmd_broker(args: argparse.Namespace) -> int:
    s = _settings(args)
    try:
        if args.action == "start":
            broker.start(s, say=_progress)
            created = asyncio.run(_ensure_topics(s))
            print(f"Kafka ready on {s.bootstrap}; {len(created)} topics created")
        elif args.action == "stop":
            stopped = broker.stop(s)
            print("broker stopped" if stopped else "no broker started from "
                  f"{broker.paths(s).root} is running")
        elif args.action == "status":
            st = broker.status(s)
            for k, v in st.items():
                print(f"{k:10} {v}")
            return 0 if st.get("running", st.get("reachable")) else 1
        elif args.action == "logs":
            log_path = broker.paths(s).log
            if args.follow:
                return subprocess.call(["tail", "-n", str(args.lines), "-F", str(log_path)])
            print(broker.tail(log_path, args.lines))
    except broker.BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _ensure_topics(s: Settings) -> list[str]:
    from .kafka import ensure_topics

    return await ensure_topics(s)


def cmd_topics(args: argparse.Namespace) -> int:
    s = _settings(args)
    from .topics import Topics

    created = asyncio.run(_ensure_topics(s))
    for spec in Topics(s).specs():
        mark = "created" if spec.name in created else "exists"
        policy = "compact" if spec.compacted else "delete"
        print(f"{mark:8} {spec.name:45} partitions={spec.partitions} {policy}")
    return 0


# -- worker -------------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace) -> int:
    s = _settings(args)
    if args.web_port is not None:
        s = s.replace(web_port=args.web_port)
    _setup_logging(s.log_level)
    from .worker import run

    return run(s)


# -- collector ----------------------------------------------------------------------
def cmd_collect(args: argparse.Namespace) -> int:
    s = _settings(args)
    if args.port is not None:
        s = s.replace(collect_port=args.port)
    if args.host is not None:
        s = s.replace(collect_host=args.host)
    _setup_logging(s.log_level)
    from .collect.server import CollectConfig, serve

    CollectConfig.from_settings(s)  # a bad token entry stops here, named
    if not s.collect_tokens:
        logging.getLogger("kpi_streams.collect").warning(
            "KPI_COLLECT_TOKENS is empty: /collect refuses everything (401); signed "
            "webhooks still work where their keys are set")
    asyncio.run(_ensure_topics(s))
    stop = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(s, stop)

    asyncio.run(run())
    return 0


def cmd_import_costs(args: argparse.Namespace) -> int:
    from .channels import ChannelRules
    from .collect.costs import CostTableError, rows_to_events
    from .operations import send_costs

    s = _settings(args)
    path = Path(args.file)
    if not path.exists():
        raise SystemExit(f"no such file: {path}")
    try:
        events = rows_to_events(path.read_text(encoding="utf-8-sig"),
                                now_ms=time.time_ns() // 1_000_000,
                                currency=s.reporting_currency, tz=s.timezone,
                                rules=ChannelRules.load(s.channel_rules_file))
    except CostTableError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        for ev in events:
            print(orjson.dumps(ev).decode())
        print(f"{len(events)} rows; nothing sent (--dry-run)", file=sys.stderr)
        return 0
    asyncio.run(send_costs(s, events, _progress))
    return 0


# -- erasure ------------------------------------------------------------------------
def cmd_erase(args: argparse.Namespace) -> int:
    from .operations import erase

    if not args.visitor and not args.contact:
        raise SystemExit("name at least one --visitor or --contact to erase")
    s = _settings(args)
    return asyncio.run(erase(s, args.visitor or [], args.contact or [],
                             wait=not args.no_wait, timeout_s=args.timeout, say=_progress))


# -- simulate / ingest / validate ---------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import HOUR, Options, generate

    opts = Options(seed=args.seed, sessions_per_day=args.sessions_per_day,
                   duplicate_rate=args.duplicates, bad_rate=args.bad_rate,
                   incident=args.incident)
    if args.rate is None and (args.start is None or args.end is None):
        raise SystemExit("give --rate EVENTS_PER_S for live traffic, or --from and --to for "
                         "a historical span")
    if args.rate is not None and args.start is not None:
        raise SystemExit("--rate (live) and --from/--to (historical) exclude each other")
    if args.rate is not None:
        return asyncio.run(_simulate_live(args, opts))
    start, end = _parse_time(args.start), _parse_time(args.end)
    if end <= start:
        raise SystemExit("--to must be after --from")
    if args.incident:
        opts.incident_start = _parse_time(args.incident_at) if args.incident_at else \
            start + (end - start) // 2
        opts.incident_duration_ms = args.incident_minutes * 60_000
    if args.out:
        out = Path(args.out)
        n = 0
        from .produce import Progress

        progress = Progress(f"simulate -> {out}")
        with out.open("wb") as fh:
            for batch in generate(start, end, opts, chunk_ms=HOUR):
                for ev in batch:
                    fh.write(orjson.dumps(ev) + b"\n")
                n += len(batch)
                progress.update(n)
        progress.finish()
        print(f"wrote {n} events to {out}", file=sys.stderr)
        return 0
    return asyncio.run(_simulate_to_kafka(args, opts, start, end))


async def _simulate_to_kafka(args: argparse.Namespace, opts: Any, start: int, end: int) -> int:
    from .produce import Progress, produce
    from .simulate import HOUR, generate

    bp = await produce(_settings(args), generate(start, end, opts, chunk_ms=HOUR),
                       Progress("simulate -> kafka"), args.batch_size)
    _print_counts(bp.sent)
    return 0


async def _simulate_live(args: argparse.Namespace, opts: Any) -> int:
    from .produce import producing
    from .simulate.live import LiveTraffic, run_live

    s = _settings(args)
    now = time.time_ns() // 1_000_000
    if args.incident:
        opts.incident_start = now + args.incident_after * 1000
        opts.incident_duration_ms = args.incident_minutes * 60_000
    traffic = LiveTraffic(args.rate, opts, now, args.warmup_hours,
                          args.warmup_sessions_per_day)
    if args.out:
        with Path(args.out).open("ab") as out:  # noqa: ASYNC230 (a local file, line-sized writes)

            async def to_file(batch: list[dict[str, Any]], history: bool) -> None:
                out.write(b"".join(orjson.dumps(ev) + b"\n" for ev in batch))
                out.flush()

            return await run_live(traffic, to_file, _progress, args.duration)
    async with producing(s, args.batch_size) as bp:

        async def to_kafka(batch: list[dict[str, Any]], history: bool) -> None:
            await bp.send(batch, stamped=history)

        return await run_live(traffic, to_kafka, _progress, args.duration)


def _read_jsonl(path: Path) -> tuple[list[Any], list[tuple[int, str]]]:
    events: list[Any] = []
    bad: list[tuple[int, str]] = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                bad.append((lineno, str(exc)))
    return events, bad


def cmd_ingest(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.exists():
        raise SystemExit(f"no such file: {path}")
    events, bad = _read_jsonl(path)
    for lineno, err in bad:
        print(f"{path}:{lineno}: not JSON ({err}); skipped — run `kpi-streams validate`",
              file=sys.stderr)
    return asyncio.run(_ingest(args, events))


async def _ingest(args: argparse.Namespace, events: list[Any]) -> int:
    from .produce import Progress, produce

    step = 20_000
    bp = await produce(_settings(args), (events[i:i + step] for i in range(0, len(events), step)),
                       Progress(f"ingest {args.file}", total=len(events)), args.batch_size)
    _print_counts(bp.sent)
    print(f"{bp.messages} messages", file=sys.stderr)
    return 0


def _print_counts(sent: Any) -> None:
    width = max((len(t) for t in sent), default=10)
    for topic, n in sorted(sent.items()):
        print(f"{topic:{width}}  {n:>9} events")
    print(f"{'total':{width}}  {sum(sent.values()):>9} events")


def cmd_validate(args: argparse.Namespace) -> int:
    from .events import Decoder

    s = _settings(args)
    decoder = Decoder.from_settings(s)
    path = Path(args.file)
    if not path.exists():
        raise SystemExit(f"no such file: {path}")
    good = bad = 0
    now = time.time_ns() // 1_000_000
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            raw = line.strip()
            if not raw:
                continue
            records, rejects = decoder.decode(raw, None, now)
            good += len(records)
            for rej in rejects:
                bad += 1
                where = f"[{rej.batch_index}] " if rej.batch_index is not None else ""
                field = f" {rej.field}:" if rej.field else ""
                print(f"{path}:{lineno}: {where}{rej.reason}{field} {rej.detail}")
    print(f"{good} valid, {bad} invalid", file=sys.stderr)
    return 1 if bad else 0


# -- score --------------------------------------------------------------------------
def cmd_score(args: argparse.Namespace) -> int:
    from .events import iso_ms
    from .kafka import consumer
    from .kpis.funnel import FunnelConfig, FunnelPartition
    from .kpis.scoring import scoring_from_settings
    from .kpis.visitors import CONTACT_PREFIX, hot_name
    from .produce import partition_for
    from .statestore import ColdView, MemoryStore
    from .store import restore
    from .topics import Topics

    s = _settings(args)
    cfg = scoring_from_settings(s)  # a bad rules file is reported before anything else
    at = _parse_time(args.at) if args.at else time.time_ns() // 1_000_000
    partition = partition_for(args.contact_id, s.input_partitions)
    topic = Topics(s).state("funnel")
    local = MemoryStore()  # read-only look: the worker's own store is not touched
    asyncio.run(restore(lambda: consumer(s), topic, partition, local=local))
    # a quiet contact is a cold record of the same store, read in place
    proc = FunnelPartition(FunnelConfig(scoring=cfg), ColdView(local, CONTACT_PREFIX))
    name = hot_name(args.contact_id)
    value = local.get(name.encode())
    if value is not None:
        proc.load(name, statecodec.decode(value))
    doc = proc.contact_score(args.contact_id, at)
    st = proc.contact(args.contact_id)
    if doc is None or st is None or not st.get("s"):
        print(f"contact {args.contact_id}: no scored activity in {topic} "
              f"(partition {partition})", file=sys.stderr)
        return 1
    if args.format == "json":
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return 0
    status = (f"MQL since {doc['qualified_at']}" if doc["qualified_at"]
              else f"not an MQL (threshold {doc['threshold']:g})")
    print(f"contact {doc['contact_id']}: score {doc['score']:.1f}, grade {doc['grade']}, "
          f"{status}")
    print(f"known since {doc['known_since'] or '—'}; scored at {iso_ms(at)}")
    print(f"{'rule':<28} {'times':>5} {'points now':>10}")
    for r in doc["rules"]:
        print(f"{r['rule']:<28} {r['times']:>5} {r['points']:>10.1f}")
    return 0


# -- kpis ---------------------------------------------------------------------------
def cmd_kpis(args: argparse.Namespace) -> int:
    from .readback import latest_from_api, latest_snapshots
    from .schemas import parse_rfc3339_ms

    s = _settings(args)
    docs = None
    if args.source in ("auto", "api"):
        query: dict[str, Any] = {}
        if args.kpi:
            query["kpi"] = ",".join(args.kpi)
        if args.bucket:
            query["bucket"] = args.bucket
        for name in DIM_FILTERS:
            if getattr(args, name):
                query[name] = getattr(args, name)
        if args.total:
            query["dim"] = "total"
        if args.final:
            query["final"] = "true"
        if args.compare:
            query["compare"] = args.compare
        docs = latest_from_api(s, query)
        if docs is None and args.source == "api":
            print(f"no worker API with every KPI partition at {s.web_host}:{s.web_port}",
                  file=sys.stderr)
            return 1
    if docs is None:
        docs = list(asyncio.run(latest_snapshots(s, limit_s=args.timeout)).values())
        where = "the KPI topic"
        if args.compare:
            from .kpis import buckets as B
            from .readback import compare_within

            B.use(s.timezone, s.week_start)
            compare_within(docs, args.compare)
    else:
        where = f"the worker at {s.web_host}:{s.web_port}"
    if args.format == "table":
        print(f"(read from {where})", file=sys.stderr)
    rows = []
    for doc in docs:
        if args.kpi and doc["kpi"] not in args.kpi:
            continue
        if args.bucket and doc["bucket"] != args.bucket:
            continue
        if any(getattr(args, n) and doc["dims"].get(n) != getattr(args, n)
               for n in DIM_FILTERS):
            continue
        if args.total and doc["dims"]:
            continue
        if args.final and not doc["final"]:
            continue
        rows.append(doc)
    # by instant, not by text: with a DST zone 02:00+02:00 comes before 02:00+01:00
    rows.sort(key=lambda d: (d["kpi"], d["bucket"], parse_rfc3339_ms(d["window_start"]),
                             sorted(d["dims"].items())))
    if args.last:
        rows = rows[-args.last:]
    from .outputs import table

    if args.format == "jsonl":
        sys.stdout.write(table.jsonl(rows))
        return 0
    if args.format == "csv":
        sys.stdout.write(table.csv_text(rows))
        return 0
    if not rows:
        print("no snapshots match (is a worker running? try without filters)",
              file=sys.stderr)
        return 1
    zones = sorted({d.get("tz", "UTC") for d in rows})
    buckets = sorted({d["bucket"] for d in rows}, key=list(ALL_WINDOWS).index)
    print(f"KPIs · {', '.join(buckets)} · {', '.join(zones)} · {len(rows):,} rows")
    print(table.table(rows, s.reporting_currency))
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    s = _settings(args)
    rows = s.describe()
    width = max(len(r[0]) for r in rows)
    for env, value, help_text in rows:
        print(f"{env:{width}}  {value!s:24}  {help_text}")
    return 0


# -- up: the main job -----------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    from .up import Demo, run

    demo = Demo(args.rate, args.warmup_hours, args.seed, args.incident, args.incident_after)
    return run(_settings(args), demo, show=_show, say=_progress)


def _show(text: str) -> None:
    print(text, flush=True)


# -- parser -------------------------------------------------------------------------


def _world_options(p: argparse.ArgumentParser) -> None:
    """What `up` and `simulate` both take about the simulated world, declared once."""
    p.add_argument("--seed", type=int, default=1,
                   help="random seed of the simulated world (default 1)")
    p.add_argument("--incident", choices=INCIDENTS,
                   help="inject an anomaly to see the alerts fire: live, after "
                   "--incident-after seconds; in a historical span (simulate --from/--to), "
                   "in its middle or at --incident-at")
    p.add_argument("--incident-after", type=int, default=300,
                   help="live: seconds until the incident starts (default 300)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kpi-streams", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Near-real-time marketing and sales KPIs from Kafka event streams.",
        epilog=EPILOG)
    parser.add_argument("--namespace", help=_env_help(
        "KPI_NAMESPACE", "prefix for every topic name and the consumer group"))
    parser.add_argument("--bootstrap", help=_env_help(
        "KAFKA_BOOTSTRAP", "Kafka bootstrap servers; unset: the local broker"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, fn: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(fn=fn)
        return p

    p = add("up", "Start the local broker, a worker and live simulated traffic (the demo).",
            cmd_up)
    p.add_argument("--rate", type=float, default=DEMO_RATE, help="simulated events per "
                   f"second (default {DEMO_RATE:g})")
    p.add_argument("--warmup-hours", type=float, default=2.0,
                   help="simulate this much history first (default 2)")
    _world_options(p)

    p = add("broker", "Run the local single-node Kafka (KRaft) on 127.0.0.1.", cmd_broker)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, text: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=text, description=text)

    action("start", "Fetch Apache Kafka from Maven Central (first time only, into "
           "KPI_HOME), start one KRaft broker on 127.0.0.1:KPI_BROKER_PORT with its data "
           "under KPI_HOME, wait until it answers, and create every topic.")
    action("stop", "Stop the broker that `broker start` started (its data stays).")
    action("status", "Whether the local broker runs and answers, its pid, port and data "
           "directory; exits 1 when it is not running.")
    logs = action("logs", "Show the end of the local broker's log.")
    logs.add_argument("-n", "--lines", type=int, default=40,
                      help="how many lines (default 40)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep following the log as it grows (Ctrl-C to stop)")

    add("topics", "Create every topic (input, dead-letter, state, KPI) that is missing.",
        cmd_topics)

    p = add("worker", "Run a worker. Start several to share the partitions.", cmd_worker)
    p.add_argument("--web-port", type=int, help=_env_help("KPI_WEB_PORT", "web server port"))

    p = add("simulate", "Generate simulated traffic: live (--rate) or a historical span "
            "(--from/--to), to Kafka or to a JSONL file.", cmd_simulate)
    _world_options(p)
    p.add_argument("--rate", type=float, help="live mode: about this many events per second "
                   f"(`up` uses {DEMO_RATE:g})")
    p.add_argument("--from", dest="start", help="historical mode: first day or time "
                   "(2026-11-01 or RFC 3339)")
    p.add_argument("--to", dest="end", help="historical mode: end (exclusive)")
    p.add_argument("--out", help="write JSONL to this file instead of Kafka")
    p.add_argument("--incident-at", help="historical: when the incident starts (default: "
                   "the middle of the span)")
    p.add_argument("--incident-minutes", type=int, default=120,
                   help="how long the incident lasts (default 120)")
    p.add_argument("--sessions-per-day", type=float, default=4000.0,
                   help="historical: traffic volume (default 4000 sessions/day)")
    p.add_argument("--duplicates", type=float, default=0.004,
                   help="share of events a tracker sends twice (default 0.004)")
    p.add_argument("--bad-rate", type=float, default=0.0,
                   help="share of events corrupted on purpose, to exercise the DLQ "
                   "(default 0)")
    p.add_argument("--warmup-hours", type=float, default=0.0,
                   help="live: simulate this much history before going live")
    p.add_argument("--warmup-sessions-per-day", type=float, default=0.0,
                   help="live: traffic volume of the warm-up history (default: as live)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="live: stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--batch-size", type=int, default=500,
                   help="events per Kafka message (JSON array); 1 sends single events")

    p = add("ingest", "Produce a JSONL file's events to their topics, batched and keyed.",
            cmd_ingest)
    p.add_argument("file", help="one event per line, in the catalogue's format (e.g. from "
                   "`kpi-streams simulate --out`)")
    p.add_argument("--batch-size", type=int, default=500,
                   help="events per Kafka message (JSON array); 1 sends single events")

    p = add("validate", "Check a JSONL file against the event contracts; exits 1 if any line "
            "is bad, naming the line, field and reason.", cmd_validate)
    p.add_argument("file", help="the JSONL file to check (nothing is sent)")

    p = add("kpis", "Print the latest snapshot per KPI key: from a running worker's API "
            "when one answers and holds every KPI partition (current values, fast), else "
            "from the KPI topic.", cmd_kpis)
    p.add_argument("--source", choices=["auto", "api", "topic"], default="auto",
                   help="where to read: auto (the API, else the topic; default), api, topic")
    p.add_argument("--kpi", action="append", help="only this KPI (repeatable)")
    p.add_argument("--bucket", choices=list(ALL_WINDOWS),
                   help="only this bucket, calendar period (1w, 1mo, 1q: local time in "
                   "KPI_TIMEZONE) or rolling view (1m is served by the API only unless "
                   "KPI_PUBLISH_WINDOWS has it)")
    p.add_argument("--channel", help="only this channel (e.g. paid_search)")
    p.add_argument("--device", help="only this device: desktop, mobile, tablet, unknown")
    p.add_argument("--campaign", help="only this campaign (utm_campaign, e-mail campaign)")
    p.add_argument("--page-type", dest="page_type",
                   help="only this landing page type (session and visitor conversion rates)")
    p.add_argument("--goal", help="only this form goal (conversions)")
    p.add_argument("--traffic-type", dest="traffic_type", choices=["bot", "internal"],
                   help="only the filtered-out traffic of this type (pageviews, sessions, "
                   "users)")
    p.add_argument("--total", action="store_true", help="only the totals (no dims)")
    p.add_argument("--final", action="store_true", help="only final snapshots")
    p.add_argument("--last", type=int, help="only the last N rows")
    p.add_argument("--compare", choices=["previous", "year"],
                   help="add the value of the period before (previous) or a year earlier "
                   "(year: 364 days, weekday-aligned; months and quarters a year earlier) "
                   "and the change: percentage points for rates, else relative; — where "
                   "the data does not cover that period")
    p.add_argument("--format", choices=["table", "csv", "jsonl"], default="table",
                   help="table: for people (percentages, currency, thousands, — for "
                   "null); csv: plain numbers for spreadsheets; jsonl: the snapshots as "
                   "published (default table)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the topic (default 30)")

    p = add("score", "Print a contact's current lead score, grade and the rules behind it.",
            cmd_score)
    p.add_argument("contact_id", help="the contact (as on form submits and deal updates)")
    p.add_argument("--at", help="score at this time (RFC 3339 or YYYY-MM-DD; default now)")
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="table for people, json for scripts (default table)")

    p = add("collect", "Run the HTTP collector: POST /collect (events in the catalogue's "
            "format, with a source token), /hooks/<sendgrid|mailchimp|hubspot|costs>, the "
            "tracker at /t.js, /health, /metrics. A process of its own: run as many as "
            "the traffic needs.", cmd_collect)
    p.add_argument("--host", help=_env_help("KPI_COLLECT_HOST", "address to bind"))
    p.add_argument("--port", type=int, help=_env_help("KPI_COLLECT_PORT", "port"))

    p = add("import-costs", "Send a cost table (CSV in GA4's cost-import columns: date, "
            "source, medium, campaign, cost, clicks, impressions, currency[, category]) "
            "as spend. A row uploaded again replaces the earlier one (restated), it does "
            "not add to it.", cmd_import_costs)
    p.add_argument("file", help="the CSV file (a header line, then one row per day and "
                   "campaign; date in the reporting time zone, YYYY-MM-DD)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the table and print the spend events; send nothing")

    p = add("erase", "Erase a person's state: a visitor's sessions, touches and score, a "
            "contact's funnel state and the visitors whose forms named them, from every "
            "stage and its changelog (tombstones). Aggregated KPIs stay: they hold no "
            "personal data. Each request and each stage partition that carried it out "
            "is recorded on the audit topic (KPI_TOPIC_ERASURES).", cmd_erase)
    p.add_argument("--visitor", action="append", metavar="ID",
                   help="a visitor id (repeatable)")
    p.add_argument("--contact", action="append", metavar="ID",
                   help="a contact id (repeatable)")
    p.add_argument("--no-wait", action="store_true",
                   help="send the requests and return; do not wait for the workers")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for every stage partition to confirm "
                   "(default 120); exit 1 if one has not")

    add("settings", "List every setting: environment variable, current value, meaning.",
        cmd_settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (SettingsError, ConfigError) as exc:  # bad settings or configuration files
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # output piped into head or less that quit early: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
