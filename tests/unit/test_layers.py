"""streams/kpis/ is pure: no Kafka, no Faust, no embedded store, no stage glue.

Imported in a fresh interpreter, every module of the package must leave those
out of ``sys.modules`` (the conventions' first habit: if a function needs a
broker to be tested, it is in the wrong place)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("faust", "aiokafka", "rocksdict", "streams.agents", "streams.kafka",
             "streams.store", "streams.statestore", "streams.app", "streams.outputs",
             "streams.topology", "streams.local", "streams.cli")

PROBE = """
import importlib, pkgutil, sys
import streams.kpis as pkg
for m in pkgutil.iter_modules(pkg.__path__):
    importlib.import_module("streams.kpis." + m.name)
forbidden = {forbidden!r}
print("\\n".join(sorted(n for n in sys.modules
                         if any(n == f or n.startswith(f + ".") for f in forbidden))))
"""


def test_kpis_imports_no_io_framework_or_glue() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.format(forbidden=FORBIDDEN)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"streams/kpis pulls in:\n{out.stdout}"
