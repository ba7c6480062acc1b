"""A deliberate crash at a chosen moment of a flush, for the chaos harness."""

from __future__ import annotations

import logging
from functools import lru_cache

FAULT_POINTS = ("after-changelog", "after-store")


@lru_cache(maxsize=1)
def process_fault() -> FaultPoint | None:
    """The process's one fault point (shared by its stages), from ``KPI_FAULT``."""
    return FaultPoint.from_env()


class FaultPoint:
    """A deliberate crash for the chaos harness, never set in production.

    ``KPI_FAULT=<point>:<n>`` makes the process die at once (``os._exit``, no cleanup,
    as SIGKILL would) at the n-th flush with data that reaches ``point``:
    ``after-changelog`` (the flush is confirmed on the state changelog, the local
    store has not been written), ``after-store`` (the local store holds it, the
    flush's outputs have not been sent). The local store's write itself is one
    atomic RocksDB batch, so these two moments are the inside of a store write as
    far as a crash can tell.
    """

    def __init__(self, spec: str) -> None:
        point, _, n = spec.partition(":")
        if point not in FAULT_POINTS or not n.isdigit() or int(n) < 1:
            raise ValueError(f"KPI_FAULT={spec!r}: use one of {FAULT_POINTS} and a count, "
                             "e.g. after-store:3")
        self.point, self.n, self.count = point, int(n), 0

    @classmethod
    def from_env(cls) -> FaultPoint | None:
        import os

        spec = os.environ.get("KPI_FAULT", "")
        return cls(spec) if spec else None

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        self.count += 1
        if self.count == self.n:
            import os

            logging.getLogger(__name__).critical("KPI_FAULT: dying %s (flush %d)", point,
                                                 self.count)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(137)


__all__ = ["FAULT_POINTS", "FaultPoint", "process_fault"]
