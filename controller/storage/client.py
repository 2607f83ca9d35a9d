"""The etcd facade: typed KV, transactions, leases, compaction and watches.

`EtcdClient` composes the parts and adds what every RPC shares (a span, `request_hooks`):

- where a request goes and what happens when that member fails — failover, deadlines,
  backoff, which writes may be re-sent — is `controller.storage.failover.EndpointPool`'s;
- one member's HTTP, login and error mapping is `controller.storage.transport`'s;
- a watch is `controller.storage.watch`'s supervised watch, given the pool to open its
  streams through.

What stays here is knowing the RPCs: their bodies, their typed results, and whether
sending one twice is the same as sending it once (`idempotent`: reads, compaction, lease
revoke and lookups). Writes — txns, and plain puts and deletes too — are not, so the pool
re-sends them only when they provably never left; otherwise they raise
`Unavailable(maybe_applied=True)` and the caller re-reads before deciding again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from controller.storage.address import EndpointAddress, parse_endpoints
from controller.storage.codec import as_int, encode_bytes, encode_key, prefix_range_end
from controller.storage.errors import Compacted, Unavailable
from controller.storage.failover import EndpointPool
from controller.storage.kv import (
    Compare,
    DeleteResult,
    KeyValue,
    Lease,
    Op,
    PutResult,
    RangeResult,
    TxnResult,
    decode_op_result,
)
from controller.storage.read_ahead import read_ahead
from controller.storage.transport import Credentials
from controller.storage.watch import (
    DEFAULT_IDLE_TIMEOUT,
    WatchCallback,
    WatchHandle,
    start_watch,
)

tracer = trace.get_tracer("controller.storage")

DEFAULT_TIMEOUT = 5.0

RequestHook = Callable[[str, float, BaseException | None], None]


class EtcdClient:
    """Thread-safe. Construction never touches the network: etcd may still be starting."""

    def __init__(
        self,
        endpoints: Sequence[str | EndpointAddress],
        *,
        credentials: Credentials | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        pool_size: int = 32,
    ) -> None:
        self.credentials = credentials or Credentials()
        # Each endpoint keeps its scheme (TLS or not) down to the socket; InvalidSettings if bad.
        self._targets = parse_endpoints(endpoints, tls_files=self.credentials.has_tls_files)
        self._pool = EndpointPool(
            self._targets, self.credentials, timeout=timeout, pool_size=pool_size
        )
        self.request_hooks: list[RequestHook] = []

    @property
    def timeout(self) -> float:
        """The deadline of a call that names none (seconds); also bounds stream connects."""
        return self._pool.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._pool.timeout = value

    @property
    def endpoints(self) -> list[str]:
        return self._pool.addresses

    @property
    def current_endpoint(self) -> str:
        return self._pool.current_address

    def close(self) -> None:
        self._pool.close()

    # -- calls -----------------------------------------------------------------------------

    def call(
        self,
        method: str,
        body: dict[str, Any],
        *,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        """One RPC with failover and retries bounded by `timeout` (the whole call's deadline).

        `idempotent`: sending the request twice has the effect of sending it once (reads), so
        it may be re-sent after a failure that might have reached etcd. Off by default: a
        write is re-sent only when it provably never left.

        Each call is a client span (`etcd <method>`) and is reported to `request_hooks`
        (duration, error) for metrics.
        """
        budget = self.timeout if timeout is None else timeout
        started = time.perf_counter()
        error: BaseException | None = None
        with tracer.start_as_current_span(
            f"etcd {method}",
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "etcd", "rpc.method": method},
        ) as span:
            try:
                return self._pool.call(method, body, budget, idempotent=idempotent)
            except BaseException as exc:
                error = exc
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                if self.request_hooks:
                    elapsed = time.perf_counter() - started
                    for hook in self.request_hooks:
                        hook(method, elapsed, error)

    # -- KV ----------------------------------------------------------------------------------

    def range(
        self,
        key: str,
        range_end: str | None = None,
        *,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        serializable: bool = False,
        timeout: float | None = None,
    ) -> RangeResult:
        body: dict[str, Any] = {"key": encode_key(key)}
        if range_end is not None:
            body["range_end"] = encode_key(range_end)
        if limit:
            body["limit"] = str(limit)
        if revision:
            body["revision"] = str(revision)
        if keys_only:
            body["keys_only"] = True
        if count_only:
            body["count_only"] = True
        if serializable:
            body["serializable"] = True
        try:
            resp = self.call("/kv/range", body, timeout=timeout, idempotent=True)
        except Compacted:
            raise Compacted(revision, 0) from None
        revision_now = as_int(resp["header"].get("revision"))
        kvs = [KeyValue.from_wire(kv) for kv in resp.get("kvs") or ()]
        return RangeResult(kvs, as_int(resp.get("count")), bool(resp.get("more")), revision_now)

    def get(self, key: str, *, timeout: float | None = None) -> KeyValue | None:
        kvs = self.range(key, timeout=timeout).kvs
        return kvs[0] if kvs else None

    def iter_prefix(
        self,
        prefix: str,
        *,
        page_size: int = 5000,
        revision: int = 0,
        keys_only: bool = False,
        ahead: bool = False,
    ) -> Iterator[tuple[list[KeyValue], int]]:
        """Pages of a prefix, all read at ONE revision so the listing is a consistent snapshot.

        Yields `(kvs, revision)`; the revision is the snapshot's, to start a watch from + 1.
        `ahead` fetches the next page on a thread while the caller handles this one (see
        controller.storage.read_ahead): for callers that spend long on each page.
        """
        pages = self._pages(prefix, page_size=page_size, revision=revision, keys_only=keys_only)
        return read_ahead(pages, name=f"list {prefix}") if ahead else pages

    def _pages(
        self, prefix: str, *, page_size: int, revision: int, keys_only: bool
    ) -> Iterator[tuple[list[KeyValue], int]]:
        end = prefix_range_end(prefix)
        start = prefix
        while True:
            page = self.range(start, end, limit=page_size, revision=revision, keys_only=keys_only)
            revision = revision or page.revision
            if page.kvs:
                yield page.kvs, revision
            if not page.more or not page.kvs:
                if not page.kvs:
                    yield [], revision
                return
            start = page.kvs[-1].key + "\0"

    def list_prefix(self, prefix: str, *, page_size: int = 5000) -> tuple[list[KeyValue], int]:
        kvs: list[KeyValue] = []
        revision = 0
        for page, revision in self.iter_prefix(prefix, page_size=page_size):
            kvs.extend(page)
        return kvs, revision

    def put(
        self, key: str, value: bytes, *, lease: int = 0, timeout: float | None = None
    ) -> PutResult:
        """Unconditional put. Not re-sent once it may have reached etcd: a late duplicate
        would overwrite whatever was written in between (`Unavailable(maybe_applied=True)`)."""
        body: dict[str, Any] = {"key": encode_key(key), "value": encode_bytes(value)}
        if lease:
            body["lease"] = str(lease)
        resp = self.call("/kv/put", body, timeout=timeout)
        return PutResult(as_int(resp["header"].get("revision")))

    def delete(
        self, key: str, range_end: str | None = None, *, timeout: float | None = None
    ) -> DeleteResult:
        """Unconditional delete. Not re-sent once it may have reached etcd: a duplicate would
        report 0 deleted for a key it did delete, or delete a key re-created in between."""
        body: dict[str, Any] = {"key": encode_key(key)}
        if range_end is not None:
            body["range_end"] = encode_key(range_end)
        resp = self.call("/kv/deleterange", body, timeout=timeout)
        return DeleteResult(as_int(resp["header"].get("revision")), as_int(resp.get("deleted")))

    def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
        *,
        timeout: float | None = None,
    ) -> TxnResult:
        """Not retried after the request may have reached etcd: the caller re-reads instead."""
        body = {
            "compare": [c.wire for c in compare],
            "success": [o.wire for o in success],
            "failure": [o.wire for o in failure],
        }
        resp = self.call("/kv/txn", body, timeout=timeout)
        revision = as_int(resp["header"].get("revision"))
        responses = [decode_op_result(r, revision) for r in resp.get("responses") or ()]
        return TxnResult(bool(resp.get("succeeded")), revision, responses)

    def compact(self, revision: int, *, physical: bool = True) -> None:
        body = {"revision": str(revision), "physical": physical}
        self.call("/kv/compaction", body, idempotent=True)

    # -- cluster ---------------------------------------------------------------------------

    def status(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The current endpoint's status (version, dbSize, leader, raftIndex, revision)."""
        return self.call("/maintenance/status", {}, timeout=timeout, idempotent=True)

    def alarms(self, *, timeout: float | None = None) -> list[tuple[int, str]]:
        """The cluster's active alarms as (member ID, alarm name) pairs.

        etcd raises NOSPACE when the backend quota fills and CORRUPT when a member's data
        diverges; while either is active the whole cluster refuses writes.
        """
        body = {"action": "GET", "memberID": "0", "alarm": "NONE"}
        resp = self.call("/maintenance/alarm", body, timeout=timeout, idempotent=True)
        return [
            (as_int(a.get("memberID")), str(a.get("alarm") or "NONE"))
            for a in resp.get("alarms") or ()
        ]

    def revision(self, key: str = "\0", *, timeout: float | None = None) -> int:
        """The cluster's current revision, by a linearizable read (proves a live quorum).

        `key` scopes the read: a user whose role covers only a prefix must probe inside it.
        """
        return self.range(key, count_only=True, timeout=timeout).revision

    # -- leases ----------------------------------------------------------------------------

    def lease_grant(self, ttl: int, lease_id: int = 0) -> Lease:
        body: dict[str, Any] = {"TTL": str(ttl)}
        if lease_id:
            body["ID"] = str(lease_id)
        resp = self.call("/lease/grant", body, idempotent=bool(lease_id))
        if resp.get("error"):
            raise Unavailable(f"lease grant refused: {resp['error']}")
        return Lease(as_int(resp.get("ID")), as_int(resp.get("TTL")))

    def lease_revoke(self, lease_id: int) -> None:
        self.call("/kv/lease/revoke", {"ID": str(lease_id)}, idempotent=True)

    def lease_time_to_live(self, lease_id: int) -> int:
        """Remaining seconds; -1 when the lease has expired or never existed."""
        resp = self.call("/kv/lease/timetolive", {"ID": str(lease_id)}, idempotent=True)
        return int(resp.get("TTL") or 0)

    def lease_keepalive_once(self, lease_id: int, *, timeout: float | None = None) -> int:
        """Refresh a lease; returns the new TTL, 0 or less if the lease is gone."""
        budget = self.timeout if timeout is None else timeout
        # The current member only: the LeaseKeeper retries (and so fails over) on its own.
        stream = self._pool.current().stream(
            "/lease/keepalive", {"ID": str(lease_id)}, budget, budget
        )
        try:
            for msg in stream:
                return as_int(msg.get("TTL"))
        finally:
            stream.close()
        return 0  # pragma: no cover

    # -- watch -----------------------------------------------------------------------------

    def watch(
        self,
        key: str,
        callback: WatchCallback,
        *,
        range_end: str | None = None,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        on_compacted: Callable[[Compacted], None] | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        name: str | None = None,
        heartbeat_key: str | None = None,
    ) -> WatchHandle:
        """A supervised watch; see `controller.storage.watch`.

        `start_revision` 0 means "from now", pinned here to the current revision + 1 so the
        watch can still resume from a revision after a break.

        `heartbeat_key`: a key a `Heartbeat` rewrites every few seconds; it is watched on the
        same stream so that a quiet prefix still proves the connection alive.
        """
        end = prefix_range_end(key) if prefix else range_end
        if start_revision <= 0:
            start_revision = self.revision(key) + 1
        return start_watch(
            self._pool,
            key=key,
            range_end=end,
            start_revision=start_revision,
            prev_kv=prev_kv,
            callback=callback,
            on_compacted=on_compacted,
            idle_timeout=idle_timeout,
            name=name or f"watch {key}",
            heartbeat_key=heartbeat_key,
        )

    def renew_token(self, address: str) -> None:
        """Log in again at `address` (a watch was cancelled for an invalid token)."""
        self._pool.renew_token(address)
