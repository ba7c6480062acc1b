"""The settings of one process, each declared once, as a field with its environment
variable, default, parser, help and group (:func:`~streams.settings.spec.setting`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import values as v
from .spec import setting, specs_of
from .values import Secret

DEFAULT_HOME = "~/.cache/kpi-streams"


@dataclass(frozen=True)
class Settings:
    """All configuration of one process. Build with :func:`load_settings`."""

    # -- Kafka -------------------------------------------------------------
    kafka_bootstrap: str | None = setting(
        "KAFKA_BOOTSTRAP", "", v.optional_text,
        "Existing Kafka cluster (host:port,...). Set: nothing is started locally.", "kafka")
    kafka_home: Path | None = setting(
        "KAFKA_HOME", "", v.optional_path,
        "An installed Kafka to run instead of the jars fetched with Maven.", "kafka")
    kafka_version: str = setting(
        "KPI_KAFKA_VERSION", "4.1.1", str,
        "Apache Kafka version the local broker fetches from Maven Central.", "kafka")
    broker_port: int = setting(
        "KPI_BROKER_PORT", "9092", v.positive_int,
        "Port of the local broker (bound to 127.0.0.1).", "kafka")
    controller_port: int = setting(
        "KPI_CONTROLLER_PORT", "9093", v.positive_int,
        "Port of the local broker's KRaft controller listener.", "kafka")
    broker_heap: str = setting(
        "KPI_BROKER_HEAP", "768m", str,
        "Java heap of the local broker.", "kafka")
    broker_group_delay_ms: int = setting(
        "KPI_BROKER_GROUP_DELAY", "0s", v.parse_duration_ms,
        "How long the local broker lets a new consumer group wait for more members "
        "before its first assignment (group.initial.rebalance.delay.ms; from the "
        "broker's next start). 0: one worker starts at once. Kafka's default, 3s: "
        "workers started together share the first assignment, instead of the later "
        "ones joining by a rebalance mid-run.", "kafka")
    home: Path = setting(
        "KPI_HOME", DEFAULT_HOME, v.expanded_path,
        "Where Kafka jars, broker data and logs are kept (outside the work tree).", "kafka")
    security_protocol: str = setting(
        "KPI_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
        v.one_of("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        "Kafka security protocol.", "kafka")
    sasl_mechanism: str = setting(
        "KPI_KAFKA_SASL_MECHANISM", "PLAIN",
        v.one_of("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
        "SASL mechanism when the protocol is SASL_*.", "kafka")
    sasl_username: str = setting(
        "KPI_KAFKA_SASL_USERNAME", "", str,
        "SASL user name.", "kafka")
    sasl_password: Secret = setting(
        "KPI_KAFKA_SASL_PASSWORD", "", Secret,
        "SASL password (never printed).", "kafka", secret=True)
    ssl_cafile: Path | None = setting(
        "KPI_KAFKA_SSL_CAFILE", "", v.optional_path,
        "CA bundle that signs the brokers' certificates.", "kafka")
    ssl_certfile: Path | None = setting(
        "KPI_KAFKA_SSL_CERTFILE", "", v.optional_path,
        "Client certificate for mutual TLS.", "kafka")
    ssl_keyfile: Path | None = setting(
        "KPI_KAFKA_SSL_KEYFILE", "", v.optional_path,
        "Client private key for mutual TLS.", "kafka")
    ssl_key_password: Secret = setting(
        "KPI_KAFKA_SSL_KEY_PASSWORD", "", Secret,
        "Password of the client private key (never printed).", "kafka", secret=True)
    # -- Topics --------------------------------------------------------------
    namespace: str = setting(
        "KPI_NAMESPACE", "", str,
        "Prefix for every topic name and the consumer group, so deployments or "
        "test runs can share one cluster.", "topics")
    input_partitions: int = setting(
        "KPI_INPUT_PARTITIONS", "6", v.positive_int,
        "Partitions of the input topics (and of the state topics that mirror them).",
        "topics")
    kpi_partitions: int = setting(
        "KPI_KPI_PARTITIONS", "6", v.positive_int,
        "Partitions of the KPI snapshot and partial-aggregate topics.", "topics")
    replication_factor: int = setting(
        "KPI_REPLICATION_FACTOR", "1", v.positive_int,
        "Replication factor for topics the project creates.", "topics")
    topic_page_views: str = setting(
        "KPI_TOPIC_PAGE_VIEWS", "mkt.page_views.v1", str,
        "Page view input topic.", "topics")
    topic_email_events: str = setting(
        "KPI_TOPIC_EMAIL_EVENTS", "mkt.email_events.v1", str,
        "Email event input topic.", "topics")
    topic_form_submits: str = setting(
        "KPI_TOPIC_FORM_SUBMITS", "mkt.form_submits.v1", str,
        "Form submit input topic.", "topics")
    topic_deal_updates: str = setting(
        "KPI_TOPIC_DEAL_UPDATES", "mkt.deal_updates.v1", str,
        "CRM deal update input topic.", "topics")
    topic_spend: str = setting(
        "KPI_TOPIC_SPEND", "mkt.spend.v1", str,
        "Marketing spend input topic.", "topics")
    topic_engagements: str = setting(
        "KPI_TOPIC_ENGAGEMENTS", "mkt.engagements.v1", str,
        "Off-site engagement input topic.", "topics")
    topic_snapshots: str = setting(
        "KPI_TOPIC_SNAPSHOTS", "kpi.snapshots", str,
        "Compacted topic of KPI snapshots (the product's main output).", "topics")
    topic_lead_scores: str = setting(
        "KPI_TOPIC_LEAD_SCORES", "mkt.lead_scores.v1", str,
        "Contacts that qualified (MQL) by lead score, once each, with the rules that "
        "fired.", "topics")
    topic_late: str = setting(
        "KPI_TOPIC_LATE", "kpi.late_events", str,
        "Where events judged late are sent, unchanged, with the watermark.", "topics")
    topic_erasures: str = setting(
        "KPI_TOPIC_ERASURES", "kpi.erasures", str,
        "Audit trail of erasure requests (kpi-streams erase) and of every stage partition "
        "that carried one out; kept forever, it holds hashes of the ids, not the ids.",
        "topics")
    dlq_suffix: str = setting(
        "KPI_DLQ_SUFFIX", ".dlq", str,
        "Appended to an input topic's name to name its dead-letter topic.", "topics")
    # -- Time ----------------------------------------------------------------
    allowed_lateness_ms: int = setting(
        "KPI_ALLOWED_LATENESS", "10m", v.parse_duration_ms,
        "How far behind its partition's watermark an event may be and still count.",
        "time")
    idle_timeout_ms: int = setting(
        "KPI_IDLE_TIMEOUT", "30s", v.parse_duration_ms,
        "After this long without events a partition's watermark follows the wall clock.",
        "time")
    max_future_skew_ms: int = setting(
        "KPI_MAX_FUTURE_SKEW", "1h", v.parse_duration_ms,
        "Events dated further than this ahead of the wall clock are rejected "
        "(reason future_event).", "time")
    retention_1m_ms: int = setting(
        "KPI_RETENTION_1M", "2d", v.parse_duration_ms,
        "How long 1m buckets are kept (event time behind the watermark).", "time")
    retention_1h_ms: int = setting(
        "KPI_RETENTION_1H", "90d", v.parse_duration_ms,
        "How long 1h buckets are kept.", "time")
    retention_1d_ms: int = setting(
        "KPI_RETENTION_1D", "730d", v.parse_duration_ms,
        "How long 1d buckets are kept.", "time")
    replay_skip_expired: bool = setting(
        "KPI_REPLAY_SKIP_EXPIRED", "true", v.boolean,
        "A replay (a backfill, a backlog) does not build minute cells already past "
        "their retention from the inputs' horizon: where the newest input topic's "
        "last records are (its oldest partition), less a margin. The merge stage would "
        "delete them before the "
        "replay ends, so what it holds at the end is the same. Off: every minute cell "
        "of the replay is opened, published and deleted.",
        "time")
    visitor_ttl_ms: int = setting(
        "KPI_VISITOR_TTL", "400d", v.parse_duration_ms,
        "How long a visitor's first-seen record is kept (new vs returning users).", "time")
    message_ttl_ms: int = setting(
        "KPI_MESSAGE_TTL", "30d", v.parse_duration_ms,
        "How long an e-mail message is remembered after its last event (its send, "
        "first open and click count once within this).", "time")
    # -- KPI definitions -----------------------------------------------------
    reporting_currency: str = setting(
        "KPI_REPORTING_CURRENCY", "EUR", v.currency_code,
        "Every amount is converted to this currency.", "kpi")
    timezone: str = setting(
        "KPI_TIMEZONE", "UTC", v.zone_name,
        "Reporting time zone (IANA name, e.g. Europe/Warsaw, Asia/Tehran). 1h, 1d, 1w, "
        "1mo and 1q buckets follow its local time, DST included; snapshot times carry "
        "its offset. Changing it on a running deployment: see the README.", "kpi")
    week_start: int = setting(
        "KPI_WEEK_START", "monday", v.weekday_index,
        "First day of a 1w bucket: monday (ISO weeks) or sunday.", "kpi")
    fx_rates_file: Path | None = setting(
        "KPI_FX_RATES", "", v.optional_path,
        "JSON rate table (see streams/config/fx_rates.json); empty: the built-in table.",
        "kpi")
    channel_rules_file: Path | None = setting(
        "KPI_CHANNEL_RULES", "", v.optional_path,
        "JSON channel rule table (see streams/config/channel_rules.json); empty: built-in.",
        "kpi")
    lead_scoring_file: Path | None = setting(
        "KPI_LEAD_SCORING", "", v.optional_path,
        "JSON lead-scoring rules (see streams/config/lead_scoring.json); empty: built-in. "
        "Validated at start.", "kpi")
    targets_file: Path | None = setting(
        "KPI_TARGETS", "", v.optional_path,
        "YAML (or JSON) file of goals per KPI and period (see the README's 'Targets and "
        "pacing'); empty: no targets. Validated at start, errors name the line.", "kpi")
    session_timeout_ms: int = setting(
        "KPI_SESSION_TIMEOUT", "30m", v.parse_duration_ms,
        "Inactivity gap that ends a session.", "kpi")
    session_split_midnight: bool = setting(
        "KPI_SESSION_SPLIT_MIDNIGHT", "false", v.boolean,
        "Start a new session at UTC midnight.", "kpi")
    session_split_campaign: bool = setting(
        "KPI_SESSION_SPLIT_CAMPAIGN", "false", v.boolean,
        "Start a new session when the utm campaign changes.", "kpi")
    bounce_mode: str = setting(
        "KPI_BOUNCE_MODE", "single_page", v.one_of("single_page", "not_engaged"),
        "single_page: one page view and no conversion (UA); not_engaged: 1 - engagement "
        "rate (GA4).", "kpi")
    engaged_ms: int = setting(
        "KPI_ENGAGED_TIME", "10s", v.parse_duration_ms,
        "Engagement time that makes a session engaged.", "kpi")
    attribution: str = setting(
        "KPI_ATTRIBUTION", "first_touch",
        v.one_of("first_touch", "last_touch", "last_non_direct", "linear",
                "position_based", "time_decay"),
        "Attribution model for the channel of leads, deals and revenue.", "kpi")
    attribution_lookback_ms: int = setting(
        "KPI_ATTRIBUTION_LOOKBACK", "30d", v.parse_duration_ms,
        "Sessions this long before a lead are its touches.", "kpi")
    time_decay_half_life_ms: int = setting(
        "KPI_TIME_DECAY_HALF_LIFE", "7d", v.parse_duration_ms,
        "Half-life of the time_decay attribution model.", "kpi")
    lead_goals: tuple[str, ...] = setting(
        "KPI_LEAD_GOALS",
        "call_click,contact,content_download,demo_request,inquiry,newsletter_signup", v.goal_set,
        "Form goals that make a contact a lead.", "kpi")
    exclude_machine_opens: bool = setting(
        "KPI_EXCLUDE_MACHINE_OPENS", "true", v.boolean,
        "Drop machine (privacy-proxy) opens before counting unique opens.", "kpi")
    default_margin: float = setting(
        "KPI_DEFAULT_MARGIN", "1.0", v.fraction,
        "Gross profit = amount x this, for won deals without gross_profit (1.0: no "
        "margin data, so ROI is computed on revenue).", "kpi")
    # -- Worker --------------------------------------------------------------
    state_store: str = setting(
        "KPI_STATE_STORE", "rocksdb", v.one_of("rocksdb", "memory"),
        "Where long-lived state (cold visitors) lives: rocksdb (on disk under "
        "KPI_STATE_DIR, memory bounded by KPI_STATE_CACHE) or memory (the heap; "
        "tests).", "worker")
    state_dir: Path = setting(
        "KPI_STATE_DIR", str(Path(DEFAULT_HOME) / "state"), v.expanded_path,
        "Directory of the embedded stores, one per stage partition (give each worker "
        "its own volume).", "worker")
    state_cache_bytes: int = setting(
        "KPI_STATE_CACHE", "64MB", v.byte_size,
        "Memory of all the worker's embedded stores together: one block cache, with "
        "their write buffers charged to it.", "worker")
    max_message_bytes: int = setting(
        "KPI_MAX_MESSAGE_BYTES", "1048576", v.positive_int,
        "Input messages larger than this are rejected (reason too_large).", "worker")
    max_batch_events: int = setting(
        "KPI_MAX_BATCH_EVENTS", "5000", v.positive_int,
        "A JSON array message with more events than this is rejected (too_large).",
        "worker")
    flush_interval_ms: int = setting(
        "KPI_FLUSH_INTERVAL", "250ms", v.parse_duration_ms,
        "How often the worker writes state and partial aggregates: after each batch "
        "when the input is caught up, at most this often while more is already "
        "fetched (a replay); also the longest a batch waits to fill.", "worker")
    shutdown_grace_ms: int = setting(
        "KPI_SHUTDOWN_GRACE", "30s", v.parse_duration_ms,
        "A worker told to stop (SIGTERM, Ctrl-C) that has not stopped after this long "
        "(Kafka away) exits anyway; its state is crash-safe.", "worker")
    group_session_timeout_ms: int = setting(
        "KPI_GROUP_SESSION_TIMEOUT", "60s", v.group_session_ms,
        "How long the consumer group waits for a worker that stopped answering (a "
        "crash) before its partitions go to the others; 6s to 90s.", "worker")
    take_messages: int = setting(
        "KPI_TAKE_MESSAGES", "500", v.positive_int,
        "Kafka messages a stage takes from its input at most per batch: what is "
        "already fetched, waiting up to KPI_FLUSH_INTERVAL for more while short.",
        "worker")
    live_interval_ms: int = setting(
        "KPI_LIVE_INTERVAL", "1s", v.parse_duration_ms,
        "How often changed KPIs are recomputed for the live wall, the SSE stream and "
        "the API.", "worker")
    snapshot_interval_ms: int = setting(
        "KPI_SNAPSHOT_INTERVAL", "5s", v.parse_duration_ms,
        "An open 1m or 1h cell whose value changed goes on the KPI topic at most this "
        "often (finals and restatements always go, once).", "worker")
    snapshot_slow_interval_ms: int = setting(
        "KPI_SNAPSHOT_SLOW_INTERVAL", "60s",
        v.parse_duration_ms,
        "The same for open 1d cells, months and rolling views.", "worker")
    catchup_lag_ms: int = setting(
        "KPI_CATCHUP_LAG", "15m", v.parse_duration_ms,
        "A merge partition whose event time is further behind the wall clock than this "
        "while data keeps arriving is catching up (a replay, a backlog): it puts only "
        "finals, restatements and tombstones on the KPI topic, and the latest open "
        "values once caught up.", "worker")
    publish_windows: tuple[str, ...] = setting(
        "KPI_PUBLISH_WINDOWS",
        "1h,1d,1w,1mo,1q,15m,24h,7d,30d", v.window_list,
        "Buckets and rolling views published on the KPI topic (all, 1m too, are still "
        "computed and served by the API, /metrics and the wall). Add 1m to put minute "
        "cells on the topic.", "worker")
    web_host: str = setting(
        "KPI_WEB_HOST", "127.0.0.1", str,
        "Address the worker's web server (wall, API, /metrics) binds to.", "worker")
    web_port: int = setting(
        "KPI_WEB_PORT", "6066", v.positive_int,
        "Port of the worker's web server.", "worker")
    metrics_port: int | None = setting(
        "KPI_METRICS_PORT", "", v.optional_port,
        "Port where a small process of its own serves /metrics while the worker is "
        "busy, even in its cycle collector (what Prometheus should scrape under load; "
        "KPI gauges as of the previous scrape); empty: only the web server's /metrics.",
        "worker")
    alertmanager_url: str = setting(
        "KPI_ALERTMANAGER_URL", "", str,
        "Alertmanager whose firing alerts the wall shows (e.g. http://127.0.0.1:9093); "
        "empty: no alert banner.", "worker")
    channel_labels: tuple[tuple[str, str], ...] = setting(
        "KPI_CHANNEL_LABELS", "", v.pairs,
        "Names the wall shows for channels, name=Label pairs (e.g. "
        "email=Newsletter,paid_social=Meta ads) over the defaults (paid_search is shown "
        "as Paid search).", "worker")
    worker_id: str = setting(
        "KPI_WORKER_ID", "", str,
        "Name of this worker in logs and metrics; empty: host name and PID.", "worker")
    log_level: str = setting(
        "KPI_LOG_LEVEL", "info", v.one_of("debug", "info", "warning", "error"),
        "Log level.", "worker")
    # -- Collector -----------------------------------------------------------
    collect_host: str = setting(
        "KPI_COLLECT_HOST", "127.0.0.1", str,
        "Address the collector (kpi-streams collect) binds to; 0.0.0.0 behind a proxy "
        "or load balancer.", "collector")
    collect_port: int = setting(
        "KPI_COLLECT_PORT", "6070", v.positive_int,
        "Port of the collector.", "collector")
    collect_tokens: Secret = setting(
        "KPI_COLLECT_TOKENS", "", Secret,
        "Write-only source tokens, name:token:types;... e.g. "
        "site:pk_3f9a1c7e:page_view,form_submit;ops:sk_77e0b2aa:spend (types: event "
        "types or *). The name labels metrics; tokens are never printed.", "collector",
        secret=True)
    collect_origins: tuple[str, ...] = setting(
        "KPI_COLLECT_ORIGINS", "", v.text_list,
        "Browser origins allowed to post to /collect (CORS), comma-separated, e.g. "
        "https://www.example.com; * allows any. The collector's own origin always may.",
        "collector")
    collect_max_body: int = setting(
        "KPI_COLLECT_MAX_BODY", "1048576", v.positive_int,
        "Largest request body in bytes (answered 413).", "collector")
    collect_rate: float = setting(
        "KPI_COLLECT_RATE", "1000", v.positive_float,
        "Requests per second one source token may make (bursts of as many; answered "
        "429 with Retry-After).", "collector")
    collect_cookieless: bool = setting(
        "KPI_COLLECT_COOKIELESS", "false", v.boolean,
        "Cookieless visitors: the tracker stores nothing and the collector derives the "
        "visitor id from site, IP and user agent with a salt replaced daily (returning "
        "visitors are unknown across days).", "collector")
    collect_trust_forwarded: bool = setting(
        "KPI_COLLECT_TRUST_FORWARDED", "false", v.boolean,
        "Take the client address from X-Forwarded-For (only behind a proxy you run).",
        "collector")
    collect_public_url: str = setting(
        "KPI_COLLECT_PUBLIC_URL", "", str,
        "The collector's URL as providers call it (https://collect.example.com), when a "
        "proxy changes it: webhook signatures cover the URL.", "collector")
    internal_ips: tuple[Any, ...] = setting(
        "KPI_INTERNAL_IPS", "", v.networks,
        "Your own networks (offices, VPN, monitors), comma-separated addresses or CIDR "
        "ranges: browser traffic from them is traffic_type internal, not counted in "
        "KPIs. The address is used for this only, never stored.", "collector")
    hook_sendgrid_key: str = setting(
        "KPI_HOOK_SENDGRID_KEY", "", str,
        "SendGrid's signed Event Webhook verification key (base64, from its settings); "
        "empty: /hooks/sendgrid is off. A key that is not an ECDSA P-256 public key "
        "stops the collector at start.", "collector")
    hook_mailchimp_key: Secret = setting(
        "KPI_HOOK_MAILCHIMP_KEY", "", Secret,
        "Mailchimp Transactional webhook key; empty: /hooks/mailchimp is off.",
        "collector", secret=True)
    hook_hubspot_secret: Secret = setting(
        "KPI_HOOK_HUBSPOT_SECRET", "", Secret,
        "HubSpot app client secret (signs its webhooks); empty: /hooks/hubspot is off.",
        "collector", secret=True)
    hubspot_token: Secret = setting(
        "KPI_HUBSPOT_TOKEN", "", Secret,
        "HubSpot private-app token: a stage change names only the deal, so the "
        "collector reads the deal's amount, contact and company from HubSpot's API.",
        "collector", secret=True)
    hubspot_api: str = setting(
        "KPI_HUBSPOT_API", "https://api.hubapi.com", str,
        "HubSpot API base URL.", "collector")
    hubspot_stages: tuple[tuple[str, str], ...] = setting(
        "KPI_HUBSPOT_STAGES", "", v.pairs_of(*v.DEAL_STAGES),
        "HubSpot pipeline stage id -> mql/sal/sql/opportunity/won/lost, comma-separated "
        "a=b pairs, over the default pipeline's map (closedwon=won, ...).", "collector")
    hubspot_kinds: tuple[tuple[str, str], ...] = setting(
        "KPI_HUBSPOT_KINDS", "", v.pairs_of(*v.DEAL_KINDS),
        "HubSpot dealtype -> new_business/renewal/expansion, a=b pairs over "
        "newbusiness=new_business,existingbusiness=renewal.", "collector")
    # not from the environment: tests may pin the wall clock of watermark logic
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers to use: the configured cluster or the local broker."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.broker_port}"

    @property
    def uses_local_broker(self) -> bool:
        return not self.kafka_bootstrap

    def prefixed(self, name: str) -> str:
        """A topic or group name with the namespace prefix applied."""
        return f"{self.namespace}.{name}" if self.namespace else name

    @property
    def consumer_group(self) -> str:
        return self.prefixed("kpi-streams")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def describe(self) -> list[tuple[str, str, str]]:
        """(env name, current value, help) for every setting; secrets masked."""
        return [(spec.env, spec.show(getattr(self, spec.attr)), spec.help)
                for spec in specs_of(type(self))]
