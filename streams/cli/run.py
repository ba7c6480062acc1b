"""Running processes: the demo (`up`), a worker, the HTTP collector."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from ..settings import load_settings
from ..up import DEMO_RATE
from .common import (
    Add,
    ensure_topics,
    env_help,
    environment_of,
    progress,
    settings_of,
    setup_logging,
)
from .data import world_options


def cmd_up(args: argparse.Namespace) -> int:
    from ..up import Demo, run

    demo = Demo(args.rate, args.warmup_hours, args.seed, args.incident, args.incident_after)
    # the children (worker, collector, simulator) get --namespace and --bootstrap too
    env = environment_of(args)
    return run(load_settings(env), demo, show=_show, say=progress, env=env)


def _show(text: str) -> None:
    print(text, flush=True)


def cmd_worker(args: argparse.Namespace) -> int:
    s = settings_of(args)
    if args.web_port is not None:
        s = s.replace(web_port=args.web_port)
    setup_logging(s.log_level)
    from ..worker import run

    return run(s)


def cmd_collect(args: argparse.Namespace) -> int:
    s = settings_of(args)
    if args.port is not None:
        s = s.replace(collect_port=args.port)
    if args.host is not None:
        s = s.replace(collect_host=args.host)
    setup_logging(s.log_level)
    from ..collect.server import CollectConfig, serve

    CollectConfig.from_settings(s)  # a bad token entry stops here, named
    if not s.collect_tokens:
        logging.getLogger("kpi_streams.collect").warning(
            "KPI_COLLECT_TOKENS is empty: /collect refuses everything (401); signed "
            "webhooks still work where their keys are set")
    asyncio.run(ensure_topics(s))
    stop = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(s, stop)

    asyncio.run(run())
    return 0


def add_up(add: Add) -> None:
    p = add("up", "Start the local broker, a worker and live simulated traffic (the demo).",
            cmd_up)
    p.add_argument("--rate", type=float, default=DEMO_RATE, help="simulated events per "
                   f"second (default {DEMO_RATE:g})")
    p.add_argument("--warmup-hours", type=float, default=2.0,
                   help="simulate this much history first (default 2)")
    world_options(p)


def add_worker(add: Add) -> None:
    p = add("worker", "Run a worker. Start several to share the partitions.", cmd_worker)
    p.add_argument("--web-port", type=int, help=env_help("KPI_WEB_PORT", "web server port"))


def add_collect(add: Add) -> None:
    p = add("collect", "Run the HTTP collector: POST /collect (events in the catalogue's "
            "format, with a source token), /hooks/<sendgrid|mailchimp|hubspot|costs>, the "
            "tracker at /t.js, /health, /metrics. A process of its own: run as many as "
            "the traffic needs.", cmd_collect)
    p.add_argument("--host", help=env_help("KPI_COLLECT_HOST", "address to bind"))
    p.add_argument("--port", type=int, help=env_help("KPI_COLLECT_PORT", "port"))
