"""Endpoint failover: which etcd member a request goes to, and where it goes after a failure.

`EndpointPool` holds one `Endpoint` per configured member and a current one. A call goes to
the current endpoint; when it cannot connect, the next endpoint is tried at once (and becomes
current), and when every endpoint fails the call backs off (jittered) until its deadline, then
raises `Unavailable`; no attempt and no sleep runs past the deadline.

Reads are retried on any transport failure. Writes — txns, and plain puts and deletes too —
only when the request provably never left (connection refused, connect timeout): once it may
have reached etcd, the write may have been applied, and sending it again is not the same as
sending it once (a re-sent delete can remove an object another client created in between; a
re-sent put can overwrite a newer value). Such a write raises `Unavailable(maybe_applied=True)`
and the caller re-reads before deciding again. Which calls are reads is the caller's to say
(`idempotent=`); the pool knows endpoints and deadlines, not RPCs.

Streams (watches) fail over too, but only while opening: a broken stream is the watch
supervisor's to reopen (`controller.storage.watch`), and it reopens through this pool.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from controller.storage.address import EndpointAddress
from controller.storage.errors import TLSFailed, Unavailable
from controller.storage.transport import Credentials, Endpoint, Stream

log = logging.getLogger("controller.storage")

_BACKOFF_BASE = 0.05
_BACKOFF_MAX = 1.0
_BACKOFF_JITTER = 0.1
_jitter = random.Random()  # private: callers seeding `random` must not synchronise backoffs


class EndpointPool:
    """Thread-safe. Construction never touches the network: etcd may still be starting.

    `timeout` is the default deadline of what has none of its own: connecting a stream and
    logging in again.
    """

    def __init__(
        self,
        targets: Sequence[EndpointAddress],
        credentials: Credentials,
        *,
        timeout: float,
        pool_size: int,
    ) -> None:
        self.timeout = timeout
        self._credentials = credentials
        self._pool_size = pool_size
        self._targets = list(targets)
        self._addresses = [a.netloc for a in self._targets]
        # Endpoints are built on first use: building one costs a session and a TLS context.
        self._endpoints: list[Endpoint | None] = [None] * len(self._addresses)
        self._current = 0
        self._lock = threading.Lock()

    @property
    def addresses(self) -> list[str]:
        return list(self._addresses)

    @property
    def current_address(self) -> str:
        return self._addresses[self._current]

    def current(self) -> Endpoint:
        """The current member, without failover (a caller that retries on its own)."""
        return self.endpoint(self._current)

    def endpoint(self, index: int) -> Endpoint:
        ep = self._endpoints[index]
        if ep is None:
            with self._lock:
                ep = self._endpoints[index]
                if ep is None:
                    ep = Endpoint(self._targets[index], self._credentials, self._pool_size)
                    self._endpoints[index] = ep
        return ep

    def close(self) -> None:
        for ep in self._endpoints:
            if ep is not None:
                ep.close()

    def _rotate_from(self, failed: int) -> None:
        with self._lock:
            if self._current == failed and len(self._addresses) > 1:
                self._current = (failed + 1) % len(self._addresses)
                log.warning(
                    "etcd endpoint %s unreachable; failing over to %s",
                    self._addresses[failed],
                    self._addresses[self._current],
                )

    # -- unary calls -----------------------------------------------------------------------

    def call(
        self, method: str, body: dict[str, Any], budget: float, *, idempotent: bool
    ) -> dict[str, Any]:
        """Try endpoints in turn, backing off between rounds, never past the deadline.

        Every attempt and every backoff sleep is cut to what is left of `budget`, so a call
        returns or raises within its timeout (plus scheduling noise), however etcd fails.
        `idempotent`: the request may be re-sent after a failure that might have reached etcd.
        """
        deadline = time.monotonic() + budget
        # One hung member (SIGSTOPped, mid-election) must not eat the whole deadline: an
        # attempt gets half of it, so the next endpoint still has time to answer.
        per_attempt = budget if budget <= 1.0 else max(1.0, budget / 2)
        last: Unavailable | None = None
        maybe_applied = False
        backoff = _BACKOFF_BASE
        while True:
            for _ in range(len(self._addresses)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                index = self._current
                try:
                    return self.endpoint(index).call(method, body, min(remaining, per_attempt))
                except Unavailable as exc:
                    self._rotate_from(index)
                    if exc.maybe_applied and not idempotent:
                        raise _not_retried(method, exc) from exc
                    if not isinstance(last, TLSFailed) or isinstance(exc, TLSFailed):
                        last = exc  # a TLS failure explains more than a starved attempt
                    maybe_applied = maybe_applied or exc.maybe_applied
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(remaining, backoff + _jitter.uniform(0, _BACKOFF_JITTER)))
            backoff = min(backoff * 2, _BACKOFF_MAX)
        failed = TLSFailed if isinstance(last, TLSFailed) else Unavailable
        raise failed(
            f"etcd unavailable at {', '.join(self._addresses)} for {budget:.1f}s "
            f"during {method} (last error: {last or 'no time left for an attempt'})",
            maybe_applied=maybe_applied,
        ) from last

    # -- streams (the watch's opener) ------------------------------------------------------

    def open_stream(
        self, method: str, body: dict[str, Any] | list[dict[str, Any]], read_timeout: float
    ) -> tuple[Stream, str]:
        """Open a stream on the first endpoint that answers; returns it with that address.

        One round over the endpoints, no backoff: the watch supervisor owns retrying.
        """
        last: Exception | None = None
        for _ in range(len(self._addresses)):
            index = self._current
            try:
                ep = self.endpoint(index)
                return ep.stream(
                    method, body, min(self.timeout, read_timeout), read_timeout
                ), ep.address
            except Unavailable as exc:
                last = exc
                self._rotate_from(index)
        raise last or Unavailable("no etcd endpoint")

    def renew_token(self, address: str) -> None:
        """Log in again at `address` (a watch was cancelled for an invalid token)."""
        for index, known in enumerate(self._addresses):
            if known == address:
                self.endpoint(index).renew_token(self.timeout)


def _not_retried(method: str, exc: Unavailable) -> Unavailable:
    return Unavailable(
        f"{exc}; the {method} request may have been applied, so it was not re-sent "
        "(re-read before deciding again)",
        maybe_applied=True,
    )
