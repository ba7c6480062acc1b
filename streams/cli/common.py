"""What the command groups share: settings from the environment and the global options,
logging, times given on the command line, progress on stderr, and declaring commands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from ..settings import SPECS, Settings, load_settings

Command = Callable[[argparse.Namespace], int]
# add(name, help, command): a subcommand whose description is its help
Add = Callable[[str, str, Command], argparse.ArgumentParser]


def env_help(env: str, text: str) -> str:
    spec = next((s for s in SPECS if s.env == env), None)
    default = spec.default if spec else ""
    return f"{text} [env {env}, default {default or 'empty'}]"


def environment_of(args: argparse.Namespace) -> dict[str, str]:
    """The environment, with --namespace and --bootstrap over it: what settings are
    loaded from, and what a command's child processes get."""
    env = dict(os.environ)
    for attr, envname in (("namespace", "KPI_NAMESPACE"), ("bootstrap", "KAFKA_BOOTSTRAP")):
        value = getattr(args, attr, None)
        if value is not None:
            env[envname] = value
    return env


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings from the environment, with --namespace and --bootstrap over them."""
    return load_settings(environment_of(args))


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def parse_time(text: str) -> int:
    from ..schemas import parse_rfc3339_ms

    if len(text) == 10:
        text += "T00:00:00Z"
    try:
        return parse_rfc3339_ms(text)
    except ValueError:
        raise SystemExit(f"not a date or RFC 3339 time: {text!r} "
                         "(use 2026-11-01 or 2026-11-01T06:00:00Z)") from None


def progress(line: str) -> None:
    """Progress of long work (fetching Kafka, starting the broker), on stderr."""
    print(line, file=sys.stderr, flush=True)


async def ensure_topics(s: Settings) -> list[str]:
    from ..kafka import ensure_topics

    return await ensure_topics(s)


def print_counts(sent: Any) -> None:
    width = max((len(t) for t in sent), default=10)
    for topic, n in sorted(sent.items()):
        print(f"{topic:{width}}  {n:>9} events")
    print(f"{'total':{width}}  {sum(sent.values()):>9} events")
