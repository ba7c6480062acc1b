"""Operations: the local broker, the topics, and erasing a person's state."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys

from .. import broker
from .common import Add, ensure_topics, progress, settings_of


def cmd_broker(args: argparse.Namespace) -> int:
    s = settings_of(args)
    try:
        if args.action == "start":
            broker.start(s, say=progress)
            created = asyncio.run(ensure_topics(s))
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


def cmd_topics(args: argparse.Namespace) -> int:
    s = settings_of(args)
    from ..topics import Topics

    created = asyncio.run(ensure_topics(s))
    for spec in Topics(s).specs():
        mark = "created" if spec.name in created else "exists"
        policy = "compact" if spec.compacted else "delete"
        print(f"{mark:8} {spec.name:45} partitions={spec.partitions} {policy}")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from ..operations import erase

    if not args.visitor and not args.contact:
        raise SystemExit("name at least one --visitor or --contact to erase")
    s = settings_of(args)
    return asyncio.run(erase(s, args.visitor or [], args.contact or [],
                             wait=not args.no_wait, timeout_s=args.timeout, say=progress))


def add_broker(add: Add) -> None:
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


def add_topics(add: Add) -> None:
    add("topics", "Create every topic (input, dead-letter, state, KPI) that is missing.",
        cmd_topics)


def add_erase(add: Add) -> None:
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
