"""The short chaos run of bench/chaos.py on the real broker: SIGKILLs, a rebalance and a
broker restart while events flow, compared with an undisturbed run of the same log."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_kafka import ROOT, SESSION_BROKER

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _chaos() -> Any:
    spec = importlib.util.spec_from_file_location("bench_chaos", ROOT / "bench" / "chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_chaos"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_kills_rebalance_and_broker_restart_change_no_kpi(kafka_bootstrap: str,
                                                          tmp_path: Path) -> None:
    if not SESSION_BROKER:
        pytest.skip("restarting the broker needs the session's own local broker "
                    "(KAFKA_BOOTSTRAP points elsewhere)")
    report = _chaos().run(days=1.0, kills=2, sessions_per_day=1200, rebalance=True,
                          broker_restart=True, seed=11, workdir=tmp_path,
                          base=SESSION_BROKER[0], faults=2)
    print(report)
    assert (report["kills"], report["rebalances"], report["broker_restarts"]) == (2, 2, 1)
    assert report["keys_compared"] > 1000
    assert report["mismatches"] == 0, report["examples"]
    # and the worker died, deliberately, inside a flush's store write at both moments
    assert [f["point"].split(":")[0] for f in report["faults"]] == \
        ["after-changelog", "after-store"]
    assert all(f["died"] for f in report["faults"]), report["faults"]
    # every kill and the rejoin restored state: from the local store's checkpoint
    # (the changelog tail) after the first kill, from the whole changelog after the
    # second, whose worker lost its disk
    assert len(report["restore_seconds"]) >= 2
    assert report["kills_losing_the_disk"] == 1
    assert report["restores_from_local_checkpoint"] >= 1
    assert report["restores_from_whole_changelog"] >= 1
    # the worker said clearly that the broker was away, without a trace per retry
    assert report["tracebacks_in_worker_log"] == 0
    assert report["raw_connection_errors_logged"] == 0
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("disturbed-*.log"))
    assert "Kafka broker unreachable" in logs
