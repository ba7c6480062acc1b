"""``kpi-streams up``: the demo. The local broker, then a worker, the collector and
live simulated traffic as child processes, supervised until Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import broker
from .channels import CONFIG_DIR
from .settings import Settings

DEMO_RATE = 20.0  # events/s of `up`'s live traffic
DEMO_TARGETS = CONFIG_DIR / "targets.demo.yaml"  # `up`'s goals unless KPI_TARGETS is set

Say = Callable[[str], None]


@dataclass(frozen=True)
class Demo:
    """The simulated traffic of the demo (the simulator's command line)."""

    rate: float = DEMO_RATE
    warmup_hours: float = 2.0
    seed: int = 1
    incident: str | None = None
    incident_after: int = 300


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(s: Settings, demo: Demo, show: Say, say: Say,
        env: dict[str, str] | None = None) -> int:
    """Start the local broker, then the worker, the collector and the simulator as child
    processes with ``env`` (the settings' environment; default this process's);
    ``show`` where to look, and supervise them until Ctrl-C or SIGTERM (0) or
    until one exits (1, ``say``-ing which). The broker keeps running."""
    from .kafka import ensure_topics

    try:
        broker.start(s, say=say)
    except broker.BrokerError as exc:
        say(f"error: {exc}")
        return 1
    asyncio.run(ensure_topics(s))
    exe = [sys.executable, "-m", "streams.cli"]
    logdir = s.home / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    worker_log = (logdir / "worker.log").open("ab")
    sim_log = (logdir / "simulator.log").open("ab")
    env = dict(os.environ if env is None else env)
    if not s.collect_tokens:  # a demo's own tokens, new each run (they are printed below)
        import secrets

        site_token, ops_token = (f"pk_{secrets.token_hex(8)}", f"sk_{secrets.token_hex(8)}")
        env["KPI_COLLECT_TOKENS"] = (f"site:{site_token}:page_view,form_submit;"
                                     f"ops:{ops_token}:*")
    else:
        site_token = ops_token = "<your token from KPI_COLLECT_TOKENS>"
    if s.targets_file is None:  # the simulated site's goals, so the wall shows pacing
        env["KPI_TARGETS"] = str(DEMO_TARGETS)
    collect_log = (logdir / "collector.log").open("ab")
    names = ["worker", "collector", "simulator"]
    procs = [subprocess.Popen([*exe, "worker"], stdout=worker_log, stderr=subprocess.STDOUT,
                              env=env),
             subprocess.Popen([*exe, "collect"], stdout=collect_log,
                              stderr=subprocess.STDOUT, env=env)]
    sim = [*exe, "simulate", "--rate", str(demo.rate), "--warmup-hours",
           str(demo.warmup_hours), "--seed", str(demo.seed)]
    if demo.incident:
        sim += ["--incident", demo.incident, "--incident-after", str(demo.incident_after)]
    procs.append(subprocess.Popen(sim, stdout=sim_log, stderr=subprocess.STDOUT, env=env))
    url = f"http://{s.web_host}:{s.web_port}"
    curl = f"http://{s.collect_host}:{s.collect_port}"
    # `kill`, systemd and CI stop with SIGTERM: stop the children too, as for Ctrl-C
    signal.signal(signal.SIGTERM, _interrupt)
    show(f"""
kpi-streams is up.
  broker     {s.bootstrap}   (kpi-streams broker status | logs | stop)
  worker     pid {procs[0].pid}, log {logdir / 'worker.log'}
  collector  pid {procs[1].pid}, {curl}/ , log {logdir / 'collector.log'}
  simulator  pid {procs[2].pid}, {demo.rate} events/s, log {logdir / 'simulator.log'}

  wall       {url}/
  metrics    {url}/metrics
  health     {url}/api/health
  KPIs       kpi-streams kpis --bucket 1h --total
  targets    {url}/api/targets   (goals: {env.get("KPI_TARGETS")})

  tracker    <script defer src="{curl}/t.js" data-token="{site_token}"></script>
             (add your site's origin to KPI_COLLECT_ORIGINS)
  webhook    curl -H 'Authorization: Bearer {ops_token}' -d @event.json {curl}/collect
  costs      curl -H 'Authorization: Bearer {ops_token}' --data-binary @costs.csv \\
                  {curl}/hooks/costs

Ctrl-C stops the worker, the collector and the simulator (the broker keeps running).
""")
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        for name, p in zip(names, procs, strict=True):
            if p.poll() is not None:
                say(f"the {name} exited with {p.returncode}; see its log in {logdir}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
