"""Reading an object's Events back: what `labctl describe` prints under "Events:".

Events are found by what they are about (involvedObject), not by owner references — an Event
must not keep its object from being collected, nor be collected with it: it expires on its
own lease. A namespace holds few enough Events (rate limits, aggregation and the TTL keep
them bounded) that listing it and filtering is cheaper than keeping a second index in etcd.
"""

from __future__ import annotations

from controller.events.kind import EVENT
from controller.events.model import Event
from controller.runtime.repository import Repository
from controller.storage import EtcdClient


def events_for(
    repository_or_client: Repository[Event] | EtcdClient,
    root: str,
    namespace: str,
    name: str,
    uid: str | None = None,
    *,
    kind: str | None = None,
) -> list[Event]:
    """The Events about object `namespace/name`, oldest first, newest last (by lastTimestamp).

    `uid` keeps only those about that incarnation of the object (not an earlier object of the
    same name); `kind` only those about that kind (a LabWorker and a pool may share a name).
    `root` is the etcd prefix; ignored when a Repository (which has its own) is given."""
    repository = (
        repository_or_client
        if isinstance(repository_or_client, Repository)
        else Repository(repository_or_client, EVENT, root)
    )
    found = [
        event
        for event in repository.list(namespace)
        if event.involved_object.name == name
        and event.involved_object.namespace == namespace
        and (uid is None or event.involved_object.uid == uid)
        and (kind is None or event.involved_object.kind == kind)
    ]
    found.sort(key=lambda e: (e.last_timestamp, e.first_timestamp, e.metadata.name))
    return found
