"""Stage 3: merge partial aggregates into cells and turn cells into KPI snapshots. Pure.

A *cell* is one bucket of one dim, ``(size, start, dim)``, holding the integer
components of every family that reported into it. All cells of a dim live on
the same stage-3 partition, so KPIs that combine families (CPL = spend / leads)
and rolling views (24h = the last 24 hour cells) are computed locally.

Partials carry their source and a sequence number; a partial seen before is
ignored, so a stage-1 replay after a crash cannot count twice. Partials also
carry their source partitions' watermarks, from which cell finality follows.

Every KPI of a cell (or rolling view) is published together, so one revision
counter per cell serves all its keys: each publication raises it by one.

The package, one concern a module:

- ``state``: keys, constants, configuration, and what a cell or view holds.
- ``documents``: snapshot keys and the documents built from cells and views.
- ``views``: rolling and calendar-month views over base cells.
- ``ledger``: the running count of active customers.
- ``persistence``: each cell and view as a store entry, and the partition's metadata.
- ``partition``: ``MergePartition``: watermarks, applying partials, emitting, expiry.
"""

from .documents import iso_s, snapshot_key
from .partition import MergePartition
from .state import MergeConfig, cell_store_key, present, roll_store_key, view_store_key

__all__ = ["MergeConfig", "MergePartition", "cell_store_key", "iso_s", "present",
           "roll_store_key", "snapshot_key", "view_store_key"]
