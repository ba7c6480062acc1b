"""Reading: the KPIs, a contact's lead score, the settings."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson

from .. import statecodec
from ..kpis.buckets import ALL_WINDOWS
from ..kpis.query import DIM_PARAMS, SnapshotQuery, sort_key
from .common import Add, parse_time, settings_of


def query_of(args: argparse.Namespace) -> SnapshotQuery:
    """The command's filters as the API's query: several dims show each of them."""
    dims = {f"{name}={getattr(args, name)}" for name in DIM_PARAMS if getattr(args, name)}
    if args.total:
        dims.add("")
    return SnapshotQuery(kpis=frozenset(args.kpi) if args.kpi else None,
                         windows=frozenset({args.bucket}) if args.bucket else None,
                         dims=frozenset(dims) if dims else None,
                         final=True if args.final else None, compare=args.compare)


def cmd_kpis(args: argparse.Namespace) -> int:
    from ..readback import latest_from_api, latest_snapshots

    s = settings_of(args)
    query = query_of(args)
    docs = None
    if args.source in ("auto", "api"):
        docs = latest_from_api(s, query.params())
        if docs is None and args.source == "api":
            print(f"no worker API with every KPI partition at {s.web_host}:{s.web_port}",
                  file=sys.stderr)
            return 1
    if docs is None:
        docs = list(asyncio.run(latest_snapshots(s, limit_s=args.timeout)).values())
        where = "the KPI topic"
        if args.compare:
            from ..kpis import buckets as B
            from ..readback import compare_within

            B.use(s.timezone, s.week_start)
            compare_within(docs, args.compare)
    else:
        where = f"the worker at {s.web_host}:{s.web_port}"
    if args.format == "table":
        print(f"(read from {where})", file=sys.stderr)
    # the API's own filter, so the topic and the API answer alike
    rows = sorted(query.select(docs), key=sort_key)
    if args.last:
        rows = rows[-args.last:]
    from ..outputs import table

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


def cmd_score(args: argparse.Namespace) -> int:
    from ..events import iso_ms
    from ..kafka import consumer
    from ..kpis.funnel import FunnelConfig, FunnelPartition
    from ..kpis.scoring import scoring_from_settings
    from ..kpis.visitors import CONTACT_PREFIX, hot_name
    from ..produce import partition_for
    from ..statestore import ColdView, MemoryStore
    from ..store import restore
    from ..topics import Topics

    s = settings_of(args)
    cfg = scoring_from_settings(s)  # a bad rules file is reported before anything else
    at = parse_time(args.at) if args.at else time.time_ns() // 1_000_000
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


def cmd_settings(args: argparse.Namespace) -> int:
    s = settings_of(args)
    rows = s.describe()
    width = max(len(r[0]) for r in rows)
    for env, value, help_text in rows:
        print(f"{env:{width}}  {value!s:24}  {help_text}")
    return 0


def add_kpis(add: Add) -> None:
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


def add_score(add: Add) -> None:
    p = add("score", "Print a contact's current lead score, grade and the rules behind it.",
            cmd_score)
    p.add_argument("contact_id", help="the contact (as on form submits and deal updates)")
    p.add_argument("--at", help="score at this time (RFC 3339 or YYYY-MM-DD; default now)")
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="table for people, json for scripts (default table)")


def add_settings(add: Add) -> None:
    add("settings", "List every setting: environment variable, current value, meaning.",
        cmd_settings)
