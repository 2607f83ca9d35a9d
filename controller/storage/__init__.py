"""Typed facade over etcd (via etcd3-py's transport) and the JSON document backend.

Public API (other code and users' scripts rely on these names):
`connect`, `EtcdClient`, `EtcdStorageBackend`, and the typed errors.
"""

from __future__ import annotations

from controller.storage.address import EndpointAddress
from controller.storage.backend import (
    MAX_BATCH_OPS,
    BatchDelete,
    BatchOp,
    BatchPut,
    CasResult,
    EtcdStorageBackend,
    StorageEvent,
    decode_document,
    encode_document,
)
from controller.storage.client import EtcdClient
from controller.storage.connect import connect, parse_endpoints
from controller.storage.errors import (
    AlreadyExists,
    AuthenticationFailed,
    Compacted,
    Conflict,
    CorruptValue,
    Fenced,
    InvalidRequest,
    InvalidSettings,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    TLSFailed,
    Unavailable,
)
from controller.storage.heartbeat import Heartbeat
from controller.storage.kv import (
    Compare,
    EventType,
    KeyValue,
    Lease,
    Op,
    RangeResult,
    TxnResult,
    WatchEvent,
)
from controller.storage.lease import LeaseKeeper
from controller.storage.transport import Credentials
from controller.storage.watch import DEFAULT_IDLE_TIMEOUT, WatchHandle

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "MAX_BATCH_OPS",
    "AlreadyExists",
    "AuthenticationFailed",
    "BatchDelete",
    "BatchOp",
    "BatchPut",
    "CasResult",
    "Compacted",
    "Compare",
    "Conflict",
    "CorruptValue",
    "Credentials",
    "EndpointAddress",
    "EtcdClient",
    "EtcdStorageBackend",
    "EventType",
    "Fenced",
    "Heartbeat",
    "InvalidRequest",
    "InvalidSettings",
    "KeyValue",
    "Lease",
    "LeaseKeeper",
    "NotFound",
    "Op",
    "PermissionDenied",
    "QuotaExceeded",
    "RangeResult",
    "StorageError",
    "StorageEvent",
    "TLSFailed",
    "TxnResult",
    "Unavailable",
    "WatchEvent",
    "WatchHandle",
    "connect",
    "decode_document",
    "encode_document",
    "parse_endpoints",
]
