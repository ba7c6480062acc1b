"""Data in: simulated traffic, a JSONL file replayed or checked, a cost table."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from ..simulate.model import INCIDENTS
from ..up import DEMO_RATE
from .common import Add, parse_time, print_counts, progress, settings_of


def world_options(p: argparse.ArgumentParser) -> None:
    """What `up` and `simulate` both take about the simulated world, declared once."""
    p.add_argument("--seed", type=int, default=1,
                   help="random seed of the simulated world (default 1)")
    p.add_argument("--incident", choices=INCIDENTS,
                   help="inject an anomaly to see the alerts fire: live, after "
                   "--incident-after seconds; in a historical span (simulate --from/--to), "
                   "in its middle or at --incident-at")
    p.add_argument("--incident-after", type=int, default=300,
                   help="live: seconds until the incident starts (default 300)")


def batch_size_option(p: argparse.ArgumentParser) -> None:
    """What `simulate` and `ingest` both take about producing, declared once."""
    p.add_argument("--batch-size", type=int, default=500,
                   help="events per Kafka message (JSON array); 1 sends single events")


def cmd_simulate(args: argparse.Namespace) -> int:
    from ..simulate import HOUR, Options, generate

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
    start, end = parse_time(args.start), parse_time(args.end)
    if end <= start:
        raise SystemExit("--to must be after --from")
    if args.incident:
        opts.incident_start = parse_time(args.incident_at) if args.incident_at else \
            start + (end - start) // 2
        opts.incident_duration_ms = args.incident_minutes * 60_000
    if args.out:
        return _simulate_to_file(Path(args.out), generate(start, end, opts, chunk_ms=HOUR))
    return asyncio.run(_simulate_to_kafka(args, opts, start, end))


def _simulate_to_file(out: Path, batches: Iterable[list[dict[str, Any]]]) -> int:
    from ..produce import Progress

    n = 0
    bar = Progress(f"simulate -> {out}")
    with out.open("wb") as fh:
        for batch in batches:
            for ev in batch:
                fh.write(orjson.dumps(ev) + b"\n")
            n += len(batch)
            bar.update(n)
    bar.finish()
    print(f"wrote {n} events to {out}", file=sys.stderr)
    return 0


async def _simulate_to_kafka(args: argparse.Namespace, opts: Any, start: int, end: int) -> int:
    from ..produce import Progress, produce
    from ..simulate import HOUR, generate

    bp = await produce(settings_of(args), generate(start, end, opts, chunk_ms=HOUR),
                       Progress("simulate -> kafka"), args.batch_size)
    print_counts(bp.sent)
    return 0


async def _simulate_live(args: argparse.Namespace, opts: Any) -> int:
    from ..produce import producing
    from ..simulate.live import LiveTraffic, run_live

    s = settings_of(args)
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

            return await run_live(traffic, to_file, progress, args.duration)
    async with producing(s, args.batch_size) as bp:

        async def to_kafka(batch: list[dict[str, Any]], history: bool) -> None:
            await bp.send(batch, stamped=history)

        return await run_live(traffic, to_kafka, progress, args.duration)


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
    from ..produce import Progress, produce

    step = 20_000
    chunks = (events[i:i + step] for i in range(0, len(events), step))
    bp = await produce(settings_of(args), chunks,
                       Progress(f"ingest {args.file}", total=len(events)), args.batch_size)
    print_counts(bp.sent)
    print(f"{bp.messages} messages", file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from ..events import Decoder

    s = settings_of(args)
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


def cmd_import_costs(args: argparse.Namespace) -> int:
    from ..channels import ChannelRules
    from ..collect.costs import CostTableError, rows_to_events
    from ..operations import send_costs

    s = settings_of(args)
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
    asyncio.run(send_costs(s, events, progress))
    return 0


def add_simulate(add: Add) -> None:
    p = add("simulate", "Generate simulated traffic: live (--rate) or a historical span "
            "(--from/--to), to Kafka or to a JSONL file.", cmd_simulate)
    world_options(p)
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
    batch_size_option(p)


def add_ingest(add: Add) -> None:
    p = add("ingest", "Produce a JSONL file's events to their topics, batched and keyed.",
            cmd_ingest)
    p.add_argument("file", help="one event per line, in the catalogue's format (e.g. from "
                   "`kpi-streams simulate --out`)")
    batch_size_option(p)


def add_validate(add: Add) -> None:
    p = add("validate", "Check a JSONL file against the event contracts; exits 1 if any line "
            "is bad, naming the line, field and reason.", cmd_validate)
    p.add_argument("file", help="the JSONL file to check (nothing is sent)")


def add_import_costs(add: Add) -> None:
    p = add("import-costs", "Send a cost table (CSV in GA4's cost-import columns: date, "
            "source, medium, campaign, cost, clicks, impressions, currency[, category]) "
            "as spend. A row uploaded again replaces the earlier one (restated), it does "
            "not add to it.", cmd_import_costs)
    p.add_argument("file", help="the CSV file (a header line, then one row per day and "
                   "campaign; date in the reporting time zone, YYYY-MM-DD)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the table and print the spend events; send nothing")
