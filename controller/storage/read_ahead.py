"""Read the next page of a listing while the caller is still busy with this one.

A listing of 100k objects is 20 pages; each costs ~0.1 s of etcd's time and the wire,
then ~0.4 s of the caller's (decoding and validating 5,000 values). Fetched one after the
other, the caller's thread sits idle through every round trip. `read_ahead` runs the page
source on its own thread, one page ahead: etcd serves page N+1 on its own core while the
caller decodes page N (docs/architecture.md, Hot path).

The source still runs strictly in order and alone, so a listing stays one consistent
snapshot (every page at the revision of the first). At most `depth` pages wait in the
queue, plus the one the thread holds while the queue is full; nothing starts before the
first page is asked for. An error of the source reaches the caller where its page would
have. If the caller stops early, the thread ends after the request it is in.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_POLL = 0.1
"""How often a producer blocked on a full queue checks whether the caller has gone."""


class _End:
    """What the producer leaves after the last item: nothing, or the source's exception."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


def read_ahead(source: Iterator[T], *, depth: int = 1, name: str = "read-ahead") -> Iterator[T]:
    """The items of `source`, each produced on a thread while the previous one is consumed."""
    slots: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    gone = threading.Event()

    def offer(item: T | _End) -> bool:
        while not gone.is_set():
            try:
                slots.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        error: BaseException | None = None
        try:
            for item in source:
                if not offer(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            error = exc
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # a generator source is finished on the thread that ran it
        offer(_End(error))

    threading.Thread(target=produce, name=name, daemon=True).start()
    try:
        while True:
            item = slots.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        gone.set()
