"""Build the Faust app from settings: agents, timers and rebalance hooks. No KPI logic.

Faust provides the consumer group, partition assignment, offset commits and
the agent loop. Windowing, state and durability are ours (``streams/kpis`` and
``streams/store.py``), for the reasons measured in ``../shared/design.md``.
Faust's own web server stays off (no ``/table`` pages); the worker serves its
read-only HTTP API from :mod:`streams.outputs.http` on ``KPI_WEB_HOST``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn

import faust
import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from faust.types.auth import SASLMechanism
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector

from .agents.horizon import InputTails
from .agents.intake import BUFFER_TAKES_LEAST, Intake, use_lean_consumer
from .agents.runner import StageRunner, now_ms
from .agents.stages import MergeStage, build_runners
from .events import Decoder
from .kafka import client_kwargs, consumer, producer, ssl_context
from .kpis import buckets
from .kpis.targets import load_targets
from .logs import BrokerOutageLog, FreshAssignmentNoise
from .outputs.collector import KpiCollector
from .outputs.hub import SnapshotHub
from .outputs.metrics import Metrics
from .outputs.pacing import TargetBoard, TargetCollector
from .outputs.scrape import EvaluatedOnLoop
from .settings import Settings
from .statestore import StoreMemory
from .topics import Topics
from .topology import modes

log = logging.getLogger(__name__)

LOOP_PROBE_S = 0.1  # the event-loop lag probe's sleep


@dataclass
class Pipeline:
    """Everything one worker process runs besides Faust itself."""

    settings: Settings
    topics: Topics
    registry: CollectorRegistry
    metrics: Metrics
    hub: SnapshotHub = field(default_factory=SnapshotHub)
    producer: AIOKafkaProducer | None = None
    runners: dict[str, StageRunner[Any]] = field(default_factory=dict)
    _started: bool = False
    _start_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    rebalancing: bool = False
    outage: BrokerOutageLog | None = None
    fresh: FreshAssignmentNoise | None = None
    targets: TargetBoard | None = None  # KPI_TARGETS: goals and their pacing
    tails: InputTails | None = None  # KPI_REPLAY_SKIP_EXPIRED: reads the inputs' horizon
    horizon_read_at: int = 0  # wall clock of the last read
    input_horizon: int | None = None  # the highest read so far (what the stages use)
    # the gauges read from the merge state: evaluated on the loop for the metrics port
    evaluated: EvaluatedOnLoop = field(default_factory=EvaluatedOnLoop)
    # the timers' work under way: at most one task per kind (see ``soon``)
    _running: dict[str, asyncio.Future[None]] = field(default_factory=dict)

    async def start(self) -> None:
        async with self._start_lock:
            if not self._started:
                # aiokafka clients bind to the running loop, so they are made here
                self.producer = producer(self.settings, linger_ms=2)
                await self.producer.start()
                for runner in self.runners.values():
                    runner.producer = self.producer
                # a replay skips from its first batch, not from the timer's first round
                await self.read_horizon()
                self._started = True

    async def read_horizon(self, every_ms: int = 0) -> None:
        """Read the inputs' horizon and tell every stage (KPI_REPLAY_SKIP_EXPIRED):
        if ``every_ms`` passed since the last read, or the inputs grew by a backlog."""
        if self.tails is None:
            return
        wall = now_ms()
        try:
            if wall - self.horizon_read_at < every_ms and not await self.tails.grown():
                return
            hz = await self.tails.horizon(wall)
        except KafkaError as exc:  # the broker is away: keep the last one, try again
            log.debug("horizon: cannot read the inputs' tails (%s)", exc)
            return
        self.horizon_read_at = wall
        # it only moves on: a late event at a partition's tail, or a read that timed
        # out, can make a read lower (or unknown), but the stages skipped rows and the
        # merge stage expired cells by the highest one; a lower one sent with a later
        # flush would leave a minute the web stage no longer builds counted in part
        held = self.input_horizon
        if hz is None or (held is not None and hz < held):
            hz = held
        self.input_horizon = hz
        for runner in self.runners.values():
            runner.input_horizon = hz
        self.metrics.input_horizon.set(0 if hz is None else hz / 1000)

    def soon(self, what: str, work: Callable[[], Awaitable[None]]) -> None:
        """Start ``work`` in its own task unless the last one of ``what`` is still
        under way. A timer calls this and returns at once: a stage's tick waits for
        the step that holds its lock, and the horizon for the broker, without making
        the timer (and every other stage's tick) wait with them. An error ends the
        worker, as it would have in the timer."""
        task = self._running.get(what)
        if task is not None and not task.done():
            return

        async def run() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                fatal(what)

        self._running[what] = asyncio.ensure_future(run())

    def tick_soon(self) -> None:
        """The tick timer: every stage ticks as soon as its own lock is free (after
        the batch it is processing), not behind the stages before it."""
        for name, runner in self.runners.items():
            self.soon(f"the tick of stage {name}", partial(self._tick, runner))

    async def _tick(self, runner: StageRunner[Any]) -> None:
        await self.start()
        await runner.tick()

    async def hold(self) -> None:
        """Stop the timers from writing and wait for any flush under way to finish."""
        self.rebalancing = True
        for runner in self.runners.values():
            async with runner.lock:
                pass

    async def settle(self) -> None:
        """Cancel the timers' work under way and wait until it has ended (before the
        clients it uses stop under it)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        await self.settle()
        if self._started and self.producer is not None:
            await self.producer.stop()
            self._started = False

    @property
    def merge(self) -> MergeStage:
        runner = self.runners["merge"]
        assert isinstance(runner, MergeStage)
        return runner


async def watch_loop(lag: Histogram, probe_s: float = LOOP_PROBE_S) -> None:
    """Observe, forever, how late a ``probe_s`` sleep wakes up: the longest step that
    held the event loop (a batch, an emission, a restore slice) shows as lag."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(probe_s)
        lag.observe(max(0.0, loop.time() - asked - probe_s))


def worker_id(settings: Settings) -> str:
    return settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"


def build_pipeline(settings: Settings, registry: CollectorRegistry | None = None) -> Pipeline:
    # one reporting zone per process: every bucket, snapshot time and /metrics follow it
    buckets.use(settings.timezone, settings.week_start)
    topics = Topics(settings)
    if registry is None:
        registry = CollectorRegistry()
        # resident memory, CPU, open files: what an operator checks first on a worker
        ProcessCollector(registry=registry)
    metrics = Metrics.create(registry)
    decoder = Decoder.from_settings(settings)

    def consumer_factory() -> Any:
        return consumer(settings, max_partition_fetch_bytes=8 * 1024 * 1024,
                        fetch_max_bytes=64 * 1024 * 1024)

    common: dict[str, Any] = {"settings": settings, "producer": None,
                              "consumer_factory": consumer_factory, "metrics": metrics}
    if settings.state_store == "rocksdb":
        # one memory budget for every embedded store of this worker
        common["store_memory"] = StoreMemory(settings.state_cache_bytes)
    pipe = Pipeline(settings, topics, registry, metrics)
    pipe.runners = build_runners(topics, decoder, **common)
    for runner in pipe.runners.values():
        runner.paused = lambda: pipe.rebalancing
        runner.spawn = pipe.soon
    if settings.replay_skip_expired:
        pipe.tails = InputTails(settings, topics, decoder)
    merge = pipe.merge
    merge.publish = pipe.hub.publish
    merge.listeners = lambda: len(pipe.hub.subs)
    merge.others_working = lambda: any(r.working() for r in pipe.runners.values()
                                       if r is not merge)
    pipe.evaluated.add(KpiCollector(merge.procs, modes(settings), settings.reporting_currency))
    if settings.targets_file is not None:
        pipe.targets = TargetBoard(load_targets(settings.targets_file),
                                   lambda: {p: part.proc for p, part in merge.parts.items()},
                                   settings.kpi_partitions)
        pipe.evaluated.add(TargetCollector(pipe.targets))
    return pipe


def _credentials(settings: Settings) -> Any:
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username, password=settings.sasl_password.get(),
            mechanism=SASLMechanism(settings.sasl_mechanism),
            ssl_context=ssl_context(settings))
    if settings.security_protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return None


def _datadir(settings: Settings) -> Any:
    path = settings.home / "worker" / settings.consumer_group
    path.mkdir(parents=True, exist_ok=True)
    return path


def fatal(where: str) -> NoReturn:
    """End the process on an unexpected error (a bug, or Kafka refusing for good).

    Faust would mark the app crashed and leave the process running, doing nothing.
    Exiting lets a supervisor restart the worker, which then restores its state from
    the changelogs exactly as after a SIGKILL: nothing is lost or counted twice.
    """
    log.critical("fatal error in %s; the worker exits so it can be restarted", where,
                 exc_info=True)
    logging.shutdown()
    os._exit(70)


def create_app(settings: Settings, pipe: Pipeline) -> faust.App:
    """The Faust app: one agent per stage, a timer, and rebalance hooks."""
    servers = [f"kafka://{s.strip()}" for s in settings.bootstrap.split(",") if s.strip()]
    app = faust.App(
        settings.consumer_group,
        broker=servers,
        broker_credentials=_credentials(settings),
        store="memory://",
        web_enabled=False,  # our own read-only server; Faust's /table pages stay off
        topic_replication_factor=settings.replication_factor,
        topic_partitions=settings.input_partitions,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        # resized by each stage to its messages' size (Intake.fit)
        stream_buffer_maxsize=BUFFER_TAKES_LEAST * settings.take_messages,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        # a crashed worker's partitions move after this; heartbeats well inside it
        broker_session_timeout=settings.group_session_timeout_ms / 1000,
        broker_heartbeat_interval=min(3.0, settings.group_session_timeout_ms / 3000),
        producer_acks=-1,
        datadir=str(_datadir(settings)),
        logging_config=None,
    )
    # messages reach the channels without Faust's per-message race (see LeanConsumer)
    use_lean_consumer(app)

    def agent_for(name: str, runner: StageRunner[Any]) -> None:
        channel = app.topic(*runner.input_topics, key_serializer="raw",
                            value_serializer="raw")
        within = max(settings.flush_interval_ms / 1000.0, 0.01)

        async def run(stream: Any) -> None:
            await pipe.start()
            # batches straight from the stream's channel: not a loop turn per message
            intake = Intake(stream, settings.take_messages, within)
            try:
                async for events in intake.batches():
                    await runner.handle(events, intake.ack, more=intake.more)
            except Exception:
                fatal(f"stage {name}")

        run.__name__ = f"stage_{name}"
        app.agent(channel, name=f"kpi-streams.{name}")(run)

    for name, runner in pipe.runners.items():
        agent_for(name, runner)

    @app.timer(interval=1.0, name="kpi-streams.tick")
    async def tick() -> None:
        if not pipe.rebalancing:
            pipe.tick_soon()

    @app.task
    async def loop_lag() -> None:
        await watch_loop(pipe.metrics.loop_lag)

    if pipe.targets is not None:
        board = pipe.targets

        @app.timer(interval=settings.snapshot_slow_interval_ms / 1000,
                   name="kpi-streams.targets")
        async def publish_targets() -> None:
            # a target's record on the KPI topic, when its pacing changed; at the
            # cadence of the other slow-moving records (months, rolling views)
            if pipe.rebalancing or pipe.producer is None:
                return
            changed = board.changed(board.evaluate())
            try:
                for key, doc in changed:
                    await pipe.producer.send(pipe.topics.snapshots, key=key.encode(),
                                             value=orjson.dumps(doc))
                await pipe.producer.flush()
            except KafkaError as exc:  # the broker is away: the next round sends again
                board.forget([key for key, _ in changed])
                log.warning("targets: cannot publish (%s); next round retries", exc)

    lag_probe: dict[str, Any] = {}

    @app.timer(interval=10.0, name="kpi-streams.lag")
    async def measure_lag() -> None:
        if pipe.rebalancing:
            return
        probe = lag_probe.get("c")
        if probe is None:
            probe = consumer(settings)
            try:
                await probe.start()
            except KafkaError as exc:  # the broker is away: measure next time
                await probe.stop()
                if pipe.outage is None or not pipe.outage.away:
                    log.warning("lag: cannot reach Kafka (%s)", exc)
                return
            lag_probe["c"] = probe
        for name, runner in pipe.runners.items():
            tps = [TopicPartition(t, p) for t in runner.input_topics for p in runner.assigned]
            if not tps:
                runner.metrics.consumer_lag.labels(name).set(0)
                continue
            try:
                ends = await probe.end_offsets(tps)
            except KafkaError as exc:
                if pipe.outage is None or not pipe.outage.away:
                    log.warning("lag: cannot read end offsets (%s)", exc)
                return
            if pipe.outage is not None:
                pipe.outage.reachable()
            lag = 0
            for tp, end in ends.items():
                part = runner.parts.get(tp.partition)
                done = part.offsets.get(f"{tp.topic}/{tp.partition}", -1) if part else -1
                lag += max(0, end - 1 - done)
            runner.metrics.consumer_lag.labels(name).set(lag)

    if pipe.tails is not None:
        @app.timer(interval=1.0, name="kpi-streams.horizon")
        async def read_horizon() -> None:
            # the inputs' horizon moves on as they grow: read every 10 s, and at once
            # when a backlog lands (a replay produced while the worker runs)
            if not pipe.rebalancing and pipe._started:
                pipe.soon("the horizon", partial(pipe.read_horizon, every_ms=10_000))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def on_shutdown(sender: Any, **_: Any) -> None:
        # what batches left unflushed is flushed and a flush under way finishes (it is
        # crash-safe anyway, but a clean stop should not leave work to do again), then
        # the timers' work ends; then our own Kafka clients close. (Faust, before it
        # gets here, waits for fetched messages to be acknowledged, which the deferred
        # flush does within a flush interval: StageRunner._flush_later.)
        for runner in pipe.runners.values():
            await runner.flush_pending()
        await pipe.hold()
        await pipe.settle()
        probe = lag_probe.pop("c", None)
        if probe is not None:
            await probe.stop()
        if pipe.tails is not None:
            await pipe.tails.stop()
        await pipe.stop()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        # eager rebalancing revokes everything; keep state in memory but stop
        # writing until the new assignment says which partitions are still ours
        await pipe.hold()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        for runner in pipe.runners.values():
            mine = {tp.partition for tp in assigned if tp.topic in runner.input_topics}
            lost = set(runner.parts) - mine
            if lost:
                await runner.on_revoked(lost)
            runner.on_assigned(mine)
        pipe.rebalancing = False
        if pipe.fresh is not None:
            pipe.fresh.assigned()
        log.info("assignment: %s", {name: sorted(r.assigned)
                                    for name, r in pipe.runners.items()})

    return app


__all__ = ["Pipeline", "build_pipeline", "client_kwargs", "create_app", "watch_loop", "worker_id"]
