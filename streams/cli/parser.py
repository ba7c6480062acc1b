"""The ``kpi-streams`` command line: the global options and one subcommand per command,
each declared with its command in the module of its group (run, data, read, ops)."""

from __future__ import annotations

import argparse
import sys

from ..channels import ConfigError
from ..settings import SettingsError
from . import data, ops, read, run
from .common import Command, env_help

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

# in the order `kpi-streams --help` lists them
COMMANDS = (run.add_up, ops.add_broker, ops.add_topics, run.add_worker, data.add_simulate,
            data.add_ingest, data.add_validate, read.add_kpis, read.add_score, run.add_collect,
            data.add_import_costs, ops.add_erase, read.add_settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kpi-streams", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Near-real-time marketing and sales KPIs from Kafka event streams.",
        epilog=EPILOG)
    parser.add_argument("--namespace", help=env_help(
        "KPI_NAMESPACE", "prefix for every topic name and the consumer group"))
    parser.add_argument("--bootstrap", help=env_help(
        "KAFKA_BOOTSTRAP", "Kafka bootstrap servers; unset: the local broker"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, fn: Command) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(fn=fn)
        return p

    for declare in COMMANDS:
        declare(add)
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
