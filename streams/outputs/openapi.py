"""The OpenAPI 3.1 document of the worker's read-only HTTP API."""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..kpis.attribution import MODELS
from ..kpis.buckets import ALL_WINDOWS
from ..kpis.catalogue import KPIS


def _list_param(name: str, description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema = {"type": "string",
                  "pattern": "^(" + "|".join(enum) + ")(,(" + "|".join(enum) + "))*$"}
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


def _target_schema() -> dict[str, Any]:
    """The target document, from its JSON Schema in ``schemas/`` (the contract)."""
    from ..schemas import load_schema

    doc = load_schema("kpi_target")
    return {k: v for k, v in doc.items() if k not in ("$schema", "$id")}


def document() -> dict[str, Any]:
    kpis = [k.name for k in KPIS]
    filters = [
        _list_param("kpi", "KPI names, comma separated or repeated.", kpis),
        _list_param("bucket", "Buckets or rolling views.", list(ALL_WINDOWS)),
        _list_param("channel", "Only these channels (the channel dim)."),
        _list_param("device", "Only these devices (the device dim)."),
        _list_param("campaign", "Only these campaigns (the campaign dim)."),
        _list_param("dim", "Dim keys: `total`, or `name=value`."),
        {"name": "from", "in": "query", "required": False,
         "description": "Buckets starting at or after this instant (RFC 3339, any "
                        "offset: 2026-10-25T00:00:00+02:00 is 2026-10-24T22:00:00Z).",
         "schema": {"type": "string", "format": "date-time"}},
        {"name": "to", "in": "query", "required": False,
         "description": "Buckets starting before this instant (RFC 3339, any offset).",
         "schema": {"type": "string", "format": "date-time"}},
        {"name": "final", "in": "query", "required": False,
         "schema": {"type": "string", "enum": ["true", "false"]}},
    ]
    attribution = {"name": "attribution", "in": "query", "required": False,
                   "description": "Revenue KPIs (revenue, avg_revenue_per_sale, roas, "
                                  "marketing_roi) under this attribution model; every "
                                  "snapshot's `mode` says which model made it.",
                   "schema": {"type": "string", "enum": list(MODELS)}}
    snapshot_ref = {"$ref": "#/components/schemas/Snapshot"}
    error = {"description": "Bad query", "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "string"}}}}}}
    health = {"application/json": {"schema": {
        "type": "object", "required": ["status", "stages"],
        "properties": {"status": {"enum": ["ok", "restoring"]},
                       "uptime_s": {"type": "number"},
                       "rebalancing": {"type": "boolean"},
                       "stages": {"type": "object"}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "kpi-streams worker API", "version": __version__,
                 "description": "Read-only access to the KPIs this worker holds. Every "
                                "route is GET; nothing here changes state."},
        "paths": {
            "/api/kpis": {"get": {
                "summary": "Current snapshots, filtered",
                "parameters": [*filters, attribution, {
                    "name": "compare", "in": "query", "required": False,
                    "description": "Add to each snapshot a `compare` object: the same KPI "
                                   "and dims over the bucket just before (`previous`) or "
                                   "a year earlier (`year`: 364 days, weekday-aligned; "
                                   "calendar months and quarters a year earlier), with "
                                   "the change and whether the data covers that period.",
                    "schema": {"type": "string", "enum": ["previous", "year"]}}, {
                    "name": "limit", "in": "query", "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100000}}],
                "responses": {
                    "200": {"description": "Snapshots in the KPI topic's format",
                            "content": {"application/json": {"schema": {
                                "type": "object", "required": ["count", "snapshots"],
                                "properties": {"count": {"type": "integer"},
                                               "snapshots": {"type": "array",
                                                             "items": snapshot_ref}}}}}},
                    "400": error}}},
            "/api/kpis/stream": {"get": {
                "summary": "Server-sent events: each snapshot as it is published",
                "parameters": filters[:6],
                "responses": {
                    "200": {"description": "`event: snapshot` with a JSON snapshot as data",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                    "400": error}}},
            "/api/health": {"get": {
                "summary": "Worker health and partition ownership",
                "parameters": [{"name": "ready", "in": "query", "required": False,
                                "description": "1: answer 503 until the worker holds "
                                "partitions and has restored them all (readiness probe)",
                                "schema": {"type": "string", "enum": ["1"]}}],
                "responses": {
                    "200": {"description": "ok or restoring", "content": health},
                    "503": {"description": "not ready yet (with ready=1)",
                            "content": health}}}},
            "/api/alerts": {"get": {
                "summary": "Firing alerts from the configured Alertmanager",
                "responses": {"200": {"description": "Alerts (empty when not configured)",
                                      "content": {"application/json": {"schema": {
                                          "type": "object",
                                          "required": ["configured", "alerts"],
                                          "properties": {
                                              "configured": {"type": "boolean"},
                                              "alerts": {"type": "array"}}}}}}}}},
            "/api/targets": {"get": {
                "summary": "Targets (KPI_TARGETS) and their pacing in the current period",
                "responses": {"200": {"description": "One document per target this worker "
                                      "answers for", "content": {"application/json": {
                                          "schema": {
                                              "type": "object",
                                              "required": ["configured", "count", "targets"],
                                              "properties": {
                                                  "configured": {"type": "boolean"},
                                                  "count": {"type": "integer"},
                                                  "targets": {"type": "array", "items": {
                                                      "$ref": "#/components/schemas/Target"
                                                  }}}}}}}}}},
            "/api/catalogue": {"get": {
                "summary": "Every KPI: name, leading or lagging, definition, unit, dims",
                "responses": {"200": {"description": "The KPI catalogue", "content": {
                    "application/json": {"schema": {
                        "type": "object", "required": ["kpis"],
                        "properties": {"kpis": {"type": "array", "items": {
                            "type": "object",
                            "required": ["name", "kind", "definition", "unit", "dims",
                                         "aggregation", "additive"],
                            "properties": {
                                "name": {"type": "string"},
                                "kind": {"enum": ["leading", "lagging"]},
                                "definition": {"type": "string"},
                                "unit": {"type": "string"},
                                "dims": {"type": "array", "items": {"type": "string"}},
                                "modes": {"type": "array",
                                          "items": {"type": "string"}},
                                "aggregation": {"enum": ["sum", "ratio", "computed"]},
                                "additive": {"type": "boolean"}}}}}}}}}}}},
            "/api/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {"schema": {
                                          "type": "object"}}}}}}},
        },
        "components": {"schemas": {"Target": _target_schema(), "Snapshot": {
            "type": "object",
            "required": ["kpi", "bucket", "window_start", "window_end", "dims", "value",
                         "numerator", "denominator", "unit", "final", "mode",
                         "computed_at", "schema_version", "revision"],
            "properties": {
                "kpi": {"type": "string", "enum": kpis},
                "bucket": {"type": "string", "enum": list(ALL_WINDOWS)},
                "window_start": {"type": "string", "format": "date-time"},
                "window_end": {"type": "string", "format": "date-time"},
                "dims": {"type": "object", "additionalProperties": {"type": "string"}},
                "value": {"type": ["number", "null"]},
                "numerator": {"type": "number"}, "denominator": {"type": "number"},
                "unit": {"type": "string"}, "final": {"type": "boolean"},
                "mode": {"type": "object", "additionalProperties": {"type": "string"}},
                "computed_at": {"type": "string", "format": "date-time"},
                "schema_version": {"type": "integer"},
                "revision": {"type": "integer", "minimum": 0}}}}},
    }
