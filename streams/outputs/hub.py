"""Fan-out of published snapshots to live subscribers (the SSE stream, the wall).

Processing never waits for a subscriber: each has a bounded queue, and a
subscriber that falls behind loses its oldest snapshots (counted) rather than
slowing the pipeline down. The latest snapshot per key is always in the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Filter = Callable[[dict[str, Any]], bool]


@dataclass(eq=False)
class Subscription:
    accept: Filter
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=10_000))
    dropped: int = 0


class SnapshotHub:
    def __init__(self) -> None:
        self.subs: set[Subscription] = set()

    def subscribe(self, accept: Filter) -> Subscription:
        sub = Subscription(accept)
        self.subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subs.discard(sub)

    def publish(self, docs: list[dict[str, Any]]) -> None:
        for sub in list(self.subs):
            for doc in docs:
                if not sub.accept(doc):
                    continue
                if sub.queue.full():
                    sub.queue.get_nowait()
                    sub.dropped += 1
                sub.queue.put_nowait(doc)
