"""The doors in: an HTTP collector with a tracker, webhook adapters and cost import.

``kpi-streams collect`` runs :mod:`streams.collect.server`, a process of its own
(it scales apart from the workers) that validates what it receives with the
workers' own decoder, produces the good events keyed and batched as ``ingest``
does, and answers only after Kafka acknowledged them. The pieces:

    config     what the collector takes from the settings
    sources    source tokens, per-token rate limits, cookieless visitor ids
    server     the aiohttp routes (/collect, /hooks/<name>, /t.js, /health, /metrics)
    webhooks   which adapter serves /hooks/<name>, with its secret and maps
    metrics    the collector's own Prometheus metrics
    costs      GA4-style cost tables -> spend events that restate earlier uploads
    hooks/     one pure adapter per provider (SendGrid, Mailchimp, HubSpot)
    tracker.js the browser tracker served at /t.js
"""
