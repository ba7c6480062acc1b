"""kpi-streams: near-real-time marketing and sales KPIs from Kafka event streams."""

__version__ = "0.1.0"
