"""The ``kpi-streams`` command.

Every option that has a setting shows its environment variable and default in
``--help``; the environment is read once, into :class:`streams.settings.Settings`.
The parser is in :mod:`.parser`; the commands, each with its options, in one module
per group: :mod:`.run` (up, worker, collect), :mod:`.data` (simulate, ingest,
validate, import-costs), :mod:`.read` (kpis, score, settings) and :mod:`.ops`
(broker, topics, erase). What a command does beyond reading its options lives
outside the CLI (``streams.up``, ``streams.worker``, ``streams.simulate.live``,
``streams.produce``, ``streams.operations``).
"""

from .parser import build_parser, main

__all__ = ["build_parser", "main"]
