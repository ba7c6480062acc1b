"""/metrics off the event loop and out of the worker's interpreter: a process of its
own answers Prometheus on ``KPI_METRICS_PORT``.

The worker's event loop is busy nearly all the time during a replay (in slices of a
batch, flushes and emission rounds), and the web server's ``/metrics`` waits its
turn and then evaluates every KPI gauge; a scrape that waits long looks like a sick
worker. A thread of the worker answered while the loop was busy, but not while the
cycle collector ran (it holds the interpreter for its whole walk: 0.2-0.4 s a few
times in a 60-day backfill). So the port is answered by a small process
(:mod:`.exposer`), and a thread of the worker keeps it fed:

- pipeline counters, gauges and histograms, and the process collector (the
  worker's), are thread-safe and formatted by that thread when a scrape asks (a few
  hundred samples: about a millisecond) and every ``REFRESH_S``;
- the KPI gauges (and target pacing) are evaluated from the merge state, which only
  the loop may read, so the loop evaluates and formats them after a scrape asked
  (at most every 5 s) and the text last formatted is sent: at most one scrape
  interval old. Formatting them is most of a scrape's work (about 20 ms for 3,000
  samples).

A scrape waits up to ``WAIT_MS`` for the text it asked for, and otherwise gets the
one before (at most ``REFRESH_S`` older, unless the worker's interpreter was held
longer than that).

The web server's ``/metrics`` evaluates them afresh, on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from .exposer import frame

log = logging.getLogger(__name__)

EXPOSER = Path(__file__).with_name("exposer.py")
REFRESH_S = 1.0  # the live metrics a scrape gets are at most this old (+ a held interpreter)
WAIT_MS = 50.0  # how long a scrape waits for the text it asked for
STALE_S = 30.0  # a text older than this is answered with 503: the worker looks down


class _Families:
    """What ``generate_latest`` formats: a fixed list of metric families."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Iterable[Any]:
        return self.families


class EvaluatedOnLoop:
    """The exposition text of collectors that only the loop may run, as last formatted."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = list(collectors)
        self.text = b""
        self.asked = threading.Event()  # a scrape wants a newer text
        self.asked.set()

    def add(self, collector: Collector) -> None:
        self.collectors.append(collector)

    def evaluate(self) -> bytes:
        """On the loop: evaluate and format every collector now (the text is swapped
        whole, so a thread reading it sees the old text or the new one)."""
        families = [f for c in self.collectors for f in c.collect()]
        self.text = generate_latest(_Families(families))
        self.asked.clear()
        return self.text

    async def keep_evaluated(self, interval_s: float = 5.0) -> None:
        """Evaluate again whenever a scrape asked since the last time."""
        while True:
            await asyncio.sleep(interval_s)
            if self.asked.is_set():
                try:
                    self.evaluate()
                except Exception:  # a bug in a collector must not end the worker
                    log.exception("metrics: evaluating the KPI gauges failed")


class MetricsProcess:
    """The metrics port, answered by a process of its own (:mod:`.exposer`), fed by
    a thread of the worker ("kpi-metrics").

    The thread sends the exposition text (live metrics, then the evaluated ones as
    last formatted) whenever a scrape asks and every ``refresh_s``; a scrape waits
    up to ``wait_ms`` for the fresh text, else gets the last one, unless that is
    older than ``stale_s`` (then 503: a stuck worker looks down). The process is
    started again if it dies (the socket stays open here), and ends when the worker
    does: its input closes."""

    def __init__(self, live: CollectorRegistry, evaluated: EvaluatedOnLoop,
                 sock: socket.socket, *, refresh_s: float = REFRESH_S,
                 wait_ms: float = WAIT_MS, stale_s: float = STALE_S) -> None:
        self.live, self.evaluated, self.sock = live, evaluated, sock
        self.refresh_s, self.wait_ms, self.stale_s = refresh_s, wait_ms, stale_s
        self.stopped = threading.Event()
        self.proc = self._spawn()
        self.thread = threading.Thread(target=self._run, name="kpi-metrics", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _spawn(self) -> subprocess.Popen[bytes]:
        fd = self.sock.fileno()
        return subprocess.Popen(
            [sys.executable, "-I", str(EXPOSER), "--fd", str(fd),
             "--wait-ms", str(self.wait_ms), "--stale-s", str(self.stale_s),
             "--content-type", CONTENT_TYPE_LATEST],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(fd,))

    def text(self) -> bytes:
        return generate_latest(self.live) + self.evaluated.text

    def _send(self, proc: subprocess.Popen[bytes], answered: int) -> bool:
        """Send a fresh text; False once the process is gone."""
        try:
            text = self.text()
        except Exception:  # a bug in a collector must not end the metrics port
            log.exception("metrics: formatting the exposition failed")
            return True
        assert proc.stdin is not None
        try:
            proc.stdin.write(frame(answered, text))
            proc.stdin.flush()
        except (OSError, ValueError):  # (ValueError: closed by shutdown)
            return False
        return True

    def _serve(self, proc: subprocess.Popen[bytes]) -> None:
        """Feed one metrics process until it ends or the worker stops."""
        assert proc.stdout is not None
        asks = proc.stdout.fileno()
        answered = 0  # asks read
        if not self._send(proc, answered):
            return
        while not self.stopped.is_set():
            ready, _, _ = select.select([asks], [], [], self.refresh_s)
            if ready:
                got = len(os.read(asks, 4096))
                if not got:
                    return  # it ended
                answered += got
                self.evaluated.asked.set()
            if not self._send(proc, answered):
                return

    def _run(self) -> None:
        while True:
            self._serve(self.proc)
            if self.stopped.is_set():
                return
            code = self.proc.poll()
            log.error("metrics: the metrics process ended (exit %s); starting it again",
                      code)
            self.stopped.wait(1.0)
            self._end(self.proc)
            if self.stopped.is_set():
                return
            self.proc = self._spawn()

    @staticmethod
    def _end(proc: subprocess.Popen[bytes]) -> None:
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            proc.wait(timeout=10)  # (its input closed: it ends)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def shutdown(self) -> None:
        """Stop answering: the process ends (its input closes) and the socket closes."""
        self.stopped.set()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self.thread.join(timeout=10)
        self._end(self.proc)
        self.sock.close()


def serve_metrics(live: CollectorRegistry, evaluated: EvaluatedOnLoop, host: str,
                  port: int, stale_s: float = STALE_S) -> MetricsProcess:
    """Bind the metrics port and start its process; raises OSError (naming the
    setting) if the port is taken. ``shutdown()`` stops it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot serve metrics on {host}:{port} (KPI_METRICS_PORT): "
                      f"{exc.strerror or exc}") from exc
    server = MetricsProcess(live, evaluated, sock, stale_s=stale_s)
    log.info("metrics on http://%s:%d/metrics (a process of its own: answers while the "
             "worker works)", host, server.port)
    return server
