"""The stage runner's flush protocol, with an in-memory producer instead of Kafka.

What is checked here is the glue's own logic (which flush reports what to whom),
not Kafka: a fake producer records every record sent to every (topic, partition).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from streams import statecodec
from streams.agents.runner import LoopHold
from streams.agents.stages import FunnelStage, InputStage
from streams.events import Decoder
from streams.outputs.metrics import Metrics
from streams.schemas import parse_rfc3339_ms
from streams.settings import load_settings
from streams.topics import Topics


class _Batch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None]] = []

    def append(self, key: bytes | None, value: bytes | None, timestamp: Any,
               headers: Any) -> object:
        self.records.append((key, value))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class FakeProducer:
    """Acknowledges everything at once and keeps what was sent, by (topic, partition)."""

    def __init__(self, partitions: int) -> None:
        self.sent: dict[tuple[str, int], list[Any]] = defaultdict(list)
        self.n = partitions

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> Any:
        for _key, value in batch.records:
            sent = None if value is None else statecodec.decode(value)
            self.sent[(topic, partition)].append(sent)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.n))

    def clear(self) -> None:
        self.sent.clear()


class Changelog:
    """A consumer of one state partition holding ``records`` (key, value, flush id),
    served in batches as aiokafka's ``getmany`` would."""

    def __init__(self, records: list[tuple[bytes, bytes, str]], batch: int = 500) -> None:
        self.records, self.batch, self.pos = records, batch, 0

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def assign(self, tps: Any) -> None: ...

    async def seek_to_beginning(self, *tps: Any) -> None:
        self.pos = 0

    def seek(self, tp: Any, offset: int) -> None:
        self.pos = offset

    async def end_offsets(self, tps: Any) -> dict[Any, int]:
        return dict.fromkeys(tps, len(self.records))

    async def position(self, tp: Any) -> int:
        return self.pos

    async def getmany(self, tp: Any, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        await asyncio.sleep(0)
        out = []
        for off in range(self.pos, min(self.pos + self.batch, len(self.records))):
            key, value, flush = self.records[off]
            out.append(SimpleNamespace(offset=off, key=key, value=value,
                                       headers=[("f", flush.encode())]))
        self.pos += len(out)
        return {tp: out}


KPI_PARTS = 6  # more stage-3 partitions than one page view's dims fill


def _settings(**extra: str) -> Any:
    return load_settings({"KPI_INPUT_PARTITIONS": "3", "KPI_KPI_PARTITIONS": str(KPI_PARTS),
                          "KPI_STATE_STORE": "memory", **extra})


def _stage(cls: Any, *args: Any, settings: Any = None) -> tuple[Any, FakeProducer]:
    s = settings or _settings()
    prod = FakeProducer(KPI_PARTS)
    stage = cls(*args, settings=s, producer=prod, consumer_factory=lambda: Changelog([]),
                metrics=Metrics.create(CollectorRegistry()))
    return stage, prod


def _web_stage(**settings: str) -> tuple[Any, FakeProducer, Topics, str]:
    """Stage 1's web runner over fakes, with its topics and the page-view topic."""
    s = _settings(**settings)
    topics = Topics(s)
    stage, prod = _stage(InputStage, "web", topics, Decoder.from_settings(s), settings=s)
    return stage, prod, topics, topics.input("page_view")


def _message(topic: str, partition: int, offset: int, doc: Any) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition,
                                                   offset=offset, value=orjson.dumps(doc)))


async def _noack(ev: Any) -> None:
    return None


def _page_view(i: int, minute: int) -> dict[str, Any]:
    return {"event_type": "page_view", "event_id": f"pv-{i}", "schema_version": 1,
            "occurred_at": f"2026-11-09T10:{minute:02d}:00Z", "visitor_id": "v-1",
            "url": "https://www.acme.example/pricing", "page_type": "pricing",
            "device": "desktop", "channel": "direct"}


def _partial_marks(prod: FakeProducer, topic: str) -> dict[int, list[Any]]:
    """Per partials partition, the watermark documents its messages carried."""
    return {p: [doc["wm"] for doc in docs] for (t, p), docs in prod.sent.items() if t == topic}


def test_a_moved_watermark_reaches_every_downstream_partition_though_batches_keep_coming(
) -> None:
    """Batches flush only to the partitions they carry data for. If they arrive faster
    than the timer's full flush would otherwise run, the timer must still tell every
    other partition that the watermark moved (a merge partition that never hears it
    never finalises a bucket; seen in CI's chaos run)."""
    stage, prod, topics, pv = _web_stage()

    async def scenario() -> None:
        await stage.handle([_message(pv, 0, 0, [_page_view(0, 0)])], _noack)
        await stage.tick()  # the first full flush: everyone hears from web/0
        for minute in range(1, 4):
            prod.clear()
            await stage.handle([_message(pv, 0, minute, [_page_view(minute, minute)])],
                               _noack)
            hot = _partial_marks(prod, topics.partials)
            assert len(hot) < KPI_PARTS, "the scenario needs a partition without data"
            prod.clear()
            await stage.tick()  # right after the batch's flush: not stale, nothing dirty
            marks = _partial_marks(prod, topics.partials)
            want = _page_view(minute, minute)["occurred_at"]
            for p in range(KPI_PARTS):
                assert marks.get(p), f"partials/{p} did not hear that web/0 moved to {want}"
                assert marks[p][-1][f"{pv}/0"] == parse_rfc3339_ms(want)
            leads = {p for (t, p) in prod.sent if t == topics.leads}
            assert leads == {0, 1, 2}  # stage 2 hears it too
        prod.clear()
        await stage.tick()  # nothing moved, nothing to say
        assert not _partial_marks(prod, topics.partials)

    asyncio.run(scenario())


def test_the_funnel_reports_its_watermark_to_every_partition_once_its_sources_moved(
) -> None:
    s = _settings()
    topics = Topics(s)
    stage, prod = _stage(FunnelStage, topics, Decoder.from_settings(s))
    web = [f"{topics.input(t)}/{p}" for t in ("page_view", "form_submit") for p in range(3)]

    async def scenario() -> None:
        for offset, t in enumerate((1_794_218_400_000, 1_794_222_000_000)):
            hb = {"hb": "web/0", "wm": dict.fromkeys(web, t)}
            await stage.handle([_message(topics.leads, 1, offset, hb)], _noack)
            prod.clear()
            await stage.tick()
            marks = _partial_marks(prod, topics.partials)
            assert sorted(marks) == list(range(KPI_PARTS))
            assert all(m[-1] == {f"{topics.leads}/1": t} for m in marks.values())

    asyncio.run(scenario())


def test_a_long_restore_reports_progress_and_keeps_only_confirmed_flushes(
        monkeypatch: Any, caplog: Any) -> None:
    """An operator must see that a restarting worker is reading its changelog, not hung:
    progress lines and the restore gauge while it reads, the time it took after."""
    import logging

    import streams.store as store

    monkeypatch.setattr(store, "PROGRESS_EVERY_S", 0.0)  # report after every batch
    s = _settings()
    topics = Topics(s)
    records: list[tuple[bytes, bytes, str]] = []
    for flush in range(10):  # ten confirmed flushes of 500 event ids each
        fid = f"flush{flush}"
        records += [(f"e{flush}-{i}".encode(), b"1794218400000", fid) for i in range(500)]
        records.append((store.META_KEY, orjson.dumps(
            {"seq": flush + 1, "offsets": {}, "clocks": {}, "flush": fid, "out": 0}), fid))
    records += [(b"orphan", b"1794218400000", "never-confirmed")]  # a crash mid-flush
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    stage = InputStage("spend", topics, Decoder.from_settings(s), settings=s,
                       producer=FakeProducer(KPI_PARTS),
                       consumer_factory=lambda: Changelog(records), metrics=metrics)
    stage.on_assigned({0})
    with caplog.at_level(logging.INFO, logger="streams.agents.runner"):
        part = asyncio.run(stage.part(0))
    lines = [r.getMessage() for r in caplog.records]
    progress = [ln for ln in lines if ln.startswith("restoring spend/0:")]
    assert len(progress) >= 5, lines
    done = [int(ln.split(": ", 1)[1].split(" of ")[0]) for ln in progress]
    assert done == sorted(done) and done[-1] < len(records)
    assert all(ln.endswith(f"of {len(records)} changelog records") for ln in progress)
    assert any(ln.startswith(f"restored spend/0: {len(records)} records in ") for ln in lines)
    assert registry.get_sample_value("kpi_streams_restore_progress_ratio",
                                     {"stage": "spend", "partition": "0"}) == 1.0
    assert registry.get_sample_value("kpi_streams_restore_duration_seconds",
                                     {"stage": "spend", "partition": "0"}) is not None
    assert len(part.proc.seen) == 5000 and "orphan" not in part.proc.seen
    assert part.seq == 10
    assert "orphan" in part.dirty  # its confirmed value (none) is written again


def test_a_fault_point_is_spelled_out_or_refused() -> None:
    from streams.agents.faults import FaultPoint

    fault = FaultPoint("after-store:3")
    fault.reached("after-changelog")  # another moment: not counted
    fault.reached("after-store")
    assert (fault.point, fault.n, fault.count) == ("after-store", 3, 1)
    for bad in ("after-store", "during:1", "after-store:0", "after-store:x"):
        with pytest.raises(ValueError, match="KPI_FAULT"):
            FaultPoint(bad)


class RecordingProducer(FakeProducer):
    """Also keeps each state record as sent (key, raw value), for a restore to read."""

    def __init__(self, partitions: int, state_topic: str) -> None:
        super().__init__(partitions)
        self.state_topic = state_topic
        self.raw: list[tuple[bytes, bytes]] = []

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> Any:
        if topic == self.state_topic:
            self.raw += [(k or b"", v or b"") for k, v in batch.records]
        return await super().send_batch(batch, topic, partition)


def _changelog(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes, str]]:
    """The records of whole flushes, each tagged with its flush id (its meta's)."""
    import streams.store as store

    out: list[tuple[bytes, bytes, str]] = []
    pending: list[tuple[bytes, bytes]] = []
    for key, value in raw:
        pending.append((key, value))
        if key == store.META_KEY:
            fid = orjson.loads(value)["flush"]
            out += [(k, v, fid) for k, v in pending]
            pending = []
    return out


def _merge_with_a_published_cell(listeners: int = 1, live: list[Any] | None = None
                                 ) -> tuple[Any, RecordingProducer, list[Any]]:
    """A merge stage that applied one page view's partials and published its cells
    (with ``listeners`` watching live, who get ``live``)."""
    from streams.agents.stages import MergeStage

    s = _settings()
    topics = Topics(s)
    web, web_prod = _stage(InputStage, "web", topics, Decoder.from_settings(s))
    pv = topics.input("page_view")
    asyncio.run(web.handle([_message(pv, 0, 0, [_page_view(0, 0)])], _noack))
    partials = [(p, doc) for (t, p), docs in web_prod.sent.items() if t == topics.partials
                for doc in docs if doc["d"]]
    prod = RecordingProducer(KPI_PARTS, topics.state("merge"))
    merge = MergeStage(topics, settings=s, producer=prod,
                       consumer_factory=lambda: Changelog([]),
                       metrics=Metrics.create(CollectorRegistry()))
    merge.listeners = lambda: listeners  # someone watches: open cells are published too
    if live is not None:
        merge.publish = live.extend
    p, doc = partials[0]
    merge.on_assigned({p})
    asyncio.run(merge.handle([_message(topics.partials, p, 0, doc)], _noack))
    # every source moves far ahead: the cells become final and are published as such
    far = parse_rfc3339_ms("2027-01-01T00:00:00Z")
    marks = {f"{t}/{q}": far for ts in merge.cfg.feeds.values() for t in ts for q in range(3)}
    done = {"src": "test/0", "seq": 1, "part": 0, "wm": marks, "d": [], "h": []}
    merge.last_emit.clear()  # emit at once, not after the live interval
    asyncio.run(merge.handle([_message(topics.partials, p, 1, done)], _noack))
    return merge, prod, [p, doc]


def test_the_merge_stage_keeps_what_it_published_with_the_flush_and_a_restore_republishes(
) -> None:
    """Snapshots are not persisted; the keys of what a flush published are (in its meta),
    so a worker that dies before sending them publishes them again after a restore."""
    import streams.store as store

    merge, prod, (p, _) = _merge_with_a_published_cell()
    metas = [orjson.loads(v) for k, v in prod.raw if k == store.META_KEY]
    published = [m["republish"] for m in metas if "republish" in m]
    assert published and published[-1][0], "the flush names the cells it published"
    cells = {tuple(c) for c in published[-1][0]}
    assert all(merge.parts[p].proc.cells[c].final for c in cells)
    # nothing in the flush's outbox is a note to ourselves any more
    outs = [orjson.loads(v) for k, v in prod.raw if k.startswith(store.OUT_BYTES)]
    assert all(item[0] for chunk in outs for item in chunk["items"])

    again = type(merge)(merge.topics, settings=merge.settings, producer=FakeProducer(KPI_PARTS),
                        consumer_factory=lambda: Changelog(_changelog(prod.raw)),
                        metrics=Metrics.create(CollectorRegistry()))
    again.on_assigned({p})
    part = asyncio.run(again.part(p))
    assert cells <= part.proc.pending


def test_a_changelog_of_the_release_before_republishes_from_its_outbox_note() -> None:
    """Before, the note was an outbox item with an empty topic: still honoured, not sent."""
    import streams.store as store

    merge, prod, (p, _) = _merge_with_a_published_cell()
    records = _changelog(prod.raw)
    key, value, fid = records[-1]
    meta = orjson.loads(value)
    cells, views = meta.pop("republish")
    note = ["", None, "republish", [cells, views]]
    meta["out"] = 1
    records[-1] = (f"{store.OUT_PREFIX}0".encode(),
                   orjson.dumps({"flush": fid, "items": [note]}), fid)
    records.append((key, orjson.dumps(meta), fid))
    again = type(merge)(merge.topics, settings=merge.settings, producer=FakeProducer(KPI_PARTS),
                        consumer_factory=lambda: Changelog(records),
                        metrics=Metrics.create(CollectorRegistry()))
    again.on_assigned({p})
    part = asyncio.run(again.part(p))
    assert {tuple(c) for c in cells} <= part.proc.pending
    assert part.outbox == []  # the note is not a message


def test_minute_documents_are_built_only_for_someone_watching_live() -> None:
    """1m cells are not on the KPI topic by default: their documents are built for the
    live stream, and a replay with nobody watching does not build them at all."""
    watched: list[Any] = []
    _merge_with_a_published_cell(listeners=1, live=watched)
    unwatched: list[Any] = []
    merge, _, _ = _merge_with_a_published_cell(listeners=0, live=unwatched)
    assert "1m" not in merge.publish_windows
    assert {d["bucket"] for d in watched} >= {"1m", "1h", "1d"}
    cells = {"1m", "1h", "1d"}  # (open rolling views wait for the replay's end)
    assert {d["bucket"] for d in unwatched} & cells == {"1h", "1d"}


def test_minute_rows_a_horizon_read_after_their_batch_puts_past_retention_are_dropped(
) -> None:
    """Rows built before the horizon moved past them (the probe read it between a
    batch and its flush) are dropped at the flush, and counted."""
    s = _settings(KPI_RETENTION_1M="2d")
    topics = Topics(s)
    stage, prod = _stage(InputStage, "web", topics, Decoder.from_settings(s), settings=s)
    pv = topics.input("page_view")

    async def scenario() -> None:
        # flushed just now, and more input waiting: the batch's flush is deferred
        stage.flushed_at = int(time.time() * 1000)
        await stage.handle([_message(pv, 0, 0, [_page_view(0, 0)])], _noack,
                           more=lambda: True)
        stage.input_horizon = parse_rfc3339_ms("2026-11-20T00:00:00Z")
        await stage.flush_pending()

    asyncio.run(scenario())
    docs = [doc for (t, _), sent in prod.sent.items() if t == topics.partials for doc in sent]
    assert {row[1] for doc in docs for row in doc["d"]} == {"1h", "1d"}
    skipped = {sample.labels["bucket"]: sample.value
               for metric in stage.metrics.past_retention.collect()
               for sample in metric.samples if sample.name.endswith("_total")}
    assert skipped.get("1m", 0) > 0 and "1h" not in skipped


@pytest.mark.parametrize("skip, horizon", [
    ("true", "2026-11-20T00:00:00Z"), ("true", None), ("false", "2026-11-20T00:00:00Z")])
def test_a_replay_skips_minute_cells_past_retention_from_the_inputs_horizon(
        skip: str, horizon: str | None) -> None:
    """With KPI_REPLAY_SKIP_EXPIRED (the default) a replay does not send minute cells
    the merge stage would delete before the replay reaches the inputs' horizon (the
    web stage does not even build them), and tells the merge stage the horizon; hour
    and day cells go as before. Without a horizon (unknown), or with the setting off,
    every minute cell goes."""
    s = _settings(KPI_RETENTION_1M="2d", KPI_REPLAY_SKIP_EXPIRED=skip)
    topics = Topics(s)
    stage, prod = _stage(InputStage, "web", topics, Decoder.from_settings(s), settings=s)
    hz = None if horizon is None else parse_rfc3339_ms(horizon)
    stage.input_horizon = hz
    pv = topics.input("page_view")
    asyncio.run(stage.handle([_message(pv, 0, 0, [_page_view(0, 0)])], _noack))
    docs = [doc for (t, _), sent in prod.sent.items() if t == topics.partials for doc in sent]
    sizes = {row[1] for doc in docs for row in doc["d"]}
    skipped = {sample.labels["bucket"]: sample.value
               for metric in stage.metrics.past_retention.collect()
               for sample in metric.samples if sample.name.endswith("_total")}
    if skip == "true" and hz is not None:
        assert sizes == {"1h", "1d"}  # 2026-11-09 10:00 is 11 days before the horizon
        assert not skipped  # not built, so nothing to drop
        assert {doc.get("hz") for doc in docs} == {hz}
    else:
        assert sizes == {"1m", "1h", "1d"} and not skipped
        assert all("hz" not in doc for doc in docs)


def _live_merge(windows: str, live: str = "1s") -> tuple[Any, Any, Any, int]:
    """A merge stage on live data (KPI_SNAPSHOT_INTERVAL 5 s, KPI_LIVE_INTERVAL
    ``live``, ``windows`` on the topic), one partition restored, and a way to apply a page view
    of the hour at a given wall clock; returns it with a wall clock ten minutes
    into that hour."""
    from streams.agents.stages import MergeStage

    s = _settings(KPI_PUBLISH_WINDOWS=windows, KPI_SNAPSHOT_INTERVAL="5s",
                  KPI_LIVE_INTERVAL=live)
    merge = MergeStage(Topics(s), settings=s, producer=FakeProducer(KPI_PARTS),
                       consumer_factory=lambda: Changelog([]),
                       metrics=Metrics.create(CollectorRegistry()))
    merge.on_assigned({0})
    part = asyncio.run(merge.part(0))
    hour = parse_rfc3339_ms("2026-11-09T10:00:00Z")
    seq = [0]

    def page_view_at(wall: int) -> None:
        seq[0] += 1
        marks = {f"{t}/{q}": wall for ts in merge.cfg.feeds.values() for t in ts
                 for q in range(3)}
        assert part.proc.apply({"src": "web/0", "seq": seq[0], "part": 0, "wm": marks,
                                "d": [["web", "1h", hour, "", {"pv": 1}],
                                      ["web", "1d", hour - 10 * 3_600_000, "", {"pv": 1}]],
                                "h": []})
        merge.last_data[0] = wall

    return merge, part, page_view_at, hour + 600_000


def test_a_change_since_the_last_round_makes_the_topic_when_its_cadence_comes() -> None:
    """Open cells go on the KPI topic every KPI_SNAPSHOT_INTERVAL, and changes are
    recomputed at most once per KPI_LIVE_INTERVAL: a change made after the last
    round would miss the cadence and wait a whole interval more. When the cadence
    comes round with changes pending, a round runs first (once a cadence)."""
    merge, part, page_view_at, w0 = _live_merge("1h,1d")

    def on_topic(wall: int) -> list[float]:
        part.after = []
        merge._maybe_emit(part, wall)
        return [item.value["numerator"] for item in part.after
                if item.key.startswith("pageviews|1h|") and item.key.endswith("|")
                and item.value is not None]

    page_view_at(w0)
    assert on_topic(w0) == [1]  # the first goes at once
    page_view_at(w0 + 4_500)
    assert on_topic(w0 + 4_500) == []  # built (a live interval passed), held for cadence
    page_view_at(w0 + 4_600)
    assert on_topic(w0 + 4_600) == []  # not built yet: within the live interval
    # the cadence: the third page view is built and goes with it, not 5 s later
    assert on_topic(w0 + 5_000) == [3]
    page_view_at(w0 + 5_100)
    assert on_topic(w0 + 5_100) == []  # the next cadence is 5 s on


def test_the_cadence_forces_no_round_when_nothing_on_it_is_published() -> None:
    """With only day cells on the topic (their cadence is the slow one), the fast
    cadence never comes round: changes wait for the live interval (20 s here)."""
    merge, part, page_view_at, w0 = _live_merge("1d", live="20s")
    page_view_at(w0)
    merge._maybe_emit(part, w0)
    assert merge.last_emit[0] == w0
    for dt in (100, 5_000, 10_000, 15_000):
        page_view_at(w0 + dt)
        merge._maybe_emit(part, w0 + dt)
        assert merge.last_emit[0] == w0, dt  # no round forced every 5 s
    page_view_at(w0 + 20_000)
    merge._maybe_emit(part, w0 + 20_000)
    assert merge.last_emit[0] == w0 + 20_000


def _backlog(merge: Any) -> dict[str, float]:
    return {s.labels["partition"]: s.value
            for s in next(iter(merge.metrics.emission_backlog.collect())).samples}


def test_the_emission_backlog_gauge_counts_what_waits_for_a_round_and_leaves_with_a_partition(
) -> None:
    """kpi_streams_emission_backlog: the changed cells (and rolling views) whose
    documents are not built yet, which is how a replay shows it has reached the
    topic; a revoked partition's value goes with it (its new owner reports it)."""
    merge, part, page_view_at, w0 = _live_merge("1h,1d")
    page_view_at(w0)
    merge._maybe_emit(part, w0)  # a round builds both cells
    assert _backlog(merge) == {"0": 0}
    page_view_at(w0 + 100)  # within the live interval: no round yet
    merge._maybe_emit(part, w0 + 100)
    assert _backlog(merge) == {"0": len(part.proc.pending) + len(part.proc.views_todo)}
    assert len(part.proc.pending) == 2  # the page view's 1h and 1d cells
    asyncio.run(merge.on_revoked({0}))
    assert _backlog(merge) == {}


def test_once_partials_stop_a_round_that_left_documents_is_followed_by_another_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While partials arrive, each batch runs a round; once they stop for
    BACKLOG_QUIET_MS (the end of a replay), a tick whose round left documents to
    build starts the next tick as soon as the loop has had its turn, instead of the
    timer's next (one round a partition a second)."""
    from streams.agents import merge as merge_module

    monkeypatch.setattr(merge_module, "EMIT_MAX_CELLS", 1)  # one cell a round
    merge, part, page_view_at, w0 = _live_merge("1h,1d")
    page_view_at(w0)
    hour = w0 - 600_000
    assert part.proc.apply({"src": "web/1", "seq": 1, "part": 0, "wm": {},
                            "d": [["web", "1h", hour - k * 3_600_000, "", {"pv": 1}]
                                  for k in range(1, 5)], "h": []})
    spawned: list[Any] = []
    merge.spawn = lambda what, work: spawned.append((what, work))

    async def tick(wall: int) -> None:
        await merge._tick(wall)
        await asyncio.sleep(0)  # the loop's turn, then the next tick is started

    left = merge_module.MergePartition.unbuilt(part.proc)
    asyncio.run(tick(w0 + 200))  # partials 200 ms ago: more may come with a batch
    assert merge.backlog[0] and spawned == []
    assert merge_module.MergePartition.unbuilt(part.proc) == left - 1
    # another stage of the worker has a batch under way: it comes first
    merge.others_working = lambda: True
    asyncio.run(tick(w0 + merge_module.BACKLOG_QUIET_MS))
    assert spawned == []
    merge.others_working = lambda: False
    asyncio.run(tick(w0 + merge_module.BACKLOG_QUIET_MS))
    assert spawned == [("the backlog of stage merge", merge.tick)]
    rounds = 3
    while spawned:  # each started tick runs a round, and starts the next while any is left
        _, work = spawned.pop()
        asyncio.run(work())
        rounds += 1
    assert merge_module.MergePartition.unbuilt(part.proc) == 0 and not merge.backlog[0]
    assert rounds == left  # one cell a round, and no round more


def test_a_catching_up_merge_batch_leaves_its_round_to_the_tick_while_another_stage_works(
) -> None:
    """A merge batch runs its rounds once every partition of it is applied. Catching
    up, it leaves them to the tick while another stage of the worker has work under
    way or waiting (the replay's events and partials come first); live, or with the
    other stages idle, the batch runs them."""
    merge, part, page_view_at, w0 = _live_merge("1h,1d")
    later = w0 + 3_600_000  # an hour behind the wall clock, data arriving: a replay
    page_view_at(w0)
    merge.last_data[0] = later
    merge.others_working = lambda: True
    asyncio.run(merge.finish_batch([part], later, LoopHold()))
    assert 0 not in merge.last_emit and len(part.proc.pending) == 2
    merge.others_working = lambda: False
    asyncio.run(merge.finish_batch([part], later, LoopHold()))
    assert merge.last_emit[0] == later and not part.proc.pending
    # live (not catching up), another stage's work does not hold the round back
    merge2, part2, page_view_at2, w2 = _live_merge("1h,1d")
    page_view_at2(w2)
    merge2.others_working = lambda: True
    asyncio.run(merge2.finish_batch([part2], w2, LoopHold()))
    assert merge2.last_emit[0] == w2 and not part2.proc.pending


def test_a_catch_up_ends_a_second_after_its_last_data_once_the_other_stages_are_idle(
) -> None:
    """A replay has ended for a merge partition once no data has come for 10 s; or
    for a second, once its rounds have built every final and no other stage of the
    worker has work under way or waiting (nothing in this worker can send it more),
    so its open cells go out sooner."""
    merge, part, page_view_at, w0 = _live_merge("1h,1d")
    later = w0 + 3_600_000  # an hour behind the wall clock: history
    page_view_at(w0)
    merge.last_data[0] = later
    merge.others_working = lambda: True  # stage 1 still reading: a lull of the replay
    assert merge.catching_up(part, later + 5_000)
    assert not merge.catching_up(part, later + 10_000)
    later += 20_000
    merge.last_data[0] = later  # more data: a catch-up again
    merge.others_working = lambda: False
    assert part.proc.pending  # no round yet: what changed may hold finals
    assert merge.catching_up(part, later + 5_000)
    merge._maybe_emit(part, later)  # a round catching up: the open cells wait aside
    assert not part.proc.pending and part.proc.deferred
    assert merge.catching_up(part, later + 500)
    assert not merge.catching_up(part, later + 1_000)
    # ended, the open cells go back to pending for the next round; that does not make
    # it a catch-up again (it did: the round after set them aside once more)
    merge._maybe_emit(part, later + 1_000)
    part.proc.pending.add(next(iter(part.proc.emitted_cells)))  # as a budgeted round left
    assert not merge.catching_up(part, later + 2_000)
    merge.last_data[0] = later + 3_000  # until more data comes
    assert merge.catching_up(part, later + 3_500)


def test_the_emission_backlog_gauge_counts_open_cells_a_catch_up_holds_back() -> None:
    """Catching up with nobody listening live, a round builds finals only and holds
    the open cells back until the catch-up ends: the KPI topic has not caught up
    until then, so the gauge counts them, though no round is due for them."""
    merge, part, page_view_at, w0 = _live_merge("1h,1d")
    later = w0 + 3_600_000  # an hour behind the wall clock (KPI_CATCHUP_LAG 15m)...
    page_view_at(w0)
    merge.last_data[0] = later  # ...with data arriving: a replay
    assert merge.catching_up(part, later)
    merge._maybe_emit(part, later)
    assert part.proc.unbuilt() == 0 and not merge.backlog[0]  # nothing to build now
    assert len(part.proc.deferred) == 2  # the page view's open 1h and 1d cells
    assert _backlog(merge) == {"0": 2}


def test_a_flush_serialises_each_output_once_for_the_changelog_and_the_send(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush's outputs go twice: into the changelog's outbox records (sized, then
    written, so a restore can send them again) and to their topics. Each value is
    serialised once (it was three times: twice for the changelog, once to send),
    and both copies are that JSON."""
    from streams import store as store_module
    from streams.agents import runner as runner_module
    from streams.agents.contracts import OutItem

    stage, prod, _, pv = _web_stage()
    asyncio.run(stage.handle([_message(pv, 0, 0, _page_view(0, 5))], _noack))
    part = stage.parts[0]
    values = [{"doc": i, "rows": [[i, "x"]]} for i in range(3)]
    part.outbox = [OutItem("out", 0, f"k{i}", v) for i, v in enumerate(values)]

    def holds(obj: Any, value: Any) -> bool:
        if obj is value:
            return True
        if isinstance(obj, dict):
            return any(holds(v, value) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return any(holds(v, value) for v in obj)
        return False

    calls = {i: 0 for i in range(len(values))}
    real = orjson.dumps

    class Counting:
        Fragment = orjson.Fragment

        @staticmethod
        def dumps(obj: Any, *args: Any, **kwargs: Any) -> bytes:
            for i, v in enumerate(values):
                calls[i] += holds(obj, v)
            return real(obj, *args, **kwargs)

    monkeypatch.setattr(runner_module, "orjson", Counting)
    monkeypatch.setattr(store_module, "orjson", Counting)
    prod.clear()
    asyncio.run(stage._flush(part, 0, full=False))
    assert calls == {0: 1, 1: 1, 2: 1}
    assert prod.sent[("out", 0)] == values  # as sent
    logged = [doc for (t, _p), docs in prod.sent.items() if t == stage.state_topic
              for doc in docs if isinstance(doc, dict) and "items" in doc]
    assert [item[3] for doc in logged for item in doc["items"]] == values  # as kept


def test_a_stage_works_while_a_batch_is_under_way_or_unflushed_not_while_it_ticks() -> None:
    """What the merge stage asks of the others to end a catch-up early: whether they
    can still send it data. Every stage ticks each second (heartbeats, expiry) under
    its lock; counted as work, the ticks kept a replay's catch-up from ending early."""
    stage, _, _, pv = _web_stage()
    seen: list[tuple[str, bool]] = []
    finish_batch, tick_part = stage.finish_batch, stage.tick_part

    async def batch_spy(parts: Any, wall: int, held: Any) -> None:
        seen.append(("batch", stage.working()))
        await finish_batch(parts, wall, held)

    def tick_spy(part: Any, wall: int) -> None:
        assert stage.lock.locked()
        seen.append(("tick", stage.working()))
        tick_part(part, wall)

    stage.finish_batch, stage.tick_part = batch_spy, tick_spy

    async def scenario() -> None:
        await stage.handle([_message(pv, 0, 0, [_page_view(0, 0)])], _noack)
        seen.append(("flushed", stage.working()))
        await stage.tick()
        # more input waiting: the flush waits for it, what is processed is not sent yet
        await stage.handle([_message(pv, 0, 1, [_page_view(1, 1)])], _noack, lambda: True)
        stage.more_input = lambda: False  # (the intake's buffer, emptied)
        seen.append(("unflushed", stage.working()))

    asyncio.run(scenario())
    assert seen == [("batch", True), ("flushed", False), ("tick", False), ("batch", True),
                    ("unflushed", True)]
