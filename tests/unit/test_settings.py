"""Settings from the environment: parsing, errors, secrets, and the README table."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import SPECS, SettingsError, load_settings, parse_duration_ms

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults() -> None:
    s = load_settings({})
    assert s.bootstrap == "127.0.0.1:9092" and s.uses_local_broker
    assert s.allowed_lateness_ms == 600_000 and s.idle_timeout_ms == 30_000
    assert s.session_timeout_ms == 1_800_000 and s.bounce_mode == "single_page"
    assert s.attribution == "first_touch" and s.reporting_currency == "EUR"
    assert s.web_host == "127.0.0.1"
    assert "purchase" not in s.lead_goals and "other" not in s.lead_goals


def test_namespace_prefixes_topics_and_group() -> None:
    from streams.topics import Topics

    s = load_settings({"KPI_NAMESPACE": "acme"})
    assert s.consumer_group == "acme.kpi-streams"
    names = [spec.name for spec in Topics(s).specs()]
    assert all(n.startswith("acme.") for n in names)
    assert "acme.mkt.page_views.v1.dlq" in names


def test_external_cluster() -> None:
    s = load_settings({"KAFKA_BOOTSTRAP": "k1:9092,k2:9092"})
    assert s.bootstrap == "k1:9092,k2:9092" and not s.uses_local_broker


@pytest.mark.parametrize(("text", "ms"), [("500ms", 500), ("30s", 30_000), ("10m", 600_000),
                                           ("2h", 7_200_000), ("7d", 604_800_000),
                                           ("45", 45_000), ("1.5m", 90_000)])
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(("env", "name"), [
    ({"KPI_ALLOWED_LATENESS": "ten minutes"}, "KPI_ALLOWED_LATENESS"),
    ({"KPI_BOUNCE_MODE": "ga5"}, "KPI_BOUNCE_MODE"),
    ({"KPI_BROKER_PORT": "0"}, "KPI_BROKER_PORT"),
    ({"KPI_DEFAULT_MARGIN": "1.5"}, "KPI_DEFAULT_MARGIN"),
    ({"KPI_REPORTING_CURRENCY": "euro"}, "KPI_REPORTING_CURRENCY"),
    ({"KPI_SESSION_SPLIT_MIDNIGHT": "maybe"}, "KPI_SESSION_SPLIT_MIDNIGHT"),
    ({"KPI_GROUP_SESSION_TIMEOUT": "2s"}, "KPI_GROUP_SESSION_TIMEOUT"),
    ({"KPI_GROUP_SESSION_TIMEOUT": "5m"}, "KPI_GROUP_SESSION_TIMEOUT"),
])
def test_bad_values_name_the_variable(env: dict, name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(env)


def test_secrets_never_print() -> None:
    s = load_settings({"KPI_KAFKA_SASL_PASSWORD": "hunter2",
                       "KPI_KAFKA_SSL_KEY_PASSWORD": "s3cret"})
    assert s.sasl_password.get() == "hunter2"
    text = repr(s) + str(s) + str(s.describe())
    assert "hunter2" not in text and "s3cret" not in text


def test_readme_documents_every_setting() -> None:
    text = README.read_text()
    missing = [spec.env for spec in SPECS if f"`{spec.env}`" not in text]
    assert not missing, f"README settings table lacks {missing}"


@pytest.mark.parametrize(("text", "session", "heartbeat"), [
    ("60s", 60.0, 3.0), ("10s", 10.0, 3.0), ("6s", 6.0, 2.0)])
def test_group_session_timeout_reaches_faust_with_heartbeats_inside_it(
        text: str, session: float, heartbeat: float, tmp_path: Path) -> None:
    from streams.app import build_pipeline, create_app

    s = load_settings({"KPI_GROUP_SESSION_TIMEOUT": text, "KPI_HOME": str(tmp_path)})
    app = create_app(s, build_pipeline(s))
    assert app.conf.broker_session_timeout == session
    assert app.conf.broker_heartbeat_interval == heartbeat
