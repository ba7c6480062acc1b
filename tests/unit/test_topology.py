"""The worker and the in-process pipeline are built from one topology."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from streams.app import build_pipeline
from streams.local import LocalPipeline
from streams.settings import load_settings
from streams.topics import Topics
from streams.topology import EVENT_OF_RECORD, FEEDS, STAGE_OF_EVENT, STAGES


def test_both_pipelines_run_every_stage_of_the_topology_and_nothing_else() -> None:
    s = load_settings({"KPI_STATE_STORE": "memory"})
    pipe = build_pipeline(s, CollectorRegistry())
    assert list(pipe.runners) == [d.name for d in STAGES]
    assert list(LocalPipeline().stages) == [d.name for d in STAGES]
    topics = Topics(s)
    for d in STAGES:
        runner = pipe.runners[d.name]
        assert runner.input_topics == [topics.logical(t) for t in d.reads]
        assert runner.state_topic == topics.state(d.name)
    # the merge stage's finality follows the same feeds in both
    assert pipe.merge.cfg.feeds == {f: tuple(topics.logical(t) for t in ts)
                                    for f, ts in FEEDS.items()}
    assert set(LocalPipeline().merge_cfg.feeds) == set(FEEDS)


def test_every_event_type_has_one_stage_and_every_record_class_an_event_type() -> None:
    assert set(STAGE_OF_EVENT) == set(EVENT_OF_RECORD.values())
    readers = [t for d in STAGES for t in d.event_types]
    assert len(readers) == len(set(readers)), "an event type read by two stages"
    state_topics = {spec.name for spec in Topics(load_settings({})).specs()
                    if ".state." in spec.name}
    assert {name.rsplit(".", 1)[1] for name in state_topics} == {d.name for d in STAGES}
