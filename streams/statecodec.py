"""How a state value is written to the changelog and the local store.

A stage's ``dump(key)`` returns plain values (dicts, lists, numbers, strings,
bytes); they are written as MessagePack behind a one-byte tag. Against the JSON
of earlier releases that saves the quoting of every key and number and lets a
distinct-count sketch travel as raw bytes instead of base64 (measured per kind
of entry in ``bench/encoding.py``). Cold records (visitors, messages, contacts)
are already packed by their owners and pass through untouched.

Records written by an earlier release (JSON, which never starts with the tag)
are still read, so an upgrade needs no replay: each key is rewritten in the new
encoding the next time it changes.
"""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

TAG = 0x01  # first byte of a MessagePack state value; JSON starts with a printable byte


def encode(value: Any) -> bytes | None:
    """The bytes of one state value (None stays None: a tombstone)."""
    if value is None or isinstance(value, bytes):
        return value
    return b"\x01" + msgpack.packb(value, use_bin_type=True)


def decode(raw: bytes) -> Any:
    """The value of one state record, in this release's encoding or in JSON."""
    if raw[:1] == b"\x01":
        return msgpack.unpackb(memoryview(raw)[1:], raw=False, strict_map_key=False)
    return orjson.loads(raw)
