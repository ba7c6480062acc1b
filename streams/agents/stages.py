"""The runners of the topology's stage kinds (see :mod:`streams.topology`).

- :class:`~.inputs.InputStage` (stage 1): web, email, spend and engagement input
  topics -> decode, validate, normalise, deduplicate, judge lateness -> partial
  aggregates (and lead candidates, to the funnel).
- :class:`~.derived.FunnelStage` (stage 2): lead candidates and deal updates,
  keyed by contact -> leads, funnel stages, revenue, closed deals.
- :class:`~.derived.CustomerStage`: closed deals keyed by customer -> new
  customers and churn.
- :class:`~.merge.MergeStage` (stage 3): partials keyed by dim -> cells -> snapshots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..events import Decoder
from ..topics import Topics
from ..topology import STAGES, Kind
from .derived import CustomerStage, DerivedStage, FunnelStage
from .inputs import InputStage, erased, type_name
from .merge import MergeStage, snapshot_partition
from .runner import StageRunner, now_ms


def _input(name: str, topics: Topics, decoder: Decoder, kw: dict[str, Any]) -> StageRunner[Any]:
    return InputStage(name, topics, decoder, **kw)


def _funnel(name: str, topics: Topics, decoder: Decoder, kw: dict[str, Any]
            ) -> StageRunner[Any]:
    return FunnelStage(topics, decoder, **kw)


def _customers(name: str, topics: Topics, decoder: Decoder, kw: dict[str, Any]
               ) -> StageRunner[Any]:
    return CustomerStage(topics, **kw)


def _merge(name: str, topics: Topics, decoder: Decoder, kw: dict[str, Any]
           ) -> StageRunner[Any]:
    return MergeStage(topics, **kw)


MakeRunner = Callable[[str, Topics, Decoder, dict[str, Any]], StageRunner[Any]]
# stage kind -> how its runner is made (name, topics, decoder, the runners' common kwargs)
RUNNERS: dict[Kind, MakeRunner] = {"input": _input, "funnel": _funnel,
                                   "customers": _customers, "merge": _merge}


def build_runners(topics: Topics, decoder: Decoder, **common: Any
                  ) -> dict[str, StageRunner[Any]]:
    """One runner per stage of the topology, in its order."""
    return {d.name: RUNNERS[d.kind](d.name, topics, decoder, common) for d in STAGES}


__all__ = ["RUNNERS", "CustomerStage", "DerivedStage", "FunnelStage", "InputStage",
           "MergeStage", "build_runners", "erased", "now_ms", "snapshot_partition",
           "type_name"]
