"""Typed storage errors.

Callers above the storage layer never see `requests` or `etcd3` exceptions: they see these,
and each one says what an operator or a caller should do next (retry, re-read, give up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.storage.kv import KeyValue


class StorageError(Exception):
    """Base class of every error raised by `controller.storage`."""


class Unavailable(StorageError):
    """No endpoint answered in time.

    `maybe_applied` is True when a write reached a server before the connection failed: the
    write may or may not have been applied, so the caller must re-read before deciding again.
    """

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class TLSFailed(Unavailable):
    """The TLS handshake failed: the endpoint's certificate is not trusted, or it does not
    speak TLS. A configuration problem rather than an outage, so when every attempt of a call
    fails, this is the error the call reports, not the timeout of a later attempt that had
    no time left."""


class Conflict(StorageError):
    """A compare-and-swap lost: the object changed since it was read.

    `current` is the object as it is now, returned by the same transaction (None if deleted),
    so the caller can re-decide without another round trip.
    """

    def __init__(self, key: str, expected_revision: int, current: KeyValue | None) -> None:
        now = current.mod_revision if current else "absent"
        super().__init__(f"{key}: expected mod_revision {expected_revision}, found {now}")
        self.key = key
        self.expected_revision = expected_revision
        self.current = current


class NotFound(StorageError):
    """The key does not exist (or no longer exists)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key}: not found")
        self.key = key


class AlreadyExists(StorageError):
    """A create lost against an existing key; `current` is that key's value."""

    def __init__(self, key: str, current: KeyValue | None = None) -> None:
        super().__init__(f"{key}: already exists")
        self.key = key
        self.current = current


class Compacted(StorageError):
    """The requested revision is older than etcd's compaction point: relist from now."""

    def __init__(self, requested_revision: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested_revision} has been compacted (compact revision "
            f"{compact_revision}); relist and watch from the new revision"
        )
        self.requested_revision = requested_revision
        self.compact_revision = compact_revision


class CorruptValue(StorageError):
    """The stored value is not valid JSON (or not an object); it is reported, never rewritten."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: stored value is unreadable ({reason}); left untouched")
        self.key = key
        self.reason = reason


class PermissionDenied(StorageError):
    """The etcd user lacks a role permitting this operation on this key."""


class AuthenticationFailed(StorageError):
    """Username/password were refused, or the server needs credentials we do not have."""


class InvalidRequest(StorageError):
    """etcd refused the request itself (too large, duplicate key in a txn, bad argument)."""


class QuotaExceeded(StorageError):
    """etcd's backend quota is exhausted (NOSPACE alarm): writes fail until an operator acts."""


class Fenced(StorageError):
    """A leader-only write was refused: the writer's leadership (fencing token) is gone.

    Nothing was written. The writer is no longer the leader and must stop writing.
    """


class InvalidSettings(StorageError, ValueError):
    """The connection settings cannot work; raised at once, because retrying cannot help.

    A malformed endpoint, contradictory TLS settings, an unreadable CA, certificate or key
    file. Also a ValueError, like any other bad argument.
    """
