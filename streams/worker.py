"""Running one worker: the Faust app with its pipeline and web server, under a Faust
worker that stops within KPI_SHUTDOWN_GRACE even when Kafka is away."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from typing import Any

import faust

from .settings import Settings

EXIT_STOP_TIMEOUT = 75  # EX_TEMPFAIL: stopped late because Kafka was away
# The worker holds millions of small dicts and tuples (cells, deltas, sessions) and
# makes and drops more for every batch, nearly all freed by reference counting.
# CPython's default collector thresholds (700, 10, 10) walked them all the same: a
# 4-day replay in process spent 47 % of its time in the cycle collector, with pauses
# up to 314 ms; with these, 9 % and 24 ms (bench/gcpause.py).
GC_THRESHOLDS = (50_000, 50, 100)
# Three threads share the interpreter: the event loop, Faust's consumer thread and
# the thread that feeds the metrics process. A thread that wants the interpreter
# waits up to this long for the one holding it to let go, on every turn, and
# formatting /metrics takes several turns: at CPython's default 5 ms a scrape during
# a replay took 38-64 ms (p50), at 1 ms 15-31 ms, at the same throughput (measured
# when a thread answered the port; bench/backfill.py; README, Performance).
SWITCH_INTERVAL_S = 0.001


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    """After a collection of the middle generation: what survived it is the worker's
    state (cells, visitors, ledgers), which lives on, and is frozen so that no
    collection walks it again. The collector runs a full collection whenever a
    quarter of what it walked last time is new, and that walked all of the state:
    240 ms after a 16-day replay in process, 9 ms with this (bench/gcpause.py).
    Frozen objects are still freed by reference counting; only a cycle among them
    stays, and there are few: the stopped worker's collection after a 60-day
    backfill found ~1,000 more than without freezing."""
    if phase == "stop" and info["generation"] >= 1:
        gc.freeze()


def tune_interpreter() -> None:
    """Collect cycles less often, and never walk again what was loaded at start
    (modules, settings, the app) or what survived the young generations (the state):
    the worker's garbage is nearly all acyclic. Hand the interpreter between threads
    sooner (``SWITCH_INTERVAL_S``)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def _free_state(pipe: Any) -> None:
    """Once the worker has stopped: drop its partitions' state and collect it. Left
    to the interpreter's shutdown, the cells' sketches (a C++ extension's objects)
    outlived their module, and nanobind printed a leak report of hundreds of lines
    at every stop, though nothing had leaked. What was frozen is collected too."""
    for runner in pipe.runners.values():
        runner.parts.clear()
    with contextlib.suppress(ValueError):
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()
    gc.collect()


def _give_up(grace_s: float) -> None:
    logging.getLogger("kpi_streams").error(
        "the worker did not stop within KPI_SHUTDOWN_GRACE=%gs (is Kafka reachable?); "
        "exiting anyway: state is crash-safe, a restart restores it", grace_s)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_STOP_TIMEOUT)


class Worker(faust.Worker):
    """Faust's worker with a deadline on stopping: with the broker away, Faust
    waits for its streams forever; state is crash-safe, so exiting loses nothing."""

    def __init__(self, app: faust.App, *, grace_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.grace_s = grace_s

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if not self._signal_stop_time:
            timer = threading.Timer(self.grace_s, _give_up, args=(self.grace_s,))
            timer.daemon = True
            timer.start()
        super()._schedule_shutdown(signum)


def run(s: Settings) -> int:
    """Check the targets file, ensure the topics, and run a worker until it is stopped."""
    from .app import build_pipeline, create_app, worker_id
    from .kafka import ensure_topics
    from .kpis.targets import load_targets
    from .logs import BrokerOutageLog, FreshAssignmentNoise
    from .outputs.http import build_web_app, serve
    from .outputs.scrape import serve_metrics

    if s.targets_file is not None:
        load_targets(s.targets_file)  # a bad file stops the start, naming its line
    asyncio.run(ensure_topics(s))
    pipe = build_pipeline(s)
    tune_interpreter()
    pipe.outage = BrokerOutageLog(s.bootstrap).install()
    pipe.fresh = FreshAssignmentNoise().install()
    app = create_app(s, pipe)
    log = logging.getLogger("kpi_streams.worker")

    if s.metrics_port is not None:
        serve_metrics(pipe.registry, pipe.evaluated, s.web_host, s.metrics_port)

        @app.task
        async def evaluate_metrics() -> None:
            await pipe.evaluated.keep_evaluated()

    @app.task
    async def start_web() -> None:
        await serve(build_web_app(pipe), s.web_host, s.web_port)
        log.info("worker %s: group %s on %s; wall http://%s:%d/", worker_id(s),
                 s.consumer_group, s.bootstrap, s.web_host, s.web_port)

    worker = Worker(app, grace_s=s.shutdown_grace_ms / 1000, loglevel=s.log_level.upper(),
                    quiet=True, redirect_stdouts=False, override_logging=False)
    profile_to = os.environ.get("KPI_PROFILE")  # for bench/: where the time goes
    prof = None
    if profile_to:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        worker.execute_from_commandline()
    finally:
        if prof is not None and profile_to:
            prof.disable()
            prof.dump_stats(profile_to)
        _free_state(pipe)
    return 0
