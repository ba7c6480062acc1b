"""What the stage runners and their processors hand each other, as types.

- :class:`OutItem`: a message a flush sends (topic, partition, key, value).
- :class:`Processor`: what the runner needs of a stage's pure processor.
- :class:`Part`: one partition a worker owns: its processor and what the next
  flush writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from ..statestore import MemoryStore
from ..store import StateWriter


class OutItem(NamedTuple):
    """A message a flush sends: to ``topic``, on ``partition`` (None: by the key, as
    the Java client's default partitioner would), with a JSON-able ``value``
    (None: a tombstone)."""

    topic: str
    partition: int | None
    key: str | None
    value: Any


class Processor(Protocol):
    """What the runner needs of a stage's pure processor (``streams/kpis``): its state
    as store entries, and how much of it there is. A processor may also have
    ``close()``, ``committed()`` (after each confirmed flush), ``produced`` (the
    producers' clocks, for idle watermarks) and ``cold`` (its on-disk records)."""

    def load(self, key: str, state: Any) -> None: ...

    def dump(self, key: str) -> Any: ...

    def state_keys(self) -> dict[str, int]: ...


P = TypeVar("P", bound=Processor)


@dataclass
class Part(Generic[P]):
    """One input partition this worker owns: its processor and what the next flush
    writes."""

    partition: int
    proc: P
    writer: StateWriter
    local: MemoryStore = field(default_factory=MemoryStore)
    seq: int = 0
    offsets: dict[str, int] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    outbox: list[OutItem] = field(default_factory=list)  # persisted with the flush
    after: list[OutItem] = field(default_factory=list)  # sent after it, not persisted
    last_flush_wall: int = 0
    last_prune_wall: int = 0
    changed: bool = False  # something to report (watermark moved, inputs applied)
    # the watermark last reported to *every* downstream partition (a full flush);
    # None: not since this worker took the partition over
    reported: Any = None


__all__ = ["OutItem", "P", "Part", "Processor"]
