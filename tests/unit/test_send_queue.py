"""Batches for one partition are handed to the producer one sender at a time
(streams.store.send_records), so aiokafka's accumulator never holds a crowd of
waiters whose timeouts it miscounts."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.store import send_records


class Batch:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def append(self, key: Any, value: Any, timestamp: Any, headers: Any) -> Any:
        if len(self.records) >= 3:
            return None  # full: the caller sends it and starts another
        self.records.append((key, value))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class OneInFlight:
    """Like aiokafka: one batch per partition in flight; counts the senders waiting
    inside ``send_batch`` at once."""

    def __init__(self) -> None:
        self.waiting: dict[tuple[str, int], int] = {}
        self.most: dict[tuple[str, int], int] = {}
        self.sent: list[tuple[str, int, list[Any]]] = []

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, partition: int) -> Any:
        tp = (topic, partition)
        self.waiting[tp] = self.waiting.get(tp, 0) + 1
        self.most[tp] = max(self.most.get(tp, 0), self.waiting[tp])
        await asyncio.sleep(0.001)  # the batch in flight drains
        self.waiting[tp] -= 1
        self.sent.append((topic, partition, batch.records))
        done = asyncio.get_running_loop().create_future()
        done.set_result(type("Meta", (), {"offset": len(self.sent)})())
        return done


def test_one_sender_at_a_time_per_partition_and_every_record_sent_in_order() -> None:
    producer = OneInFlight()

    async def flushes() -> None:
        await asyncio.gather(*(
            send_records(producer, "partials", p % 2,  # type: ignore[arg-type]
                         [(None, f"{i}-{j}".encode()) for j in range(7)])
            for i, p in enumerate(range(10))))

    asyncio.run(flushes())
    assert producer.most == {("partials", 0): 1, ("partials", 1): 1}
    for i in range(10):
        mine = [v for t, p, recs in producer.sent if p == i % 2 for _, v in recs
                if v.startswith(f"{i}-".encode())]
        assert mine == [f"{i}-{j}".encode() for j in range(7)]
    assert sum(len(r) for _, _, r in producer.sent) == 70
