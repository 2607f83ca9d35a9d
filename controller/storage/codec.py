"""Encoding between our typed values and the etcd gRPC-JSON gateway's wire format.

The gateway speaks protobuf-JSON: bytes are base64, int64 are decimal strings, and fields at
their default value are omitted. Decoding this ourselves (instead of etcd3-py's model objects)
is what makes listing 100k keys take a second instead of a minute.
"""

from __future__ import annotations

import base64
from typing import Any

_b64encode = base64.b64encode
_b64decode = base64.b64decode


def encode_bytes(data: bytes) -> str:
    return _b64encode(data).decode("ascii")


def encode_key(key: str) -> str:
    return _b64encode(key.encode("utf-8", "surrogateescape")).decode("ascii")


def decode_key(b64: str) -> str:
    """Keys written by other tools may not be UTF-8; surrogateescape keeps them round-trippable."""
    return _b64decode(b64).decode("utf-8", "surrogateescape")


def decode_bytes(b64: str | None) -> bytes:
    return _b64decode(b64) if b64 else b""


def as_int(value: Any) -> int:
    """int64 fields arrive as strings; absent fields (proto3 default) mean 0."""
    return int(value) if value else 0


def prefix_range_end(prefix: str) -> str:
    """The exclusive end of the key range that starts with `prefix` (etcd's "prefix" idiom)."""
    raw = bytearray(prefix.encode("utf-8", "surrogateescape"))
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw).decode("utf-8", "surrogateescape")
        raw.pop()
    return "\0"  # every key
