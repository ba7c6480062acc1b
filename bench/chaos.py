"""Crash, rebalance and broker-restart harness: disturbed runs must equal an undisturbed one.

    .venv/bin/python bench/chaos.py [--days 3] [--kills 6] [--sessions-per-day 3000]
                                    [--no-rebalance] [--no-broker-restart]

The same simulated log is written to two namespaces on one broker. A reference
worker processes one of them undisturbed. On the other, a worker is killed with
SIGKILL at random moments and restarted each time; a second worker joins and
later leaves (a rebalance); the broker itself is stopped and started again.
The disturbed log is produced in slices, one before each disturbance, so each
disturbance lands while events flow. When both have finished, their final
snapshots (1h and 1d, every dim) must be identical: same keys, same numerators
and denominators.

Prints what happened and the figures (kills survived, events replayed, state
recovery times, mismatches), and writes them to bench/results/chaos-<ts>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams import broker  # noqa: E402
from streams.kafka import ensure_topics, producer  # noqa: E402
from streams.produce import BatchProducer  # noqa: E402
from streams.readback import latest_snapshots  # noqa: E402
from streams.schemas import parse_rfc3339_ms  # noqa: E402
from streams.settings import Settings, load_settings  # noqa: E402
from streams.simulate import DAY, HOUR, Options, closing_events, generate  # noqa: E402
from streams.topics import Topics  # noqa: E402

WINDOWS = ("1h", "1d")
PACE_S = 2.0  # each slice of the disturbed log arrives over this long
RUN_ENV = {
    "KPI_INPUT_PARTITIONS": "3",
    "KPI_KPI_PARTITIONS": "3",
    "KPI_PUBLISH_WINDOWS": ",".join(WINDOWS),
    # a restarted worker is not an idle partition; keep wall-clock watermark
    # advancement out of the comparison
    "KPI_IDLE_TIMEOUT": "6h",
    "KPI_LOG_LEVEL": "info",
    # a killed worker's partitions move after 10 s instead of Faust's 60 s
    "KPI_GROUP_SESSION_TIMEOUT": "10s",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def produce_log(settings: Settings, events: list[dict[str, Any]]) -> None:
    await ensure_topics(settings)
    p = producer(settings, linger_ms=20)
    await p.start()
    try:
        bp = BatchProducer(p, Topics(settings), settings.input_partitions, 200)
        for i in range(0, len(events), 20_000):
            await bp.send(events[i:i + 20_000])
    finally:
        await p.stop()


class PacedProducer(threading.Thread):
    """Produces events in ten pieces spread over ``seconds``, in a thread, so that
    a disturbance can land while events are still arriving. ``join`` re-raises a
    failure: an event the harness failed to send would read as a lost event."""

    def __init__(self, settings: Settings, events: list[dict[str, Any]],
                 seconds: float) -> None:
        super().__init__(name="produce", daemon=True)
        self.settings, self.events, self.seconds = settings, events, seconds
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        async def send() -> None:
            step = max(1, -(-len(self.events) // 10))
            for i in range(0, len(self.events), step):
                await produce_log(self.settings, self.events[i:i + step])
                await asyncio.sleep(self.seconds / 10)

        try:
            asyncio.run(send())
        except BaseException as exc:  # handed to the main thread by join()
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise RuntimeError("producing the disturbed log failed") from self.error


@dataclass
class Worker:
    env: dict[str, str]
    log: Path
    name: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **self.env, "KPI_WEB_PORT": str(self.port),
               "KPI_WORKER_ID": self.name, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as fh:
            fh.write(f"\n==== start {time.strftime('%T')} ====\n".encode())
            fh.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                         env=env, stdout=fh, stderr=subprocess.STDOUT,
                                         cwd=ROOT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=10) as resp:
                return bytes(resp.read())
        except OSError:
            return None

    def wait_ready(self, limit_s: float = 180) -> float:
        """Wait until the worker holds partitions and has restored every one of them
        (a restarted worker first rejoins its group, then reads its changelogs).
        Returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < limit_s:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited (code {self.proc and self.proc.poll()}); "
                                   f"see {self.log}")
            body = self._get("/api/health")
            doc = orjson.loads(body) if body else None
            if doc and doc["status"] == "ok" and not doc["rebalancing"]:
                stages = doc["stages"].values()
                if any(st["assigned"] for st in stages) and \
                        all(st["assigned"] == st["restored"] for st in stages):
                    return time.monotonic() - started
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} did not get and restore its partitions in "
                           f"{limit_s:.0f} s; see {self.log}")

    def events_seen(self) -> float:
        """Input events this worker process has taken in (any outcome)."""
        body = self._get("/metrics")
        if body is None:
            return -1.0
        return sum(float(line.rpartition(" ")[2]) for line in body.decode().splitlines()
                   if line.startswith("kpi_streams_events_total{"))

    def wait_for_events(self, before: float, limit_s: float = 60) -> None:
        """Wait until the worker has taken in events since it counted ``before``."""
        deadline = time.monotonic() + limit_s
        while self.events_seen() <= before and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill_while_consuming(self, rng: random.Random, before: float) -> bool:
        """SIGKILL at a random moment soon after the worker began on the slice it was
        just sent (it had counted ``before``). True if it had taken in events in the
        half second before the kill."""
        self.wait_for_events(before)
        time.sleep(rng.uniform(0.0, PACE_S / 2))
        a = self.events_seen()
        time.sleep(0.5)
        busy = self.events_seen() > a
        self.signal(signal.SIGKILL)
        return busy

    def watermarks(self) -> str:
        """The merge stage's lowest watermark per input, for a run that did not finish:
        an input stuck far behind the others says where finality waits."""
        body = self._get("/metrics")
        if body is None:
            return f"{self.name}: /metrics unreadable"
        marks = [line.split("input=", 1)[1].rstrip() for line in body.decode().splitlines()
                 if line.startswith("kpi_streams_watermark_timestamp_seconds{")]
        return f"{self.name} (alive: {self.alive()}): " + "; ".join(marks)

    def restore_seconds(self) -> list[float]:
        text = self.log.read_text(errors="replace")
        return [float(x) for x in re.findall(r"records in ([0-9.]+)s", text)]


async def finished(settings: Settings, span: tuple[int, int], stable_polls: int = 2,
                   limit_s: float = 900) -> dict[str, Any]:
    """Wait until every published snapshot of the span is final and nothing changes."""
    start, end = span
    deadline = time.monotonic() + limit_s
    last = None
    same = 0
    mine: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        snaps = await latest_snapshots(settings)
        mine = {k: d for k, d in snaps.items()
                if start <= parse_rfc3339_ms(d["window_start"]) < end}
        signature = {k: (d["numerator"], d["denominator"], d["final"]) for k, d in mine.items()}
        if mine and all(d["final"] for d in mine.values()) and signature == last:
            same += 1
            if same >= stable_polls:
                return mine
        else:
            same = 0
        last = signature
        await asyncio.sleep(5)
    open_keys = sorted(k for k, d in (mine or {}).items() if not d["final"])
    raise TimeoutError(f"the run did not finish in time: {len(open_keys)} of "
                       f"{len(mine or {})} snapshots not final, e.g. {open_keys[:8]}")


def compare(ref: dict[str, Any], got: dict[str, Any]) -> list[str]:
    problems = []
    for key in sorted(set(ref) | set(got)):
        a, b = ref.get(key), got.get(key)
        if a is None or b is None:
            problems.append(f"{key}: only in {'disturbed' if a is None else 'reference'} run")
        elif (a["numerator"], a["denominator"]) != (b["numerator"], b["denominator"]):
            problems.append(f"{key}: reference {a['numerator']}/{a['denominator']}, "
                            f"disturbed {b['numerator']}/{b['denominator']}")
    return problems


def log_says(path: Path, text: str) -> int:
    try:
        return path.read_text(errors="replace").count(text)
    except OSError:
        return 0


def log_lines(path: Path, pattern: str) -> int:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if re.search(pattern, line))


def run(days: float, kills: int, sessions_per_day: float, rebalance: bool,
        broker_restart: bool, seed: int, workdir: Path,
        base: Settings | None = None, faults: int = 0) -> dict[str, Any]:
    """One chaos run. ``base``: settings of the local broker to use (and restart)."""
    rng = random.Random(seed)
    base = base or load_settings()
    bootstrap = broker.start(base)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    envs = {name: {**RUN_ENV, "KAFKA_BOOTSTRAP": bootstrap,
                   "KPI_NAMESPACE": f"chaos{stamp}{name}"} for name in ("ref", "dis")}
    settings = {name: load_settings({**os.environ, **env}) for name, env in envs.items()}
    start = parse_rfc3339_ms("2026-11-09T00:00:00Z")
    end = start + int(days * DAY)
    events = [e for batch in generate(start, end, Options(seed=seed,
                                                          sessions_per_day=sessions_per_day))
              for e in batch]
    events += closing_events(settings["ref"].input_partitions, end + 3 * HOUR)
    print(f"log: {len(events)} events over {days:g} simulated days", file=sys.stderr)
    asyncio.run(produce_log(settings["ref"], events))
    workdir.mkdir(parents=True, exist_ok=True)
    # each worker its own disk (embedded stores), kept across its restarts unless a
    # kill takes the disk with it
    def disk(name: str) -> dict[str, str]:
        return {"KPI_STATE_DIR": str(workdir / f"{name}-state")}

    ref = Worker({**envs["ref"], **disk("reference")}, workdir / "reference.log",
                 "reference")
    main = Worker({**envs["dis"], **disk("disturbed-1")}, workdir / "disturbed-1.log",
                  "disturbed-1")
    second = Worker({**envs["dis"], **disk("disturbed-2")}, workdir / "disturbed-2.log",
                    "disturbed-2")
    ref.start()
    main.start()
    report: dict[str, Any] = {"events": len(events), "days": days, "kills": 0,
                              "kills_while_consuming": 0, "kills_while_events_arrive": 0,
                              "kills_losing_the_disk": 0,
                              "rebalances": 0,
                              "broker_restarts": 0, "faults": []}
    plan = ["kill"] * kills
    if rebalance:
        plan.insert(min(1, len(plan)), "join")
        plan.append("leave")
    if broker_restart:
        plan.insert(len(plan) // 2, "broker")
    # crashes at the two moments inside a flush's store write (KPI_FAULT): after the
    # changelog confirmed it, before the local store has it; and after the local
    # store has it, before its outputs are sent
    for i in range(faults):
        plan.insert(1 + 2 * i, "fault")
    # the disturbed log arrives in slices, one before each disturbance, so every
    # kill, rebalance and broker restart lands while events are flowing
    cuts = [round(len(events) * (i + 1) / (len(plan) + 1)) for i in range(len(plan))]
    slices = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    ready: list[float] = []  # restart (or join) -> partitions restored, seconds
    for step, chunk in zip(plan, slices, strict=False):
        # every disturbance hits a worker that holds partitions and is working
        main.wait_ready()
        if second.alive():
            second.wait_ready()
        before = main.events_seen()
        producing = PacedProducer(settings["dis"], chunk, PACE_S)
        if step == "kill":
            busy = main.kill_while_consuming(rng, before)
            report["kills"] += 1
            report["kills_while_consuming"] += busy
            report["kills_while_events_arrive"] += producing.is_alive()
            print(f"SIGKILL worker ({report['kills']}/{kills}; "
                  f"{'taking in events' if busy else 'between batches'}, "
                  f"{'more arriving' if producing.is_alive() else 'slice sent'})",
                  file=sys.stderr)
            lose_disk = report["kills"] % 2 == 0  # every second kill: a new machine
            if lose_disk:
                shutil.rmtree(main.env["KPI_STATE_DIR"], ignore_errors=True)
                report["kills_losing_the_disk"] += 1
                print("  and its local state store is deleted (a new machine)",
                      file=sys.stderr)
            time.sleep(rng.uniform(0.5, 3))
            main.start()
            producing.join()
            ready.append(main.wait_ready())
            print(f"  back with its partitions restored after {ready[-1]:.1f} s",
                  file=sys.stderr)
            continue
        if step == "fault":
            point = ("after-changelog", "after-store")[len(report["faults"]) % 2]
            main.signal(signal.SIGTERM)  # restarted with the fault armed
            main.env["KPI_FAULT"] = f"{point}:{rng.randint(3, 12)}"
            main.start()
            deadline = time.monotonic() + 120
            while main.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            died = not main.alive()
            report["faults"].append({"point": main.env.pop("KPI_FAULT"), "died": died})
            print(f"fault {report['faults'][-1]['point']}: "
                  f"{'died there' if died else 'never reached'}", file=sys.stderr)
            if not died:
                main.signal(signal.SIGKILL)
            main.start()
            producing.join()
            ready.append(main.wait_ready())
            continue
        main.wait_for_events(before)
        time.sleep(rng.uniform(0.0, PACE_S / 2))
        if step == "join":
            second.start()
            report["rebalances"] += 1
            print("second worker joins (rebalance)", file=sys.stderr)
            ready.append(second.wait_ready())
        elif step == "leave":
            second.signal(signal.SIGTERM)
            report["rebalances"] += 1
            print("second worker stops (rebalance)", file=sys.stderr)
        elif step == "broker":
            producing.join()  # what the harness sends must arrive; the worker is busy
            print("stopping the broker", file=sys.stderr)
            broker.stop(base)
            time.sleep(rng.uniform(5, 10))
            broker.start(base)
            report["broker_restarts"] += 1
            print("broker back", file=sys.stderr)
        producing.join()
    asyncio.run(produce_log(settings["dis"], slices[-1]))
    if not main.alive():
        main.start()
    span = (start, end)
    try:
        try:
            reference = asyncio.run(finished(settings["ref"], span))
            disturbed = asyncio.run(finished(settings["dis"], span))
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\nwatermarks: {ref.watermarks()}\n"
                               f"{main.watermarks()}") from exc
    finally:
        for w in (ref, main, second):
            w.signal(signal.SIGTERM)
    problems = compare(reference, disturbed)
    report.update({
        "keys_compared": len(reference), "mismatches": len(problems),
        "examples": problems[:10],
        "restore_seconds": sorted(main.restore_seconds() + second.restore_seconds()),
        "ready_after_restart_seconds": [round(x, 1) for x in ready],
        "replayed_partials_logged": log_says(main.log, "restored "),
        "restores_from_local_checkpoint": log_says(
            main.log, "changelog tail after the local checkpoint"),
        "restores_from_whole_changelog": log_says(main.log, "whole changelog"),
        "broker_away_warnings": log_says(main.log, "Kafka broker unreachable"),
        "broker_back_lines": log_says(main.log, "Kafka broker reachable again"),
        # aiokafka's own per-retry lines (the summary quotes the first one as a warning)
        "raw_connection_errors_logged": log_lines(main.log,
                                                  r"ERROR aiokafka.*Unable connect to node"),
        "tracebacks_in_worker_log": log_says(main.log, "Traceback"),
    })
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=3.0, help="simulated days (default 3)")
    ap.add_argument("--kills", type=int, default=6,
                    help="SIGKILLs of the disturbed worker (default 6)")
    ap.add_argument("--sessions-per-day", type=float, default=3000,
                    help="simulated traffic volume (default 3000)")
    ap.add_argument("--rebalance", action=argparse.BooleanOptionalAction, default=True,
                    help="a second worker joins and later leaves (default on)")
    ap.add_argument("--broker-restart", action=argparse.BooleanOptionalAction, default=True,
                    help="stop and restart the local broker mid-stream (default on; it "
                         "restarts the broker of `kpi-streams broker`)")
    ap.add_argument("--faults", type=int, default=2,
                    help="crashes inside a flush's store write, alternating the moment "
                         "(after the changelog / after the local store; default 2)")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    workdir = ROOT / "bench" / "results" / f"chaos-{stamp}"
    report = run(args.days, args.kills, args.sessions_per_day, args.rebalance,
                 args.broker_restart, args.seed, workdir, faults=args.faults)
    out = ROOT / "bench" / "results" / f"chaos-{stamp}.json"
    out.write_text(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    for k, v in report.items():
        print(f"{k:28} {v}")
    print(f"\nwritten to {out} (worker logs in {workdir})")
    return 0 if report["mismatches"] == 0 and report["tracebacks_in_worker_log"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
