"""Live simulated traffic: a world played at the wall clock at about a rate.

Live traffic holds about the asked rate whatever the hour (the daily curve would
otherwise cut it to a quarter at night); a warm-up plays the hours before now
first, with the curve, as history. Where the events go is the caller's: a
``send(batch, history)`` that writes them to a file or produces them to Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..events import iso_ms
from .model import Options
from .world import World

Send = Callable[[list[dict[str, Any]], bool], Awaitable[None]]
Say = Callable[[str], None]

EVENTS_PER_SESSION = 2.5


class LiveTraffic:
    """A :class:`World` that starts ``warmup_hours`` before ``now_ms`` and, from its first
    step on, draws arrivals so that it yields about ``rate`` events per second."""

    def __init__(self, rate: float, options: Options, now_ms: int, warmup_hours: float = 0.0,
                 warmup_sessions_per_day: float = 0.0) -> None:
        # a session yields ~2.5 events, and arrivals per minute are sessions_per_day / 1440 x
        # traffic_shape x 1.6; the warm-up keeps the daily curve, at the live volume unless
        # it has one of its own
        options.sessions_per_day = (warmup_sessions_per_day
                                    or rate / EVENTS_PER_SESSION * 86_400 / 1.05)
        self.options = options
        self.warmup_hours = warmup_hours
        self.warmup_ms = int(warmup_hours * 3_600_000)
        self._sessions_per_min = rate * 60 / EVENTS_PER_SESSION
        self.world = World(now_ms - self.warmup_ms, options)

    def _intensity(self, t: int) -> float:
        """sessions_per_day that makes the curve's hour ``t`` yield the rate."""
        return self._sessions_per_min * 1440 / (1.6 * max(self.world.traffic_shape(t), 0.05))

    def step(self, now_ms: int) -> list[dict[str, Any]]:
        """The events up to ``now_ms`` (the first step: the whole warm-up)."""
        batch = self.world.advance(now_ms)
        self.options.sessions_per_day = self._intensity(now_ms)  # the warm-up is history
        return batch

    def status(self, now_ms: int) -> str:
        active = self.world.incident_active(now_ms)
        return " INCIDENT " + str(self.options.incident) if active else ""


async def run_live(traffic: LiveTraffic, send: Send, say: Say, duration_s: float = 0.0) -> int:
    """Step ``traffic`` every second and ``send`` each batch, until SIGINT or SIGTERM
    (or ``duration_s``, when given); a line per step to ``say``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    total = 0
    started = time.monotonic()
    if traffic.warmup_ms:
        say(f"simulating the last {traffic.warmup_hours:g}h first (warm-up) ...")
    while not stop.is_set():
        now = time.time_ns() // 1_000_000
        batch = traffic.step(now)
        # the warm-up is history: its records carry the time they would have been sent
        # (so idle watermarks count from then), live traffic the time it is
        await send(batch, total == 0 and bool(traffic.warmup_ms))
        total += len(batch)
        say(f"{iso_ms(now)} sent {len(batch):6d} events (total {total})"
             f"{traffic.status(now)}")
        if duration_s and time.monotonic() - started > duration_s:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    return 0
