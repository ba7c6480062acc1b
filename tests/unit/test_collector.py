"""The worker's settings of the cycle collector (streams.worker.tune_interpreter):
what survives a collection of the middle generation is frozen, so no later
collection walks the state again; a stopped worker collects what was frozen."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from streams import worker


@pytest.fixture
def tuned() -> Iterator[None]:
    """The worker's settings, for one test; the interpreter's own afterwards."""
    thresholds, switch = gc.get_threshold(), sys.getswitchinterval()
    worker.tune_interpreter()
    try:
        yield
    finally:
        gc.callbacks.remove(worker._freeze_survivors)
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(switch)
        gc.unfreeze()


class Node:
    """A container the collector tracks; two that point at each other are a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def test_state_that_survives_the_middle_generation_is_frozen(tuned: None) -> None:
    assert gc.get_threshold() == worker.GC_THRESHOLDS
    state = [{"cell": [i]} for i in range(1000)]  # lives on, as a partition's cells do
    frozen = gc.get_freeze_count()
    gc.collect(0)  # the youngest alone: not yet
    assert gc.get_freeze_count() == frozen
    gc.collect(1)
    assert gc.get_freeze_count() >= frozen + len(state)
    assert state[999] == {"cell": [999]}  # frozen, not copied: the same objects
    tuned_once = gc.callbacks.count(worker._freeze_survivors)
    worker.tune_interpreter()  # a second call (tests, restarts) installs nothing more
    assert gc.callbacks.count(worker._freeze_survivors) == tuned_once == 1


def _cycle() -> weakref.ref[Node]:
    """Two nodes that point at each other, and nothing else at them: garbage only
    the cycle collector can free; a weak reference says when it has."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_young_cycles_are_collected_and_a_stopped_worker_collects_frozen_ones(
        tuned: None) -> None:
    young = _cycle()
    gc.collect(0)  # a cycle that dies young is found as before
    assert young() is None
    holder = [_cycle()().other]  # type: ignore[union-attr]
    old = weakref.ref(holder[0])
    gc.collect(1)  # it survived the middle generation: frozen with the state
    holder.clear()
    gc.collect()
    assert old() is not None  # a full collection does not walk frozen objects
    worker._free_state(SimpleNamespace(runners={}))
    assert old() is None  # the stopped worker unfreezes and collects
    assert worker._freeze_survivors not in gc.callbacks
    gc.callbacks.append(worker._freeze_survivors)  # for the fixture to remove
