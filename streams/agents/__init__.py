"""Thin glue per stage: messages in, pure processors, durable flushes, messages out."""
